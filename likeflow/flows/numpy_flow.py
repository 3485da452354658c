"""The flows of a surrogate file, evaluated with numpy alone (no TensorFlow).

A published surrogate is reloaded for years, often inside tools that do not want TensorFlow
(hundreds of MB, seconds of import) in their environment. This module computes everything a
reloaded surrogate does from the file's config and weight arrays: ``log_prob`` (with the
holds of the probit map and the soft clip, and the fold at reflected bounds), the latent maps
both ways, and sampling through the one-pass MADE. It mirrors :mod:`likeflow.flows.tf_flow`
layer by layer (tests check the two agree to rounding for every flow, permutation kind and
bound map) and computes in float64 whatever the file's dtype: a float32 file gives
TensorFlow's numbers to float32 rounding.

The weight arrays of a file are in the TensorFlow flow's variable order
(:func:`likeflow.flows.config.weight_roles` names each); nothing else of TensorFlow is needed.

Example:
    >>> import numpy as np
    >>> from likeflow.flows.config import FlowConfig, expected_weight_shapes
    >>> cfg = FlowConfig(dim=2, flow="realnvp", layers=2, hidden=(4,))
    >>> flow = NumpyFlow(cfg, [np.zeros(s) for s in expected_weight_shapes(cfg)])
    >>> flow.log_prob(np.zeros((1, 2))).round(4)   # zero weights: the identity, N(0, I)
    array([-1.8379])
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy.linalg import solve_triangular

from . import affine, rq
from .config import FlowConfig, expected_weight_shapes, weight_roles
from .plan import BoundPlan, NumpyOps
from .rq import MIN_BIN

_LOG_2PI = math.log(2 * math.pi)


# --- building blocks ------------------------------------------------------------------------

ACTIVATION_FUNCTIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    # tf_keras' "gelu" is the exact one (approximate=False), in TensorFlow's erfc form
    # (1 + erf(x) would cancel for negative x)
    "gelu": lambda x: 0.5 * x * special.erfc(-x * 0.7071067811865476),
    "silu": lambda x: x * special.expit(x),
}


def _gelu_grad(x):
    return 0.5 * special.erfc(-x * 0.7071067811865476) + x * np.exp(-0.5 * x * x) / math.sqrt(
        2 * math.pi)


def _silu_grad(x):
    sig = special.expit(x)
    return sig * (1 + x * (1 - sig))


# the derivative of each activation at its input (for the reverse pass of :class:`Dense`)
ACTIVATION_GRADIENTS = {
    "relu": lambda x: (x > 0).astype(float),
    "tanh": lambda x: 1 - np.tanh(x) ** 2,
    "elu": lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),
    "gelu": _gelu_grad,
    "silu": _silu_grad,
}


class Spline:
    """The rational-quadratic spline of :mod:`likeflow.flows.splines` (identity outside its
    interval) from a conditioner's raw parameters (..., 3K - 1), as the flows parametrise it."""

    def __init__(self, params: np.ndarray, bins: int, bound: float):
        k = bins
        w, h, s = params[..., :k], params[..., k:2 * k], params[..., 2 * k:]
        widths, heights, slopes = rq.parametrise(
            w, h, s, k, bound, lambda a: special.softmax(a, axis=-1), NumpyOps.softplus)
        self._kx = _knots(widths, -bound)
        self._ky = _knots(heights, -bound)
        one = np.ones_like(slopes[..., :1])
        self._kd = np.concatenate([one, slopes, one], axis=-1)
        self._raw = (w, h, s)      # for the gradient of the parameters (:meth:`inverse_grad`)
        self._scale = (1 - k * MIN_BIN) * (2 * bound)

    def _per_column(self, v) -> bool:
        """One spline per column (the marginal spline) at points (n, D)?"""
        return self._kx.ndim == 2 and v.ndim == 2

    def _bin(self, v, knots):
        """Each value's bin: ``(v or the left end outside the interval, inside, the bin's
        index, x_k, w_k, y_k, h_k, d_k, d_k+1)``."""
        lo, hi = knots[..., 0], knots[..., -1]
        inside = (v > lo) & (v < hi)
        v = np.where(inside, v, lo)
        kx, ky, kd = self._kx, self._ky, self._kd
        if self._per_column(v):
            # one spline per column: bins counted per column, then gathers from the
            # flattened (D, K + 1) knots
            k = self._column_bins(v, knots)
            flat = k + np.arange(v.shape[1]) * kx.shape[1]

            def pick(a, off=0):
                return np.take(a, flat + off)
        else:
            # number of interior knots at or left of v: the bin, in 0 .. K - 1
            k = np.sum(v[..., None] >= knots[..., 1:-1], axis=-1)

            def pick(a, off=0):
                return np.take_along_axis(np.broadcast_to(a, v.shape + a.shape[-1:]),
                                          k[..., None] + off, axis=-1)[..., 0]

        x_k, y_k = pick(kx), pick(ky)
        return (v, inside, k, x_k, pick(kx, 1) - x_k, y_k, pick(ky, 1) - y_k, pick(kd),
                pick(kd, 1))

    @staticmethod
    def _column_bins(v, knots):
        """The bin of each value (n, D) of a spline per column: the number of interior knots
        at or left of it, counted a knot at a time (a few bins: faster than a binary search
        per column)."""
        k = np.zeros(v.shape, dtype=np.intp)
        for j in range(1, knots.shape[-1] - 1):
            k += v >= knots[:, j]
        return k

    def _inverse_tables(self) -> np.ndarray:
        """Per bin of a spline per column, flattened (10, D * K): the bin's left knots, width,
        slopes and :func:`likeflow.flows.rq.bin_constants`, in the order
        :func:`likeflow.flows.rq.inverse_in_bin` takes them (computed once; a batch gathers
        them)."""
        if not hasattr(self, "_tables"):
            kx, ky, kd = self._kx, self._ky, self._kd
            w, h = np.diff(kx, axis=-1), np.diff(ky, axis=-1)
            d0, d1 = kd[:, :-1], kd[:, 1:]
            with np.errstate(divide="ignore", invalid="ignore"):
                consts = rq.bin_constants(w, h, d0, d1, log=np.log)
            self._tables = np.stack([np.ravel(a) for a in (kx[:, :-1], w, ky[:, :-1], d0, d1,
                                                            *consts)])
        return self._tables

    def _column_inverse(self, y):
        """A spline per column's inverse at points (n, D): ``(inside, x, log dx/dy, the bins'
        parts)``, x and its log slope valid where ``inside``; the parts are
        :meth:`_inverse_tables` gathered at each value's bin, in one take."""
        ky = self._ky
        inside = (y > ky[:, 0]) & (y < ky[:, -1])
        yc = np.where(inside, y, ky[:, 0])
        flat = self._column_bins(yc, ky) + np.arange(y.shape[1]) * (ky.shape[1] - 1)
        parts = np.take(self._inverse_tables(), flat, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            x, ldj = rq.inverse_in_bin(yc, *parts, log=np.log, sqrt=np.sqrt, maximum=np.maximum)
        return inside, x, ldj, parts

    def forward(self, x):
        """``(y, log dy/dx)`` elementwise."""
        xc, inside, _, *knots = self._bin(x, self._kx)
        with np.errstate(divide="ignore", invalid="ignore"):
            y, ldj = rq.forward(xc, *knots, log=np.log)
        return np.where(inside, y, x), np.where(inside, ldj, 0.0)

    def inverse(self, y):
        """``(x, log dx/dy)`` elementwise."""
        if self._per_column(y):
            inside, x, ldj, _ = self._column_inverse(y)
        else:
            yc, inside, _, *knots = self._bin(y, self._ky)
            with np.errstate(divide="ignore", invalid="ignore"):
                x, ldj = rq.inverse(yc, *knots, log=np.log, sqrt=np.sqrt, maximum=np.maximum)
        return np.where(inside, x, y), np.where(inside, ldj, 0.0)

    def inverse_grad(self, y):
        """:meth:`inverse` and its reverse-mode derivative: ``(x, log dx/dy, back)`` with
        ``back(gx) -> (gy, gparams)``, the gradients of ``sum(gx * x) + sum(log dx/dy)`` with
        respect to ``y`` and to the raw parameters (None for one spline per column, whose
        parameters are not a conditioner's output). The inverse is differentiated implicitly
        through the forward map (:func:`likeflow.flows.rq.forward_partials`)."""
        if self._per_column(y):
            return self._column_inverse_grad(y)
        yc, inside, k, x_k, w_k, y_k, h_k, d_k, d_k1 = self._bin(y, self._ky)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc, ldj = rq.inverse(yc, x_k, w_k, y_k, h_k, d_k, d_k1, log=np.log, sqrt=np.sqrt,
                                 maximum=np.maximum)
            slope, f, ell = rq.forward_partials(xc, x_k, w_k, y_k, h_k, d_k, d_k1)
        x = np.where(inside, xc, y)

        def back(gx):
            with np.errstate(divide="ignore", invalid="ignore"):
                gy_in = (gx - ell["x"]) / slope
            gy = np.where(inside, gy_in, gx)

            def part(name):
                return np.where(inside, -gy_in * f[name] - ell[name], 0.0)
            g_w = part("w_k")
            g_h = part("h_k")
            return gy, self._raw_grad(k, part("x_k") - g_w, g_w, part("y_k") - g_h, g_h,
                                      part("d_k"), part("d_k1"))

        return x, np.where(inside, ldj, 0.0), back

    def _column_inverse_grad(self, y):
        """:meth:`inverse_grad` of a spline per column: its parameters are not a conditioner's
        output, so the reverse pass needs only the forward map's slope and its partial in x
        (:func:`likeflow.flows.rq.slope_partials`), from the bins' tables."""
        inside, xc, ldj, parts = self._column_inverse(y)
        x_k, w_k, _, d_k, d_k1, s = parts[:6]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope, ell_x = rq.slope_partials(xc, x_k, w_k, d_k, d_k1, s)

        def back(gx):
            with np.errstate(divide="ignore", invalid="ignore"):
                gy_in = (gx - ell_x) / slope
            return np.where(inside, gy_in, gx), None

        return np.where(inside, xc, y), np.where(inside, ldj, 0.0), back

    def _raw_grad(self, k, g_x0, g_x1, g_y0, g_y1, g_d0, g_d1):
        """Gradients at the knots a point's bin reads (bin ``k``: knots k and k + 1) to the
        raw parameters: through the cumulative sums, the softmax with its minimum bin and the
        softplus of the slopes."""
        w, h, s = self._raw
        n_knots = self._kx.shape[-1]

        def scatter(g0, g1):
            out = np.zeros(k.shape + (n_knots,))
            np.put_along_axis(out, k[..., None], g0[..., None], axis=-1)
            g = np.zeros_like(out)
            np.put_along_axis(g, k[..., None] + 1, g1[..., None], axis=-1)
            return out + g

        def through_softmax(g_knots, raw):
            # knot j is the sum of the sizes before it: a size's gradient sums the knots after
            g_size = np.cumsum(g_knots[..., :0:-1], axis=-1)[..., ::-1] * self._scale
            sm = special.softmax(raw, axis=-1)
            return sm * (g_size - np.sum(g_size * sm, axis=-1, keepdims=True))

        g_d = scatter(g_d0, g_d1)[..., 1:-1] * special.expit(s + math.log(math.e - 1))
        return np.concatenate([through_softmax(scatter(g_x0, g_x1), w),
                               through_softmax(scatter(g_y0, g_y1), h), g_d], axis=-1)


def _knots(sizes, start):
    zero = np.zeros_like(sizes[..., :1])
    return start + np.concatenate([zero, np.cumsum(sizes, axis=-1)], axis=-1)


class Affine:
    """Shift and soft-clamped log scale from raw parameters (..., 2)."""

    def __init__(self, params: np.ndarray, clamp: float):
        self.shift = params[..., 0]
        self.clamp = clamp
        self.log_scale = affine.log_scale(params[..., 1], clamp, np.tanh)

    def forward(self, x):
        return self.shift + np.exp(self.log_scale) * x, self.log_scale

    def inverse(self, y):
        return (y - self.shift) * np.exp(-self.log_scale), -self.log_scale

    def inverse_grad(self, y):
        """:meth:`inverse` and ``back(gx) -> (gy, gparams)`` (as :meth:`Spline.inverse_grad`)."""
        inv_scale = np.exp(-self.log_scale)
        x = (y - self.shift) * inv_scale

        def back(gx):
            g_log_scale = -gx * x - 1.0
            slope = affine.log_scale_slope(self.log_scale, self.clamp)
            return gx * inv_scale, np.stack([-gx * inv_scale, g_log_scale * slope], axis=-1)

        return x, -self.log_scale, back


def transformer(config: FlowConfig):
    """The config's transformer: raw parameters (..., P) -> an elementwise map."""
    if config.transformer == "affine":
        return lambda p: Affine(p, config.log_scale_clamp)
    return lambda p: Spline(p, config.bins, config.spline_range)


class Dense:
    """A stack of dense layers: activation after each but the last."""

    def __init__(self, kernels, biases, activation: str):
        self.kernels, self.biases = kernels, biases
        self.act = ACTIVATION_FUNCTIONS[activation]
        self.act_grad = ACTIVATION_GRADIENTS[activation]
        self._transposed = [np.ascontiguousarray(w.T) for w in kernels]

    def __call__(self, x):
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            x = x @ w + b
            if i < len(self.kernels) - 1:
                x = self.act(x)
        return x

    def with_grad(self, x):
        """The output and ``back(g_out) -> g_x``, the reverse pass (the pre-activations are
        kept for it)."""
        pre = []
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            x = x @ w + b
            if i < len(self.kernels) - 1:
                pre.append(x)
                x = self.act(x)

        def back(g):
            for i in range(len(self.kernels) - 1, -1, -1):
                if i < len(self.kernels) - 1:
                    g = g * self.act_grad(pre[i])
                g = g @ self._transposed[i]
            return g

        return x, back


def made_degrees(dim: int, hidden) -> list[np.ndarray]:
    """The degrees of the inputs and of each hidden layer's units of TFP's
    ``AutoregressiveNetwork`` (left-to-right input order, ``hidden_degrees="equal"``): a unit of
    degree c sees the inputs 1..c."""
    degrees = [np.arange(1, dim + 1)]
    for units in hidden:
        low = min(int(degrees[-1].min()), dim - 1)
        degrees.append(np.maximum(low, np.ceil(np.arange(1, units + 1) * (dim - 1)
                                                / (units + 1)).astype(int)))
    return degrees


def made_masks(dim: int, hidden, params: int) -> list[np.ndarray]:
    """The 0/1 masks of the MADE's kernels (input -> hidden -> ... -> (dim * params))."""
    deg = made_degrees(dim, hidden)
    masks = [(a[:, None] <= b[None, :]).astype(float) for a, b in zip(deg[:-1], deg[1:])]
    last = (deg[-1][:, None] < deg[0][None, :]).astype(float)
    masks.append(np.repeat(last, params, axis=1))   # output (d, p) at column d * params + p
    return masks


class Made:
    """The MADE conditioner: (n, D) -> (n, D, P); also computes one dimension at a time for
    sampling (:meth:`forward_pass`)."""

    def __init__(self, config: FlowConfig, kernels, biases):
        d, p = config.dim, config.params_per_dimension
        masks = made_masks(d, config.hidden, p)
        self.net = Dense([w * m for w, m in zip(kernels, masks)], biases, config.activation)
        self.dim, self.params = d, p
        deg = made_degrees(d, config.hidden)[1:]
        # per hidden layer and step k, the units of degree k (they see the inputs < k + 1)
        self.steps = [[np.flatnonzero(g == k) for k in range(d)] for g in deg]

    def __call__(self, x):
        return self.net(x).reshape(x.shape[0], self.dim, self.params)

    def forward_pass(self, z, column):
        """The autoregressive direction ``y_k, ldj_k = column(params_k(y_<k), z_k)`` in one
        network pass in all: each hidden unit is computed once, at the step where its inputs
        are final (as :func:`likeflow.flows.tf_flow._made_forward`). Returns ``y`` and the
        summed ``log dy/dz``."""
        n, d, p = z.shape[0], self.dim, self.params
        ws, bs, act = self.net.kernels, self.net.biases, self.net.act
        y = np.zeros_like(z)
        ldj = np.zeros(n)
        hs = [np.zeros((n, w.shape[1])) for w in ws[:-1]]
        for k in range(d):
            for layer, units in enumerate(self.steps):
                u = units[k]
                if u.size:
                    inp = y[:, :k] if layer == 0 else hs[layer - 1]
                    w = ws[0][:k, u] if layer == 0 else ws[layer][:, u]
                    hs[layer][:, u] = act(inp @ w + bs[layer][u])
            cols = slice(k * p, (k + 1) * p)
            params = hs[-1] @ ws[-1][:, cols] + bs[-1][cols]
            y[:, k], part = column(params, z[:, k])
            ldj = ldj + part
        return y, ldj


def logsumexp0(a: np.ndarray) -> np.ndarray:
    """log sum exp over the first axis (-inf where every part is -inf, nan where one is nan):
    scipy's ``special.logsumexp`` computes the same but costs 0.4 ms a call in argument
    handling, a sixth of an optimiser step on a reflected 60-dim MAF (the fold's images)."""
    m = np.max(a, axis=0)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.log(np.sum(np.exp(a - m), axis=0)) + m


def sum_gradient(log_parts: np.ndarray, grads: list[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """log sum_i exp(l_i) over parts (rows of ``log_parts``, (k, n)) and its gradient from
    the parts' gradients (k of (n, D)): each weighted by its share exp(l_i) / sum. The fold's
    images and a mixture's flows add up so; nan where the sum is 0."""
    total = logsumexp0(log_parts)
    with np.errstate(invalid="ignore"):
        share = np.exp(log_parts - total)
    grad = sum(np.where(sh[:, None] > 0, sh[:, None] * g, 0.0) for sh, g in zip(share, grads))
    return total, np.where(np.isfinite(total)[:, None], grad, np.nan)


def _image_signs(plan: BoundPlan) -> list[np.ndarray]:
    """d image / d x of each mirror image (the same order): the images are affine in x, so
    their slopes are the images of a unit row less those of a zero row, by the one rule of
    :meth:`likeflow.flows.plan.BoundPlan.images`."""
    probe = np.vstack([np.zeros(plan.dim), np.ones(plan.dim)])
    images = plan.images(plan.numpy, probe)
    return [img[1] - img[0] for img in images]


# --- the layers of the chain ----------------------------------------------------------------

class Autoregressive:
    """A MAF / A-NSF layer: ``y = T_{params(y_<k)}(x)``."""

    def __init__(self, made: Made, make: callable):
        self.made, self.make = made, make

    def inverse(self, y):
        x, ldj = self.make(self.made(y)).inverse(y)
        return x, ldj.sum(axis=-1)

    def inverse_grad(self, y):
        """:meth:`inverse` and ``back(gx) -> gy`` for ``sum(gx * x) + ldj``."""
        out, net_back = self.made.net.with_grad(y)
        x, ldj, back_t = self.make(out.reshape(y.shape[0], self.made.dim,
                                               self.made.params)).inverse_grad(y)

        def back(gx):
            gy, gp = back_t(gx)
            return gy + net_back(gp.reshape(len(gy), self.made.dim * self.made.params))

        return x, ldj.sum(axis=-1), back

    def forward(self, z):
        """``(y, log |dy/dz|)`` (n,): the sampling direction."""
        return self.made.forward_pass(z, lambda p, zk: self.make(p).forward(zk))


class Coupling:
    """A RealNVP / C-NSF layer: the first D // 2 dimensions condition the others."""

    def __init__(self, mlp: Dense, dim: int, n_params: int, make: callable):
        self.mlp, self.m, self.p, self.make = mlp, dim // 2, n_params, make
        self.n = dim - dim // 2         # the transformed dimensions (sizes written out: 0 rows)

    def _transform(self, x0):
        p = self.mlp(x0)
        return self.make(p.reshape(x0.shape[0], self.n, self.p))

    def inverse(self, y):
        x1, ldj = self._transform(y[:, :self.m]).inverse(y[:, self.m:])
        return np.concatenate([y[:, :self.m], x1], axis=1), ldj.sum(axis=-1)

    def inverse_grad(self, y):
        """:meth:`inverse` and ``back(gx) -> gy`` for ``sum(gx * x) + ldj``."""
        m = self.m
        out, net_back = self.mlp.with_grad(y[:, :m])
        x1, ldj, back_t = self.make(out.reshape(len(y), self.n, self.p)).inverse_grad(y[:, m:])

        def back(gx):
            gy1, gp = back_t(gx[:, m:])
            gy0 = gx[:, :m] + net_back(gp.reshape(len(gy1), self.n * self.p))
            return np.concatenate([gy0, gy1], axis=1)

        return np.concatenate([y[:, :m], x1], axis=1), ldj.sum(axis=-1), back

    def forward(self, z):
        y1, ldj = self._transform(z[:, :self.m]).forward(z[:, self.m:])
        return np.concatenate([z[:, :self.m], y1], axis=1), ldj.sum(axis=-1)


class Permute:
    def __init__(self, perm):
        self.perm = np.asarray(perm)
        self.inv = np.argsort(self.perm)

    def inverse(self, y):
        return y[:, self.inv], 0.0

    def inverse_grad(self, y):
        def back(gx):
            gy = np.empty_like(gx)
            gy[:, self.inv] = gx
            return gy
        return y[:, self.inv], 0.0, back

    def forward(self, z):
        return z[:, self.perm], 0.0


class Marginal:
    def __init__(self, params, bins, bound):
        self.params = params
        self.spline = Spline(params, bins, bound)

    def inverse(self, y):
        x, ldj = self.spline.inverse(y)
        return x, ldj.sum(axis=-1)

    def inverse_grad(self, y):
        x, ldj, back = self.spline.inverse_grad(y)
        return x, ldj.sum(axis=-1), lambda gx: back(gx)[0]

    def forward(self, z):
        y, ldj = self.spline.forward(z)
        return y, ldj.sum(axis=-1)


class Whiten:
    """``u = L v`` (:attr:`FlowConfig.whiten`): back through ``L``'s inverse (a triangular
    solve, once), forward through ``L``."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.inv = solve_triangular(matrix, np.eye(len(matrix)), lower=True)
        self.log_det = float(np.sum(np.log(np.diag(matrix))))

    def inverse(self, y):
        return y @ self.inv.T, -self.log_det

    def inverse_grad(self, y):
        v, ldj = self.inverse(y)
        return v, ldj, lambda gv: gv @ self.inv

    def forward(self, z):
        return z @ self.matrix.T, self.log_det


class NumpyFlow:
    """A flow of a surrogate file in numpy: the interface of :class:`likeflow.flows.tf_flow.Flow`
    on numpy arrays (``log_prob``, ``unfolded_log_prob``, ``to_latent``, ``from_latent``),
    computed in float64.

    Args:
        config: the file's flow config.
        weights: its weight arrays in file order (:func:`weight_roles`).
        names: the arrays' variable names (kept for writing the file again).
    """

    def __init__(self, config: FlowConfig, weights: list[np.ndarray],
                 names: list[str] | None = None):
        shapes = expected_weight_shapes(config)
        if [tuple(np.shape(w)) for w in weights] != shapes:
            raise ValueError("the weight arrays do not match the config's shapes")
        self.config = config
        self.dtype = np.dtype(config.dtype)   # of the file; computing is in float64
        self.weights = [np.asarray(w) for w in weights]
        self.names = list(names) if names is not None else weight_roles(config)
        byrole = dict(zip(weight_roles(config), (np.asarray(w, np.float64) for w in weights)))
        make = transformer(config)
        n_dense = len(config.hidden) + 1
        order: list = []
        for layer in range(config.layers):
            ks = [byrole[f"layer{layer}/dense{j}/kernel"] for j in range(n_dense)]
            bs = [byrole[f"layer{layer}/dense{j}/bias"] for j in range(n_dense)]
            if config.conditioner == "autoregressive":
                order.append(Autoregressive(Made(config, ks, bs), make))
            else:
                order.append(Coupling(Dense(ks, bs, config.activation), config.dim,
                                       config.params_per_dimension, make))
            if layer < len(config.permutations):
                order.append(Permute(config.permutations[layer]))
        if config.whiten:
            order.append(Whiten(byrole["whiten"]))
        if config.marginal_spline:
            order.append(Marginal(byrole["marginal_spline"], config.bins, config.spline_range))
        self.layers = order      # in the forward (sampling) direction, preprocessing aside
        self.plan = BoundPlan.of(config)
        self.preprocess = self.plan.numpy_map

    def _inner_log_prob(self, u):
        """Log density of the flow before preprocessing, at standardised ``u``."""
        ldj = np.zeros(len(u))
        for layer in reversed(self.layers):
            u, part = layer.inverse(u)
            ldj = ldj + part
        d = self.config.dim
        return -0.5 * np.sum(u * u, axis=1) - 0.5 * d * _LOG_2PI + ldj

    def _inner_log_prob_grad(self, u):
        """:meth:`_inner_log_prob` and its gradient with respect to ``u``: the layers'
        inverses forward, their reverse passes back from the base density's -z."""
        ldj = np.zeros(len(u))
        backs = []
        for layer in reversed(self.layers):
            u, part, back = layer.inverse_grad(u)
            ldj = ldj + part
            backs.append(back)
        d = self.config.dim
        g = -u
        for back in reversed(backs):
            g = back(g)
        return -0.5 * np.sum(u * u, axis=1) - 0.5 * d * _LOG_2PI + ldj, g

    def unfolded_log_prob_grad(self, x):
        """:meth:`unfolded_log_prob` and its gradient with respect to ``x`` (n, D)."""
        x = np.asarray(x, np.float64)
        pre = self.preprocess
        with np.errstate(all="ignore"):
            u = pre.inverse(x)
            lp, g_u = self._inner_log_prob_grad(u)
            lp = lp - pre.forward_log_det(u)
            return lp, (g_u - pre.forward_log_det_grad(u)) * pre.inverse_derivative(x)

    def log_prob_grad(self, x):
        """:meth:`log_prob` and its exact gradient with respect to ``x`` (n, D), by reverse
        mode through every layer, the bound maps and the fold (no finite differences): the
        gradient L-BFGS needs without TensorFlow. Where the density is 0 the gradient is nan.

        Example:
            >>> cfg = FlowConfig(dim=2, flow="maf", layers=2, hidden=(4,))
            >>> flow = NumpyFlow(cfg, [np.zeros(s) for s in expected_weight_shapes(cfg)])
            >>> flow.log_prob_grad(np.array([[1.0, -2.0]]))[1]   # N(0, I): -x
            array([[-1.,  2.]])
        """
        x = np.asarray(x, np.float64)
        if not self.config.reflect:
            return self.unfolded_log_prob_grad(x)
        images, ok = self.plan.mirror_images(x)
        signs = _image_signs(self.plan)
        # the images in one batch: one pass through the layers (an optimiser's few points
        # cost the calls, not the arithmetic)
        lp, grad = self.unfolded_log_prob_grad(np.concatenate(images))
        lp, grad = lp.reshape(len(images), len(x)), grad.reshape(len(images), *x.shape)
        return sum_gradient(np.where(ok & ~np.isnan(lp), lp, -np.inf),
                            [sign * g for sign, g in zip(signs, grad)])

    def unfolded_log_prob(self, x):
        """The flow's own density on its extended range (no fold), the probit map and the soft
        clip held as :meth:`likeflow.flows.tf_flow.Flow.log_prob` holds them."""
        x = np.asarray(x, np.float64)
        with np.errstate(all="ignore"):
            u = self.preprocess.inverse(x)
            return self._inner_log_prob(u) - self.preprocess.forward_log_det(u)

    def log_prob(self, x):
        """Log density at physical points (n, D): the fold over the mirror images across the
        reflected bounds (one image without reflections)."""
        x = np.asarray(x, np.float64)
        if not self.config.reflect:
            return self.unfolded_log_prob(x)
        images, ok = self.plan.mirror_images(x)
        lp = self.unfolded_log_prob(np.concatenate(images)).reshape(len(images), len(x))
        lp = np.where(ok & ~np.isnan(lp), lp, -np.inf)
        return logsumexp0(lp)

    def to_latent(self, x):
        """Physical points -> base space, the exact inverse of sampling (no hold)."""
        with np.errstate(all="ignore"):
            u = self.preprocess.inverse(np.asarray(x, np.float64), held=False)
            for layer in reversed(self.layers):
                u, _ = layer.inverse(u)
        return u

    def _forward(self, z):
        """Base space -> standardised ``u`` and ``log |du/dz|`` (n,): the layers forward."""
        ldj = np.zeros(len(z))
        with np.errstate(all="ignore"):
            for layer in self.layers:
                z, part = layer.forward(z)
                ldj = ldj + part
        return z, ldj

    def from_latent(self, z, *, fold: bool = True):
        """Base space -> physical points, folded at reflected bounds (``fold=False``: points
        of the flow's extended range, the exact inverse of :meth:`to_latent`)."""
        u, _ = self._forward(np.asarray(z, np.float64))
        with np.errstate(all="ignore"):
            x = self.preprocess.forward(u)
        return self.plan.fold(self.plan.numpy, x) if fold else x

    def from_latent_log_prob(self, z):
        """:meth:`from_latent` (folded) and :meth:`log_prob` at the points, in one pass: the
        sampling direction carries its Jacobian, so a draw's density costs no inverse pass
        (the candidates of a fit's starting points: half a CLs test's first call on the numpy
        reader). Where the bound maps' inverse would not return the draw's ``u`` (the holds,
        the clips at a bound) the density is :meth:`log_prob`'s own; of a reflected flow's
        mirror images, only the draw's own is not evaluated again.

        Example:
            >>> cfg = FlowConfig(dim=2, flow="maf", layers=2, hidden=(4,))
            >>> flow = NumpyFlow(cfg, [np.zeros(s) for s in expected_weight_shapes(cfg)])
            >>> z = np.array([[0.5, -1.0]])
            >>> x, lp = flow.from_latent_log_prob(z)
            >>> bool(np.allclose(lp, flow.log_prob(x)))
            True
        """
        z = np.asarray(z, np.float64)
        u, ldj = self._forward(z)
        pre = self.preprocess
        with np.errstate(all="ignore"):
            drawn = pre.forward(u)
            lp = (-0.5 * np.sum(z * z, axis=1) - 0.5 * self.config.dim * _LOG_2PI - ldj
                  - pre.forward_log_det(u))
            back = pre.inverse(drawn)
            same = np.all(np.abs(back - u) <= 1e-11 * (1 + np.abs(u)), axis=1) & np.isfinite(lp)
        if not same.all():
            lp[~same] = self.unfolded_log_prob(drawn[~same])
        if not self.config.reflect:
            return drawn, lp
        x = self.plan.fold(self.plan.numpy, drawn)
        images, ok = self.plan.mirror_images(x)
        # each row's own image is the first that is the draw to the bit (a bound at 0 folds
        # and mirrors exactly); a row with none (the fold rounded it: near a bound elsewhere
        # the density can be sensitive to the last bit) has every image evaluated
        own = np.array([np.all(img == drawn, axis=1) for img in images])
        first = np.where(own.any(axis=0), np.argmax(own, axis=0), -1)
        parts = np.full(ok.shape, -np.inf)
        for k, img in enumerate(images):
            mine = ok[k] & (first == k)
            parts[k, mine] = lp[mine]
            todo = ok[k] & (first != k)
            if todo.any():
                parts[k, todo] = self.unfolded_log_prob(img[todo])
        parts = np.where(np.isnan(parts), -np.inf, parts)
        return x, logsumexp0(parts)
