"""The rational-quadratic spline's formulas (Durkan et al. 2019, "Neural Spline Flows"), for any
array library: TensorFlow's (:mod:`likeflow.splines`) and numpy's (:mod:`likeflow.numpy_flows`)
evaluate the same expressions, so the two readers of a file cannot drift apart.

Inputs are a point's bin: its left knot (x_k, y_k), the bin's width w_k and height h_k, and the
knot slopes d_k, d_k+1; ``log``, ``sqrt`` and ``maximum`` are the library's.
"""

from __future__ import annotations


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


def inverse(y, x_k, w_k, y_k, h_k, d_k, d_k1, log, sqrt, maximum):
    """``(x, log dx/dy)`` of points ``y`` inside their bins: the root in [0, 1] of the
    quadratic, in the form that stays exact when its leading coefficient is near 0."""
    s = h_k / w_k
    dy = y - y_k
    c2 = d_k1 + d_k - 2 * s
    a = h_k * (s - d_k) + dy * c2
    b = h_k * d_k - dy * c2
    c = -s * dy
    xi = 2 * c / (-b - sqrt(maximum(b * b - 4 * a * c, 0.0)))
    x = xi * w_k + x_k
    xi1 = xi * (1 - xi)
    ldj = (2 * log(s) + log(d_k1 * xi * xi + 2 * s * xi1 + d_k * (1 - xi) * (1 - xi))
           - 2 * log(s + c2 * xi1))
    return x, -ldj
