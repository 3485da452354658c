"""Flow architectures: invertibility, log-determinants, variables, gradients, bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

from likeflow.errors import LikeflowError  # noqa: E402
from likeflow.flows.config import (FLOWS, FlowConfig, expected_variable_count,  # noqa: E402
                            make_permutations)
from likeflow.flows.tf_flow import build_flow  # noqa: E402
from flow_helpers import random_whitening  # noqa: E402

D = 4
BOUNDS = np.array([[-1.0, 5.0], [0.0, np.inf], [-np.inf, np.inf], [-np.inf, 2.0]])


def training_like_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    x[:, 0] = rng.uniform(-0.99, 4.99, n)
    x[:, 1] = rng.exponential(size=n)
    x[:, 3] = 2.0 - rng.exponential(size=n)
    return x


def make(flow, dtype="float64", **kw):
    # no reflection: these tests check the bijector chain itself (a fold is not invertible;
    # tests/test_bounds.py covers it)
    hyper = dict(flow=flow, layers=3, hidden=(8, 8), bins=4, spline_range=3.0, dtype=dtype,
                 permutation="random", seed=3, reflect="none")
    hyper.update(kw)
    cfg = FlowConfig.from_data(training_like_data(), bounds=BOUNDS, **hyper)
    f = build_flow(cfg)
    # move every weight away from its initial value: a fresh spline is nearly the identity
    rng = np.random.default_rng(7)
    for v in f.trainable_variables:
        moved = v + rng.normal(scale=0.1, size=v.shape)
        # MADE keeps its autoregressive masks as kernel constraints, as the optimizer does
        constraint = getattr(v, "constraint", None)
        v.assign(constraint(moved) if constraint is not None else moved)
    if cfg.whiten:  # a whitening far from the identity too
        f.whiten.assign(random_whitening(cfg.dim, rng))
    return f


@pytest.fixture(scope="module", params=FLOWS)
def flow64(request):
    return make(request.param)


u_values = st.lists(st.floats(-8, 8, allow_nan=False), min_size=D, max_size=D)


_COMPILED = {}


def flow_layers(flow):
    """The chain without the preprocessing (its first element): standardised space only."""
    import tensorflow_probability as tfp
    return tfp.bijectors.Chain(flow.bijector.bijectors[1:])


def compiled(flow, layers_only):
    """Round trip and log-det checks of ``flow``, traced once (eager TFP is slow)."""
    key = (id(flow), layers_only)
    if key not in _COMPILED:
        bij = flow_layers(flow) if layers_only else flow.bijector
        spec = [tf.TensorSpec([None, D], tf.float64)]

        @tf.function(input_signature=spec)
        def roundtrip(z):
            return bij.inverse(tf.identity(bij.forward(z)))

        @tf.function(input_signature=spec)
        def logdets(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                z = bij.inverse(x)
            return tape.batch_jacobian(z, x), bij.inverse_log_det_jacobian(x, event_ndims=1)

        @tf.function(input_signature=spec)
        def forward(z):
            return bij.forward(z)

        _COMPILED[key] = (roundtrip, logdets, forward)
    return _COMPILED[key]


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(u_values, min_size=1, max_size=6))
def test_inverse_of_forward_is_identity(flow64, rows):
    """Latent values up to 8 sigma: far outside the spline range [-3, 3] of the test flows."""
    roundtrip, _, _ = compiled(flow64, layers_only=True)
    z = tf.constant(np.array(rows))
    np.testing.assert_allclose(roundtrip(z).numpy(), z.numpy(), atol=1e-8)


def test_physical_roundtrip_including_the_bounds(flow64):
    x = training_like_data(64, seed=4)
    # near the two-sided (probit) bound, but outside the Phi(-3.5) zone where it is held
    x[:2, 0] = [-1.0 + 1e-2, 5.0 - 1e-2]
    x[4, 1] = 0.0
    x[5, 3] = 2.0
    z = flow64.to_latent(tf.constant(x))
    assert np.isfinite(z.numpy()).all()
    back = flow64.from_latent(tf.identity(z)).numpy()
    np.testing.assert_allclose(back, x, atol=1e-7)
    assert np.isfinite(flow64.log_prob(tf.constant(x)).numpy()).all()
    # on the bound itself, and a hair inside: finite, and the same density (held)
    edge = np.repeat(x[2:3], 3, axis=0)
    edge[:, 0] = [-1.0, -1.0 + 1e-6, -1.0 + 1e-4]
    lp = flow64.log_prob(tf.constant(edge)).numpy()
    assert np.isfinite(lp).all() and np.ptp(lp) < 1e-9


@settings(max_examples=10, deadline=None)
@given(rows=st.lists(u_values, min_size=1, max_size=6))
def test_sampling_direction_equals_tfp(flow64, rows):
    """``from_latent`` runs MADE once per layer instead of D times: it must equal TFP's
    ``MaskedAutoregressiveFlow.forward`` (and RealNVP's) to float64 rounding."""
    z = tf.constant(np.array(rows))
    np.testing.assert_allclose(flow64.from_latent(z).numpy(), flow64.bijector.forward(z).numpy(),
                               rtol=1e-12, atol=1e-12)


def test_sampling_direction_equals_tfp_with_few_hidden_units():
    """The MADE schedule with fewer hidden units than inputs (at most one new unit per step)."""
    from likeflow.flows.config import FlowConfig
    x = np.random.default_rng(1).normal(size=(200, 40))
    for flow in ("maf", "ansf"):
        f = build_flow(FlowConfig.from_data(x, flow=flow, layers=2, hidden=(24, 16),
                                            dtype="float64", seed=2))
        rng = np.random.default_rng(3)
        for v in f.trainable_variables:
            moved = v + rng.normal(scale=0.05, size=v.shape)
            constraint = getattr(v, "constraint", None)
            v.assign(constraint(moved) if constraint is not None else moved)
        z = tf.constant(rng.normal(size=(64, 40)))
        np.testing.assert_allclose(f.from_latent(z).numpy(), f.bijector.forward(z).numpy(),
                                   rtol=1e-10, atol=1e-10)


def assert_log_det_matches_jacobian(flow, x, layers_only):
    _, logdets, _ = compiled(flow, layers_only)
    jac, ildj = logdets(x)
    _, logdet = np.linalg.slogdet(jac.numpy())
    np.testing.assert_allclose(ildj.numpy(), logdet, atol=1e-6, rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(rows=st.lists(u_values, min_size=1, max_size=4))
def test_log_det_matches_autodiff_jacobian(flow64, rows):
    _, _, forward = compiled(flow64, layers_only=True)
    assert_log_det_matches_jacobian(flow64, forward(tf.constant(np.array(rows))), True)


def test_log_det_with_preprocessing_matches_autodiff_jacobian(flow64):
    x = training_like_data(16, seed=8)
    assert_log_det_matches_jacobian(flow64, tf.constant(x), layers_only=False)


@pytest.mark.parametrize("flow", FLOWS)
def test_variable_count_and_every_variable_learns(flow):
    f = make(flow, dtype="float32")
    # a kernel and a bias per dense layer, and the affine flows' marginal spline; the
    # whitening is stored, not trained
    marginal = 1 if flow in ("maf", "realnvp") else 0
    assert f.config.marginal_spline == bool(marginal) and f.config.whiten
    assert len(f.trainable_variables) == 3 * 2 * 3 + marginal
    assert len(f.stored_variables) == expected_variable_count(f.config) == 3 * 2 * 3 + marginal + 1
    assert f.stored_variables[-1] is f.whiten and not f.whiten.trainable
    x = tf.constant(training_like_data(256), tf.float32)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(f.log_prob(x))
    grads = tape.gradient(loss, f.trainable_variables)
    for v, g in zip(f.trainable_variables, grads):
        assert g is not None, v.name
        assert np.isfinite(g.numpy()).all(), v.name
        assert np.abs(g.numpy()).max() > 0, f"no gradient reaches {v.name}"


@pytest.mark.parametrize("flow", FLOWS)
def test_eager_and_compiled_log_prob_agree(flow):
    f = make(flow, dtype="float32")
    x = training_like_data(64, seed=5).astype(np.float32)
    eager = f.log_prob(tf.constant(x)).numpy()
    compiled = tf.function(f.log_prob)(tf.constant(x)).numpy()
    np.testing.assert_allclose(eager, compiled, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("flow", ["ansf", "cnsf"])
def test_no_nan_gradient_when_the_whole_batch_is_outside_the_spline_range(flow):
    f = make(flow, dtype="float32")
    # standardised values far outside [-B, B] on every dimension
    z = tf.constant(np.full((32, D), 6.0) * np.sign(np.random.default_rng(1).normal(size=(32, D))),
                    tf.float32)
    x = tf.identity(f.from_latent(z))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(f.log_prob(x))
    grads = tape.gradient(loss, f.trainable_variables)
    assert np.isfinite(loss.numpy())
    for g in grads:
        assert g is None or np.isfinite(g.numpy()).all()


@pytest.mark.parametrize("flow", FLOWS)
def test_samples_never_leave_the_bounds(flow):
    # shift the bounded parameters' standardisation hard towards their bounds
    cfg = FlowConfig.from_data(training_like_data(), bounds=BOUNDS, flow=flow, layers=2,
                               hidden=(8,), bins=4)
    cfg.shift[0], cfg.scale[0] = 30.0, 10.0
    cfg.shift[1], cfg.scale[1] = -40.0, 10.0
    cfg.shift[3], cfg.scale[3] = -40.0, 10.0
    f = build_flow(cfg)
    s = f.sample(20000, seed=(1, 2)).numpy()
    assert (s[:, 0] >= -1).all() and (s[:, 0] <= 5).all()
    assert (s[:, 1] >= 0).all() and (s[:, 3] <= 2).all()
    assert np.isfinite(s).all()


def test_config_json_roundtrip_and_errors():
    cfg = FlowConfig.from_data(training_like_data(), bounds=BOUNDS, flow="cnsf",
                               permutation="random", seed=11)
    again = FlowConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.bounds[1] == [0.0, None]
    with pytest.raises(LikeflowError, match="unknown flow"):
        FlowConfig(dim=3, flow="glow")
    with pytest.raises(LikeflowError, match="coupling flow"):
        FlowConfig(dim=1, flow="realnvp")
    with pytest.raises(LikeflowError, match="unknown keys"):
        FlowConfig.from_dict({"dim": 2, "bogus": 1})


def test_permutations():
    assert make_permutations("reverse", 3, 3, 0) == [[2, 1, 0], [2, 1, 0]]
    assert make_permutations("rotate", 3, 2, 0) == [[1, 2, 0]]
    a = make_permutations("random", 10, 4, 5)
    assert a == make_permutations("random", 10, 4, 5) and len(a) == 3
    assert all(sorted(p) == list(range(10)) for p in a)


def test_preprocessing_standardises_training_data():
    x = training_like_data(5000)
    cfg = FlowConfig.from_data(x, bounds=BOUNDS, flow="maf", layers=1, hidden=(4,),
                               reflect="none")
    f = build_flow(cfg)
    # the exact map, as training sees the data (log_prob holds the probit map near bounds)
    u = f._exact_parts()[0].inverse(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(u.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(u.std(0), 1, atol=1e-3)


@pytest.mark.parametrize("flow", FLOWS)
def test_sampling_leaves_the_variable_order_alone(flow):
    """Saved files store weights in variable order: sampling must not add or reorder any."""
    f = make(flow, layers=2)
    before = [(v.name, tuple(v.shape)) for v in f.stored_variables]
    f.sample(5, seed=tf.constant([1, 2]))
    assert [(v.name, tuple(v.shape)) for v in f.stored_variables] == before


def test_default_bins_per_flow_and_given_bins_win():
    x = np.random.default_rng(0).normal(size=(200, 3))
    assert {f: FlowConfig.from_data(x, flow=f).bins for f in FLOWS} == \
        {"maf": 8, "realnvp": 8, "ansf": 8, "cnsf": 4}
    assert FlowConfig.from_data(x, flow="cnsf", bins=8).bins == 8
    # a stored config keeps its bins whatever the default
    c = FlowConfig.from_data(x, flow="cnsf", bins=8)
    assert FlowConfig.from_dict(c.to_dict()).bins == 8
