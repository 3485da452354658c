"""Best fits, profile likelihoods and upper limits, on a surrogate or on an exact target.

Everything here works on any object with ``names``, ``poi``, ``bounds`` and a TensorFlow log
density, so a :class:`~likeflow.surrogate.artifact.Surrogate` and an exact target of
:mod:`likeflow.targets.likelihoods` are compared by the same code (see :func:`as_density`).

Maximisation is L-BFGS (:mod:`likeflow.infer.lbfgs`), batched over starting points (or over the grid
points of a profile and both their starts), around one compiled value and gradient, in the
unbounded coordinates of the bound map so that no step leaves the bounds. Limits are refined
by batches of profiles inside the grid's bracket (:func:`crossings`), not one at a time. The
density itself, not its reparametrised form, is maximised: the profile is that of the physical
log density.

A surrogate knows its density only where it was trained. Its file records that region (the
training points' range per parameter and their largest latent radius, ``Surrogate.support``);
the optimiser stays inside the range (a smooth box in the unbounded coordinates), and a maximum
pressed against the box, beyond the latent radius, or at a POI value outside the training
range is returned with ``trusted=False`` and the reason. Exact targets have no such region.

CLs tests and limits (:mod:`likeflow.infer.cls`) follow pyhf's asymptotic calculator on these
fits (:func:`cls_values` holds its formulae); :mod:`likeflow.infer.profiling` puts everything about
one parameter together (what ``likeflow profile`` prints).

Example:
    >>> sur = likeflow.load("toy.likeflow.h5")                      # doctest: +SKIP
    >>> prof = scan(sur, "mu", np.linspace(-0.5, 2, 26))             # doctest: +SKIP
    >>> upper_limit(sur, "mu")                                       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LikeflowError
from ..flows.plan import BoundPlan, unbounded_coordinates

# the confidence (or credibility) level of every upper limit unless one is asked for
DEFAULT_CL = 0.95
# a free parameter this close to its support box (in tanh units) is pressed against it
_EDGE = 1e-3


@dataclass
class Density:
    """What inference needs of a surrogate or a target."""

    names: list[str]
    poi: list[str]
    bounds: np.ndarray
    log_prob_tf: object          # (n, D) float64 tensor -> (n,) float64 tensor (exact targets)
    candidates: np.ndarray       # points in the bulk, to pick starting points from
    sampler: object = None       # n, seed -> (n, D) samples, for Bayesian limits
    kind: str = "surrogate"
    support: dict | None = None  # the training region of a surrogate (None: exact target)
    latent_r2: object = None     # (n, D) points -> squared latent radius (surrogates)
    # L-BFGS stops when the gradient norm is below this; a float32 flow's gradient is never
    # below ~1e-5 (rounding), so asking for 1e-10 there only burns max_iterations
    tolerance: float = 1e-10
    samples: np.ndarray | None = None  # all the draws the candidates are the first of
    # (n, D) float64 array -> (n,): a surrogate, by the numpy reader (either backend)
    log_prob_np: object = None
    # (n, D) -> ((n,), (n, D)): its log density and exact gradient (the numpy reader's)
    log_prob_grad_np: object = None
    # the log density at the candidates: given with them (a surrogate's sampling pass), or
    # computed on first use (:meth:`candidate_log_prob`)
    candidate_lp: np.ndarray | None = None

    def candidate_log_prob(self) -> np.ndarray:
        """The log density at the candidates, computed once (best fit and profile both use it)."""
        if self.candidate_lp is None:
            self.candidate_lp = _log_prob_np(self, self.candidates)
        return self.candidate_lp

    def index(self, name: str) -> int:
        return parameter_index(self.names, name)


def parameter_index(names: list[str], name: str) -> int:
    """The column of ``name``, or a :class:`LikeflowError` listing the parameters."""
    if name not in names:
        raise LikeflowError(f"unknown parameter '{name}'; the parameters are "
                            f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
    return list(names).index(name)


def as_density(obj, *, n_candidates: int = 20000, n_samples: int = 0,
               seed: int = 0) -> Density:
    """A :class:`Density` view of a ``Surrogate`` or a ``likelihoods.Target``.

    A surrogate is sampled once: ``max(n_candidates, n_samples)`` draws, the first
    ``n_candidates`` of them the candidates of starting points, all of them ``samples`` (the
    credible limit's)."""
    if isinstance(obj, Density):
        return obj
    if hasattr(obj, "flow"):  # a Surrogate, on either backend
        # fits evaluate in float64 numpy on either backend (Surrogate.numpy_twin), and start
        # from the twin's draws (float64 numpy arithmetic: the same starts to the bit), the
        # same fits, the same numbers with and without TensorFlow
        ev = obj.numpy_twin()
        lp = None
        if n_samples > n_candidates:
            draws = ev.sample(n_samples, seed=seed)
        else:   # the candidates' densities from the sampling pass (no inverse pass)
            draws, lp = ev.sample_with_log_prob(n_candidates, seed=seed)
        return Density(list(obj.names), list(obj.poi), obj.bounds, None, draws[:n_candidates],
                       sampler=lambda n, s: obj.sample(n, seed=s), kind="surrogate",
                       tolerance=1e-10 if obj.config.dtype == "float64" else 1e-4,
                       support=obj.support, latent_r2=ev.latent_r2, samples=draws,
                       log_prob_np=ev.log_prob, log_prob_grad_np=ev.log_prob_grad,
                       candidate_lp=lp)
    if not getattr(obj, "has_gradients", True):
        raise LikeflowError(f"{getattr(obj, 'name', obj)} has no TF gradients; profile a "
                            "surrogate of it instead")
    cand = obj.sample(n_candidates, seed=seed)
    if cand is None:
        cand = obj.initial_points(min(n_candidates, 4096), seed=seed)
    return Density(list(obj.names), list(obj.poi), np.asarray(obj.bounds, float), obj.log_prob,
                   np.asarray(cand, float), sampler=None,
                   kind=f"exact ({getattr(obj, 'name', 'target')})")


@dataclass
class Maximum:
    """A maximum of the log density: the point, its value, whether L-BFGS converged, and
    whether it lies where the surrogate was trained (``trusted``; ``note`` says why not)."""

    x: np.ndarray
    log_prob: float
    converged: bool
    trusted: bool = True
    note: str = ""


def maximize(obj, starts: np.ndarray, *, fixed: dict[int, np.ndarray] | None = None,
             tolerance: float | None = None, max_iterations: int = 1000,
             f_tolerance: float | None = None) -> Maximum | list[Maximum]:
    """Maximise the log density from each row of ``starts`` (batched L-BFGS).

    Args:
        obj: a surrogate, a target or a :class:`Density`.
        starts: (k, D) starting points.
        fixed: {dimension: (k,) values} held fixed (one value per start: a profile grid).
        tolerance: gradient-norm tolerance (default: the density's, by its precision).
        f_tolerance: a fit also stops when three steps in a row raise the log density by less
            than this times ``1 + |log density|`` (default: the density's rounding, 1e-7 for
            float32 surrogates and 1e-12 otherwise; fast tests use
            :data:`likeflow.infer.cls.FAST_F_TOLERANCE`).

    Returns:
        The best :class:`Maximum` over the starts when ``fixed`` is None, else one per start.
    """

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
    space = _space(dens)
    # an exact target is traced once per batch size: sizes are padded to a few (copies of the
    # first start, which converge with it); numpy compiles nothing
    size = _padded_size(k) if dens.log_prob_tf is not None else k
    run = _compiled_lbfgs(dens, space, tuple(mask), size, tol, max_iterations, f_tolerance)
    pad = np.repeat(starts[:1], size - k, axis=0)
    res = run(space.to_w(np.concatenate([starts, pad])),
              np.concatenate([values, np.repeat(values[:1], size - k, axis=0)]))
    w = res.x[:k]
    x = np.where(mask, values, space.to_x(w))
    lp = -res.f[:k]
    ok = res.converged[:k] & np.isfinite(lp)
    trusted, notes = _trust(dens, space, x, w, mask)
    out = [Maximum(x[i], float(lp[i]), bool(ok[i]), bool(trusted[i]), notes[i]) for i in range(k)]
    if fixed:
        return out
    # the best trusted maximum; an untrusted one only when nothing else is there
    score = np.where(np.isfinite(lp), lp, -np.inf) + np.where(trusted, 0.0, -1e300)
    return out[int(np.argmax(score))]


class _Space:
    """The optimiser's coordinates ``w`` and the physical ``x``: ``x = bound_map(u)`` with
    ``u = c + h * tanh(w)`` inside a surrogate's support box (``u = w`` for exact targets)."""

    def __init__(self, dens: Density):
        u = unbounded_coordinates(dens.candidates[:4000], dens.bounds)
        shift, scale = u.mean(axis=0), u.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        self.bounds = dens.bounds
        self.shift, self.scale = shift, scale
        # the map in numpy (and in TensorFlow inside the compiled gradient: :meth:`to_x_tf`)
        self.plan = BoundPlan(dens.bounds, shift, scale)
        self.map = self.plan.numpy_map
        sup = dens.support
        self.boxed = sup is not None
        if self.boxed:
            lo = (unbounded_coordinates(np.asarray(sup["lo"])[None], dens.bounds)[0] - shift) / scale
            hi = (unbounded_coordinates(np.asarray(sup["hi"])[None], dens.bounds)[0] - shift) / scale
            self.c, self.h = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-9)

    def to_x_tf(self, w):
        from ..tfsetup import tf

        if "_bij" not in self.__dict__:
            with tf.init_scope():  # eager constants, usable from every traced function
                self._bij = self.plan.bijector("float64")
        u = self.c + self.h * tf.tanh(w) if self.boxed else w
        return self._bij.forward(u)

    def to_x(self, w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, np.float64)
        return self.map.forward(self.c + self.h * np.tanh(w) if self.boxed else w)

    def to_x_derivative(self, w: np.ndarray) -> np.ndarray:
        """dx/dw of :meth:`to_x`, elementwise (the map is one column at a time)."""
        w = np.asarray(w, np.float64)
        if not self.boxed:
            return self.map.forward_derivative(w)
        t = np.tanh(w)
        return self.map.forward_derivative(self.c + self.h * t) * self.h * (1 - t * t)

    def to_w(self, x: np.ndarray) -> np.ndarray:
        u = self.map.inverse(np.asarray(x, np.float64))
        if not self.boxed:
            return u
        return np.arctanh(np.clip((u - self.c) / self.h, -1 + 10 * _EDGE, 1 - 10 * _EDGE))


