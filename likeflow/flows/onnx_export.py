"""A surrogate as an ONNX graph: its log density (and, for coupling flows, its sampling map)
for any ONNX runtime, built from the file's weights with the ``onnx`` helper API.

``export_onnx(surrogate, path)`` writes a model with

- input ``x`` (n, D) -> output ``log_prob`` (n,): the surrogate's ``log_prob`` (the holds of
  the probit map and the soft clip, the fold at reflected bounds, -inf outside the bounds),
  for all four flows;
- input ``z`` (n, D) -> output ``x_of_z`` (n, D): ``from_latent``, the map from standard-normal
  draws to samples, for the coupling flows (``realnvp``, ``cnsf``), whose sampling is one pass.
  The autoregressive flows (``maf``, ``ansf``) sample in D sequential steps (each dimension
  needs the ones before it); as a graph that is D copies of the network, so it is not
  exported: sample those with likeflow (numpy or TensorFlow);
- metadata: the parameter names, POIs, bounds, flow, dtype, likeflow version and the source
  file, as JSON strings (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``).

The graph computes in float64 by default (it then equals likeflow's numpy reader to ~1e-12);
``dtype="float32"`` gives a smaller, faster graph with float32 rounding. It uses only standard
ONNX operators (opset 18); the normal quantile function, which ONNX lacks, is Wichura's AS241
rational approximation (1e-16 relative), and ``log(expm1(y))`` a series near 0.

Example:
    >>> import likeflow                                                  # doctest: +SKIP
    >>> likeflow.export_onnx(likeflow.load("toy.likeflow.h5"), "toy.onnx")  # doctest: +SKIP
    >>> import onnxruntime as ort                                        # doctest: +SKIP
    >>> ort.InferenceSession("toy.onnx").run(["log_prob"], {"x": points})   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import numpy as np

from .._version import __version__
from ..errors import LikeflowError
from . import affine, rq
from .numpy_flow import NumpyFlow, Autoregressive, Coupling, Marginal, Permute, Whiten
from .plan import BoundPlan

OPSET = 18

# Wichura (1988), AS241 PPND16: the normal quantile to 1e-16 in three regions
_AS241 = {
    "a": [3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
          1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
          3.3430575583588128105e+4, 2.5090809287301226727e+3],
    "b": [1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
          2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
          5.2264952788528545610e+3],
    "c": [1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
          3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
          2.27238449892691845833e-2, 7.74545014278341407640e-4],
    "d": [1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
          1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
          1.05075007164441684324e-9],
    "e": [6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0,
          2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
          2.71155556874348757815e-5, 2.01033439929228813265e-7],
    "f": [1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
          7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
          2.04426310338993978564e-15],
}


class _Graph:
    """Nodes and constants of an ONNX graph under construction; tensors are names."""

    def __init__(self, dtype: str):
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.dtype = np.dtype(dtype)
        self.elem = TensorProto.DOUBLE if self.dtype == np.float64 else TensorProto.FLOAT
        self.nodes, self.inits = [], []
        self._count = 0
        self._consts: dict[tuple, str] = {}   # one initialiser per distinct constant

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value, *, integer: bool = False, boolean: bool = False) -> str:
        array = np.asarray(value, dtype=np.int64 if integer else
                           (np.bool_ if boolean else self.dtype))
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = name = self._name("c")
            self.inits.append(self.numpy_helper.from_array(array, name))
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    # arithmetic with constants written as numbers
    def _t(self, a):
        return a if isinstance(a, str) else self.const(a)

    def add(self, a, b): return self.op("Add", self._t(a), self._t(b))
    def sub(self, a, b): return self.op("Sub", self._t(a), self._t(b))
    def mul(self, a, b): return self.op("Mul", self._t(a), self._t(b))
    def div(self, a, b): return self.op("Div", self._t(a), self._t(b))
    def exp(self, a): return self.op("Exp", a)
    def log(self, a): return self.op("Log", a)
    def neg(self, a): return self.op("Neg", a)
    def abs(self, a): return self.op("Abs", a)
    def sqrt(self, a): return self.op("Sqrt", a)
    def where(self, c, a, b): return self.op("Where", c, self._t(a), self._t(b))
    def less(self, a, b): return self.op("Less", self._t(a), self._t(b))
    def maximum(self, a, b): return self.op("Max", self._t(a), self._t(b))
    def minimum(self, a, b): return self.op("Min", self._t(a), self._t(b))

    def fill(self, like: str, value, *, boolean: bool = False) -> str:
        """A (n,) tensor of ``value``, n the rows of the (n, D) tensor ``like``."""
        n = self.op("Slice", self.op("Shape", like), self.const([0], integer=True),
                    self.const([1], integer=True))
        dtype = np.bool_ if boolean else self.dtype
        return self.op("ConstantOfShape", n, value=self.numpy_helper.from_array(
            np.array([value], dtype=dtype)))

    def clip(self, a, lo, hi):
        return self.minimum(self.maximum(a, lo), hi)

    def sum_last(self, a, keepdims: int = 0):
        return self.op("ReduceSum", a, self.const([-1], integer=True), keepdims=keepdims)

    def cols(self, a, idx):
        """The columns ``idx`` of a (n, D) tensor."""
        return self.op("Gather", a, self.const(np.asarray(idx), integer=True), axis=1)

    def softplus(self, a):  # max(a, 0) + log(1 + exp(-|a|)), stable for any a
        return self.add(self.maximum(a, 0.0), self.log(self.add(self.exp(self.neg(self.abs(a))),
                                                                1.0)))

    def log_sigmoid(self, a):
        return self.neg(self.softplus(self.neg(a)))

    def sigmoid(self, a):
        return self.op("Sigmoid", a)

    def softplus_inverse(self, y):
        """log(exp(y) - 1): y + log(1 - exp(-y)), and a series near 0 where that cancels."""
        far = self.add(y, self.log(self.sub(1.0, self.exp(self.neg(y)))))
        near = self.add(self.log(y), self.add(self.mul(y, 0.5), self.mul(self.mul(y, y),
                                                                         1.0 / 24)))
        # the series' next term is y^4 / 2880: below the precision up to these y
        edge = 1e-3 if self.dtype == np.float64 else 0.1
        return self.where(self.less(y, edge), near, far)

    def poly(self, coefs, r):
        out = self.const(coefs[-1])
        for c in reversed(coefs[:-1]):
            out = self.add(self.mul(out, r), c)
        return out

    def ndtri(self, p):
        """The standard normal quantile (AS241)."""
        c = _AS241
        q = self.sub(p, 0.5)
        r1 = self.sub(0.180625, self.mul(q, q))
        central = self.mul(q, self.div(self.poly(c["a"], r1), self.poly(c["b"], r1)))
        tail_p = self.maximum(self.minimum(p, self.sub(1.0, p)), 1e-300)
        r = self.sqrt(self.neg(self.log(tail_p)))
        r_mid, r_far = self.sub(r, 1.6), self.sub(r, 5.0)
        mid = self.div(self.poly(c["c"], r_mid), self.poly(c["d"], r_mid))
        far = self.div(self.poly(c["e"], r_far), self.poly(c["f"], r_far))
        tail = self.where(self.op("LessOrEqual", r, self.const(5.0)), mid, far)
        tail = self.where(self.less(q, 0.0), self.neg(tail), tail)
        return self.where(self.op("LessOrEqual", self.abs(q), self.const(0.425)), central, tail)

    def erf(self, a):
        """Erf (onnxruntime has it in float32 only: a float64 graph casts around it)."""
        if self.dtype == np.float32:
            return self.op("Erf", a)
        return self.op("Cast", self.op("Erf", self.op("Cast", a, to=1)), to=11)

    def ndtr(self, v):
        """The standard normal CDF for v <= 0: float32 erf (an asymptotic series below -5,
        where it has no digits left), refined by two Newton steps on the AS241 quantile."""
        p32 = self.mul(0.5, self.add(1.0, self.erf(self.mul(v, 1 / math.sqrt(2.0)))))
        phi = self.mul(self.exp(self.mul(self.mul(v, v), -0.5)), 1 / math.sqrt(2 * math.pi))
        w = self.div(1.0, self.mul(v, v))
        series = self.add(1.0, self.mul(w, self.add(-1.0, self.mul(w, self.add(
            3.0, self.mul(w, -15.0))))))
        asym = self.div(self.mul(phi, series), self.neg(v))
        p = self.where(self.less(v, -5.0), asym, p32)
        p = self.maximum(p, np.finfo(self.dtype).tiny)
        for _ in range(2):
            p = self.maximum(self.sub(p, self.mul(self.sub(self.ndtri(p), v), phi)),
                             np.finfo(self.dtype).tiny)
        return self.where(self.op("Equal", phi, self.const(0.0)), 0.0, p)


# --- the layers ----------------------------------------------------------------------------

def _activation(g: _Graph, name: str, a: str) -> str:
    if name == "relu":
        return g.op("Relu", a)
    if name == "tanh":
        return g.op("Tanh", a)
    if name == "elu":
        return g.op("Elu", a, alpha=1.0)
    if name == "gelu":  # x Phi(x), Phi from the side where it is small
        cdf = g.where(g.less(a, 0.0), g.ndtr(g.minimum(a, 0.0)),
                      g.sub(1.0, g.ndtr(g.neg(g.maximum(a, 0.0)))))
        return g.mul(a, cdf)
    if name == "silu":
        return g.mul(a, g.sigmoid(a))
    raise LikeflowError(f"ONNX export: activation '{name}' is not supported")


def _dense(g: _Graph, net, x: str) -> str:
    for i, (w, b) in enumerate(zip(net.kernels, net.biases)):
        x = g.add(g.op("MatMul", x, g.const(w)), b)
        if i < len(net.kernels) - 1:
            x = _activation(g, g.activation, x)
    return x


class _SplineNodes:
    """A rational-quadratic spline's knots in the graph, from raw parameters (..., 3K - 1)."""

    def __init__(self, g: _Graph, params: str, bins: int, bound: float, batch_like: str | None):
        k = bins
        def part(lo, hi):
            return g.op("Slice", params, g.const([lo], integer=True), g.const([hi], integer=True),
                        g.const([-1], integer=True))
        w, h, s = (_Node(g, t) for t in (part(0, k), part(k, 2 * k), part(2 * k, 3 * k - 1)))
        widths, heights, slopes = (t.name for t in rq.parametrise(
            w, h, s, k, bound, lambda a: _Node(g, g.op("Softmax", a.name, axis=-1)),
            lambda a: _Node(g, g.softplus(a.name))))
        if batch_like is not None:  # one spline per column for all points: broadcast to them
            shape = g.op("Concat", g.op("Shape", batch_like), g.const([1], integer=True), axis=0)
            widths, heights, slopes = (g.op("Expand", t, shape) for t in (widths, heights, slopes))
        self.g, self.k = g, k
        self.kx = self._knots(widths, -bound)
        self.ky = self._knots(heights, -bound)
        one = g.op("Expand", g.const(1.0), g.op("Shape", part(0, 1)))
        if batch_like is not None:
            one = g.op("Expand", one, g.op("Shape", g.op("Unsqueeze", batch_like,
                                                         g.const([-1], integer=True))))
        self.kd = g.op("Concat", one, slopes, one, axis=-1)

    def _knots(self, sizes: str, start: float) -> str:
        g = self.g
        cum = g.op("CumSum", sizes, g.const(-1, integer=True))
        zero = g.mul(g.op("Slice", sizes, g.const([0], integer=True), g.const([1], integer=True),
                          g.const([-1], integer=True)), 0.0)
        return g.add(g.op("Concat", zero, cum, axis=-1), start)

    def _bin(self, v: str, knots: str):
        g, k = self.g, self.k
        lo = g.op("Slice", knots, g.const([0], integer=True), g.const([1], integer=True),
                  g.const([-1], integer=True))
        hi = g.op("Slice", knots, g.const([k], integer=True), g.const([k + 1], integer=True),
                  g.const([-1], integer=True))
        v1 = g.op("Unsqueeze", v, g.const([-1], integer=True))
        inside = g.op("And", g.op("Greater", v1, lo), g.op("Less", v1, hi))
        vc = g.where(inside, v1, lo)
        interior = g.op("Slice", knots, g.const([1], integer=True), g.const([k], integer=True),
                        g.const([-1], integer=True))
        below = g.op("Cast", g.op("GreaterOrEqual", vc, interior), to=7)  # int64
        idx = g.op("ReduceSum", below, g.const([-1], integer=True), keepdims=1)
        nxt = g.op("Add", idx, g.const([1], integer=True))

        def pick(a, i):
            return g.op("GatherElements", a, i, axis=-1)

        kx, ky, kd = self.kx, self.ky, self.kd
        x_k, y_k = pick(kx, idx), pick(ky, idx)
        return (vc, inside, x_k, g.sub(pick(kx, nxt), x_k), y_k, g.sub(pick(ky, nxt), y_k),
                pick(kd, idx), pick(kd, nxt))

    def _squeeze(self, a: str) -> str:
        return self.g.op("Squeeze", a, self.g.const([-1], integer=True))

    def inverse(self, y: str):
        """(x, log dx/dy) elementwise."""
        g = self.g
        yc, inside, x_k, w_k, y_k, h_k, d_k, d_k1 = self._bin(y, self.ky)
        s = g.div(h_k, w_k)
        dy = g.sub(yc, y_k)
        c2 = g.sub(g.add(d_k1, d_k), g.mul(s, 2.0))
        a = g.add(g.mul(h_k, g.sub(s, d_k)), g.mul(dy, c2))
        b = g.sub(g.mul(h_k, d_k), g.mul(dy, c2))
        c = g.neg(g.mul(s, dy))
        disc = g.maximum(g.sub(g.mul(b, b), g.mul(g.mul(a, c), 4.0)), 0.0)
        denom = g.sub(g.neg(b), g.sqrt(disc))
        safe = g.where(g.op("Equal", denom, g.const(0.0)), 1.0, denom)
        xi = g.where(inside, g.div(g.mul(c, 2.0), safe), 0.0)
        x = g.add(g.mul(xi, w_k), x_k)
        xi1 = g.mul(xi, g.sub(1.0, xi))
        one_xi = g.sub(1.0, xi)
        num = g.add(g.add(g.mul(d_k1, g.mul(xi, xi)), g.mul(g.mul(s, 2.0), xi1)),
                    g.mul(d_k, g.mul(one_xi, one_xi)))
        ldj = g.sub(g.add(g.mul(g.log(s), 2.0), g.log(num)),
                    g.mul(g.log(g.add(s, g.mul(c2, xi1))), 2.0))
        y1 = g.op("Unsqueeze", y, g.const([-1], integer=True))
        x = self._squeeze(g.where(inside, x, y1))
        return x, self._squeeze(g.where(inside, g.neg(ldj), 0.0))

    def forward(self, x: str) -> str:
        g = self.g
        xc, inside, x_k, w_k, y_k, h_k, d_k, d_k1 = self._bin(x, self.kx)
        s = g.div(h_k, w_k)
        xi = g.div(g.sub(xc, x_k), w_k)
        xi1 = g.mul(xi, g.sub(1.0, xi))
        denom = g.add(s, g.mul(g.sub(g.add(d_k1, d_k), g.mul(s, 2.0)), xi1))
        y = g.add(y_k, g.div(g.mul(h_k, g.add(g.mul(s, g.mul(xi, xi)), g.mul(d_k, xi1))), denom))
        x1 = g.op("Unsqueeze", x, g.const([-1], integer=True))
        return self._squeeze(g.where(inside, y, x1))


