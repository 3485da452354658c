"""Anchors: points where the target's exact log density is known, where no sample goes.

A profile likelihood is decided at the *conditional modes*: for each value of the POI, the
point where the nuisance parameters maximise the likelihood. In 64 dimensions no sample comes
near them (a sample's log density lies about D/2 below its slice's maximum), so a flow fitted by
maximum likelihood is free to get the density there wrong, and it does: on a real ATLAS
likelihood the residual ``log q - log p`` at the modes fell by 0.1-0.2 nats from the best fit to
the limit, a profile too steep by 0.3 in q and limits 7-9% too strong, while every check built
on the samples alone stayed quiet.

Anchors put these points into the sample file with their exact log densities:

- ``mode``: the exact conditional modes along the POI (the target's own optimiser), from the
  best fit out to where the exact profile's q reaches :data:`ANCHOR_Q_MAX`;
- ``segment``: points on the segments from each mode to samples of its POI slice, so that the
  density between the mode and the typical set is pinned too.

Training (:mod:`likeflow.fitting.loop`) adds a term that holds ``log q - log p`` constant over the
anchors and the batch; validation (:mod:`likeflow.validation.residuals`) measures the residual at
held-out
modes (the profile's error in nats: q is off by twice it).

Example:
    >>> a = Anchors(np.zeros((3, 2)), np.array([-1.0, -2.0, -3.0]),
    ...             np.array([MODE, SEGMENT, SEGMENT]))
    >>> a.n, int(a.modes().n)
    (3, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import LikeflowError

#: anchor kinds, as stored
MODE, SEGMENT = 0, 1
#: the exact profile is anchored out to this q (past the 99.7% limit). Measured on RegionB
#: 900_850_60: out to q = 16 the flow could not hold the far anchors and drifted by 0.2-0.4 nats
#: at q 12-14 (verdict FAIL both); at q = 9 the profile was within 0.011 and the limits within
#: 1%, the +2 sigma expected limit (Asimov q about 13, beyond the last anchor) 4.8% low
ANCHOR_Q_MAX = 9.0
#: conditional modes along the POI, and segment points per mode
MODES = 24
SEGMENTS_PER_MODE = 24
#: fractions of the way from a mode to a sample of its slice
SEGMENT_FRACTIONS = (0.2, 0.4, 0.6)


@dataclass
class Anchors:
    """Points with their exact log density (``log_prob``) and kind (:data:`MODE` or
    :data:`SEGMENT`); each mode is followed by its segment points."""

    values: np.ndarray
    log_prob: np.ndarray
    kind: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.atleast_2d(np.asarray(self.values, dtype=np.float64))
        self.log_prob = np.asarray(self.log_prob, dtype=np.float64).reshape(-1)
        self.kind = np.asarray(self.kind, dtype=np.int8).reshape(-1)
        if not (len(self.values) == len(self.log_prob) == len(self.kind)):
            raise LikeflowError(f"anchors: {len(self.values)} points, {len(self.log_prob)} log "
                                f"densities and {len(self.kind)} kinds")

    @property
    def n(self) -> int:
        return int(len(self.values))

    def subset(self, rows) -> "Anchors":
        return Anchors(self.values[rows], self.log_prob[rows], self.kind[rows])

    def modes(self) -> "Anchors":
        return self.subset(self.kind == MODE)

    def problem(self, dim: int, bounds: np.ndarray) -> str | None:
        """What makes these anchors unfit for samples of ``dim`` columns within ``bounds``
        (None: nothing)."""
        if self.values.shape[1] != dim:
            return f"anchors have {self.values.shape[1]} columns, the samples {dim}"
        if not (np.isfinite(self.values).all() and np.isfinite(self.log_prob).all()):
            return "anchors hold NaN or inf"
        if ((self.values < bounds[:, 0]) | (self.values > bounds[:, 1])).any():
            return "anchors lie outside the declared bounds"
        return None

    @property
    def best_fit(self) -> np.ndarray | None:
        """The target's global mode: the first mode (None without modes)."""
        modes = np.flatnonzero(self.kind == MODE)
        return self.values[modes[0]] if len(modes) else None

    def split(self, seed: int, test: float = 0.25) -> tuple["Anchors", "Anchors"]:
        """(training, held-out) anchors. Every fourth mode (seeded offset) and its segments are
        held out whole, and so is the best fit (the first mode): validation measures the
        profile's error at modes training never saw, relative to the best fit."""
        modes = np.flatnonzero(self.kind == MODE)
        if len(modes) == 0:
            return self, self.subset(np.zeros(self.n, bool))
        slice_of = np.cumsum(self.kind == MODE) - 1      # segments follow their mode
        k = max(1, int(round(1 / test)))
        held = {0} | set(range(int(np.random.default_rng(seed).integers(1, k + 1)),
                               len(modes), k))
        out = np.isin(slice_of, sorted(held))
        # the best fit is held out and trained on: the reference of every drift
        keep = ~out | (slice_of == 0)
        return self.subset(keep), self.subset(out)


def held_out_anchors(samples, seed: int) -> Anchors | None:
    """The anchors of ``samples`` (a :class:`~likeflow.data.samples.SampleSet`) that a fit with
    ``seed`` holds out for validation (None: the file has none)."""
    return None if samples.anchors is None else samples.anchors.split(seed)[1]


