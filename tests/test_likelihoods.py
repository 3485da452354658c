"""Benchmark targets: the LHC toy's reference values and gradient, Gaussians and mixtures."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from scipy import stats  # noqa: E402

from likeflow.targets.likelihoods import (CorrelatedGaussian, GaussianMixture, LHCToy,  # noqa: E402
                                  make_target)


@pytest.fixture(scope="module")
def toy():
    return LHCToy()


def test_toy_reference_values_at_the_origin(toy):
    ev = toy.evaluate(np.zeros((1, 95)))
    assert ev["log_likelihood"][0] == pytest.approx(-201.3303, abs=1e-4)
    assert ev["log_prior"][0] == pytest.approx(-88.1720, abs=1e-4)
    # the prior to 1e-6, computed independently
    expected_prior = 94 * stats.norm.logpdf(0) - np.log(6)
    assert ev["log_prior"][0] == pytest.approx(expected_prior, abs=1e-9)
    assert toy.names[0] == "mu" and toy.names[91:] == ["delta_isr", "delta_jes", "delta_lv",
                                                        "delta_cr"]
    assert toy.poi == ["mu"] and list(toy.bounds[0]) == [-1, 5]


def test_toy_likelihood_matches_an_independent_numpy_implementation(toy):
    """The model of lhc_toy_95d.md written again in plain numpy, at random points."""
    from likeflow.targets.likelihoods.lhc_toy import load_numbers
    d = load_numbers()
    rng = np.random.default_rng(0)
    x = rng.normal(scale=1.3, size=(40, 95))
    x[:, 0] = rng.uniform(-0.9, 4.9, 40)
    x[0, 0], x[0, 1:91] = -0.99, -100.0   # negative expected counts: log L = -inf
    B, S = np.array(d["background"]), np.array(d["signal"])
    n, eps = np.array(d["observed"]), np.array(d["mc_stat_rel_unc"])
    cat = np.arange(90) // 30
    from math import lgamma
    ref = []
    for p in x:
        mu, dmc = p[0], p[1:91]
        N = np.array([B[cat == c].sum() for c in range(3)])
        f0 = B / N[cat]
        g = f0.copy()
        for j, name in ((91, "ISR"), (92, "JES")):
            kp, km, dd = np.array(d["shape_up"][name]), np.array(d["shape_down"][name]), p[j]
            if abs(dd) <= 1:
                pf = dd * (dd - 1) / 2 * km - (dd - 1) * (dd + 1) + dd * (dd + 1) / 2 * kp
            elif dd > 1:
                pf = (0.5 * (3 * kp + km) - 2) * dd - 0.5 * (kp + km) + 2
            else:
                pf = (2 - 0.5 * (3 * km + kp)) * dd - 0.5 * (kp + km) + 2
            g = g * pf
        f = g / np.array([g[cat == c].sum() for c in range(3)])[cat]
        D = np.ones(3)
        for j, name in zip(range(91, 95), ("ISR", "JES", "LV", "CR")):
            up, down = np.array(d["norm_up"][name]), np.array(d["norm_down"][name])
            D *= (1 + up) ** p[j] if p[j] >= 0 else (1 + down) ** (-p[j])
        nu = mu * S + N[cat] * D[cat] * f * (1 + eps) ** dmc
        if (nu <= 0).any():  # the model's rule: minus infinity where any expected count <= 0
            ref.append(-np.inf)
            continue
        ref.append(np.sum(n * np.log(nu) - nu) - sum(lgamma(k + 1) for k in n))
    ref = np.array(ref)
    assert np.isfinite(ref).sum() >= 20 and np.isinf(ref).any(), ref  # both cases exercised
    np.testing.assert_allclose(toy.evaluate(x)["log_likelihood"], ref, rtol=0, atol=1e-6)


def test_toy_maximum(toy):
    """The maximum of the log posterior: about -285.96 at mu close to -0.013."""
    from likeflow.infer.inference import maximize
    best = maximize(toy, np.zeros((1, 95)))
    assert best.log_prob == pytest.approx(-285.96, abs=0.01)
    assert best.x[0] == pytest.approx(-0.013, abs=0.003)


def test_toy_gradient_matches_finite_differences(toy):
    rng = np.random.default_rng(3)
    x0 = rng.normal(scale=0.7, size=95)
    x0[0] = 0.7
    x = tf.Variable(x0[None])
    with tf.GradientTape() as tape:
        y = toy.log_prob(x)
    grad = tape.gradient(y, x).numpy()[0]
    h = 1e-6
    fd = np.empty(95)
    for i in range(95):
        e = np.zeros(95)
        e[i] = h
        fd[i] = (toy.evaluate(np.stack([x0 + e]))["log_prob"][0]
                 - toy.evaluate(np.stack([x0 - e]))["log_prob"][0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_toy_outside_support_is_minus_inf(toy):
    x = np.zeros((3, 95))
    x[0, 0] = -1.5          # mu outside the prior
    x[1, 0] = 5.5
    x[2, 0] = -1.0          # on the bound: outside the open interval
    assert np.all(toy.evaluate(x)["log_prob"] == -np.inf)


def test_correlated_gaussian_is_exact():
    t = CorrelatedGaussian(6, seed=4)
    x = t.sample(50000, seed=1)
    np.testing.assert_allclose(x.mean(0), t.mean, atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), t.cov, atol=0.08)
    ref = stats.multivariate_normal(t.mean, t.cov).logpdf(x[:100])
    np.testing.assert_allclose(t.evaluate(x[:100])["log_prob"], ref, rtol=1e-9)
    assert np.allclose(np.diag(t.corr), 1) and np.linalg.eigvalsh(t.corr).min() > 0


def test_mixture_is_exact_and_normalised():
    t = GaussianMixture(2, components=3, seed=1)
    x = t.sample(20000, seed=2)
    ref = np.log(np.mean([stats.multivariate_normal(m, c).pdf(x[:50])
                          for m, c in zip(t.means, t.covs)], axis=0))
    np.testing.assert_allclose(t.evaluate(x[:50])["log_prob"], ref, rtol=1e-9)
    # normalised: a grid integral of exp(log_prob) is 1
    g = np.linspace(-6, 16, 400)
    xx, yy = np.meshgrid(g, g)
    pts = np.c_[xx.ravel(), yy.ravel()]
    integral = np.exp(t.evaluate(pts)["log_prob"]).sum() * (g[1] - g[0]) ** 2
    assert integral == pytest.approx(1.0, abs=1e-3)


def test_large_mixture_builds():
    t = make_target("mixture", dim=1000, components=3, seed=0)
    x = t.sample(10, seed=0)
    assert x.shape == (10, 1000) and np.isfinite(t.evaluate(x)["log_prob"]).all()