def _affine(g: _Graph, cfg, params: str) -> tuple[str, str]:
    """Shift and soft-clamped log scale from raw parameters (n, d, 2)."""
    def param(k):
        part = g.op("Slice", params, g.const([k], integer=True), g.const([k + 1], integer=True),
                    g.const([-1], integer=True))
        return g.op("Squeeze", part, g.const([-1], integer=True))

    log_scale = affine.log_scale(_Node(g, param(1)), cfg.log_scale_clamp,
                                 lambda a: _Node(g, g.op("Tanh", _name(a))))
    return param(0), _name(log_scale)


def _transform_inverse(g: _Graph, cfg, params: str, y: str):
    """The transformer's inverse on ``y`` (n, d) with raw parameters (n, d, P): (x, ldj (n,))."""
    if cfg.transformer == "affine":
        shift, log_scale = _affine(g, cfg, params)
        return g.mul(g.sub(y, shift), g.exp(g.neg(log_scale))), g.neg(g.sum_last(log_scale))
    spline = _SplineNodes(g, params, cfg.bins, cfg.spline_range, None)
    x, ldj = spline.inverse(y)
    return x, g.sum_last(ldj)


def _transform_forward(g: _Graph, cfg, params: str, z: str) -> str:
    if cfg.transformer == "affine":
        shift, log_scale = _affine(g, cfg, params)
        return g.add(shift, g.mul(g.exp(log_scale), z))
    return _SplineNodes(g, params, cfg.bins, cfg.spline_range, None).forward(z)


