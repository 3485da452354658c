"""The rational-quadratic spline's formulas (Durkan et al. 2019, "Neural Spline Flows"), for any
array library: TensorFlow's (:mod:`likeflow.flows.splines`) and numpy's
(:mod:`likeflow.flows.numpy_flow`)
evaluate the same expressions, so the two readers of a file cannot drift apart.

:func:`parametrise` turns a conditioner's raw parameters into the spline (for ONNX too). The
other functions' inputs are a point's bin: its left knot (x_k, y_k), the bin's width w_k and height h_k, and the
knot slopes d_k, d_k+1; ``log``, ``sqrt`` and ``maximum`` are the library's.
"""

from __future__ import annotations

import math

# The smallest bin (a fraction of the interval) and interior knot slope: they keep a spline
# invertible in float32, and are part of what a file's weights mean.
MIN_BIN = 1e-3
MIN_SLOPE = 1e-3


def parametrise(w, h, s, bins: int, bound: float, softmax, softplus):
    """A conditioner's raw parameters -> the spline's bin widths and heights (..., K) on
    ``[-bound, bound]`` and its interior knot slopes (..., K - 1): a softmax with a minimum bin
    and a shifted softplus, so that zero parameters (a fresh layer) give the identity. The one
    definition that TensorFlow, numpy and ONNX evaluate (``softmax`` over the last axis and
    ``softplus`` are the library's)."""
    scale = 1 - bins * MIN_BIN
    widths = (softmax(w) * scale + MIN_BIN) * (2 * bound)
    heights = (softmax(h) * scale + MIN_BIN) * (2 * bound)
    # softplus(s + log(e - 1)) is 1 at s = 0: a fresh spline is the identity
    slopes = softplus(s + math.log(math.e - 1)) + MIN_SLOPE
    return widths, heights, slopes


def forward(x, x_k, w_k, y_k, h_k, d_k, d_k1, log):
    """``(y, log dy/dx)`` of points ``x`` inside their bins."""
    s = h_k / w_k
    xi = (x - x_k) / w_k
    xi1 = xi * (1 - xi)
    denom = s + (d_k1 + d_k - 2 * s) * xi1
    y = y_k + h_k * (s * xi * xi + d_k * xi1) / denom
    ldj = (2 * log(s) + log(d_k1 * xi * xi + 2 * s * xi1 + d_k * (1 - xi) * (1 - xi))
           - 2 * log(denom))
    return y, ldj


def bin_constants(w_k, h_k, d_k, d_k1, log):
    """What :func:`inverse` computes of a bin before it sees the point: ``(s, c2, a0, b0,
    2 log s)``. A spline per column (the marginal spline) has few bins and many points: it
    computes these once per bin and gathers them (:func:`inverse_in_bin`), the same numbers."""
    s = h_k / w_k
    c2 = d_k1 + d_k - 2 * s
    return s, c2, h_k * (s - d_k), h_k * d_k, 2 * log(s)


def inverse_in_bin(y, x_k, w_k, y_k, d_k, d_k1, s, c2, a0, b0, two_log_s, log, sqrt, maximum):
    """:func:`inverse` from the bin's :func:`bin_constants`."""
    dy = y - y_k
    a = a0 + dy * c2
    b = b0 - dy * c2
    c = -s * dy
    xi = 2 * c / (-b - sqrt(maximum(b * b - 4 * a * c, 0.0)))
    x = xi * w_k + x_k
    xi1 = xi * (1 - xi)
    ldj = (two_log_s + log(d_k1 * xi * xi + 2 * s * xi1 + d_k * (1 - xi) * (1 - xi))
           - 2 * log(s + c2 * xi1))
    return x, -ldj


def inverse(y, x_k, w_k, y_k, h_k, d_k, d_k1, log, sqrt, maximum):
    """``(x, log dx/dy)`` of points ``y`` inside their bins: the root in [0, 1] of the
    quadratic, in the form that stays exact when its leading coefficient is near 0."""
    return inverse_in_bin(y, x_k, w_k, y_k, d_k, d_k1, *bin_constants(w_k, h_k, d_k, d_k1, log),
                          log=log, sqrt=sqrt, maximum=maximum)


def forward_partials(x, x_k, w_k, y_k, h_k, d_k, d_k1):
    """The forward map's first derivatives in a bin, for gradients through the inverse.

    Returns ``(D, F, L)``: the slope D = dy/dx, the partials F of y and the partials L of
    log D, each a dict over ``x, x_k, w_k, y_k, h_k, d_k, d_k1`` (``F["x"]`` is D). The inverse
    x(y) is differentiated implicitly: dx/dy = 1 / D and dx/dθ = -F[θ] / D.
    """
    s = h_k / w_k
    xi, t, den, numd, den_xi, slope, l_xi = _slope_parts(x, x_k, w_k, d_k, d_k1, s)
    r = (s * xi * xi + d_k * t) / den
    # partials in (xi, s, d_k, d_k1) of den, of r = (y - y_k) / h_k and of numd
    den_s = 1 - 2 * t
    r_xi = (2 * s * xi + d_k * (1 - 2 * xi) - r * den_xi) / den
    r_s = (xi * xi - r * den_s) / den
    r_dk = (t - r * t) / den
    r_dk1 = -r * t / den
    l_s = 2 / s + 2 * t / numd - 2 * den_s / den
    l_dk = (1 - xi) * (1 - xi) / numd - 2 * t / den
    l_dk1 = xi * xi / numd - 2 * t / den
    # chain rule to the bin's quantities: dxi/dx = 1/w, dxi/dx_k = -1/w, dxi/dw = -xi/w,
    # ds/dh = 1/w, ds/dw = -s/w
    f = {"x": h_k * r_xi / w_k, "x_k": -h_k * r_xi / w_k,
         "w_k": -h_k * (xi * r_xi + s * r_s) / w_k, "y_k": 1.0 + 0 * x,
         "h_k": r + r_s * s, "d_k": h_k * r_dk, "d_k1": h_k * r_dk1}
    ell = {"x": l_xi / w_k, "x_k": -l_xi / w_k, "w_k": -(xi * l_xi + s * l_s) / w_k,
           "y_k": 0 * x, "h_k": l_s / w_k, "d_k": l_dk, "d_k1": l_dk1}
    return slope, f, ell


def slope_partials(x, x_k, w_k, d_k, d_k1, s):
    """Of :func:`forward_partials`, only the slope ``D`` and ``L["x"]`` (the partial of log D
    in x), from the bin's ``s = h_k / w_k``: all that a spline without conditioner (the
    marginal spline) needs for its gradient; the same numbers, a third of the work."""
    *_, slope, l_xi = _slope_parts(x, x_k, w_k, d_k, d_k1, s)
    return slope, l_xi / w_k


def _slope_parts(x, x_k, w_k, d_k, d_k1, s):
    """What the forward map's slope and its partial in x share (one formula for both
    callers): ``xi, xi (1 - xi), the denominator, the slope's numerator, d den / d xi, the
    slope D and d log D / d xi``."""
    xi = (x - x_k) / w_k
    t = xi * (1 - xi)
    c2 = d_k1 + d_k - 2 * s
    den = s + c2 * t
    numd = d_k1 * xi * xi + 2 * s * t + d_k * (1 - xi) * (1 - xi)
    den_xi = c2 * (1 - 2 * xi)
    l_xi = (2 * d_k1 * xi + 2 * s * (1 - 2 * xi) - 2 * d_k * (1 - xi)) / numd - 2 * den_xi / den
    slope = s * s * numd / (den * den)
    return xi, t, den, numd, den_xi, slope, l_xi