def _space(dens: Density) -> _Space:
    if "_space" not in dens.__dict__:
        dens._space = _Space(dens)
    return dens._space


def _trust(dens: Density, space: _Space, x: np.ndarray, w: np.ndarray, mask: np.ndarray):
    """Whether each maximum lies where the surrogate was trained, and why not."""
    k = len(x)
    trusted = np.ones(k, bool)
    notes = [""] * k
    sup = dens.support
    if sup is None:
        return trusted, notes
    lo, hi = np.asarray(sup["lo"]), np.asarray(sup["hi"])
    pressed = (np.abs(np.tanh(w)) > 1 - _EDGE) & ~mask
    outside = ((x < lo) | (x > hi)) & mask
    r2 = dens.latent_r2(x) if dens.latent_r2 is not None else None
    r2_max = sup.get("latent_r2_max")
    for j in range(k):
        why = []
        if outside[j].any():
            why.append("fixed " + ", ".join(dens.names[i] for i in np.flatnonzero(outside[j]))
                       + " outside the training range")
        if pressed[j].any():
            names = [dens.names[i] for i in np.flatnonzero(pressed[j])]
            why.append("at the edge of the training range: " + ", ".join(names[:4])
                       + (" ..." if len(names) > 4 else ""))
        if r2 is not None and r2_max is not None and not r2[j] <= r2_max:
            why.append(f"latent radius^2 {r2[j]:.0f} beyond the training points' {r2_max:.0f}")
        if why:
            trusted[j] = False
            notes[j] = "; ".join(why)
    return trusted, notes


