"""Profile likelihoods, best fits and upper limits, on a surrogate or on an exact target.

Everything here works on any object with ``names``, ``poi``, ``bounds`` and a TensorFlow log
density, so a :class:`~likeflow.surrogate.Surrogate` and an exact target of
:mod:`likeflow.likelihoods` are compared by the same code (see :func:`as_density`).

Maximisation is TFP's L-BFGS, batched over starting points (or over the grid points of a
profile), in the unbounded coordinates of the preprocessing bijector so that no step leaves the
bounds. The density itself, not its reparametrised form, is maximised: the profile is that of
the physical log density.

Example:
    >>> sur = likeflow.load("toy.likeflow.h5")                      # doctest: +SKIP
    >>> prof = profile(sur, "mu", np.linspace(-0.5, 2, 26))          # doctest: +SKIP
    >>> upper_limit(sur, "mu")                                       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from .errors import LikeflowError
from .flows import FlowConfig, preprocessing_bijector

# One-sided 95% CL: q = Phi^-1(0.95)^2
Q95_ONE_SIDED = float(stats.norm.ppf(0.95) ** 2)


@dataclass
class Density:
    """What inference needs of a surrogate or a target."""

    names: list[str]
    poi: list[str]
    bounds: np.ndarray
    log_prob_tf: object          # (n, D) float64 tensor -> (n,) float64 tensor
    candidates: np.ndarray       # points in the bulk, to pick starting points from
    sampler: object = None       # n, seed -> (n, D) samples, for Bayesian limits
    kind: str = "surrogate"
    # L-BFGS stops when the gradient norm is below this; a float32 flow's gradient is never
    # below ~1e-5 (rounding), so asking for 1e-10 there only burns max_iterations
    tolerance: float = 1e-10

    def candidate_log_prob(self) -> np.ndarray:
        """The log density at the candidates, computed once (best fit and profile both use it)."""
        if "_candidate_lp" not in self.__dict__:
            self._candidate_lp = _log_prob_np(self, self.candidates)
        return self._candidate_lp

    def index(self, name: str) -> int:
        if name not in self.names:
            raise LikeflowError(f"unknown parameter '{name}'; the parameters are "
                                f"{', '.join(self.names[:10])}{' ...' if len(self.names) > 10 else ''}")
        return self.names.index(name)


def as_density(obj, *, n_candidates: int = 20000, seed: int = 0) -> Density:
    """A :class:`Density` view of a ``Surrogate`` or a ``likelihoods.Target``."""
    import tensorflow as tf

    if isinstance(obj, Density):
        return obj
    if hasattr(obj, "flow"):  # a Surrogate
        flow = obj.flow
        dtype = flow.dtype

        def lp(x):
            return tf.cast(flow.log_prob(tf.cast(x, dtype)), tf.float64)

        cand = obj.sample(n_candidates, seed=seed)
        return Density(list(obj.names), list(obj.poi), obj.bounds, lp, cand,
                       sampler=lambda n, s: obj.sample(n, seed=s), kind="surrogate",
                       tolerance=1e-10 if dtype == tf.float64 else 1e-4)
    if not getattr(obj, "has_gradients", True):
        raise LikeflowError(f"{getattr(obj, 'name', obj)} has no TF gradients; profile a "
                            "surrogate of it instead")
    cand = obj.sample(n_candidates, seed=seed)
    if cand is None:
        cand = obj.initial_points(n_candidates, seed=seed)
    return Density(list(obj.names), list(obj.poi), np.asarray(obj.bounds, float), obj.log_prob,
                   np.asarray(cand, float), sampler=None, kind=getattr(obj, "name", "target"))


@dataclass
class Maximum:
    """A maximum of the log density: the point, its value, and whether L-BFGS converged."""

    x: np.ndarray
    log_prob: float
    converged: bool


def maximize(obj, starts: np.ndarray, *, fixed: dict[int, np.ndarray] | None = None,
             tolerance: float | None = None, max_iterations: int = 1000
             ) -> Maximum | list[Maximum]:
    """Maximise the log density from each row of ``starts`` (batched L-BFGS).

    Args:
        obj: a surrogate, a target or a :class:`Density`.
        starts: (k, D) starting points.
        fixed: {dimension: (k,) values} held fixed (one value per start: a profile grid).
        tolerance: gradient-norm tolerance (default: the density's, by its precision).

    Returns:
        The best :class:`Maximum` over the starts when ``fixed`` is None, else one per start.
    """
    import tensorflow as tf

    dens = as_density(obj)
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64)).copy()
    k, d = starts.shape
    fixed = fixed or {}
    mask = np.zeros(d, bool)
    values = np.zeros((k, d))
    for i, v in fixed.items():
        mask[i] = True
        values[:, i] = v
        starts[:, i] = v
    lo, hi = dens.bounds[:, 0], dens.bounds[:, 1]
    # keep starts strictly inside the bounds
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    starts = np.clip(starts, lo + 1e-6 * span, hi - 1e-6 * span)
    tol = dens.tolerance if tolerance is None else tolerance
    run, to_x, bij = _compiled_lbfgs(dens, tuple(mask), tol, max_iterations)
    values_t = tf.constant(values)
    res = run(bij.inverse(tf.constant(starts)), values_t)
    x = to_x(res.position, values_t).numpy()
    lp = -res.objective_value.numpy()
    ok = res.converged.numpy() & np.isfinite(lp)
    out = [Maximum(x[i], float(lp[i]), bool(ok[i])) for i in range(k)]
    if fixed:
        return out
    best = int(np.nanargmax(np.where(np.isfinite(lp), lp, -np.inf)))
    return out[best]


def _compiled_lbfgs(dens: Density, mask: tuple, tolerance: float, max_iterations: int):
    """L-BFGS on ``dens`` with the dimensions in ``mask`` fixed, traced once per mask.

    Cached on the density: a profile or a limit search calls it many times.
    """
    import tensorflow as tf
    import tensorflow_probability as tfp

    key = (mask, tolerance, max_iterations)
    cache = dens.__dict__.setdefault("_lbfgs", {})
    if key in cache:
        return cache[key]
    cfg = FlowConfig.from_data(dens.candidates[:2000], bounds=dens.bounds, layers=1, hidden=(1,))
    bij = preprocessing_bijector(cfg, "float64")
    mask_t = tf.constant(np.array(mask))
    spec = tf.TensorSpec([None, len(mask)], tf.float64)

    def to_x(u, values):
        return tf.where(mask_t, values, bij.forward(u))

    @tf.function(input_signature=[spec, spec])
    def run(u0, values):
        def value_and_grad(u):
            with tf.GradientTape() as tape:
                tape.watch(u)
                y = -dens.log_prob_tf(to_x(u, values))
            # fixed dimensions do not move
            return y, tf.where(mask_t, tf.zeros_like(u), tape.gradient(y, u))

        return tfp.optimizer.lbfgs_minimize(value_and_grad, initial_position=u0,
                                            tolerance=tolerance, x_tolerance=0.0,
                                            f_relative_tolerance=0.0,
                                            max_iterations=max_iterations)

    cache[key] = (run, to_x, bij)
    return cache[key]


def best_fit(obj, *, starts: int = 16, seed: int = 0) -> Maximum:
    """The global maximum of the log density, from the ``starts`` highest candidate points.

    In high dimension the bulk of the samples lies far from the mode, so the starts are the
    highest-density points among samples of the density, refined by L-BFGS.
    """
    dens = as_density(obj, seed=seed)
    lp = dens.candidate_log_prob()
    top = dens.candidates[np.argsort(lp)[::-1][:starts]]
    return maximize(dens, top)


@dataclass
class Profile:
    """-2 Delta log L of a parameter on a grid, and the other parameters at each optimum."""

    poi: str
    values: np.ndarray
    q: np.ndarray               # -2 (max log L at the value - global max log L)
    log_prob: np.ndarray        # max log L at each value
    best: Maximum
    nuisances: np.ndarray       # (n_values, D) the optimum at each value
    converged: np.ndarray
    kind: str = "surrogate"
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"poi": self.poi, "values": self.values.tolist(), "q": self.q.tolist(),
                "log_prob": self.log_prob.tolist(), "best_fit": self.best.x.tolist(),
                "best_log_prob": self.best.log_prob, "converged": self.converged.tolist(),
                "kind": self.kind, **self.meta}


def profile(obj, poi: str, values, *, seed: int = 0, best: Maximum | None = None) -> Profile:
    """Profile ``poi`` over ``values``: at each, maximise over all other parameters.

    Each grid point starts from the global best fit with the POI set to the value and from the
    best candidate sample near that value; the better optimum is kept.
    """
    dens = as_density(obj, seed=seed)
    i = dens.index(poi)
    values = np.asarray(values, dtype=np.float64)
    best = best or best_fit(dens, seed=seed)
    k = len(values)
    start1 = np.tile(best.x, (k, 1))
    # second start: the candidate of highest density among those nearest each value
    lp = dens.candidate_log_prob()
    col = dens.candidates[:, i]
    width = max(np.std(col) * 0.1, 1e-12)
    start2 = np.empty_like(start1)
    for j, v in enumerate(values):
        near = np.abs(col - v) < width
        pool = np.flatnonzero(near) if near.any() else np.argsort(np.abs(col - v))[:10]
        start2[j] = dens.candidates[pool[np.argmax(lp[pool])]]
    a = maximize(dens, start1, fixed={i: values})
    b = maximize(dens, start2, fixed={i: values})
    chosen = [x if x.log_prob >= y.log_prob or not np.isfinite(y.log_prob) else y
              for x, y in zip(a, b)]
    maxima = np.array([c.log_prob for c in chosen])
    top = max(best.log_prob, float(np.nanmax(maxima)))
    if top > best.log_prob + 1e-9:  # a grid point beat the best fit: it is the best fit
        j = int(np.nanargmax(maxima))
        best = Maximum(chosen[j].x, chosen[j].log_prob, chosen[j].converged)
    return Profile(poi=poi, values=values, q=-2 * (maxima - best.log_prob), log_prob=maxima,
                   best=best, nuisances=np.array([c.x for c in chosen]),
                   converged=np.array([c.converged for c in chosen]), kind=dens.kind)


@dataclass
class UpperLimit:
    """An upper limit with the name of the method that gave it."""

    value: float
    cl: float
    method: str
    best_fit: float | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "cl": self.cl, "method": self.method,
                "best_fit": self.best_fit}


def upper_limit(obj, poi: str, *, cl: float = 0.95, seed: int = 0,
                prof: Profile | None = None) -> UpperLimit:
    """Asymptotic one-sided profile-likelihood upper limit on ``poi`` at ``cl``.

    The test statistic is q~ (Cowan, Cranmer, Gross, Vitells 2011): -2 log of the profile
    likelihood ratio against the best fit, or against ``poi = 0`` when the best fit is below
    zero (a signal strength cannot be negative); the limit is where q~ reaches
    Phi^-1(cl)^2 (2.71 at 95%) above the best fit (or above 0).
    """
    dens = as_density(obj, seed=seed)
    i = dens.index(poi)
    best = prof.best if prof is not None else best_fit(dens, seed=seed)
    mu_hat = float(best.x[i])
    threshold = float(stats.norm.ppf(cl) ** 2)
    lower = max(mu_hat, 0.0)
    if mu_hat < 0:
        ref = maximize(dens, best.x[None], fixed={i: np.array([0.0])})[0].log_prob
    else:
        ref = best.log_prob

    def q_minus_threshold(v: float) -> float:
        m = maximize(dens, best.x[None], fixed={i: np.array([v])})[0]
        return -2 * (m.log_prob - ref) - threshold

    hi_bound = dens.bounds[i, 1]
    sd = float(np.std(dens.candidates[:, i])) or 1.0
    upper = lower + sd
    while q_minus_threshold(upper) < 0:
        upper = lower + 2 * (upper - lower)
        if np.isfinite(hi_bound) and upper >= hi_bound:
            upper = hi_bound - 1e-9 * (hi_bound - lower)
            if q_minus_threshold(upper) < 0:
                raise LikeflowError(f"no upper limit on {poi} below its bound {hi_bound}")
            break
        if upper - lower > 1e3 * sd:
            raise LikeflowError(f"no upper limit on {poi} found")
    value = optimize.brentq(q_minus_threshold, lower, upper, xtol=1e-6 * sd)
    return UpperLimit(float(value), cl, f"asymptotic one-sided profile likelihood, q~ = "
                      f"{threshold:.3f}" + (" (best fit < 0: ratio to 0)" if mu_hat < 0 else ""),
                      best_fit=mu_hat)


def credible_upper_limit(samples: np.ndarray, *, cl: float = 0.95,
                         weights: np.ndarray | None = None) -> UpperLimit:
    """Bayesian upper limit: the ``cl`` quantile of the marginal samples of the parameter."""
    s = np.asarray(samples, dtype=np.float64)
    if weights is None:
        value = float(np.quantile(s, cl))
    else:
        order = np.argsort(s)
        cw = np.cumsum(weights[order]) / np.sum(weights)
        value = float(s[order][np.searchsorted(cw, cl)])
    return UpperLimit(value, cl, f"Bayesian credible upper limit ({cl:.0%} quantile of the "
                      "marginal posterior samples)")


def bayesian_upper_limit(obj, poi: str, *, cl: float = 0.95, n: int = 200_000,
                         seed: int = 0) -> UpperLimit:
    """:func:`credible_upper_limit` from ``n`` samples of a surrogate (or exact target)."""
    dens = as_density(obj, seed=seed)
    i = dens.index(poi)
    if dens.sampler is None:
        raise LikeflowError("this density has no sampler; give samples to credible_upper_limit")
    return credible_upper_limit(dens.sampler(n, seed + 1)[:, i], cl=cl)


def _log_prob_np(dens: Density, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    import tensorflow as tf

    fn = tf.function(dens.log_prob_tf)
    return np.concatenate([fn(tf.constant(x[i:i + batch], tf.float64)).numpy()
                           for i in range(0, len(x), batch)])


def marginal(surrogate, names, *, n: int = 200_000, seed: int = 0,
             flow_config: dict | None = None, train_config=None, progress=None):
    """A surrogate of the marginal density of ``names``: a small flow fitted to samples of them.

    The nuisance-free likelihood of the margarine papers: draw ``n`` samples of the full
    surrogate, keep the columns ``names``, and fit a new flow (default: a MAF of 4 layers of
    [64, 64]) with the same bounds. The result is a :class:`~likeflow.surrogate.Surrogate` of
    its own, saved and loaded like any other.
    """
    from .samples import SampleSet
    from .surrogate import fit
    from .training import TrainConfig

    names = list(names)
    if not names:
        raise LikeflowError("marginal: name at least one parameter")
    unknown = [p for p in names if p not in surrogate.names]
    if unknown:
        raise LikeflowError(f"marginal: unknown parameters {unknown}; the parameters are "
                            f"{', '.join(surrogate.names[:10])}...")
    cols = [surrogate.names.index(p) for p in names]
    x = surrogate.sample(n, seed=seed)[:, cols]
    s = SampleSet(x, names=names, poi=[p for p in surrogate.poi if p in names],
                  bounds=surrogate.bounds[cols])
    hyper = {"flow": "maf", "layers": 4, "hidden": (64, 64)}
    if len(names) < 2:
        hyper["flow"] = "maf"
    hyper.update(flow_config or {})
    sur = fit(s, flow_config=hyper, train_config=train_config or TrainConfig(seed=seed),
              progress=progress)
    sur.training["marginal_of"] = {"parameters": names, "n_samples": n}
    return sur
