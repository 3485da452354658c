"""Parameter bounds and the maps that keep a flow, an optimiser or a sampler inside them.

One encoding of "no bound" everywhere: ``-inf`` / ``+inf`` in arrays, ``null`` in JSON (the
files), ``None`` in Python by name. :func:`as_bounds` takes what a user writes (``None``, a
``(D, 2)`` array, or ``{"mu": (0, None)}`` by name) and :func:`bounds_to_json` /
:func:`bounds_from_json` convert for files.

The bound maps (:class:`likeflow.flows.plan.BoundPlan`, which every backend evaluates) send an
unbounded, standardised coordinate to the physical parameter: the probit map
``lo + (hi - lo) Phi(.)`` for two bounds the data reach, a soft clip for two bounds the data
stay away from, softplus for one bound, the identity for none. The flows end
with this map; inference optimises and MCMC samples in its unbounded coordinates, so no step
leaves the bounds. Parameters whose samples pile up at a bound are instead reflected across it
(:func:`bound_reflections`, :func:`flow_bounds`). The maps themselves, and the mirror images,
are written once in :mod:`likeflow.flows.plan`.

Example:
    >>> as_bounds({"mu": (0, None)}, ["mu", "theta"]).tolist()
    [[0.0, inf], [-inf, inf]]
    >>> bounds_to_json(as_bounds({"mu": (0, 10)}, ["mu", "theta"]))
    [[0.0, 10.0], [None, None]]
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import LikeflowError

BOUND_MAPS = ("probit", "sigmoid")
# log_prob evaluates the probit map no further than this many standard deviations from its
# centre: within Phi(-2) = 2.3% of the range from a bound the data reach (and that is not
# reflected), the density is held at its value there instead of being read from the flow's
# tail. Measured on a real ATLAS likelihood (RegionC, signal strength flat on [0, 10]): the
# flow's conditional densities narrow in its tail, and the profile rose by 1.4 (exact: 0.003)
# over the last 3.5% of the range with a hold at 3.5 sigma; with the hold at 2 sigma it is
# within 0.12 everywhere. Sampling and the latent maps use the exact map.
# The soft clip is held at the same number of its own units (plan.softclip_edge: within 0.063
# standard deviations of the data from a bound). Unheld, the toy's mu (soft-clipped on [-1, 5])
# read the flow's tail beyond every sample times a vanishing Jacobian: 12-16 nats low at the
# held-out mode at mu = -0.999994 and 250-4,700 nats low at -1 itself; held, 0.14-0.55 nats.
PROBIT_MAX = 2.0
# Training and the latent maps clip the probit map only this far out (a hold in training would
# pile the training points near a bound onto one point of the base space).
PROBIT_TRAIN_MAX = 7.0
# At most this many reflected parameters (log_prob evaluates the flow 2^k times).
MAX_REFLECTIONS = 3
# Reflect at a bound when the density there is at least this fraction of the marginal's peak.
REFLECT_MIN_RATIO = 0.1


def flow_bounds(bounds: np.ndarray, reflect) -> np.ndarray:
    """The bounds of the flow's range: ``bounds`` with each reflected bound pushed out by the
    range's width (mirror of the other bound), or removed when the other bound is infinite."""
    out = np.array(bounds, dtype=np.float64)
    for i, point in reflect:
        lo, hi = bounds[i]
        if point == lo:
            out[i, 0] = 2 * lo - hi if np.isfinite(hi) else -np.inf
        else:
            out[i, 1] = 2 * hi - lo if np.isfinite(lo) else np.inf
    return out


def bound_reflections(values: np.ndarray, bounds: np.ndarray,
                      best_fit: np.ndarray | None = None,
                      poi: Sequence[int] = ()) -> list[list[float]]:
    """``[dimension, bound]`` pairs where the data pile up at a bound.

    ``best_fit``: the target's exact global mode (the first anchor of a sample file, when it
    has anchors); ``poi``: the indices of the parameters of interest. A POI's bound the best
    fit lies more than a tenth of a standard deviation inside is not reflected: a mirrored
    density has zero slope at the bound, and the POI's profile then peaks at the bound instead
    of at the best fit (RegionC 1300_1295_60, best fit 0.20 of mu_SIG: reflected, the profile
    was off by 0.30 in q and every CLs limit 2-13% too strong; not reflected, within 0.15 and
    2.4%). A marginal piles up at the bound in both cases. A nuisance parameter is reflected
    wherever its data pile up, best fit inside or not: it is profiled, and its bound is where
    the profile of the POI goes when the two are correlated (RegionC 1300_205_60 with its
    signal x40: mu_ttbar on [0, 10], correlation -0.88 with mu_SIG, its density at 0 55% of
    its peak; not reflected, every limit 20-23% too strong; reflected, within 1.1%).

    A bound qualifies when the density of the data within a tenth of a standard deviation of it
    is at least :data:`REFLECT_MIN_RATIO` of the marginal's peak density (histogram of the same
    bin width). Of a parameter, the bound with the larger ratio (reflecting both bounds of a
    posterior flat over its range only moves the problem to the edges of the extended range);
    the other one is a probit bound, held at :data:`PROBIT_MAX`. Of all, the
    :data:`MAX_REFLECTIONS` largest ratios.
    """
    values = np.asarray(values, dtype=np.float64)
    found = []
    for i in range(values.shape[1]):
        lo, hi = bounds[i]
        if not (np.isfinite(lo) or np.isfinite(hi)):
            continue
        ratios = _edge_ratios(values[:, i], lo, hi)
        if ratios is None:
            continue
        k = int(np.argmax(ratios))
        if (best_fit is not None and i in poi
                and abs(best_fit[i] - (lo, hi)[k]) > 0.1 * np.std(values[:, i])):
            continue
        if ratios[k] >= REFLECT_MIN_RATIO:
            found.append((ratios[k], i, float((lo, hi)[k])))
    found.sort(reverse=True)
    return [[i, point] for _, i, point in sorted(found[:MAX_REFLECTIONS], key=lambda t: t[1:])]