def _compiled_lbfgs(dens: Density, space: _Space, mask: tuple, k: int, tolerance: float,
                    max_iterations: int, f_tolerance: float | None = None):
    """L-BFGS (:mod:`likeflow.infer.lbfgs`) on ``dens`` with the dimensions in ``mask`` fixed, for
    ``k`` starts: a function ``(w0, values) -> lbfgs.Result``.

    A surrogate's value and gradient are the numpy reader's (:func:`_numpy_value_and_grad`,
    on either backend: :func:`as_density`). An exact target's are one TensorFlow function,
    traced once per density and batch size whatever the mask (pyhf targets evaluate a fixed
    number of points per compiled call; sizes are padded: :func:`_padded_size`). L-BFGS also
    stops at the log density's rounding (``f_tolerance`` of :func:`likeflow.infer.lbfgs.minimize`).
    """
    from .lbfgs import minimize

    # a float32 flow's log density is exact to ~1e-7 relative, a float64 likelihood's to ~1e-15
    if f_tolerance is None:
        f_tolerance = 1e-7 if dens.tolerance > 1e-8 else 1e-12
    if dens.log_prob_tf is None:
        fg = _numpy_value_and_grad(dens, space, np.array(mask))
        return lambda w0, values: minimize(
            lambda w: fg(w, values), w0, tolerance=tolerance, max_iterations=max_iterations,
            f_tolerance=f_tolerance)
    from ..tfsetup import tf

    cache = dens.__dict__.setdefault("_value_and_grad", {})
    if k not in cache:
        d = len(mask)
        spec = tf.TensorSpec([k, d], tf.float64)

        @tf.function(input_signature=[spec, spec, tf.TensorSpec([d], tf.bool)])
        def value_and_grad(w, values, fixed):
            with tf.GradientTape() as tape:
                tape.watch(w)
                y = -dens.log_prob_tf(tf.where(fixed, values, space.to_x_tf(w)))
            # fixed dimensions do not move
            return y, tf.where(fixed, tf.zeros_like(w), tape.gradient(y, w))

        cache[k] = value_and_grad
    vg = cache[k]
    fixed = tf.constant(np.array(mask))

    def run(w0: np.ndarray, values: np.ndarray):
        values_t = tf.constant(values)

        def fg(w):
            y, g = vg(tf.constant(w), values_t, fixed)
            return y.numpy(), g.numpy()

        return minimize(fg, w0, tolerance=tolerance, max_iterations=max_iterations,
                        f_tolerance=f_tolerance)

    return run