def write(group, a: Anchors, **kw) -> None:
    """``a`` into an HDF5 group (``values``, ``log_prob``, ``kind``)."""
    group.create_dataset("values", data=a.values, **kw)
    group.create_dataset("log_prob", data=a.log_prob, **kw)
    group.create_dataset("kind", data=a.kind, **kw)


def read(group) -> Anchors:
    return Anchors(group["values"][()], group["log_prob"][()], group["kind"][()])


def profile_path(target, samples: np.ndarray, *, poi: int,
                 best_fit: Callable[[np.ndarray], np.ndarray],
                 conditional_mode: Callable[[float, np.ndarray], np.ndarray],
                 q_max: float = ANCHOR_Q_MAX, modes: int = MODES,
                 per_mode: int = SEGMENTS_PER_MODE, seed: int = 0,
                 progress: Callable[[str], None] | None = None) -> Anchors:
    """Anchors along the exact profile of POI column ``poi`` of ``target``.

    Args:
        target: a :class:`~likeflow.targets.likelihoods.Target` (its ``evaluate`` gives the log
            densities).
        best_fit: ``start -> x``, the target's global mode from a start.
        conditional_mode: ``(poi_value, start) -> x``, its mode with the POI held at the value
            (:func:`likeflow.targets.generate.mode_finders` gives both).
        samples: (N, D) samples of the target (the slices' typical points).
        q_max: how far out along the profile: to where the exact q reaches it, or the bound.
        modes: conditional modes in all (the best fit included), evenly spaced in the POI
            from the best fit to the end of the walk on each open side.
        per_mode: segment points per mode.
    """
    say = progress or (lambda m: None)
    lo, hi = target.bounds[poi]
    logp = lambda x: np.asarray(target.evaluate(np.atleast_2d(x))["log_prob"], np.float64)
    # the best fit from the densest sample: an optimiser started in the bulk
    best = best_fit(samples[np.argmax(logp(samples[:2000]))])
    top = float(logp(best)[0])

    def q_at(value: float, start: np.ndarray):
        x = conditional_mode(value, start)
        return 2.0 * (top - float(logp(x)[0])), x

    # walk out from the best fit in each open direction until q passes q_max (or a bound),
    # with a step set by the samples' spread of the POI
    spread = float(np.std(samples[:, poi]))
    ends = []
    for sign, bound in ((+1, hi), (-1, lo)):
        if np.isfinite(bound) and (best[poi] - bound) * sign >= -1e-6 * (hi - lo):
            continue  # the best fit sits at this bound
        value, x, q = best[poi], best, 0.0
        for _ in range(60):  # a profile flatter than that ends at 60 posterior widths
            if q >= q_max:
                break
            step = spread * (1.0 if q < 1 else 0.5)
            nxt = value + sign * step
            if (nxt - bound) * sign >= 0:
                nxt = bound
            q, x = q_at(nxt, x)
            value = nxt
            if value == bound:
                break
        ends.append((sign, value, q))
    say(f"anchors: the exact profile of {target.names[poi]} from {best[poi]:.4g} out to "
        + ", ".join(f"{v:.4g} (q {q:.2f})" for _, v, q in ends))
    # the modes: evenly in the POI from the best fit to the walk's end on each side
    values = [float(best[poi])]
    per_side = max(1, (modes - 1) // max(1, len(ends)))
    for _, end, _ in ends:
        values += [float(best[poi] + (end - best[poi]) * t)
                   for t in np.linspace(0, 1, per_side + 1)[1:]]
    points, start = [best], best
    for v in values[1:]:
        if (start[poi] - best[poi]) * (v - best[poi]) < 0:
            start = best  # the other side: start again from the best fit
        start = conditional_mode(v, start)
        points.append(start)
    modes_x = np.array(points)
    # segment points: from each mode towards samples of its slice (the nearest in the POI)
    rng = np.random.default_rng(seed)
    n_frac = len(SEGMENT_FRACTIONS)
    per_sample = max(1, per_mode // n_frac)
    order = np.argsort(samples[:, poi])
    sorted_poi = samples[order, poi]
    rows, kinds = [], []
    for m in modes_x:
        rows.append(m)
        kinds.append(MODE)
        at = np.searchsorted(sorted_poi, m[poi])
        near = order[max(0, at - 200):at + 200]
        pick = rng.choice(near, size=min(per_sample, len(near)), replace=False)
        for j in pick:
            s = samples[j].copy()
            s[poi] = m[poi]  # in the mode's slice
            for t in SEGMENT_FRACTIONS:
                rows.append(m + t * (s - m))
                kinds.append(SEGMENT)
    # strictly inside the bounds: a bound map sends the bound itself to infinity
    lo_all, hi_all = target.bounds[:, 0], target.bounds[:, 1]
    margin = np.where(np.isfinite(hi_all - lo_all), 1e-6 * (hi_all - lo_all), 0.0)
    x = np.clip(np.array(rows), lo_all + margin, hi_all - margin)
    lp = logp(x)
    ok = np.isfinite(lp)
    return Anchors(x[ok], lp[ok], np.array(kinds)[ok])
