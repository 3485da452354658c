"""likeflow as a spey backend: spey.get_backend("likeflow") on a surrogate and its Asimov
partner gives the best fit, the CLs of a hypothesis and the upper limit that likeflow gives.

A two-parameter Gaussian likelihood (signal strength mu on [0, 10], best fit 0.6, sigma 1, and a
nuisance parameter) and its background-only Asimov partner (best fit 0), each known only as
samples and fitted by a small flow.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import stats

spey = pytest.importorskip("spey", reason="the spey backend needs spey (pip install 'likeflow[spey]')")
pytest.importorskip("tensorflow", reason="fits the surrogates with TensorFlow")

import likeflow  # noqa: E402
from likeflow.infer.cls import cls_limits  # noqa: E402
from likeflow.infer.inference import cls_values  # noqa: E402

SIGMA = 1.0


def _samples(mu_hat: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = (0.0 - mu_hat) / SIGMA
    mu = stats.truncnorm.rvs(a, (10 - mu_hat) / SIGMA, loc=mu_hat, scale=SIGMA, size=n,
                             random_state=rng)
    theta = 0.5 * (mu - mu_hat) + rng.normal(0, 0.8, n)
    return np.column_stack([mu, theta])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spey")
    fits = {}
    for name, mu_hat, seed in (("asimov", 0.0, 1), ("obs", 0.6, 2)):
        out = folder / f"{name}.likeflow.h5"
        fits[name] = likeflow.fit(
            _samples(mu_hat, 20000, seed), names=["mu", "theta"], poi=["mu"],
            bounds={"mu": (0, 10)}, seed=seed, out=out, validate=False,
            asimov_partner=folder / "asimov.likeflow.h5" if name == "obs" else None,
            flow_config={"layers": 3, "hidden": (32, 32)},
            # batch 1024, the batch this case was written with: at the default of 16,000 rows
            # (256, session 19) the surrogate's best fit is 0.71-0.73 against 0.6
            train_config=likeflow.TrainConfig(epochs=25, batch_size=1024))
    return folder / "obs.likeflow.h5", folder / "asimov.likeflow.h5"


@pytest.mark.slow
def test_spey_limit_equals_likeflows(pair):
    obs_path, asimov_path = pair
    model = spey.get_backend("likeflow")(surrogate=str(obs_path), analysis="gauss",
                                         xsection=1.0)
    # the partner is the one the file records; the best fit is the surrogate's
    muhat, nll = model.maximize_likelihood()
    assert abs(muhat - 0.6) < 0.1
    obs, asimov = likeflow.load(obs_path), likeflow.load(asimov_path)
    ours = cls_limits(obs, asimov, "mu")
    theirs = model.poi_upper_limit()
    # one computation: spey's root finder (toms748, rtol 1e-4) asks for other values of mu in
    # another order than likeflow's scan, and a fit at mu depends on mu alone
    assert theirs == pytest.approx(ours.observed, rel=1e-4)
    # and the analytic asymptotic limit of this Gaussian: q~ = (mu - 0.6)^2, q_A = mu^2, so
    # CLs = (1 - Phi(mu - 0.6)) / Phi(0.6) = 0.05 at mu = 0.6 + Phi^-1(1 - 0.05 Phi(0.6))
    exact = 0.6 + SIGMA * stats.norm.ppf(1 - 0.05 * stats.norm.cdf(0.6 / SIGMA))
    assert ours.observed == pytest.approx(exact, abs=0.1)
    # CLs of one hypothesis: spey's exclusion confidence level is 1 - CLs
    cl = model.exclusion_confidence_level(poi_test=2.0)[0]
    q_obs = 2 * (model.likelihood(poi_test=2.0) - nll)
    q_a = 2 * model.backend.asimov_negative_loglikelihood(2.0) - 2 * \
        model.backend.minimize_asimov_negative_loglikelihood()[1]
    cls, _ = cls_values(np.array([q_obs]), np.array([q_a]))
    assert cl == pytest.approx(1 - cls[0], abs=0.01)


def test_backend_errors(pair):
    obs_path, _ = pair
    from likeflow.infer.spey_backend import LikeflowBackend
    sur = likeflow.load(obs_path)
    with pytest.raises(likeflow.LikeflowError, match="unknown parameter of interest"):
        LikeflowBackend(sur, poi="nope")
    alone = LikeflowBackend(sur)   # an object: no recorded partner is looked up
    with pytest.raises(likeflow.LikeflowError, match="Asimov partner"):
        alone.asimov_negative_loglikelihood(1.0)
    with pytest.raises(likeflow.LikeflowError, match="its own data"):
        alone.get_logpdf_func(data=[1.0, 2.0])
    assert alone.get_logpdf_func()([0.5, 0.0]) == pytest.approx(float(sur.log_prob([0.5, 0.0])[0]))
    cfg = alone.config(allow_negative_signal=False)
    assert cfg.poi_index == 0 and cfg.suggested_bounds[0][0] == 0.0


def test_hypotest_is_one_computation_on_both_backends_and_does_not_depend_on_history(pair):
    """The fits of a CLs test run in float64 numpy whichever backend loaded the files (the
    same numbers with and without TensorFlow), and a test's result is a function of mu alone:
    after other values, in another order, in another batch, it equals a fresh test's. This
    small flow's Asimov density has two local maxima along theta, 0.03 nats apart: a fit
    warm-started from the last value tested landed on one or the other (CLs 0.5% apart)."""
    obs_path, asimov_path = pair
    mu = np.array([0.8, 1.7, 2.5])
    tf_test = likeflow.CLsTest(likeflow.load(obs_path, backend="tensorflow"),
                               likeflow.load(asimov_path, backend="tensorflow"))
    np_test = likeflow.CLsTest(likeflow.load(obs_path, backend="numpy"),
                               likeflow.load(asimov_path, backend="numpy"))
    a, b = tf_test(mu), np_test(mu)
    # equal: the starting points are the numpy twin's draws on both backends, the fits from
    # them the same float64 numpy computation
    np.testing.assert_allclose(a.q_observed, b.q_observed, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.q_asimov, b.q_asimov, rtol=1e-12, atol=1e-12)
    # one at a time after the values above, descending, against a fresh test of the batch
    later = mu + 0.05
    one_by_one = [np_test(m) for m in later[::-1]][::-1]
    fresh = likeflow.CLsTest(likeflow.load(obs_path, backend="numpy"),
                             likeflow.load(asimov_path, backend="numpy"))(later)
    for j, res in enumerate(one_by_one):
        np.testing.assert_allclose(res.cls, fresh.cls[j], rtol=1e-6)
        np.testing.assert_allclose(res.cls_expected[:, 0], fresh.cls_expected[:, j], rtol=1e-6)
        np.testing.assert_allclose(res.q_asimov, fresh.q_asimov[j], rtol=1e-6, atol=1e-9)


def test_each_surrogate_is_trusted_out_to_its_own_support(pair):
    """The expected band is the partner's alone: it is found out to the partner's support
    even where the observed surrogate's ends (a strong signal's +2 sigma limit past the
    observed samples); the observed limit, which needs both, is not found past it."""
    obs_path, asimov_path = pair
    a = likeflow.load(asimov_path, backend="numpy")
    full = likeflow.cls_limits(likeflow.load(obs_path, backend="numpy"), a, "mu")
    assert full.observed is not None and all(e is not None for e in full.expected)
    short = likeflow.load(obs_path, backend="numpy")
    short.training["support"]["hi"][0] = 0.5 * full.observed
    assert max(full.expected) > short.support["hi"][0]
    cut = likeflow.cls_limits(short, a, "mu")
    assert cut.observed is None
    assert cut.expected == full.expected


def test_one_likelihood_as_both_shares_its_fits(pair, monkeypatch):
    """CLsTest(a, a) (an Asimov partner's own band, the exact band) fits once what two
    copies of the same file fit twice, with the same numbers to the bit."""
    from likeflow.infer import cls as cls_module

    _, asimov_path = pair
    calls = []
    real = cls_module.maximize
    monkeypatch.setattr(cls_module, "maximize",
                        lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    a = likeflow.load(asimov_path, backend="numpy")
    mu = np.array([0.8, 1.7])
    shared = likeflow.CLsTest(a, a)(mu)
    n_shared = sum(calls)
    calls.clear()
    apart = likeflow.CLsTest(a, likeflow.load(asimov_path, backend="numpy"))(mu)
    assert 0 < n_shared and 2 * n_shared == sum(calls)
    np.testing.assert_array_equal(shared.q_observed, apart.q_observed)
    np.testing.assert_array_equal(shared.q_asimov, apart.q_asimov)
    np.testing.assert_array_equal(shared.cls_expected, apart.cls_expected)
    # cls_limits(a, a) passes the one likelihood through: the same limits, half the fits
    calls.clear()
    one = likeflow.cls_limits(a, a, "mu")
    n_one = sum(calls)
    calls.clear()
    two = likeflow.cls_limits(a, likeflow.load(asimov_path, backend="numpy"), "mu")
    assert 0 < n_one and 2 * n_one == sum(calls)
    assert one.expected == two.expected and one.observed == two.observed


def test_hypotest_batches_and_agrees_with_spey_and_the_analytic_answer(pair):
    """likeflow.CLsTest: a batch of mu in one call equals one test at a time, spey's CLs is
    the same computation, and the Gaussian's asymptotic answer (q~ = (mu - 0.6)^2,
    q_A = mu^2) is met."""
    obs_path, asimov_path = pair
    obs, asimov = likeflow.load(obs_path), likeflow.load(asimov_path)
    mu = np.array([1.0, 2.0, 3.0])
    res = likeflow.CLsTest(obs, asimov)(mu)
    one = [likeflow.hypotest(obs, asimov, m).cls[0] for m in mu]
    np.testing.assert_allclose(res.cls, one, rtol=1e-4)
    exact, exact_band = cls_values((mu - 0.6) ** 2 / SIGMA ** 2, mu ** 2 / SIGMA ** 2)
    # the surrogates' own error (the limit test above allows 0.1 in mu: 0.035 in CLs at mu = 1)
    np.testing.assert_allclose(res.cls, exact, atol=0.035)
    np.testing.assert_allclose(res.cls_expected, exact_band, atol=0.035)
    assert res.to_dict()["expected_sigma"] == [-2, -1, 0, 1, 2]
    model = spey.get_backend("likeflow")(surrogate=obs, asimov=asimov, analysis="gauss",
                                         xsection=1.0)
    for m, c in zip(mu, res.cls):
        assert 1 - model.exclusion_confidence_level(poi_test=m)[0] == pytest.approx(c, abs=5e-3)
    with pytest.raises(likeflow.LikeflowError, match="Asimov partner"):
        likeflow.CLsTest(obs)(1.0)
    with pytest.raises(likeflow.LikeflowError, match="parameters differ"):
        likeflow.CLsTest(obs, likeflow.load(os.path.join(os.path.dirname(__file__), "data",
                                                         "v1", "maf_float64.likeflow.h5")))


def test_a_fast_test_stops_its_fits_sooner_and_agrees(pair, monkeypatch):
    """CLsTest(fast=True), hypotest(fast=True), cls_limits(fast=True) and spey's backend with
    fast=True stop every fit at FAST_F_TOLERANCE (ten times the float32 rounding): no more
    evaluations than the default test, the same CLs to 1e-3 and limits to 1e-3 here."""
    from likeflow.infer import lbfgs
    from likeflow.infer.cls import FAST_F_TOLERANCE

    obs_path, asimov_path = pair
    seen = []
    real = lbfgs.minimize

    def counted(*a, **k):
        res = real(*a, **k)
        seen.append((k["f_tolerance"], res.evaluations))
        return res

    monkeypatch.setattr(lbfgs, "minimize", counted)
    obs, asimov = (likeflow.load(p, backend="numpy") for p in (obs_path, asimov_path))
    mu = np.array([0.9, 1.9, 2.7])
    exact = likeflow.CLsTest(obs, asimov)(mu)
    default_runs, seen[:] = list(seen), []
    fast = likeflow.CLsTest(obs, asimov, fast=True)(mu)
    assert {f for f, _ in default_runs} == {1e-7}      # a float32 file's rounding
    assert {f for f, _ in seen} == {FAST_F_TOLERANCE}
    assert sum(e for _, e in seen) <= sum(e for _, e in default_runs)
    np.testing.assert_allclose(fast.cls, exact.cls, rtol=1e-3)
    np.testing.assert_allclose(fast.cls_expected, exact.cls_expected, rtol=1e-3)
    np.testing.assert_array_equal(likeflow.hypotest(obs, asimov, mu, fast=True).cls, fast.cls)
    seen[:] = []
    limits = likeflow.cls_limits(obs, asimov, "mu", fast=True)
    assert {f for f, _ in seen} == {FAST_F_TOLERANCE}
    default = likeflow.cls_limits(obs, asimov, "mu")
    assert limits.observed == pytest.approx(default.observed, rel=1e-3)
    np.testing.assert_allclose(limits.expected, default.expected, rtol=1e-3)
    model = spey.get_backend("likeflow")(surrogate=obs, asimov=asimov, analysis="gauss",
                                         xsection=1.0, fast=True)
    assert model.backend._test.fast
    assert 1 - model.exclusion_confidence_level(poi_test=1.9)[0] == pytest.approx(
        fast.cls[1], rel=1e-12)