def _numpy_value_and_grad(dens: Density, space: _Space, fixed: np.ndarray):
    """Value and gradient of -log p(x(w)) for the numpy backend: the reader's exact gradient
    in x (:meth:`likeflow.flows.numpy_flow.NumpyFlow.log_prob_grad`, one pass for all rows)
    times the map's dx/dw; fixed dimensions do not move."""

    def fg(w: np.ndarray, values: np.ndarray):
        x = np.where(fixed, values, space.to_x(w))
        lp, gx = dens.log_prob_grad_np(x)
        g = np.where(fixed, 0.0, -gx * space.to_x_derivative(w))
        return -lp, g

    return fg


def _padded_size(k: int) -> int:
    """The batch size an L-BFGS run of ``k`` starts is padded to: 32, then powers of two."""
    from ..batching import padded_size
    return padded_size(k, 32)


def best_fit(obj, *, starts: int = 16, seed: int = 0,
             f_tolerance: float | None = None) -> Maximum:
    """The global maximum of the log density, from the ``starts`` highest candidate points.

    In high dimension the bulk of the samples lies far from the mode, so the starts are the
    highest-density points among samples of the density, refined by L-BFGS
    (``f_tolerance``: :func:`maximize`'s).
    """
    dens = as_density(obj, seed=seed)
    lp = dens.candidate_log_prob()
    top = dens.candidates[np.argsort(lp)[::-1][:starts]]
    return maximize(dens, top, f_tolerance=f_tolerance)


