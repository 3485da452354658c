"""The bound plan: what the last layer of every flow does to each parameter, written once.

A flow ends with a map from its standardised, unbounded coordinates ``u`` to the physical
parameters ``x``. Per column, ``v = shift + scale * u`` and then, by the column's bounds:

- two bounds the data reach: the probit map ``lo + (hi - lo) Phi(v)`` (the sigmoid map in
  files that chose it), its inverse held :data:`~likeflow.flows.bounds.PROBIT_MAX` sigma from a
  bound when densities are read;
- two bounds the data stay away from: a soft clip of scale ``c``, its inverse held where the
  clip's own variable ``(v - lo) / c`` reaches ``-PROBIT_MAX`` when densities are read;
- one bound: softplus from it;
- none: the identity.

Parameters whose samples pile up at a bound are reflected across it: the density at ``x`` is
the flow's at ``x`` plus at its mirror images (those inside the flow's extended range), and a
sample beyond the bound is folded back.

:class:`BoundPlan` is computed once from a config (which column gets which map, the maps'
constants, the reflections) and holds these formulas, each written once against an array
namespace ``ops``. Every backend evaluates the same plan with its own namespace:

- :class:`NumpyOps` (here, :attr:`BoundPlan.numpy`): each map on its own columns only (most parameters of a likelihood are
  unbounded nuisance parameters);
- :class:`likeflow.flows.tf_ops.TensorOps`: every map on every column, the right one selected
  by a mask (``guard`` keeps a masked-out column's value, and so its gradient, finite);
- :class:`likeflow.flows.onnx_export.GraphOps`: nodes of an ONNX graph.

A namespace supplies the elementwise primitives (``where``, ``clip``, ``ndtr``, ``softplus``,
...) and how a group of columns is read and written (``take``, ``consts``, ``assemble``,
``guard``, ``row_sum``, ``with_column``); the arithmetic is Python's operators.

Example:
    >>> import numpy as np
    >>> plan = BoundPlan(np.array([[0.0, 1.0], [0.0, np.inf]]), bound_map="probit")
    >>> x = plan.forward(plan.numpy, np.array([[0.0, 0.0]]))
    >>> x.round(4).tolist()       # Phi(0) of [0, 1], softplus(0) above 0
    [[0.5, 0.6931]]
    >>> bool(np.allclose(plan.inverse(plan.numpy, x), 0.0))
    True
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from scipy import special

from .bounds import PROBIT_MAX, PROBIT_TRAIN_MAX

_LOG_2PI = math.log(2 * math.pi)
# The standardisation reads the two-bound maps no further than this fraction of the range from
# a bound (about 7 sigma of the probit map).
UNBOUNDED_EDGE = 1e-12
# the groups of columns, in the order the maps are applied (later ones win where two apply)
GROUPS = ("two", "soft", "lower", "upper")


def probit_edge(probit_max: float) -> float:
    """The fraction of a two-bound range within which the probit map's inverse is held:
    ``Phi(-probit_max)``."""
    return 0.5 * math.erfc(probit_max / math.sqrt(2.0))


def softclip_edge() -> float:
    """The distance from a bound, in units of the soft clip's scale ``c``, within which the
    soft clip's inverse is held when densities are read: ``softplus(-PROBIT_MAX)``, where
    the clip's own variable ``(v - lo) / c`` is ``-PROBIT_MAX`` (0.063 standard deviations
    of the data, ``c`` being half of one)."""
    return math.log1p(math.exp(-PROBIT_MAX))


def _probit_hold(held: bool) -> float:
    return PROBIT_MAX if held else PROBIT_TRAIN_MAX


class BoundPlan:
    """Which map each column gets, the maps' constants and the reflections; the formulas.

    Args:
        bounds: (D, 2) bounds of the flow's range (``+-inf`` for none; reflected bounds
            already pushed out, :func:`likeflow.flows.bounds.flow_bounds`).
        shift, scale: the standardisation (default 0 and 1).
        bound_map: ``"probit"`` or ``"sigmoid"`` for two bounds the data reach.
        softclip: per column, the soft clip's scale (0: none).
        dtype: the precision the flow computes in (the inverse's clips use its eps and tiny).
        reflect: ``[dimension, bound]`` pairs reflected across.
        physical: the (D, 2) physical bounds (which side a reflected bound is on).
    """

    def __init__(self, bounds, shift=None, scale=None, *, bound_map: str = "sigmoid",
                 softclip=None, dtype: str = "float64", reflect=(), physical=None):
        b = np.asarray(bounds, dtype=np.float64)
        d = len(b)
        self.dim = d
        lo, hi = b[:, 0], b[:, 1]
        fin_lo, fin_hi = np.isfinite(lo), np.isfinite(hi)
        self.shift = np.zeros(d) if shift is None else np.asarray(shift, np.float64)
        self.scale = np.ones(d) if scale is None else np.asarray(scale, np.float64)
        softclip = np.zeros(d) if softclip is None else np.asarray(softclip, np.float64)
        self.probit = bound_map == "probit"
        self.eps, self.tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
        soft = (softclip > 0) & fin_lo & fin_hi
        self.columns = {
            "two": np.flatnonzero(fin_lo & fin_hi & ~soft),
            "soft": np.flatnonzero(soft),
            "lower": np.flatnonzero(fin_lo & ~fin_hi),
            "upper": np.flatnonzero(~fin_lo & fin_hi),
        }
        self.columns["one"] = np.concatenate([self.columns["lower"], self.columns["upper"]])
        self.columns["bounded"] = np.flatnonzero(fin_lo | fin_hi)
        # full-width constants; finite stand-ins where a bound is absent, so that no branch
        # of a masked evaluation sees inf
        lo_s, hi_s = np.where(fin_lo, lo, 0.0), np.where(fin_hi, hi, 1.0)
        width = np.where(fin_lo & fin_hi, hi_s - lo_s, 1.0)
        c = np.where(soft, softclip, 1.0)
        with np.errstate(invalid="ignore"):  # the stand-ins of other columns: not used
            soft_k = np.where(soft, np.log(-np.expm1(-(hi_s - lo_s) / c)), 0.0)
        self.constants = {
            "lo": lo_s, "hi": hi_s, "width": width,
            "log_width": np.where(fin_lo & fin_hi, np.log(width), 0.0),
            "c": c,
            # log(1 - exp(-(hi - lo)/c)): a constant of the soft clip's log-derivative
            "soft_k": soft_k,
            # where the soft clip is held when densities are read (:func:`softclip_edge`)
            "held_lo": lo_s + softclip_edge() * c, "held_hi": hi_s - softclip_edge() * c,
            "shift": self.shift, "scale": self.scale,
        }
        # rounding must never put a value outside its bounds
        self.clip_lo, self.clip_hi = np.where(fin_lo, lo, -np.inf), np.where(fin_hi, hi, np.inf)
        self.log_scale_sum = float(np.sum(np.log(self.scale)))
        self.flow_range = b
        # reflections: dimension, bound, and +1 for a lower bound (-1 for an upper one)
        lows = (np.asarray(physical, np.float64) if physical is not None else b)[:, 0]
        self.reflections = [(int(i), float(p), 1.0 if p == lows[int(i)] else -1.0)
                            for i, p in reflect]

    @classmethod
    def of(cls, config, *, dtype: str | None = None) -> "BoundPlan":
        """The plan of a :class:`~likeflow.flows.config.FlowConfig` (in its dtype unless given)."""
        return cls(config.flow_bounds_array(), config.shift, config.scale,
                   bound_map=config.bound_map, softclip=config.softclip,
                   dtype=dtype or config.dtype, reflect=config.reflect,
                   physical=config.bounds_array())

    def has(self, group: str) -> bool:
        return self.columns[group].size > 0

    @property
    def numpy(self) -> "NumpyOps":
        """The namespace that evaluates this plan in numpy."""
        if "_numpy" not in self.__dict__:
            self._numpy = NumpyOps(self)
        return self._numpy

    @property
    def numpy_map(self) -> "NumpyMap":
        """The map in numpy, with its derivatives."""
        if "_numpy_map" not in self.__dict__:
            self._numpy_map = NumpyMap(self)
        return self._numpy_map

    def bijector(self, dtype: str = "float64", held: bool = True):
        """The map as a TFP bijector (imports TensorFlow)."""
        from .tf_ops import Preprocess, tf

        return Preprocess(self, tf.as_dtype(dtype), held)

    # --- the map and its inverse ------------------------------------------------------------

    @staticmethod
    def _scaled(ops, u):
        """``v = shift + scale * u``: what the maps take."""
        k = ops.consts(None)
        return k.shift + k.scale * u

    def forward(self, ops, u):
        """Standardised ``u`` -> physical ``x``."""
        v = self._scaled(ops, u)
        parts = []
        if self.has("two"):
            vt, k = ops.take(v, "two"), ops.consts("two")
            if self.probit:  # from the nearer bound: Phi(v) = erfc(-v / sqrt 2) / 2
                x = ops.where(vt < 0, k.lo + k.width * ops.ndtr(vt),
                              k.hi - k.width * ops.ndtr(-vt))
            else:
                x = k.lo + k.width * ops.sigmoid(vt)
            parts.append(("two", x))
        if self.has("soft"):
            vs, k = ops.take(v, "soft"), ops.consts("soft")
            parts.append(("soft", k.lo + k.c * ops.softplus((vs - k.lo) / k.c)
                          - k.c * ops.softplus((vs - k.hi) / k.c)))
        if self.has("lower"):
            k = ops.consts("lower")
            parts.append(("lower", k.lo + ops.softplus(ops.take(v, "lower"))))
        if self.has("upper"):
            k = ops.consts("upper")
            parts.append(("upper", k.hi - ops.softplus(ops.take(v, "upper"))))
        x = ops.assemble(v, parts)
        if not self.has("bounded"):
            return x
        return ops.clip_columns(x, "bounded")

    def inverse(self, ops, x, held: bool = True, *, edge: float | None = None):
        """Physical ``x`` -> standardised ``u``. ``held`` (reading densities): the probit map
        held at :data:`PROBIT_MAX` sigma, the soft clip at :func:`softclip_edge`; otherwise
        (training, the latent maps) the probit map clipped at :data:`PROBIT_TRAIN_MAX`, the
        soft clip exact. The sigmoid map at the precision's eps. ``edge``: the two-bound
        maps at this fraction instead, the soft clip exact."""
        parts = []
        if self.has("two"):
            xt, k = ops.take(x, "two"), ops.consts("two")
            if self.probit:  # from the nearer bound, for precision in float32
                t_min = probit_edge(_probit_hold(held)) if edge is None else edge
                a = ops.guard(ops.clip((xt - k.lo) / k.width, t_min, 0.5), "two", 0.5)
                b = ops.guard(ops.clip((k.hi - xt) / k.width, t_min, 0.5), "two", 0.5)
                v = ops.where(a < 0.5, ops.ndtri(a), -ops.ndtri(b))
            else:
                t_min = self.eps if edge is None else edge
                t = ops.guard(ops.clip((xt - k.lo) / k.width, t_min, 1 - t_min), "two", 0.5)
                v = ops.log(t) - ops.log1p(-t)
            parts.append(("two", v))
        tiny = self.tiny
        if self.has("soft"):
            xs, k = ops.take(x, "soft"), ops.consts("soft")
            if held and edge is None:  # the hold: the density at the nearest held point
                xs = ops.maximum(ops.minimum(xs, k.held_hi), k.held_lo)
            a = ops.guard(ops.maximum((xs - k.lo) / k.c, tiny), "soft", 1.0)
            b = ops.guard(ops.minimum((xs - k.hi) / k.c, -tiny), "soft", -1.0)
            parts.append(("soft", k.lo + k.c * ops.softplus_inverse(a)
                          - k.c * ops.log1mexp(-b)))
        if self.has("lower"):
            k = ops.consts("lower")
            d = ops.guard(ops.maximum(ops.take(x, "lower") - k.lo, tiny), "lower", 1.0)
            parts.append(("lower", ops.softplus_inverse(d)))
        if self.has("upper"):
            k = ops.consts("upper")
            d = ops.guard(ops.maximum(k.hi - ops.take(x, "upper"), tiny), "upper", 1.0)
            parts.append(("upper", ops.softplus_inverse(d)))
        v = ops.assemble(x, parts)
        k = ops.consts(None)
        return (v - k.shift) / k.scale

    def forward_log_det(self, ops, u):
        """log |dx/du| of :meth:`forward`, summed over the columns (n,)."""
        v = self._scaled(ops, u)
        parts = []
        if self.has("two"):
            vt, k = ops.take(v, "two"), ops.consts("two")
            if self.probit:
                part = k.log_width - 0.5 * ops.square(vt) - 0.5 * _LOG_2PI
            else:
                part = k.log_width + ops.log_sigmoid(vt) + ops.log_sigmoid(-vt)
            parts.append(("two", part))
        if self.has("one"):
            parts.append(("one", ops.log_sigmoid(ops.take(v, "one"))))
        if self.has("soft"):
            # dx/dv = sigmoid(a) - sigmoid(b), a - b = (hi - lo)/c: stable in logs
            vs, k = ops.take(v, "soft"), ops.consts("soft")
            a, b = (vs - k.lo) / k.c, (vs - k.hi) / k.c
            parts.append(("soft", -b + k.soft_k - ops.softplus(-a) - ops.softplus(-b)))
        return ops.row_sum(parts, self.log_scale_sum, like=u)

    # --- reflections: the images a density is summed over, the fold of samples -----------

    def images(self, ops, x) -> list:
        """``x`` and its mirror images across the reflected bounds (2^k arrays): ``2 b - x``
        exactly (near the far edge of the extended range the density is sensitive to the
        image's last bit)."""
        images = [x]
        for i, point, _ in self.reflections:
            images += [ops.with_column(img, i, lambda col, p=point: 2 * p - col)
                       for img in images]
        return images

    def image_counts(self, ops, image) -> object:
        """Whether an image (not the point itself, which always counts) carries density: it
        lies in the flow's extended range, edges included, in the reflected dimensions. One
        on the edge counts (the image of a point on a bound that is not reflected: the
        density is held there, finite), else the fold would halve the density there."""
        inside = None
        for i in sorted({i for i, _, _ in self.reflections}):
            col = ops.column(image, i)
            here = ops.logical_and(col >= float(self.flow_range[i, 0]),
                                   col <= float(self.flow_range[i, 1]))
            inside = here if inside is None else ops.logical_and(inside, here)
        return inside

    def mirror_images(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """In numpy: ``x`` (n, D) and its images (:meth:`images`), and for each image (rows)
        whether it carries density (:meth:`image_counts`; the point itself always does)."""
        x = np.asarray(x, dtype=np.float64)
        images = self.images(self.numpy, x)
        ok = np.ones((len(images), len(x)), bool)
        for k, img in enumerate(images[1:], start=1):
            ok[k] = self.image_counts(self.numpy, img)
        return images, ok

    def fold(self, ops, y):
        """Points of the flow's extended range -> the physical range (the mirror image of a
        point beyond a reflected bound)."""
        for i, point, side in self.reflections:
            y = ops.with_column(y, i, lambda col, p=point, s=side: p + s * ops.abs(col - p))
        return y


def unbounded_coordinates(values: np.ndarray, bounds: np.ndarray,
                          bound_map: str = "sigmoid", softclip=None) -> np.ndarray:
    """The bound maps inverted without standardisation (what the standardisation is computed
    from), each held :data:`UNBOUNDED_EDGE` of its range from a bound: the
    :class:`BoundPlan`'s inverse in numpy."""
    plan = BoundPlan(bounds, bound_map=bound_map, softclip=softclip)
    with np.errstate(divide="ignore", invalid="ignore"):
        return plan.inverse(plan.numpy, values, edge=UNBOUNDED_EDGE)


class NumpyOps:
    """The plan's namespace in numpy: each map on its own columns (gathered, then put back).

    One per plan (:attr:`BoundPlan.numpy`): it holds the constants of each group's columns."""

    where, clip, maximum, minimum = (staticmethod(np.where), staticmethod(np.clip),
                                     staticmethod(np.maximum), staticmethod(np.minimum))
    square, abs, log, log1p = (staticmethod(np.square), staticmethod(np.abs),
                               staticmethod(np.log), staticmethod(np.log1p))
    ndtr, ndtri, sigmoid = (staticmethod(special.ndtr), staticmethod(special.ndtri),
                            staticmethod(special.expit))
    logical_and = staticmethod(np.logical_and)

    def __init__(self, plan: BoundPlan):
        self.plan = plan
        self._consts = {None: SimpleNamespace(**plan.constants)}
        for group, cols in plan.columns.items():
            self._consts[group] = SimpleNamespace(**{k: v[cols]
                                                     for k, v in plan.constants.items()})

    @staticmethod
    def softplus(a):
        return np.logaddexp(0.0, a)

    @staticmethod
    def log_sigmoid(a):
        return -np.logaddexp(0.0, -a)

    @staticmethod
    def softplus_inverse(y):
        """log(exp(y) - 1), stable for small and large y."""
        return y + np.log(-np.expm1(-y))

    @staticmethod
    def log1mexp(y):
        """log(1 - exp(-y)) for y > 0."""
        return np.log(-np.expm1(-y))

    def consts(self, group: str | None):
        """The plan's constants of a group's columns (``None``: of every column)."""
        return self._consts[group]

    def take(self, v, group: str):
        return v[:, self.plan.columns[group]]

    @staticmethod
    def guard(value, group: str, safe):
        return value  # only a group's own columns are computed

    def assemble(self, base, parts):
        out = np.array(base, dtype=np.float64)
        for group, values in parts:
            out[:, self.plan.columns[group]] = values
        return out

    def clip_columns(self, x, group: str):
        cols = self.plan.columns[group]
        x[:, cols] = np.clip(x[:, cols], self.plan.clip_lo[cols], self.plan.clip_hi[cols])
        return x

    @staticmethod
    def row_sum(parts, base: float, like):
        out = np.full(len(like), base)
        for _, values in parts:
            out += values.sum(axis=1)
        return out

    @staticmethod
    def column(a, i: int):
        return a[:, i]

    @staticmethod
    def with_column(a, i: int, fn):
        out = np.array(a, dtype=np.float64)
        out[:, i] = fn(out[:, i])
        return out


class NumpyMap:
    """Standardised unbounded space -> physical parameters: a :class:`BoundPlan` evaluated in
    numpy (each map on its own columns), with the derivatives that reverse passes need
    (:meth:`likeflow.flows.numpy_flow.NumpyFlow.log_prob_grad`, the optimiser's coordinates)."""

    def __init__(self, plan: BoundPlan):
        self.plan = plan
        self.probit = plan.probit
        self._ops = plan.numpy

    def forward(self, u):
        return self.plan.forward(self._ops, u)

    def inverse(self, x, held: bool = True):
        """Physical -> standardised, held as :meth:`BoundPlan.inverse`."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.plan.inverse(self._ops, x, held)

    def forward_log_det(self, u):
        return self.plan.forward_log_det(self._ops, u)

    def forward_derivative(self, u):
        """dx/du of :meth:`forward`, elementwise (n, D) (the clip at the bounds aside)."""
        plan, ops = self.plan, self._ops
        v = plan.shift + plan.scale * u
        dv = np.ones_like(v)
        if plan.has("two"):
            t, k = plan.columns["two"], ops.consts("two")
            vt = v[:, t]
            dv[:, t] = k.width * (np.exp(-0.5 * vt * vt - 0.5 * _LOG_2PI) if plan.probit
                                  else special.expit(vt) * special.expit(-vt))
        if plan.has("soft"):
            sc, k = plan.columns["soft"], ops.consts("soft")
            vs = v[:, sc]
            dv[:, sc] = special.expit((vs - k.lo) / k.c) - special.expit((vs - k.hi) / k.c)
        lower, upper = plan.columns["lower"], plan.columns["upper"]
        if lower.size:
            dv[:, lower] = special.expit(v[:, lower])
        if upper.size:
            dv[:, upper] = -special.expit(v[:, upper])
        return dv * plan.scale

    def inverse_derivative(self, x, held: bool = True):
        """du/dx of :meth:`inverse`, elementwise (n, D): zero where a value is held (the
        probit map's and the soft clip's holds, the clips at the bounds), as TensorFlow's
        gradient of the clips."""
        plan, ops = self.plan, self._ops
        x = np.asarray(x, np.float64)
        dv = np.ones_like(x)
        tiny = plan.tiny
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if plan.has("two"):
                t, k = plan.columns["two"], ops.consts("two")
                xt = x[:, t]
                a, b = (xt - k.lo) / k.width, (k.hi - xt) / k.width
                if plan.probit:
                    t_min = probit_edge(_probit_hold(held))
                    clipped = (a < t_min) | (b < t_min)
                    v = np.where(a < 0.5, special.ndtri(np.clip(a, t_min, 0.5)),
                                 -special.ndtri(np.clip(b, t_min, 0.5)))
                    # d ndtri(a)/da = 1 / phi(ndtri(a))
                    dv[:, t] = np.where(clipped, 0.0, np.exp(0.5 * v * v + 0.5 * _LOG_2PI)
                                        / k.width)
                else:
                    clipped = (a < plan.eps) | (a > 1 - plan.eps)
                    dv[:, t] = np.where(clipped, 0.0, 1.0 / (k.width * a * (1 - a)))
            if plan.has("soft"):
                sc, k = plan.columns["soft"], ops.consts("soft")
                a, b = (x[:, sc] - k.lo) / k.c, (x[:, sc] - k.hi) / k.c
                near = max(softclip_edge(), tiny) if held else tiny
                free_a, free_b = a > near, b < -near
                if held:  # a held value is a clipped x: it moves neither term
                    free_a = free_b = free_a & free_b
                dv[:, sc] = (np.where(free_a, 1.0 / -np.expm1(-a), 0.0)
                             + np.where(free_b, 1.0 / np.expm1(-b), 0.0))
            if plan.has("lower"):
                lower, k = plan.columns["lower"], ops.consts("lower")
                d = x[:, lower] - k.lo
                dv[:, lower] = np.where(d > tiny, 1.0 / -np.expm1(-d), 0.0)
            if plan.has("upper"):
                upper, k = plan.columns["upper"], ops.consts("upper")
                d = k.hi - x[:, upper]
                dv[:, upper] = np.where(d > tiny, -1.0 / -np.expm1(-d), 0.0)
        return dv / plan.scale

    def forward_log_det_grad(self, u):
        """The gradient of :meth:`forward_log_det` with respect to ``u`` (n, D)."""
        plan, ops = self.plan, self._ops
        v = plan.shift + plan.scale * u
        g = np.zeros_like(v)
        if plan.has("two"):
            t = plan.columns["two"]
            vt = v[:, t]
            g[:, t] = -vt if plan.probit else 1 - 2 * special.expit(vt)
        if plan.has("soft"):
            sc, k = plan.columns["soft"], ops.consts("soft")
            vs = v[:, sc]
            g[:, sc] = (-1 + special.expit(-(vs - k.lo) / k.c)
                        + special.expit(-(vs - k.hi) / k.c)) / k.c
        one = plan.columns["one"]
        if one.size:
            g[:, one] = special.expit(-v[:, one])
        return g * plan.scale
