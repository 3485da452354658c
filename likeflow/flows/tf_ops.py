"""The bound plan (:mod:`likeflow.flows.plan`) in TensorFlow: :class:`TensorOps`, the namespace
that evaluates it, and :class:`Preprocess`, the bound map as a TFP bijector (the last layer of
every TensorFlow flow, and what MCMC and inference's compiled gradients move through:
:meth:`likeflow.flows.plan.BoundPlan.bijector`)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from ..tfsetup import import_tf

tf, tfp, _ = import_tf()
tfb = tfp.bijectors



class TensorOps:
    """The bound plan's namespace in TensorFlow (:mod:`likeflow.flows.plan`): every map on
    every column, the right one selected by its mask; a masked-out column is computed from a
    safe stand-in (:meth:`guard`), so that its gradient, multiplied by zero, stays finite."""

    where, maximum, minimum = staticmethod(tf.where), staticmethod(tf.maximum), \
        staticmethod(tf.minimum)
    clip, square, abs = staticmethod(tf.clip_by_value), staticmethod(tf.square), \
        staticmethod(tf.abs)
    log, log1p, ndtri = staticmethod(tf.math.log), staticmethod(tf.math.log1p), \
        staticmethod(tf.math.ndtri)
    sigmoid, log_sigmoid, softplus = staticmethod(tf.sigmoid), \
        staticmethod(tf.math.log_sigmoid), staticmethod(tf.nn.softplus)
    softplus_inverse = staticmethod(tfp.math.softplus_inverse)
    log1mexp = staticmethod(tfp.math.log1mexp)
    logical_and = staticmethod(tf.logical_and)

    def __init__(self, plan, dtype):
        # eager constants, usable from every traced function
        with tf.init_scope():
            self._consts = SimpleNamespace(**{k: tf.constant(v, dtype=dtype)
                                              for k, v in plan.constants.items()})
            self._masks = {}
            for group, cols in plan.columns.items():
                mask = np.zeros(plan.dim, bool)
                mask[cols] = True
                self._masks[group] = tf.constant(mask)
            self._clip_lo = tf.constant(plan.clip_lo, dtype=dtype)
            self._clip_hi = tf.constant(plan.clip_hi, dtype=dtype)

    @staticmethod
    def ndtr(v):
        return 0.5 * tf.math.erfc(-v / math.sqrt(2.0))

    def consts(self, group):
        return self._consts

    @staticmethod
    def take(v, group):
        return v

    def guard(self, value, group, safe):
        return tf.where(self._masks[group], value, safe)

    def assemble(self, base, parts):
        for group, values in parts:
            base = tf.where(self._masks[group], values, base)
        return base

    def clip_columns(self, x, group):
        return tf.clip_by_value(x, self._clip_lo, self._clip_hi)

    def row_sum(self, parts, base, like):
        total = tf.zeros_like(like)
        for group, values in reversed(parts):
            total = tf.where(self._masks[group], values, total)
        return tf.reduce_sum(total, axis=-1) + base

    @staticmethod
    def column(a, i):
        return a[..., i]

    def with_column(self, a, i, fn):
        hot = tf.one_hot(i, a.shape[-1], on_value=True, off_value=False)
        return tf.where(hot, fn(a), a)


class Preprocess(tfb.Bijector):
    """Standardised unbounded space -> physical parameters, keeping all mass inside bounds:
    the :class:`~likeflow.flows.plan.BoundPlan` evaluated in TensorFlow."""

    def __init__(self, plan, dtype, held: bool = True):
        super().__init__(forward_min_event_ndims=1, validate_args=False, dtype=dtype,
                         name="preprocess")
        self.plan = plan
        self._held = held
        self._ops = TensorOps(plan, dtype)

    def _forward(self, u):
        return self.plan.forward(self._ops, u)

    def _inverse(self, x):
        return self.plan.inverse(self._ops, x, self._held)

    def _forward_log_det_jacobian(self, u):
        return self.plan.forward_log_det(self._ops, u)
