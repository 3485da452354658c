"""Densities piled up at a bound: the reflected (folded) flow against known answers, the
support region of profiles, the validation verdict, and the block split of MCMC chains."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

tf = pytest.importorskip("tensorflow")

from likeflow.flows import FlowConfig, bound_reflections, build_flow  # noqa: E402
from likeflow.inference import profile  # noqa: E402
from likeflow.samples import SampleSet, split_indices  # noqa: E402
from likeflow.surrogate import fit  # noqa: E402
from likeflow.training import TrainConfig  # noqa: E402

N = 40000
SMALL = {"layers": 4, "hidden": (32, 32)}


def half_normal_set(seed=0) -> SampleSet:
    """x0 ~ |N(0, 1)| in [0, 10] (mass piled at 0), x1 ~ N(0, 1): the truth is known."""
    rng = np.random.default_rng(seed)
    x = np.c_[np.abs(rng.normal(size=N)), rng.normal(size=N)]
    lp = np.log(2) + stats.norm.logpdf(x[:, 0]) + stats.norm.logpdf(x[:, 1])
    return SampleSet(x, names=["mu", "theta"], poi=["mu"],
                     bounds=[[0.0, 10.0], [-np.inf, np.inf]], log_prob=lp)


COV = np.array([[1.0, 0.6], [0.6, 1.0]])


def truncated_gaussian_set(seed=0) -> SampleSet:
    """A correlated 2-dim Gaussian with its mode at (0, 0), truncated to x0 >= 0."""
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal([0, 0], COV, size=3 * N)
    x = x[x[:, 0] > 0][:N]
    lp = np.log(2) + stats.multivariate_normal([0, 0], COV).logpdf(x)
    return SampleSet(x, names=["mu", "theta"], poi=["mu"],
                     bounds=[[0.0, np.inf], [-np.inf, np.inf]], log_prob=lp)


@pytest.fixture(scope="module")
def half_normal():
    s = half_normal_set()
    return s, fit(s, flow_config=SMALL, train_config=TrainConfig(seed=1))


@pytest.fixture(scope="module")
def truncated():
    s = truncated_gaussian_set()
    return s, fit(s, flow_config=SMALL, train_config=TrainConfig(seed=2))


def test_reflection_is_chosen_where_the_data_pile_up():
    assert bound_reflections(half_normal_set().values, np.array([[0, 10], [-np.inf, np.inf]])) \
        == [[0, 0.0]]
    rng = np.random.default_rng(1)
    far = np.c_[rng.normal(4, 1, 5000).clip(0.01), rng.normal(size=5000)]
    assert bound_reflections(far, np.array([[0, 10], [-np.inf, np.inf]])) == []


def test_folded_flow_is_normalised_and_samples_stay_inside():
    """An untrained folded flow: its density integrates to 1 over the physical range and its
    samples are inside the bounds (the fold is exact, whatever the weights)."""
    s = half_normal_set()
    cfg = FlowConfig.from_data(s.values[:2000, :1], bounds=s.bounds[:1], dtype="float64",
                               layers=2, hidden=(8,))
    assert cfg.reflect == [[0, 0.0]]
    flow = build_flow(cfg)
    x0 = np.linspace(0, 10, 20001)
    dens = np.exp(flow.log_prob(tf.constant(x0[:, None])).numpy())
    assert np.trapezoid(dens, x0) == pytest.approx(1.0, abs=1e-3)
    smp = flow.sample(5000, seed=tf.constant([1, 2])).numpy()
    assert smp.min() >= 0 and smp.max() <= 10


def _check_along(sur, points, truth, tol=0.1):
    got = sur.log_prob(points)
    err = np.abs(got - truth)
    assert np.isfinite(got).all()
    assert err.max() < tol, f"max error {err.max():.3f} at {points[np.argmax(err)]}"


@pytest.mark.slow
def test_half_normal_density_is_right_from_the_bound_to_3_sigma(half_normal):
    _, sur = half_normal
    assert sur.config.reflect == [[0, 0.0]]
    mu = np.r_[0.0, 1e-7, 1e-4, np.linspace(0.01, 3, 60)]
    pts = np.c_[mu, np.zeros_like(mu)]
    truth = np.log(2) + stats.norm.logpdf(mu) + stats.norm.logpdf(0)
    _check_along(sur, pts, truth)
    # no spike: the density next to the bound equals the density on it to 0.01 nats
    near = sur.log_prob(np.array([[0.0, 0.0], [1e-6, 0.0], [1e-3, 0.0]]))
    assert np.ptp(near) < 0.01


@pytest.mark.slow
def test_truncated_correlated_gaussian_with_mode_on_the_bound(truncated):
    _, sur = truncated
    assert sur.config.reflect == [[0, 0.0]]
    mu = np.r_[0.0, 1e-6, np.linspace(0.01, 3, 50)]
    for theta_of_mu in (lambda m: 0.6 * m, lambda m: 0.6 * m - 0.5, lambda m: 0.6 * m + 0.5):
        pts = np.c_[mu, theta_of_mu(mu)]
        truth = np.log(2) + stats.multivariate_normal([0, 0], COV).logpdf(pts)
        # 3 sigma along the conditional mean; 0.5 off it the tails thin out: 0.15 nats
        _check_along(sur, pts, truth, tol=0.1 if theta_of_mu(1.0) == 0.6 else 0.15)


@pytest.mark.slow
def test_profile_that_runs_off_the_data_stops_and_is_marked(half_normal):
    s, sur = half_normal
    top = s.values[:, 0].max()
    grid = np.r_[np.linspace(0, 2, 5), top + 1.0, top + 3.0]
    prof = profile(sur, "mu", grid)
    assert prof.trusted[:5].all()
    assert not prof.trusted[5:].any()
    assert all("outside the training range" in n for n in prof.notes[5:])
    # inside the data the profile is the exact one: q = mu^2 (theta profiles to 0)
    np.testing.assert_allclose(prof.q[:5], grid[:5] ** 2, atol=0.1)
    # the nuisance never leaves the training range
    assert np.abs(prof.nuisances[:, 1]).max() <= np.abs(s.values[:, 1]).max()
    assert prof.best.trusted and prof.best.x[0] < 0.05


@pytest.mark.slow
def test_deliberately_bad_surrogate_fails_and_says_why():
    from likeflow.likelihoods import GaussianMixture
    from likeflow.report import validate

    t = GaussianMixture(4, components=3, seed=2)
    x = t.sample(20000, seed=0)
    s = SampleSet(x, names=t.names, log_prob=t.evaluate(x)["log_prob"])
    sur = fit(s, flow_config={"layers": 2, "hidden": (16,)},
              train_config=TrainConfig(epochs=1, learning_rate=1e-4, schedule="plateau"))
    test, _ = sur.held_out(s)
    res = validate(sur, test, seed=1)
    verdict, reasons = res.verdict()
    assert verdict == "FAIL"
    text = " ".join(reasons)
    assert "log-prob Pearson" in text and "dimensions flagged" in text
    assert res.table().splitlines()[-1].startswith("verdict: FAIL")


def test_tail_flags_name_the_dimension():
    from likeflow.report import tail_flags

    def record(diff):
        return {"intervals": {lev: {"diff_std": list(d)} for lev, d in
                              (("0.95", diff[0]), ("0.997", diff[1]))}}

    model = record(([0.01, 0.01, 0.01], [0.05, 0.40, 0.05]))
    floor = record(([0.01, 0.01, 0.01], [0.05, 0.05, 0.06]))
    assert tail_flags(model, floor) == [1]


def test_block_split_keeps_whole_blocks_of_each_chain_apart():
    chains, per = 10, 1000
    chain = np.repeat(np.arange(chains), per)
    sp = split_indices(chains * per, seed=3, chain=chain, blocks_per_chain=20)
    label = np.empty(chains * per, int)
    label[sp.train], label[sp.validation], label[sp.test] = 0, 1, 2
    assert len(sp.test) == pytest.approx(0.1 * chains * per, rel=0.06)
    assert len(sp.validation) == pytest.approx(0.1 * chains * per, rel=0.06)
    assert len(np.intersect1d(sp.train, sp.test)) == 0
    # within each block of 50 rows there is one part only: no training row inside a test block
    blocks = label.reshape(chains, 20, per // 20)
    assert (blocks == blocks[..., :1]).all()
    # the same arguments give the same split (validation rebuilds it from the file)
    again = split_indices(chains * per, seed=3, chain=chain, blocks_per_chain=20)
    np.testing.assert_array_equal(again.test, sp.test)


@pytest.mark.slow
def test_fit_on_chains_records_the_block_split_and_validates_on_test_blocks():
    rng = np.random.default_rng(0)
    chains, per = 8, 500
    x = np.zeros((chains * per, 2))
    for c in range(chains):  # AR(1) chains: neighbours are correlated
        v = rng.normal(size=2)
        for k in range(per):
            v = 0.9 * v + np.sqrt(1 - 0.81) * rng.normal(size=2)
            x[c * per + k] = v
    s = SampleSet(x, chain=np.repeat(np.arange(chains), per))
    sur = fit(s, flow_config={"layers": 1, "hidden": (8,)}, train_config=TrainConfig(epochs=1))
    assert sur.training["data"]["split_kind"] == "chain blocks"
    test, _ = sur.held_out(s)
    tr = sur.training["data"]["split"]
    rows = split_indices(s.n, seed=tr["seed"], chain=s.chain,
                         blocks_per_chain=tr["blocks_per_chain"])
    np.testing.assert_array_equal(test.values, s.values[rows.test])