def conditional_starts(dens: Density, i: int, values: np.ndarray,
                       known: np.ndarray) -> np.ndarray:
    """Two starting points per value of parameter ``i`` for fits with it held there, as
    (2k, D) rows, every value's first start, then every value's second:

    1. the known maximum (``known``, (m, D): the best fit, or fits at other values) nearest in
       parameter ``i``, with ``i`` moved to the value: a warm start, a few iterations from a
       neighbouring value's optimum;
    2. the candidate sample of highest density among those near the value: a start of its
       own, where the optimum at the value lies away from the known ones.
    """
    values = np.asarray(values, np.float64)
    known = np.atleast_2d(known)
    start1 = known[np.argmin(np.abs(known[:, i][None, :] - values[:, None]), axis=1)].copy()
    lp = dens.candidate_log_prob()
    col = dens.candidates[:, i]
    width = max(np.std(col) * 0.1, 1e-12)
    start2 = np.empty_like(start1)
    for j, v in enumerate(values):
        near = np.abs(col - v) < width
        pool = np.flatnonzero(near) if near.any() else np.argsort(np.abs(col - v))[:10]
        start2[j] = dens.candidates[pool[np.argmax(lp[pool])]]
    both = np.concatenate([start1, start2])
    both[:, i] = np.tile(values, 2)
    return both


def better_maximum(x: Maximum, y: Maximum) -> Maximum:
    """Of two maxima at one point of a profile, the trusted one, else the higher."""
    if x.trusted != y.trusted:
        return x if x.trusted else y
    return x if x.log_prob >= y.log_prob or not np.isfinite(y.log_prob) else y


@dataclass
class Profile:
    """-2 Delta log L of a parameter on a grid, and the other parameters at each optimum.

    ``trusted`` is False where the optimum lies outside the surrogate's training region
    (``notes`` says why): such values are extrapolation, not the surrogate's knowledge.
    """

    poi: str
    index: int                  # the POI's column in ``best.x`` and ``nuisances``
    values: np.ndarray
    q: np.ndarray               # -2 (max log L at the value - global max log L)
    log_prob: np.ndarray        # max log L at each value
    best: Maximum
    nuisances: np.ndarray       # (n_values, D) the optimum at each value
    converged: np.ndarray
    trusted: np.ndarray
    notes: list[str]
    kind: str = "surrogate"

    def to_dict(self) -> dict:
        return {"poi": self.poi, "values": self.values.tolist(), "q": self.q.tolist(),
                "log_prob": self.log_prob.tolist(), "best_fit": self.best.x.tolist(),
                "best_log_prob": self.best.log_prob, "best_fit_trusted": self.best.trusted,
                "converged": self.converged.tolist(), "trusted": self.trusted.tolist(),
                "notes": self.notes, "kind": self.kind}


def default_grid(obj, poi: str, *, points: int = 25, best: Maximum | None = None,
                 seed: int = 0) -> np.ndarray:
    """The profile grid when none is given: best fit -2 to +4 marginal standard deviations,
    inside the bounds (and inside a surrogate's training range)."""
    dens = as_density(obj, seed=seed)
    i = dens.index(poi)
    best = best or best_fit(dens, seed=seed)
    sd = float(np.std(dens.candidates[:, i])) or 1.0
    lo, hi = dens.bounds[i]
    if dens.support is not None:
        lo, hi = max(lo, dens.support["lo"][i]), min(hi, dens.support["hi"][i])
    span = hi - lo if np.isfinite(hi - lo) else sd
    a = max(best.x[i] - 2 * sd, lo + 1e-6 * span if np.isfinite(lo) else -np.inf)
    b = min(best.x[i] + 4 * sd, hi - 1e-6 * span if np.isfinite(hi) else np.inf)
    return np.linspace(a, b, points)