def _reshape_params(g: _Graph, p: str, d: int, n_params: int) -> str:
    return g.op("Reshape", p, g.const([-1, d, n_params], integer=True))


def _layer_inverse(g: _Graph, cfg, layer, y: str):
    if isinstance(layer, Permute):
        return g.cols(y, layer.inv), None
    if isinstance(layer, Whiten):
        return g.op("MatMul", y, g.const(layer.inv.T)), -layer.log_det
    if isinstance(layer, Marginal):
        sp = _SplineNodes(g, g.const(layer.params), cfg.bins, cfg.spline_range, y)
        x, ldj = sp.inverse(y)
        return x, g.sum_last(ldj)
    if isinstance(layer, Autoregressive):
        params = _reshape_params(g, _dense(g, layer.made.net, y), cfg.dim,
                                 cfg.params_per_dimension)
        return _transform_inverse(g, cfg, params, y)
    if isinstance(layer, Coupling):
        m, d = layer.m, cfg.dim
        y0, y1 = g.cols(y, range(m)), g.cols(y, range(m, d))
        params = _reshape_params(g, _dense(g, layer.mlp, y0), d - m, cfg.params_per_dimension)
        x1, ldj = _transform_inverse(g, cfg, params, y1)
        return g.op("Concat", y0, x1, axis=1), ldj
    raise LikeflowError(f"ONNX export: unknown layer {type(layer).__name__}")


