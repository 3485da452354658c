"""Weighted chains in text: the output of nested samplers and of GetDist.

One row per sample, whitespace-separated: ``weight``, a log-likelihood column, then the
parameters. Two conventions for the second column, chosen by the layout:

- ``polychord``: -2 log L. PolyChord's ``<root>.txt`` and MultiNest's ``<root>.txt`` (its
  "sample probability, -2 log L, parameters") are written this way;
- ``getdist``: -log L (GetDist / CosmoMC chains: minus the log posterior).

Beside the chain, GetDist's companion files are read when present: ``<root>.paramnames`` (one
parameter per line, its name first; a trailing ``*`` marks a derived parameter) and
``<root>.ranges`` (``name lo hi``, ``N`` for no bound). ``<root>`` is the chain's name without
``.txt``. The weights become the sample set's weights (posterior weights: validation and
training use them); the log-likelihood becomes ``log_prob`` and ``log_likelihood`` (the log
density of the samples for flat priors).

Example (a 2-parameter PolyChord run ``gauss.txt`` with ``gauss.paramnames``)::

    likeflow info gauss.txt --layout polychord
    likeflow fit gauss.txt --layout polychord
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import SampleFileError

#: layout name -> factor turning the second column into log L
TEXT_LAYOUTS = {"polychord": -0.5, "getdist": -1.0}


def _root(path: str) -> str:
    return path[:-4] if path.endswith(".txt") else path


def _paramnames(path: str, d: int) -> list[str] | None:
    pn = _root(path) + ".paramnames"
    if not os.path.exists(pn):
        return None
    with open(pn) as f:
        names = [line.split()[0].rstrip("*") for line in f if line.strip()]
    if len(names) < d:
        raise SampleFileError(pn, f"names {len(names)} parameters; the chain has {d}")
    return names[:d]


def _ranges(path: str, names: list[str]) -> np.ndarray:
    bounds = np.tile([-np.inf, np.inf], (len(names), 1))
    rg = _root(path) + ".ranges"
    if not os.path.exists(rg):
        return bounds
    with open(rg) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[0].rstrip("*") not in names:
                continue
            i = names.index(parts[0].rstrip("*"))
            for k, v in enumerate(parts[1:3]):
                if v.upper() != "N":
                    try:
                        bounds[i, k] = float(v)
                    except ValueError:
                        raise SampleFileError(rg, f"range of {parts[0]}: '{v}' is not a "
                                              "number or N") from None
    return bounds


def read_text_chain(path: str, layout: str, rows_to_read):
    """``(values, weights, log_likelihood, names, bounds, n)`` of a weighted text chain;
    ``rows_to_read(n)`` picks the rows (burn-in, thinning, subsample) of the n in the file."""
    if layout not in TEXT_LAYOUTS:
        raise SampleFileError(path, f"unknown text layout '{layout}' "
                              f"({', '.join(TEXT_LAYOUTS)})")
    if not os.path.exists(path):
        raise SampleFileError(path, "no such file")
    try:
        data = np.loadtxt(path, ndmin=2, comments="#")
    except ValueError as e:
        raise SampleFileError(path, f"not a whitespace-separated table of numbers "
                              f"({str(e).splitlines()[0][:80]})") from None
    if data.shape[1] < 3:
        raise SampleFileError(path, f"{data.shape[1]} columns: a weighted chain has a weight, "
                              "a log-likelihood column and at least one parameter")
    n = len(data)
    rows = rows_to_read(n)
    if rows is not None:
        data = data[rows]
    weights, second, values = data[:, 0], data[:, 1], data[:, 2:]
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise SampleFileError(path, "the first column (weights) must be finite and >= 0")
    if not np.any(weights > 0):
        raise SampleFileError(path, "every weight is 0")
    d = values.shape[1]
    names = _paramnames(path, d) or [f"x{i}" for i in range(d)]
    return (values, weights, TEXT_LAYOUTS[layout] * second, names, _ranges(path, names), n)