def scan(obj, poi: str, values=None, *, seed: int = 0, best: Maximum | None = None,
         points: int = 25) -> Profile:
    """Profile ``poi`` over ``values`` (default: :func:`default_grid`): at each, maximise over
    all other parameters. (:func:`profile` adds the best fit and the upper limits.)

    Each grid point starts from the global best fit with the POI set to the value and from the
    best candidate sample near that value (:func:`conditional_starts`); the better trusted
    optimum is kept (:func:`better_maximum`).
    """
    dens = as_density(obj, seed=seed)
    i = dens.index(poi)
    best = best or best_fit(dens, seed=seed)
    if values is None:
        values = default_grid(dens, poi, points=points, best=best, seed=seed)
    values = np.asarray(values, dtype=np.float64)
    lo, hi = dens.bounds[i]
    if not np.all(np.isfinite(values)) or np.any((values < lo) | (values > hi)):
        raise LikeflowError(f"profile of {poi}: every grid value must be finite and inside its "
                            f"bounds [{lo:g}, {hi:g}]")
    k = len(values)
    both = maximize(dens, conditional_starts(dens, i, values, best.x[None]),
                    fixed={i: np.tile(values, 2)})
    chosen = [better_maximum(x, y) for x, y in zip(both[:k], both[k:])]
    maxima = np.array([c.log_prob for c in chosen])
    trusted = np.array([c.trusted for c in chosen])
    # a trusted grid point that beats the best fit is the best fit: one best fit for all
    pool = np.where(trusted & np.isfinite(maxima), maxima, -np.inf)
    if pool.max() > best.log_prob + 1e-9 or (not best.trusted and np.isfinite(pool.max())):
        j = int(np.argmax(pool))
        best = chosen[j]
    return Profile(poi=poi, index=i, values=values, q=-2 * (maxima - best.log_prob), log_prob=maxima,
                   best=best, nuisances=np.array([c.x for c in chosen]),
                   converged=np.array([c.converged for c in chosen]), trusted=trusted,
                   notes=[c.note for c in chosen], kind=dens.kind)


@dataclass
class UpperLimit:
    """An upper limit with the name of the method that gave it.

    ``value`` is None when there is no limit below the POI's upper bound; ``trusted`` is False
    when the profile at the limit lies outside a surrogate's training region."""

    value: float | None
    cl: float
    method: str
    best_fit: float | None = None
    trusted: bool = True
    note: str = ""

    def to_dict(self) -> dict:
        return {"value": self.value, "cl": self.cl, "method": self.method,
                "best_fit": self.best_fit, "trusted": self.trusted, "note": self.note}