def _layer_forward(g: _Graph, cfg, layer, z: str) -> str:
    if isinstance(layer, Permute):
        return g.cols(z, layer.perm)
    if isinstance(layer, Whiten):
        return g.op("MatMul", z, g.const(layer.matrix.T))
    if isinstance(layer, Marginal):
        return _SplineNodes(g, g.const(layer.params), cfg.bins, cfg.spline_range,
                            z).forward(z)
    if isinstance(layer, Coupling):
        m, d = layer.m, cfg.dim
        z0, z1 = g.cols(z, range(m)), g.cols(z, range(m, d))
        params = _reshape_params(g, _dense(g, layer.mlp, z0), d - m, cfg.params_per_dimension)
        return g.op("Concat", z0, _transform_forward(g, cfg, params, z1), axis=1)
    raise LikeflowError("ONNX export: the autoregressive sampling pass is not exported")


# --- the bound map ---------------------------------------------------------------------------

def _regroup(g: _Graph, parts: list[tuple[np.ndarray, str]]) -> str:
    """Columns computed group by group, put back in their order."""
    parts = [(idx, t) for idx, t in parts if len(idx)]
    order = np.concatenate([idx for idx, _ in parts])
    cat = g.op("Concat", *[t for _, t in parts], axis=1) if len(parts) > 1 else parts[0][1]
    return g.cols(cat, np.argsort(order))


