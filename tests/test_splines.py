"""The rational-quadratic spline of likeflow.flows.splines: TFP's function, exact inverse and
log-derivative, the same under XLA."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tfp = pytest.importorskip("tensorflow_probability")

from likeflow.flows.splines import RationalQuadraticSpline  # noqa: E402

K, B = 6, 3.0


def parts(raw: np.ndarray, dtype=tf.float64):
    """Bin widths, heights and interior slopes from unconstrained numbers, as the flows
    make them (a bin at least 1e-3 of the range, slopes at least 1e-3)."""
    p = tf.cast(raw, dtype)
    w = (tf.nn.softmax(p[..., :K]) * (1 - K * 1e-3) + 1e-3) * 2 * B
    h = (tf.nn.softmax(p[..., K:2 * K]) * (1 - K * 1e-3) + 1e-3) * 2 * B
    s = tf.nn.softplus(p[..., 2 * K:] + math.log(math.e - 1)) + 1e-3
    return w, h, s


def spline_at(raw, dtype=tf.float64):
    return RationalQuadraticSpline(*parts(raw, dtype), range_min=-B)


rows = st.integers(0, 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(rows)
def test_equals_tfps_spline_in_both_directions(seed):
    """Known answer: TFP's RationalQuadraticSpline, points inside and outside the range."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(50, 3, 3 * K - 1)) * 2
    x = tf.constant(rng.normal(size=(50, 3)) * 2.5)
    ours = spline_at(raw)
    theirs = tfp.bijectors.RationalQuadraticSpline(*parts(raw), range_min=-B)
    y = theirs.forward(x)
    np.testing.assert_allclose(ours.forward(x), y, atol=1e-12)
    np.testing.assert_allclose(ours.forward_log_det_jacobian(x, 0),
                               theirs.forward_log_det_jacobian(x, 0), atol=1e-10)
    np.testing.assert_allclose(spline_at(raw).inverse(y), x, atol=1e-9)
    np.testing.assert_allclose(spline_at(raw).inverse_log_det_jacobian(y, 0),
                               theirs.inverse_log_det_jacobian(y, 0), atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(rows)
def test_log_det_matches_autodiff(seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(40, 2, 3 * K - 1))
    x = tf.constant(rng.uniform(-1.2 * B, 1.2 * B, size=(40, 2)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, ldj = spline_at(raw).forward_and_log_det(x)
    np.testing.assert_allclose(ldj, np.log(tape.gradient(y, x)), atol=1e-9)
    with tf.GradientTape() as tape:
        tape.watch(y)
        back, ildj = spline_at(raw).inverse_and_log_det(y)
    np.testing.assert_allclose(back, x, atol=1e-9)
    np.testing.assert_allclose(ildj, np.log(tape.gradient(back, y)), atol=1e-8)
    np.testing.assert_allclose(ildj, -ldj, atol=1e-8)


def test_identity_outside_and_at_the_edges():
    raw = np.random.default_rng(0).normal(size=(1, 3 * K - 1))
    x = tf.constant([[-10.0], [-B], [B], [7.5]], tf.float64)
    s = spline_at(raw)
    np.testing.assert_allclose(s.forward(x), x, atol=1e-12)
    np.testing.assert_allclose(s.forward_log_det_jacobian(x, 0), 0.0, atol=1e-12)


def test_knots_broadcast_against_the_points():
    """One spline per dimension (the marginal spline) equals that spline given per point."""
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(4, 3 * K - 1))
    x = tf.constant(rng.normal(size=(30, 4)))
    per_point = np.broadcast_to(raw, (30, 4, 3 * K - 1))
    np.testing.assert_allclose(spline_at(raw).forward(x), spline_at(per_point).forward(x),
                               atol=1e-13)


def test_xla_compiled_equals_eager_float32():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(200, 5, 3 * K - 1)).astype(np.float32)
    x = tf.constant(rng.normal(size=(200, 5)).astype(np.float32) * 2)

    @tf.function(jit_compile=True)
    def both(raw, x):
        y, ldj = spline_at(raw, tf.float32).forward_and_log_det(x)
        return y, ldj, spline_at(raw, tf.float32).inverse(y)

    y, ldj, back = both(tf.constant(raw), x)
    y0, ldj0 = spline_at(raw, tf.float32).forward_and_log_det(x)
    np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ldj, ldj0, atol=1e-4)
    np.testing.assert_allclose(back, x, atol=1e-3)
