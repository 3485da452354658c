"""A surrogate's log density at the points of a sample file, with what else a user asks of
each point (outlier scores, an ensemble's spread), optionally written as a sample file: what
``likeflow eval`` prints or writes.

Example:
    >>> import likeflow                                                 # doctest: +SKIP
    >>> ev = likeflow.evaluate("toy.likeflow.h5", "points.h5", typicality=True)  # doctest: +SKIP
    >>> ev.log_prob[:3], sorted(ev.scores)                              # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import LikeflowError


@dataclass
class Evaluation:
    """``log_prob`` (n,) at the ``points`` (n, D, in the surrogate's parameter order; NaN where
    a point holds NaN or inf, -inf outside the bounds), the extra per-point ``scores`` asked
    for (name -> (n,)), and the rows that hold NaN or inf (``undefined``)."""

    points: np.ndarray
    log_prob: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    undefined: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def rows(self):
        """(log_prob, *scores) per point, the columns :meth:`columns` names."""
        return zip(self.log_prob, *self.scores.values())

    def columns(self) -> list[str]:
        return ["log_prob", *self.scores]


def evaluate(surrogate, points, *, typicality: bool = False, spread: bool = False,
             seed: int = 0, read_options=None,
             out: str | os.PathLike | None = None) -> Evaluation:
    """The log density of ``surrogate`` (a :class:`~likeflow.surrogate.artifact.Surrogate` or
    its file) at ``points`` (a sample file or a :class:`~likeflow.data.samples.SampleSet`):
    columns matched to the surrogate's parameters by name where the file names them.

    Args:
        typicality: add :func:`likeflow.infer.outliers.typicality`'s scores
            (``latent_radius``, ``radius_pvalue``, ``log_prob_percentile``; ``seed`` seeds the
            surrogate samples of the percentiles).
        spread: add ``log_prob_spread``, the spread of an ensemble's members' log densities
            (an error for any other surrogate).
        read_options: how to read a sample file (:class:`~likeflow.data.samples.ReadOptions`).
        out: write the points, their ``log_prob`` and the scores as a sample file (checked
            before anything is read).
    """
    from ..data.samples import SampleSet, read_samples, write_samples
    from ..fileio import check_outputs
    from ..surrogate.loading import load
    from .outliers import typicality as typicality_scores

    paths = [os.fspath(p) for p in (surrogate, points) if isinstance(p, (str, os.PathLike))]
    check_outputs([out], inputs=paths)
    sur = load(surrogate) if isinstance(surrogate, (str, os.PathLike)) else surrogate
    if spread and sur.kind != "ensemble":
        raise LikeflowError(f"{sur.path or 'the surrogate'}: the spread needs an ensemble "
                            "surrogate ('likeflow ensemble')")
    where = os.fspath(points) if isinstance(points, (str, os.PathLike)) else "<samples>"
    s = points if isinstance(points, SampleSet) else read_samples(points, read_options,
                                                                  check=False)
    s = sur.columns_of(s, where)
    scores = typicality_scores(sur, s.values, seed=seed) if typicality else {}
    lp = scores.pop("log_prob") if typicality else sur.log_prob(s.values)
    undefined = ~np.isfinite(s.values).all(axis=1)
    if undefined.any():  # not "outside the bounds" (-inf): no density at all
        lp = np.where(undefined, np.nan, lp)
    if spread:
        scores["log_prob_spread"] = sur.member_spread(s.values)
    if out is not None:
        write_samples(out, SampleSet(s.values, names=sur.names, poi=sur.poi, log_prob=lp),
                      columns=scores)
    return Evaluation(s.values, lp, scores, np.flatnonzero(undefined))