class _Node:
    """A tensor of a graph under construction with Python's operators, so that the bound
    plan's formulas (:mod:`likeflow.flows.plan`) build nodes as they compute numbers."""

    __array_ufunc__ = None  # numpy constants defer to these operators

    def __init__(self, g: _Graph, name: str):
        self.g, self.name = g, name

    def _wrap(self, name: str) -> "_Node":
        return _Node(self.g, name)

    def __add__(self, o): return self._wrap(self.g.add(self.name, _name(o)))
    def __radd__(self, o): return self._wrap(self.g.add(_name(o), self.name))
    def __sub__(self, o): return self._wrap(self.g.sub(self.name, _name(o)))
    def __rsub__(self, o): return self._wrap(self.g.sub(_name(o), self.name))
    def __mul__(self, o): return self._wrap(self.g.mul(self.name, _name(o)))
    def __rmul__(self, o): return self._wrap(self.g.mul(_name(o), self.name))
    def __truediv__(self, o): return self._wrap(self.g.div(self.name, _name(o)))
    def __rtruediv__(self, o): return self._wrap(self.g.div(_name(o), self.name))
    def __neg__(self): return self._wrap(self.g.neg(self.name))
    def __lt__(self, o): return self._wrap(self.g.less(self.name, _name(o)))

    def __ge__(self, o):
        return self._wrap(self.g.op("GreaterOrEqual", self.name, self.g._t(_name(o))))

    def __le__(self, o):
        return self._wrap(self.g.op("LessOrEqual", self.name, self.g._t(_name(o))))


