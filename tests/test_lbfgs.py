"""The batched L-BFGS of likeflow.infer.lbfgs and the batched root search of the limits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import rosen, rosen_der

from likeflow.infer.inference import crossings
from likeflow.infer.lbfgs import minimize


def quadratic(a: np.ndarray, centres: np.ndarray):
    """Row r: 0.5 (x - c_r)' A (x - c_r), minimum 0 at c_r."""
    def fg(x):
        d = x - centres
        return 0.5 * np.einsum("ki,ij,kj->k", d, a, d), d @ a
    return fg


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_ill_conditioned_quadratics_reach_their_minima(seed):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(30, 30))
    a = b @ b.T + 0.01 * np.eye(30)      # condition number up to ~1e5
    centres = rng.normal(size=(5, 30))
    r = minimize(quadratic(a, centres), np.zeros((5, 30)), tolerance=1e-9, max_iterations=3000)
    assert r.converged.all()
    np.testing.assert_allclose(r.f, 0.0, atol=1e-12)


def test_rosenbrock_rows_converge_independently():
    def fg(x):
        return np.array([rosen(r) for r in x]), np.array([rosen_der(r) for r in x])

    starts = np.random.default_rng(0).normal(size=(6, 8))
    batch = minimize(fg, starts, tolerance=1e-8, max_iterations=3000)
    assert batch.converged.all()
    # each row at a stationary point (8-dim Rosenbrock has a second, local minimum)
    assert np.abs(fg(batch.x)[1]).max() < 1e-8
    assert (np.abs(batch.x - 1).max(axis=1) < 1e-6).sum() >= 4
    alone = minimize(fg, starts[2:3], tolerance=1e-8, max_iterations=3000)
    np.testing.assert_allclose(alone.x[0], batch.x[2], atol=1e-6)


def test_rows_that_start_where_the_value_is_not_finite_stay_put():
    def fg(x):
        f = np.sum((x - 2.0) ** 2, axis=1)
        return np.where(x[:, 0] > 100, np.inf, f), 2 * (x - 2.0)

    r = minimize(fg, np.array([[0.0, 0.0], [500.0, 0.0]]))
    np.testing.assert_allclose(r.x[0], 2.0, atol=1e-6)
    np.testing.assert_array_equal(r.x[1], [500.0, 0.0])
    assert r.converged.tolist() == [True, False]


def test_a_rounded_objective_stops_at_its_rounding():
    """float32-like values: the gradient never gets below the tolerance, the value stops
    improving; f_tolerance ends the run long before max_iterations."""
    def fg(x):
        f = np.sum((x - 1.0) ** 4, axis=1) + 100.0
        return f.astype(np.float32).astype(float), 4 * (x - 1.0) ** 3 + 1e-4
    r = minimize(fg, np.zeros((3, 5)), tolerance=1e-12, max_iterations=5000,
                 f_tolerance=1e-7)
    assert r.converged.all() and r.iterations < 500
    assert np.all(r.f < 100.0 + 1e-4)


def test_crossings_find_several_roots_from_shared_batches():
    calls = []

    def fn(v):
        calls.append(len(v))
        return np.vstack([v ** 3 - 2.0, np.exp(-v) - 0.3, v - 10.0])

    roots = crossings(fn, [(0.0, 3.0, -2.0, 25.0), (0.0, 3.0, 0.7, np.exp(-3) - 0.3), None])
    assert roots[0] == np.float64(roots[0]) and abs(roots[0] - 2 ** (1 / 3)) < 1e-3
    assert abs(roots[1] + np.log(0.3)) < 1e-3
    assert roots[2] is None
    assert calls == [16, 16]             # two rounds, both brackets in each batch