def upper_limit(obj, poi: str, *, cl: float = DEFAULT_CL, seed: int = 0,
                prof: Profile | None = None, best: Maximum | None = None) -> UpperLimit:
    """Asymptotic one-sided profile-likelihood upper limit on ``poi`` at ``cl``.

    The test statistic is q~ (Cowan, Cranmer, Gross, Vitells 2011): -2 log of the profile
    likelihood ratio against the best fit, or against ``poi = 0`` when the best fit is below
    zero (a signal strength cannot be negative); the limit is where q~ reaches
    Phi^-1(cl)^2 (2.71 at 95%) above the best fit (or above 0). The best fit is the profile's
    (``prof.best``) when a profile is given: the same best fit everywhere, and its grid
    brackets the limit; the bracket is then narrowed by batched profiles (:func:`_crossing`).
    """
    dens = as_density(obj, seed=seed)
    i = dens.index(poi)
    best = best or (prof.best if prof is not None else best_fit(dens, seed=seed))
    mu_hat = float(best.x[i])
    threshold = q_threshold(cl)
    lower = max(mu_hat, 0.0) if dens.bounds[i, 0] <= 0 else mu_hat
    if mu_hat < 0 <= dens.bounds[i, 1]:
        ref = maximize(dens, best.x[None], fixed={i: np.array([0.0])})[0].log_prob
    else:
        ref = best.log_prob
    method = (f"asymptotic one-sided profile likelihood, q~ = {threshold:.3f}"
              + (" (best fit < 0: ratio to 0)" if mu_hat < 0 else ""))

    def q_minus_threshold(v: np.ndarray) -> np.ndarray:
        m = maximize(dens, _warm_starts(dens, best, prof, i, v), fixed={i: v})
        return np.array([-2 * (x.log_prob - ref) for x in m]) - threshold

    hi_bound = dens.bounds[i, 1]
    bracket = _grid_bracket(prof, lower, ref, threshold) if prof is not None else None
    if bracket is None:
        # doubling steps from the lower end, all at once
        sd = float(np.std(dens.candidates[:, i])) or 1.0
        tries = np.unique(np.minimum(lower + sd * 2.0 ** np.arange(11), hi_bound))
        f = q_minus_threshold(tries)
        above = np.flatnonzero(f >= 0)
        if not len(above):
            if tries[-1] >= hi_bound:
                return UpperLimit(None, cl, method + f": none below the bound {hi_bound:g}",
                                  best_fit=mu_hat)
            raise LikeflowError(f"no upper limit on {poi} found")
        values = np.concatenate([[lower], tries])
        fs = np.concatenate([[-threshold], f])
        bracket = (values[above[0]], values[above[0] + 1], fs[above[0]], fs[above[0] + 1])
    value = _crossing(q_minus_threshold, *bracket)
    at = maximize(dens, _warm_starts(dens, best, prof, i, np.array([value])),
                  fixed={i: np.array([value])})[0]
    return UpperLimit(float(value), cl, method, best_fit=mu_hat,
                      trusted=at.trusted and best.trusted,
                      note=at.note or ("" if best.trusted else f"best fit: {best.note}"))


def _grid_bracket(prof: Profile, lower: float, ref: float, threshold: float):
    """The profile grid's first interval above ``lower`` where q~ crosses ``threshold``:
    (a, b, f(a), f(b)) with f = q~ - threshold, or None."""
    q = -2 * (prof.log_prob - ref) - threshold
    ok = prof.converged & np.isfinite(q)
    v, q = prof.values[ok], q[ok]
    keep = v > lower
    v, q = np.concatenate([[lower], v[keep]]), np.concatenate([[-threshold], q[keep]])
    above = np.flatnonzero(q >= 0)
    if not len(above) or above[0] == 0:
        return None
    j = above[0]
    return v[j - 1], v[j], q[j - 1], q[j]


def _warm_starts(dens: Density, best: Maximum, prof: Profile | None, i: int,
                 values: np.ndarray) -> np.ndarray:
    """Starting points at POI ``values``: the profile's optima at the nearest grid values
    (interpolated between them), else the best fit."""
    if prof is None or len(prof.values) < 2:
        return np.tile(best.x, (len(values), 1))
    order = np.argsort(prof.values)
    grid, opt = prof.values[order], prof.nuisances[order]
    return np.stack([np.interp(values, grid, opt[:, k]) for k in range(opt.shape[1])], axis=1)


def _crossing(fn, a: float, b: float, fa: float, fb: float, **kw) -> float:
    """Where ``fn`` (values -> values, evaluated on a batch) crosses zero between ``a`` and
    ``b`` (:func:`crossings` of one function)."""
    return crossings(lambda v: fn(v)[None], [(a, b, fa, fb)], **kw)[0]


