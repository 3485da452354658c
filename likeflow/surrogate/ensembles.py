"""Ensembles: several surrogates of the same data (other seeds or configurations) as one.

The ensemble's density is the mean of its members' (a
:class:`~likeflow.surrogate.piecewise.PiecewiseSurrogate`
of equal weights, ``method = "ensemble"``), it samples from their mixture, and the members'
spread at each point (:meth:`~likeflow.surrogate.piecewise.PiecewiseSurrogate.member_spread`) is an
uncertainty of the surrogate itself: small where the data are, large where the flows
extrapolate. ``likeflow profile`` of an ensemble also gives each member's upper limit.

Example:
    >>> ens = likeflow.ensemble(["s0.likeflow.h5", "s1.likeflow.h5"], out="e.likeflow.h5")  # doctest: +SKIP
    >>> ens.member_spread(points)                                                            # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import LikeflowError
from ..fileio import check_outputs
from .artifact import Surrogate
from .loading import load
from .piecewise import PiecewiseSurrogate


def ensemble(surrogates, *, out=None) -> PiecewiseSurrogate:
    """Several surrogates of the same data (other seeds or configurations) as one: the density
    the mean of theirs, sampled from the mixture, their spread at each point an uncertainty of
    the surrogate itself (:meth:`PiecewiseSurrogate.member_spread`); profiles report the
    spread of the members' limits.

    Args:
        surrogates: two or more surrogates or files, with the same parameters and bounds.
        out: write the ensemble there (checked before the members are read; none of them
            may be overwritten).
    """
    check_outputs([out], inputs=[os.fspath(s) for s in surrogates
                                 if isinstance(s, (str, os.PathLike))])
    members = [s if isinstance(s, Surrogate) else load(s) for s in surrogates]
    if len(members) < 2:
        raise LikeflowError("an ensemble needs at least two surrogates")
    if any(m.kind != "flow" for m in members):
        raise LikeflowError("an ensemble's members are single surrogates, not piecewise ones")
    record = {"components": len(members), "weights": [1.0 / len(members)] * len(members),
              "method": "ensemble", "criterion": "members of equal weight",
              "members": [{"source": m.path, "seed": m.training.get("seed"),
                           "test_log_prob": m.training.get("test_log_prob")} for m in members]}
    best = max(members, key=lambda m: m.training.get("test_log_prob", -np.inf))
    sur = PiecewiseSurrogate(members, record, dict(best.training), {})
    if out is not None:
        sur.save(out)
    return sur