def _name(a):
    return a.name if isinstance(a, _Node) else a


class GraphOps:
    """The bound plan's namespace as ONNX nodes: each map on its own columns (gathered, then
    concatenated back in order)."""

    def __init__(self, g: _Graph, plan: BoundPlan):
        self.g, self.plan = g, plan

    def _unary(self, method: str, a) -> _Node:
        return _Node(self.g, getattr(self.g, method)(_name(a)))

    def where(self, c, a, b): return _Node(self.g, self.g.where(_name(c), _name(a), _name(b)))
    def maximum(self, a, b): return _Node(self.g, self.g.maximum(_name(a), _name(b)))
    def minimum(self, a, b): return _Node(self.g, self.g.minimum(_name(a), _name(b)))
    def clip(self, a, lo, hi): return _Node(self.g, self.g.clip(_name(a), lo, hi))
    def square(self, a): return a * a
    def abs(self, a): return self._unary("abs", a)
    def log(self, a): return self._unary("log", a)
    def log1p(self, a): return self.log(1.0 + a)
    def ndtr(self, a): return self._unary("ndtr", a)
    def ndtri(self, a): return self._unary("ndtri", a)
    def sigmoid(self, a): return self._unary("sigmoid", a)
    def log_sigmoid(self, a): return self._unary("log_sigmoid", a)
    def softplus(self, a): return self._unary("softplus", a)
    def softplus_inverse(self, a): return self._unary("softplus_inverse", a)

    def log1mexp(self, y):
        """log(1 - exp(-y)) = softplus_inverse(y) - y."""
        return self.softplus_inverse(y) - y

    def logical_and(self, a, b):
        return _Node(self.g, self.g.op("And", _name(a), _name(b)))

    def consts(self, group):
        cols = slice(None) if group is None else self.plan.columns[group]
        return SimpleNamespace(**{k: v[cols] for k, v in self.plan.constants.items()})

    def take(self, v, group):
        return _Node(self.g, self.g.cols(_name(v), self.plan.columns[group]))

    @staticmethod
    def guard(value, group, safe):
        return value

    def assemble(self, base, parts):
        taken = np.concatenate([self.plan.columns[group] for group, _ in parts]) if parts \
            else np.array([], int)
        free = np.setdiff1d(np.arange(self.plan.dim), taken)
        pieces = [(free, self.g.cols(_name(base), free))] if len(free) else []
        pieces += [(self.plan.columns[group], _name(v)) for group, v in parts]
        return _Node(self.g, _regroup(self.g, pieces))

    def clip_columns(self, x, group):
        big = np.finfo(self.g.dtype).max
        return self.clip(x, np.where(np.isfinite(self.plan.clip_lo), self.plan.clip_lo, -big),
                         np.where(np.isfinite(self.plan.clip_hi), self.plan.clip_hi, big))

    def row_sum(self, parts, base, like):
        total = None
        for _, values in parts:
            part = _Node(self.g, self.g.sum_last(_name(values)))
            total = part if total is None else total + part
        fill = _Node(self.g, self.g.fill(_name(like), base))
        return fill if total is None else total + fill

    def column(self, a, i):
        return _Node(self.g, self.g.op("Squeeze", self.g.cols(_name(a), [i]),
                                       self.g.const([1], integer=True)))

    def with_column(self, a, i, fn):
        hot = np.zeros(self.plan.dim, bool)
        hot[i] = True
        return _Node(self.g, self.g.where(self.g.const(hot, boolean=True), _name(fn(a)),
                                          _name(a)))


