"""The surrogate file's HDF5 layout, written (:func:`write`) and read (:func:`read`) here and
nowhere else.

A surrogate file (``*.likeflow.h5``) holds

- root attributes ``format = "likeflow-surrogate"``, ``format_version`` (2; the major number
  of ``schema_version``), ``schema_version``, ``likeflow_version``, ``tensorflow_version`` (when
  written with TensorFlow);
- JSON records, each following its schema (``likeflow/schemas/<version>/``,
  :mod:`likeflow.surrogate.schema`): ``config`` (the :class:`~likeflow.flows.config.FlowConfig`),
  ``training``, ``validation``, ``provenance`` and, for a piecewise surrogate, ``piecewise``;
- ``weights/NNNN``: one array per trainable variable, in the flow's variable order
  (:func:`likeflow.flows.config.weight_roles` names each from the config), each with its
  variable name and its sha256 as attributes;
- ``components/K/config`` and ``components/K/weights/NNNN``: a piecewise surrogate's flows
  beyond the first (the first is at the root).

Files of format version 1 (before the schemas and the provenance) are read as well; records of
older schema versions are upgraded (:func:`likeflow.surrogate.schema.upgrade`). Reading checks
everything before anything is built: the records against their schemas, the weights' shapes
against the config (from the dataset headers, so a hostile file allocates nothing), their
checksums and their values. Nothing in a file is executed. Writing goes to a temp file in the
same folder that is renamed into place (:func:`likeflow.fileio.atomic_h5`), so a file on disk
is always whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import h5py
import numpy as np

from .._version import __version__
from ..errors import LikeflowError, SurrogateFileError
from ..fileio import COMPLETE_ATTR, atomic_h5, check_stored, open_h5
from ..flows.config import FlowConfig, expected_weight_shapes
from . import schema

FORMAT = "likeflow-surrogate"


@dataclass
class StoredPart:
    """One flow as a file holds it: its config and its weight arrays (with their names)."""

    config: FlowConfig
    weights: list[np.ndarray]
    names: list[str]


@dataclass
class Contents:
    """What :func:`read` found: the records (upgraded to the newest schema) and the flows,
    the root flow first."""

    records: dict
    parts: list[StoredPart]


Weights = list[tuple[str, np.ndarray]]


def write(path: str | os.PathLike, records: dict, weights: Weights,
          components: list[tuple[dict, Weights]] = ()) -> None:
    """Write a surrogate file atomically: ``records`` (name -> JSON record; ``config`` and
    ``provenance`` among them), the root flow's ``(name, array)`` weights and, for a
    piecewise surrogate, its other flows as ``(config record, weights)``. Records are checked
    against their schemas, weights for NaN/inf, before the file appears."""
    path = os.fspath(path)
    with atomic_h5(path) as f:
        for name, record in records.items():
            _check_own(path, name, record)
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = schema.FORMAT_VERSION
        f.attrs["schema_version"] = schema.SCHEMA_VERSION
        f.attrs["likeflow_version"] = __version__
        if records["provenance"]["tensorflow_version"]:
            f.attrs["tensorflow_version"] = records["provenance"]["tensorflow_version"]
        for name, record in records.items():
            f.create_dataset(name, data=json.dumps(record))
        _write_weights(f.create_group("weights"), weights, path)
        for k, (config, arrays) in enumerate(components, start=1):
            g = f.create_group(f"components/{k}")
            _check_own(path, "config", config)
            g.create_dataset("config", data=json.dumps(config))
            _write_weights(g.create_group("weights"), arrays, path)


def read(path: str | os.PathLike) -> Contents:
    """Read and check a surrogate file; raises :class:`SurrogateFileError` for a missing,
    foreign, damaged, incomplete or newer-format file, naming what is wrong."""
    path = os.fspath(path)
    try:
        with open_h5(path, SurrogateFileError) as f:
            if f.attrs.get("format") != FORMAT:
                what = "a likeflow sample file" if "samples" in f else "an HDF5 file"
                raise SurrogateFileError(path, f"is {what}, not a likeflow surrogate "
                                         "(no format='likeflow-surrogate' attribute)")
            version = int(f.attrs.get("format_version", -1))
            if version > schema.FORMAT_VERSION:
                raise SurrogateFileError(path, f"format version {version} is newer than this "
                                         f"likeflow ({__version__}) reads; upgrade likeflow")
            if version not in schema.SCHEMAS_OF_FORMAT:
                raise SurrogateFileError(path, f"damaged: unknown format version {version}")
            if f.attrs.get(COMPLETE_ATTR, 1) != 1:
                raise SurrogateFileError(path, "incomplete: the file is still being written "
                                         "(or its writer died)")
            for key in (*schema.RECORDS[version], "weights"):
                if key not in f:
                    raise SurrogateFileError(path, f"damaged: '{key}' is missing")
            used = schema.version_of(version, text(f.attrs.get("schema_version", "")))
            records = {name: _record(path, f, name, used) for name in schema.RECORDS[version]}
            records = schema.upgrade(records, version)
            config = FlowConfig.from_dict(records["config"])
            parts = [StoredPart(config, *_read_weights(path, f["weights"], config))]
            # a piecewise surrogate: one flow per cluster, the first at the root
            if "piecewise" in f:
                records["piecewise"] = _record(path, f, "piecewise", used)
            for k in range(1, records["piecewise"]["components"]
                           if "piecewise" in records else 1):
                where = f"components/{k}"
                if where not in f or "config" not in f[where] or "weights" not in f[where]:
                    raise SurrogateFileError(path, f"damaged: '{where}' is missing")
                c = FlowConfig.from_dict(_record(path, f[where], "config", used))
                parts.append(StoredPart(c, *_read_weights(path, f[where]["weights"], c)))
    except SurrogateFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SurrogateFileError(path, f"damaged surrogate file ({msg})") from None
    except LikeflowError as e:
        raise SurrogateFileError(path, f"damaged surrogate file ({e})") from None
    return Contents(records, parts)


def is_surrogate_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file marked as a likeflow surrogate (False for anything
    else, a missing or unreadable file included: its reader then says what is wrong)."""
    try:
        with h5py.File(os.fspath(path), "r") as f:
            return f.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def text(x) -> str:
    """An HDF5 string attribute or dataset value as ``str`` (h5py gives bytes or str)."""
    return x.decode() if isinstance(x, bytes) else str(x)


