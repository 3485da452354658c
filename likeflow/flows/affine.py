"""The affine transformer's parametrisation, written once: TensorFlow, numpy and ONNX evaluate
it (each with its own ``tanh``), as they evaluate :mod:`likeflow.flows.rq`'s spline.

A conditioner's two raw outputs per dimension are the shift and the log scale; the log scale is
soft-clamped to ``(-c, c)`` (``c = FlowConfig.log_scale_clamp``) so that one step cannot blow a
scale up, and zero outputs (a fresh layer) give the identity.

Example:
    >>> import numpy as np
    >>> float(log_scale(np.float64(0.0), 3.0, np.tanh)), float(log_scale(100.0, 3.0, np.tanh))
    (0.0, 3.0)
"""

from __future__ import annotations


def log_scale(raw, clamp: float, tanh):
    """The soft-clamped log scale ``clamp * tanh(raw / clamp)`` of a raw conditioner output."""
    return clamp * tanh(raw / clamp)


def log_scale_slope(clamped, clamp: float):
    """``d log_scale / d raw`` from the clamped value itself: ``1 - (clamped / clamp)^2`` (the
    numpy reader's reverse pass)."""
    t = clamped / clamp
    return 1 - t * t