# --- the two graphs ------------------------------------------------------------------------------

def _log_prob_graph(g: _Graph, flow: NumpyFlow, x: str) -> str:
    cfg, d = flow.config, flow.config.dim
    neg_inf = -np.inf
    plan = flow.plan
    ops = GraphOps(g, plan)
    # the mirror images across the reflected bounds, stacked: (2^k n, D)
    images = plan.images(ops, _Node(g, x))
    oks = [None] + [plan.image_counts(ops, img).name for img in images[1:]]
    images = [_name(img) for img in images]
    stacked = g.op("Concat", *images, axis=0) if len(images) > 1 else x
    u = plan.inverse(ops, _Node(g, stacked))
    ldj = g.neg(plan.forward_log_det(ops, u).name)
    u = u.name
    for layer in reversed(flow.layers):
        u, part = _layer_inverse(g, cfg, layer, u)
        if part is not None:
            ldj = g.add(ldj, part)
    lp = g.add(g.sub(g.mul(g.sum_last(g.mul(u, u)), -0.5), 0.5 * d * math.log(2 * math.pi)), ldj)
    if len(images) > 1:
        lp = g.op("Reshape", lp, g.const([len(images), -1], integer=True))
        true_row = g.fill(x, True, boolean=True)   # the point itself always counts
        ok = g.op("Concat", *[g.op("Unsqueeze", o if o is not None else true_row,
                                   g.const([0], integer=True)) for o in oks], axis=0)
        ok = g.op("And", ok, g.op("Not", g.op("IsNaN", lp)))
        lp = g.where(ok, lp, neg_inf)
        top = g.op("ReduceMax", lp, g.const([0], integer=True), keepdims=1)
        top = g.where(g.op("IsInf", top), 0.0, top)
        total = g.op("ReduceSum", g.exp(g.sub(lp, top)), g.const([0], integer=True), keepdims=1)
        lp = g.op("Squeeze", g.add(g.log(total), top), g.const([0], integer=True))
    # -inf outside the physical bounds and for NaN, as Surrogate.log_prob
    b = cfg.bounds_array()
    lo = np.where(np.isfinite(b[:, 0]), b[:, 0], -np.inf)
    hi = np.where(np.isfinite(b[:, 1]), b[:, 1], np.inf)
    inside = g.op("And", g.op("GreaterOrEqual", x, g.const(lo)), g.op("LessOrEqual", x, g.const(hi)))
    inside = g.op("ReduceMin", g.op("Cast", inside, to=7), g.const([-1], integer=True), keepdims=0)
    inside = g.op("Cast", inside, to=9)  # bool
    inside = g.op("And", inside, g.op("Not", g.op("IsNaN", lp)))
    return g.where(inside, lp, neg_inf)