def crossings(fn, brackets: list, *, rounds: int = 2, points: int = 8) -> list:
    """Zeros of several functions evaluated together, each in its own bracket.

    ``fn`` maps values (m,) to (len(brackets), m) function values (row r: function r);
    ``brackets[r]`` is ``(a, b, f(a), f(b))`` with a sign change, or None (no zero: None
    returned). Each round evaluates ``points`` values inside every bracket in one batch (one
    compiled L-BFGS run over all of them, where Brent's method would run one after another)
    and keeps the sub-interval of the first sign change: 1/81 of the bracket after the
    default two rounds, then linear interpolation.
    """
    live = [list(b) if b is not None else None for b in brackets]
    for _ in range(rounds):
        todo = [r for r, b in enumerate(live) if b is not None]
        if not todo:
            break
        grids = {r: np.linspace(live[r][0], live[r][1], points + 2) for r in todo}
        values = fn(np.concatenate([grids[r][1:-1] for r in todo]))
        for n, r in enumerate(todo):
            a, b, fa, fb = live[r]
            xs = grids[r]
            fs = np.concatenate([[fa], values[r, n * points:(n + 1) * points], [fb]])
            ok = np.isfinite(fs)
            xs, fs = xs[ok], fs[ok]
            sign = 1.0 if fb >= fa else -1.0
            up = np.flatnonzero(sign * fs >= 0)
            j = up[0] if len(up) and up[0] > 0 else len(xs) - 1
            live[r] = [xs[j - 1], xs[j], fs[j - 1], fs[j]]
    out = []
    for b in live:
        if b is None:
            out.append(None)
            continue
        a, b_, fa, fb = b
        out.append(float(b_) if fb == fa else float(a + (b_ - a) * (0.0 - fa) / (fb - fa)))
    return out


def cls_values(q_obs: np.ndarray, q_asimov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed CLs and the expected CLs band (-2..+2 sigma, rows) from q~_mu and q_mu,A, as
    pyhf's asymptotic calculator computes them (its default 'normal' base distribution).
    The normal tail is scipy.special's ``ndtr(-x)``, what ``scipy.stats.norm.sf`` computes,
    without scipy.stats' second of import in a reinterpreter's first test."""
    from scipy.special import ndtr

    def sf(x):
        return ndtr(-x)

    q_obs, q_a = np.maximum(q_obs, 0.0), np.maximum(q_asimov, 1e-300)
    sq, sqa = np.sqrt(q_obs), np.sqrt(q_a)
    t = np.where(sq <= sqa, sq - sqa, (q_obs - q_a) / (2 * sqa))
    cls = sf(t + sqa) / sf(t)
    band = np.array([sf(n + sqa) / sf(n) for n in (2, 1, 0, -1, -2)])
    return cls, band


def q_threshold(cl: float = DEFAULT_CL) -> float:
    """q~ at the one-sided asymptotic limit of confidence level ``cl``: Phi^-1(cl)^2 (2.71
    at 95%)."""
    from scipy.special import ndtri
    return float(ndtri(cl) ** 2)


def credible_upper_limit(samples: np.ndarray, *, cl: float = DEFAULT_CL,
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


def bayesian_upper_limit(obj, poi: str, *, cl: float = DEFAULT_CL, n: int = 200_000,
                         seed: int = 0) -> UpperLimit:
    """:func:`credible_upper_limit` from ``n`` samples of a surrogate (or exact target)."""
    dens = as_density(obj, n_samples=n, seed=seed)
    i = dens.index(poi)
    if dens.samples is not None and len(dens.samples) >= n:
        return credible_upper_limit(dens.samples[:n, i], cl=cl)
    if dens.sampler is None:
        raise LikeflowError("this density has no sampler; give samples to credible_upper_limit")
    return credible_upper_limit(dens.sampler(n, seed + 1)[:, i], cl=cl)


def _log_prob_np(dens: Density, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    if dens.log_prob_np is not None:
        return dens.log_prob_np(x)
    from ..tfsetup import tf

    from ..batching import map_batches
    fn = tf.function(dens.log_prob_tf)
    return map_batches(lambda b: fn(tf.constant(b, tf.float64)).numpy(), x, batch)
