"""CLs hypothesis tests on a surrogate pair, what reinterpreters call, and the CLs limits.

A reinterpretation tool asks one question thousands of times: is the signal strength ``mu``
excluded? With the asymptotic calculator (q~ test statistic, as pyhf's ``hypotest``) that is
four fits: the observed and the background-only Asimov likelihood, each at its best fit and at
``mu``. :class:`CLsTest` keeps what every test shares (the two densities, their candidate
starting points, both best fits) and fits a whole batch of ``mu`` values in one batched L-BFGS
call per likelihood. spey's likeflow backend goes through it, so that spey's numbers and
likeflow's are one computation, and so does :func:`cls_limits` (the observed and expected
limits, found where CLs and its band reach ``1 - cl``).

A fit at ``mu`` depends on ``mu`` alone, never on the values tested before or their order: a
surrogate has local maxima a few hundredths of a nat apart, and a fit warm-started from
whatever was asked last lands on one or another, so that spey's root finder and likeflow's own
limit scan (which ask in different orders) found different limits. The POI axis carries a
fixed lattice of nodes, :data:`WARM_STEP` marginal standard deviations apart; each node is
fitted once, from the best fit moved there and from the best candidate sample near it
(:func:`likeflow.infer.inference.conditional_starts`), the better kept; a value between two nodes
starts from both nodes' maxima (warm starts, a few iterations on a smooth surrogate) and keeps
the better. Every test after the first few reuses nodes already fitted.

Example:
    >>> test = CLsTest(likeflow.load("obs.likeflow.h5"),            # doctest: +SKIP
    ...                likeflow.load("asimov.likeflow.h5"))
    >>> test([0.5, 1.0, 1.5]).cls                                    # doctest: +SKIP
    array([0.61, 0.18, 0.04])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import LikeflowError
from .inference import (DEFAULT_CL, Maximum, as_density, best_fit, better_maximum, cls_values,
                        conditional_starts, crossings, maximize)

# the spacing of the POI's lattice of nodes in marginal standard deviations: a value between
# two nodes is fitted from their maxima alone, a few iterations away on a smooth surrogate,
# where a start of its own costs a whole fit
WARM_STEP = 0.5

# the fits' stopping rule of a fast test (``fast=True``): a fit stops when three steps in a row
# raise the log density by less than this times 1 + |log density|: ten times the rounding at
# which a float32 surrogate's fits stop by default. A surrogate with ReLU networks has its
# maxima on kinks, where L-BFGS crawls the last 1e-4 nats; on two ATLAS pairs a test then takes
# half the time, the limits move by up to 8e-4 relative and CLs by up to 2.5e-3 where it is
# above 0.005 (up to 3.5% at 0.0015, where a fit ends on another of the surrogate's maxima;
# docs/benchmarks.md, session 29)
FAST_F_TOLERANCE = 1e-6


@dataclass
class HypoTest:
    """CLs at each tested POI value: observed, and the expected band at -2..+2 sigma (rows),
    from q~_mu (observed) and q_mu,A (Asimov)."""

    mu: np.ndarray
    cls: np.ndarray
    cls_expected: np.ndarray     # (5, n): -2, -1, 0, +1, +2 sigma
    q_observed: np.ndarray
    q_asimov: np.ndarray

    def to_dict(self) -> dict:
        return {"mu": self.mu.tolist(), "cls": self.cls.tolist(),
                "cls_expected": self.cls_expected.tolist(), "expected_sigma": [-2, -1, 0, 1, 2],
                "q_observed": self.q_observed.tolist(), "q_asimov": self.q_asimov.tolist()}


class CLsTest:
    """The fits of an observed likelihood and its Asimov partner, kept between tests.

    Args:
        observed: a surrogate (or an exact target) of the observed likelihood.
        asimov: its background-only Asimov partner (None: fits and q~ work, CLs does not).
        poi: the parameter of interest (default: the first POI).
        best: the observed likelihood's best fit when known (a profile's), so that a profile
            and its CLs limits share one.
        seed: of the surrogates' candidate samples (starting points).
        fast: stop each fit at :data:`FAST_F_TOLERANCE` instead of the log density's rounding
            (the "fast, inaccurate" mode reinterpretation tools ask for): tests about twice as
            fast, CLs within about 2.5e-3 relative where it is above 0.005 (a few percent
            below), limits within about 1e-3.
    """

    def __init__(self, observed, asimov=None, poi: str | None = None, *,
                 best: Maximum | None = None, seed: int = 0, fast: bool = False):
        self.dens = {"observed": as_density(observed, seed=seed)}
        # one likelihood as both (an Asimov partner's own band, the exact band): one density,
        # one set of fits, the same numbers at half the cost
        self._same = asimov is observed
        if asimov is not None:
            self.dens["asimov"] = (self.dens["observed"] if self._same
                                   else as_density(asimov, seed=seed))
            if self.dens["asimov"].names != self.dens["observed"].names:
                raise LikeflowError("the Asimov partner's parameters differ from the observed "
                                    "likelihood's")
        d = self.dens["observed"]
        poi = poi or (d.poi[0] if d.poi else None)
        if poi is None:
            raise LikeflowError("a hypothesis test needs a parameter of interest: the "
                                "surrogate names none; give poi=")
        self.poi, self.index = poi, d.index(poi)
        self._best: dict = {} if best is None else {("observed", True): best}
        self._fits: dict = {}
        self.fast = bool(fast)

    @property
    def _f_tolerance(self) -> float | None:
        """The fits' stopping rule: :data:`FAST_F_TOLERANCE` for a fast test, else
        :func:`~likeflow.infer.inference.maximize`'s default."""
        return FAST_F_TOLERANCE if self.fast else None

    def best(self, kind: str = "observed", allow_negative: bool = True) -> Maximum:
        """The best fit of ``kind`` (``observed`` or ``asimov``); with ``allow_negative``
        False, a best POI below 0 is replaced by the fit at POI = 0 (q~)."""
        kind = self._kind(kind)
        key = (kind, bool(allow_negative))
        if key not in self._best:
            m = self._best.get((kind, True)) or best_fit(self._density(kind),
                                                         f_tolerance=self._f_tolerance)
            self._best[(kind, True)] = m
            if not allow_negative and m.x[self.index] < 0:
                m = self.fit(kind, [0.0])[0]
            self._best[key] = m
        return self._best[key]

    def fit(self, kind: str, values) -> list[Maximum]:
        """The maximum at each POI value, a function of the value alone (module docstring):
        new values are fitted in one batched L-BFGS from their two lattice nodes' maxima, the
        nodes not fitted yet in one batch before; remembered, so a value asked for again costs
        nothing."""
        kind = self._kind(kind)
        dens = self._density(kind)
        values = np.atleast_1d(np.asarray(values, np.float64))
        new = np.array([v for v in dict.fromkeys(values.tolist())
                        if (kind, v) not in self._fits])
        if len(new):
            step = self._step(kind)
            lower = np.floor(new / step)
            nodes = self._nodes(kind, np.concatenate([lower, lower + 1]))
            below, above = nodes[:len(new)], nodes[len(new):]
            starts = np.array([m.x for m in below + above])
            fits = maximize(dens, starts, fixed={self.index: np.tile(new, 2)},
                            f_tolerance=self._f_tolerance)
            for j, v in enumerate(new):
                self._fits[(kind, float(v))] = better_maximum(fits[j], fits[len(new) + j])
        return [self._fits[(kind, float(v))] for v in values]

    def _step(self, kind: str) -> float:
        """The lattice spacing of ``kind``'s POI: WARM_STEP marginal standard deviations."""
        col = self._density(kind).candidates[:, self.index]
        return WARM_STEP * max(float(np.std(col)), 1e-12)

    def _nodes(self, kind: str, ks: np.ndarray) -> list[Maximum]:
        """The maxima at lattice nodes ``ks`` (integers: POI = k * step, inside the bounds),
        each fitted once from the best fit moved there and from the best candidate near it."""
        dens = self._density(kind)
        keys = [("node", kind, int(k)) for k in ks]
        todo = [k for k in dict.fromkeys(int(k) for k in ks) if ("node", kind, k) not in self._fits]
        if todo:
            lo, hi = dens.bounds[self.index]
            where = np.clip(np.array(todo, np.float64) * self._step(kind), lo, hi)
            both = conditional_starts(dens, self.index, where, self.best(kind).x[None])
            fits = maximize(dens, both, fixed={self.index: both[:, self.index]},
                            f_tolerance=self._f_tolerance)
            for j, k in enumerate(todo):
                self._fits[("node", kind, k)] = better_maximum(fits[j], fits[len(todo) + j])
        return [self._fits[key] for key in keys]

    def q(self, values) -> tuple[np.ndarray, np.ndarray]:
        """q~_mu of the observed likelihood and q_mu,A of the Asimov partner at each value."""
        return self.q_observed(values), self.q_asimov(values)

    def q_observed(self, values) -> np.ndarray:
        """q~_mu of the observed likelihood at each value."""
        mu = np.atleast_1d(np.asarray(values, np.float64))
        best_o = self.best("observed", False)
        q_o = np.array([-2 * (m.log_prob - best_o.log_prob) for m in self.fit("observed", mu)])
        return np.where(mu < best_o.x[self.index], 0.0, np.maximum(q_o, 0.0))

    def q_asimov(self, values) -> np.ndarray:
        """q_mu,A of the Asimov partner at each value."""
        mu = np.atleast_1d(np.asarray(values, np.float64))
        best_a = self.best("asimov", False)
        q_a = np.array([-2 * (m.log_prob - best_a.log_prob) for m in self.fit("asimov", mu)])
        return np.maximum(q_a, 0.0)

    def __call__(self, values) -> HypoTest:
        """CLs at each POI value in ``values`` (a number or an array)."""
        mu = np.atleast_1d(np.asarray(values, np.float64))
        q_o, q_a = self.q(mu)
        cls, band = cls_values(q_o, q_a)
        return HypoTest(mu, cls, band, q_o, q_a)

    def _kind(self, kind: str) -> str:
        """The kind whose fits ``kind`` shares: the observed one's when both are one likelihood."""
        return "observed" if self._same and kind == "asimov" else kind

    def _density(self, kind: str):
        if kind not in self.dens:
            raise LikeflowError("CLs with the asymptotic calculator needs the Asimov partner "
                                "surrogate: give asimov= (or fit with --asimov-partner)")
        return self.dens[kind]