def _check_own(path, name: str, record) -> None:
    try:
        schema.check(name, record)
    except LikeflowError as e:  # a record likeflow itself made: a bug
        raise LikeflowError(f"{path}: not written: {e} (a bug in likeflow: please report "
                            "it)") from None


def _write_weights(g, arrays, path) -> None:
    for i, (name, w) in enumerate(arrays):
        if not np.isfinite(w).all():
            raise LikeflowError(f"{path}: not written: weight {name} holds NaN or inf (a "
                                "diverged fit)")
        ds = g.create_dataset(f"{i:04d}", data=w)
        ds.attrs["name"] = name
        ds.attrs["sha256"] = _checksum(w)


def _checksum(w: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest()


def _record(path: str, f, name: str, version: str) -> dict:
    """A JSON record of the file, checked against its schema: one line naming the record
    and the field where it is not."""
    ds = f[name]
    if not isinstance(ds, h5py.Dataset) or ds.shape != () or ds.dtype.kind not in "OSU":
        raise SurrogateFileError(path, f"damaged: '{name}' is not a JSON text")
    try:
        value = json.loads(text(ds[()]))
    except (ValueError, UnicodeDecodeError) as e:
        raise SurrogateFileError(path, f"damaged: '{name}' is not valid JSON ({e})") from None
    try:
        schema.check(name, value, version)
    except LikeflowError as e:
        raise SurrogateFileError(path, f"damaged: {e}") from None
    return value


def _read_weights(path: str, g, config: FlowConfig) -> tuple[list[np.ndarray], list[str]]:
    """The weight arrays of a file, checked before anything is built: their shapes against
    the config's (read from the headers, so a hostile config or dataset allocates nothing),
    their checksums (files since checksums were written) and their values (finite)."""
    if not isinstance(g, h5py.Group):
        raise SurrogateFileError(path, "damaged: 'weights' is not a group")
    keys = sorted(g)
    if any(not isinstance(g[k], h5py.Dataset) for k in keys):
        raise SurrogateFileError(path, "damaged: 'weights' holds something other than arrays")
    got = [tuple(g[k].shape or ()) for k in keys]
    want = expected_weight_shapes(config)
    if got != want:
        raise SurrogateFileError(path, f"damaged: the weights ({len(got)} arrays, "
                                 f"{sum(int(np.prod(s)) for s in got)} numbers) do not match "
                                 f"the config ({len(want)} arrays, "
                                 f"{sum(int(np.prod(s)) for s in want)} numbers)")
    out, names = [], []
    for k in keys:
        ds = g[k]
        if ds.dtype.kind != "f":
            raise SurrogateFileError(path, f"damaged: weight {k} is not floating point")
        check_stored(path, ds, SurrogateFileError)
        w = ds[()]
        digest = ds.attrs.get("sha256")
        if digest is not None and text(digest) != _checksum(w):
            raise SurrogateFileError(path, f"damaged: weight {k} ({text(ds.attrs.get('name', k))}) "
                                     "fails its checksum: the file was altered or corrupted")
        if not np.isfinite(w).all():
            raise SurrogateFileError(path, f"damaged: weight {k} holds NaN or inf")
        out.append(w)
        names.append(text(ds.attrs.get("name", k)))
    if config.whiten:  # the last array (weight_roles): u = L v needs L invertible
        m = out[-1]
        if np.any(np.triu(m, 1) != 0) or not np.all(np.diag(m) > 0):
            raise SurrogateFileError(path, "damaged: the whitening matrix is not lower "
                                     "triangular with a positive diagonal")
    return out, names