def bound_maps(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per parameter, the soft-clip scale for two-sided bounds the data stay away from (the
    density within a tenth of a standard deviation of either bound below 1% of the peak): half
    the data's standard deviation, so that the map bends only within about one standard
    deviation of a bound. 0 (probit) where the data reach a bound, and for parameters without
    two bounds."""
    out = np.zeros(values.shape[1])
    for i in range(values.shape[1]):
        lo, hi = bounds[i]
        if np.isfinite(lo) and np.isfinite(hi):
            ratios = _edge_ratios(values[:, i], lo, hi)
            if ratios is not None and max(ratios) < 0.01:
                out[i] = 0.5 * float(np.std(values[:, i]))
    return out


def _edge_ratios(x: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    """Density of ``x`` within a tenth of a standard deviation of each bound, over the peak
    density (histogram of the same bin width); None where it cannot be told."""
    sd = float(np.std(x))
    if sd == 0 or len(x) < 100:
        return None
    h = 0.1 * sd
    if np.isfinite(lo) and np.isfinite(hi):
        h = min(h, 0.05 * (hi - lo))
    edges = np.arange(x.min(), x.max() + h, h)
    if len(edges) < 3:
        return None
    peak = np.histogram(x, edges)[0].max() / (len(x) * h)
    at_lo = float(np.mean(x < lo + h)) / h / peak if np.isfinite(lo) else 0.0
    at_hi = float(np.mean(x > hi - h)) / h / peak if np.isfinite(hi) else 0.0
    return at_lo, at_hi


def _none_if_inf(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def as_bounds(bounds, names: Sequence[str]) -> np.ndarray:
    """The ``(D, 2)`` float array (``+-inf`` for none) of what a user gives as bounds.

    Accepted: ``None`` (no bounds), a ``(D, 2)`` array or nested list (``None`` or ``+-inf``
    for none), or a mapping ``{name: (lo, hi)}`` for some of ``names`` (``None`` for none).
    """
    d = len(names)
    out = np.tile([-np.inf, np.inf], (d, 1))
    if bounds is None:
        return out
    if isinstance(bounds, Mapping):
        unknown = [k for k in bounds if k not in names]
        if unknown:
            raise LikeflowError(f"bounds for unknown parameters {unknown[:5]}; the parameters "
                                f"are {list(names)[:10]}")
        for name, pair in bounds.items():
            out[list(names).index(name)] = _pair(pair, name)
        return out
    rows = list(bounds) if not isinstance(bounds, np.ndarray) else bounds
    if len(rows) != d:
        raise LikeflowError(f"bounds: {len(rows)} pairs for {d} parameters (give a (D, 2) array "
                            "or a mapping by name)")
    for i, pair in enumerate(rows):
        out[i] = _pair(pair, names[i])
    return out


def _pair(pair, name: str) -> tuple[float, float]:
    try:
        lo, hi = pair
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise LikeflowError(f"bounds of {name}: give (lo, hi) with None for no bound, not "
                            f"{pair!r:.40}") from None
    if np.isnan(lo) or np.isnan(hi) or not lo < hi or lo == np.inf or hi == -np.inf:
        raise LikeflowError(f"bounds of {name}: ({lo:g}, {hi:g}) is not an interval lo < hi")
    return lo, hi


def bounds_to_json(bounds: np.ndarray) -> list[list[float | None]]:
    """``(D, 2)`` bounds as JSON: ``null`` for no bound."""
    return [[_none_if_inf(lo), _none_if_inf(hi)] for lo, hi in np.asarray(bounds, float)]


def bounds_from_json(pairs) -> np.ndarray:
    """JSON bounds (``null`` for none) as a ``(D, 2)`` array with ``+-inf``."""
    return np.array([[-np.inf if lo is None else lo, np.inf if hi is None else hi]
                     for lo, hi in pairs], dtype=np.float64).reshape(-1, 2)