def hypotest(observed, asimov, mu, *, poi: str | None = None, fast: bool = False) -> HypoTest:
    """CLs at ``mu`` (a number or an array, fitted as one batch) from a surrogate and its
    Asimov partner (``fast``: :class:`CLsTest`'s); for many calls on one pair, keep a
    :class:`CLsTest`."""
    return CLsTest(observed, asimov, poi, fast=fast)(mu)


@dataclass
class CLsLimits:
    """Observed and expected CLs upper limits (expected at -2, -1, 0, +1, +2 sigma)."""

    observed: float | None
    expected: list[float | None]
    cl: float
    method: str
    best_fit: float
    scan: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"observed": self.observed, "expected": self.expected,
                "expected_sigma": [-2, -1, 0, 1, 2], "cl": self.cl, "method": self.method,
                "best_fit": self.best_fit, "scan": self.scan}


def cls_limits(obs, asimov, poi: str, *, cl: float = DEFAULT_CL, seed: int = 0,
               points: int = 21, best: Maximum | None = None, fast: bool = False) -> CLsLimits:
    """Asymptotic CLs upper limits on ``poi`` from the observed likelihood ``obs`` and its
    background-only Asimov partner ``asimov`` (surrogates or exact targets).

    q~_mu is profiled on ``obs`` (zero where the best fit is above mu), q_mu,A on ``asimov``,
    both by a :class:`likeflow.infer.cls.CLsTest` (its fits and starting points); CLs(mu) as
    in pyhf; the limits are where CLs and each expected band reach ``1 - cl``,
    found on a grid over the POI's range and refined together (:func:`crossings`). ``best``
    is the best fit of ``obs`` when known (a profile's), so that every limit uses the same one.
    ``fast``: the fits of a fast :class:`CLsTest` (limits within about 1e-3 relative).
    """

    d_obs = as_density(obs, seed=seed)
    # one likelihood as both (a partner's own band, the exact band): one density, so that the
    # CLsTest below fits it once
    d_a = d_obs if asimov is obs else as_density(asimov, seed=seed)
    i = d_obs.index(poi)
    if d_a.names != d_obs.names:
        raise LikeflowError("the Asimov partner has other parameters than the observed "
                            f"likelihood ({len(d_a.names)} vs {len(d_obs.names)}, or other names)")
    lo, hi = d_obs.bounds[i]
    # each surrogate is trusted out to its own support: the expected band (the partner's q
    # alone) out to the partner's, the observed CLs (both q) out to the nearer of the two. A
    # strong signal's +2 sigma expected limit (Asimov q about 13.4) can lie past the observed
    # samples (RegionC 1300_205_60 x40: the observed samples of mu_SIG end at 4.6, the limit
    # is 4.71)
    hi_a = min(hi, d_a.support["hi"][i]) if d_a.support is not None else hi
    hi_o = min(hi_a, d_obs.support["hi"][i]) if d_obs.support is not None else hi_a
    if not np.isfinite(hi_a):
        hi_a = hi_o = max(10.0, float(np.quantile(d_obs.candidates[:, i], 0.999)))
    test = CLsTest(d_obs, d_a, poi, best=best, fast=fast)   # its fits, its q~ rule
    mu_hat = float(test.best("observed").x[i])
    start = max(lo, 0.0)
    grid = np.linspace(start, hi_a, points)[1:]

    def q_trusted(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q~ and q_A where each surrogate is trusted (NaN past that: no limit found there)."""
        q_o, q_a = np.full(len(mu), np.nan), np.full(len(mu), np.nan)
        a = mu <= hi_a
        o = a & (mu <= hi_o)
        if o.any():
            q_o[o] = test.q_observed(mu[o])
        if a.any():
            q_a[a] = test.q_asimov(mu[a])
        return q_o, q_a

    cls, band = cls_values(*q_trusted(grid))
    alpha = 1 - cl
    rows = np.vstack([cls, band]) - alpha      # observed, then expected -2 .. +2 sigma

    def bracket(vals: np.ndarray):
        below = np.flatnonzero(vals < 0)
        if not len(below):
            return None
        j = below[0]
        if j == 0:   # CLs is 1 at mu = 0 (q = 0)
            return (start, grid[0], 1.0 - alpha, vals[0])
        return (grid[j - 1], grid[j], vals[j - 1], vals[j])

    def all_rows(mu: np.ndarray) -> np.ndarray:
        c, bd = cls_values(*q_trusted(mu))
        return np.vstack([c, bd]) - alpha

    observed, *expected = crossings(all_rows, [bracket(r) for r in rows])
    return CLsLimits(observed, expected, cl,
                     f"asymptotic CLs, q~ test statistic (pyhf's formulae), {cl:.0%} CL; "
                     f"{d_obs.kind} and its background-only Asimov partner", mu_hat,
                     scan={"mu": grid.tolist(), "cls": cls.tolist(),
                           "cls_expected": band.tolist()})


def band_error(asimov, exact, poi: str, *, seed: int = 0) -> float:
    """The largest relative difference of the expected CLs band (-2..+2 sigma) of the Asimov
    partner ``asimov`` from ``exact``, the exact likelihood's band (``cls_limits(target,
    target, poi).expected``; :func:`band_difference`). The band is the partner's alone, so it
    serves as both likelihoods."""
    return band_difference(cls_limits(asimov, asimov, poi, seed=seed).expected, exact)


def band_difference(band, exact) -> float:
    """The largest relative difference of ``band`` from ``exact`` (limits, None where there is
    none below the bound); inf where one has a limit and the other not.

    Example:
        >>> band_difference([1.0, 2.2, None], [1.0, 2.0, None])
        0.1...
        >>> band_difference([1.0, None], [1.0, 2.0])
        inf
    """
    return max(abs(b / e - 1) if b is not None and e else (0.0 if b == e else np.inf)
               for b, e in zip(band, exact))