def _sampling_graph(g: _Graph, flow: NumpyFlow, z: str) -> str:
    cfg = flow.config
    for layer in flow.layers:
        z = _layer_forward(g, cfg, layer, z)
    ops = GraphOps(g, flow.plan)
    return flow.plan.fold(ops, flow.plan.forward(ops, _Node(g, z))).name


def export_onnx(surrogate, path: str | os.PathLike, *, dtype: str = "float64",
           sampling: bool | None = None) -> dict:
    """Write ``surrogate`` as an ONNX model at ``path``; returns what was exported.

    Args:
        dtype: of the graph's inputs, outputs and arithmetic (``float64`` or ``float32``).
        sampling: add the ``z -> x_of_z`` sampling map (default: where it is one pass, the
            coupling flows); True for an autoregressive flow is an error.
    """
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise LikeflowError("ONNX export needs onnx: pip install 'likeflow[onnx]'") from None
    if dtype not in ("float32", "float64"):
        raise LikeflowError(f"ONNX export: dtype must be float32 or float64, not {dtype!r}")
    if not os.fspath(path).endswith(".onnx"):
        raise LikeflowError(f"{os.fspath(path)}: give the ONNX model a .onnx name")
    from ..fileio import check_outputs, write_bytes
    check_outputs([path], inputs=[surrogate.path])
    if surrogate.kind != "flow":
        raise LikeflowError("ONNX export: piecewise surrogates are not exported (export each "
                            "component's flow, or use likeflow's numpy reader)")
    cfg = surrogate.config
    can_sample = cfg.conditioner == "coupling"   # one pass; autoregressive flows take D
    if sampling and not can_sample:
        raise LikeflowError(f"ONNX export: a {cfg.flow} samples in {cfg.dim} sequential steps "
                            "(one per dimension), which is not exported; sample it with "
                            "likeflow, or export a coupling flow (realnvp, cnsf)")
    sampling = can_sample if sampling is None else sampling
    flow = surrogate.flow if surrogate.backend == "numpy" else NumpyFlow(
        cfg, [w for _, w in surrogate.weight_arrays()])
    g = _Graph(dtype)
    g.activation = cfg.activation
    d = cfg.dim
    x_in = helper.make_tensor_value_info("x", g.elem, ["n", d])
    lp = _log_prob_graph(g, flow, "x")
    g.nodes.append(helper.make_node("Identity", [lp], ["log_prob"]))
    inputs = [x_in]
    outputs = [helper.make_tensor_value_info("log_prob", g.elem, ["n"])]
    if sampling:
        inputs.append(helper.make_tensor_value_info("z", g.elem, ["m", d]))
        xs = _sampling_graph(g, flow, "z")
        g.nodes.append(helper.make_node("Identity", [xs], ["x_of_z"]))
        outputs.append(helper.make_tensor_value_info("x_of_z", g.elem, ["m", d]))
    graph = helper.make_graph(g.nodes, f"likeflow_{cfg.flow}", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="likeflow", producer_version=__version__,
                              doc_string=("log_prob(x): the surrogate's log density; "
                                          + ("x_of_z(z): samples from standard-normal z"
                                             if sampling else "no sampling map exported")))
    meta = {"names": cfg.names, "poi": cfg.poi, "bounds": cfg.bounds, "flow": cfg.flow,
            "dtype": dtype, "likeflow_version": __version__,
            "source": surrogate.path or "", "outputs": [o.name for o in outputs]}
    helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
    onnx.checker.check_model(model)
    write_bytes(os.fspath(path), model.SerializeToString())
    return {"path": os.fspath(path), "outputs": meta["outputs"], "nodes": len(g.nodes),
            "dtype": dtype}
