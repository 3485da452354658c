"""Profiles, best fits and limits: exact targets against analytic answers, then surrogates."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from scipy import stats  # noqa: E402

from likeflow.infer.inference import (best_fit, credible_upper_limit, scan,  # noqa: E402
                                upper_limit)
from likeflow.targets.likelihoods import CorrelatedGaussian  # noqa: E402
from likeflow.targets.likelihoods.base import Target  # noqa: E402


def test_best_fit_of_a_gaussian_is_its_mean():
    t = CorrelatedGaussian(8, seed=2)
    b = best_fit(t)
    np.testing.assert_allclose(b.x, t.mean, atol=1e-6)
    assert b.log_prob == pytest.approx(stats.multivariate_normal(t.mean, t.cov).logpdf(t.mean))


def test_profile_of_an_exact_gaussian_is_analytic_to_1e4():
    t = CorrelatedGaussian(6, seed=3)
    grid = t.mean[2] + np.linspace(-3, 3, 13) * t.std[2]
    p = scan(t, "x2", grid)
    analytic = (grid - t.mean[2]) ** 2 / t.cov[2, 2]
    np.testing.assert_allclose(p.q, analytic, atol=1e-4)
    # the nuisances at the optimum: the conditional mean
    cond = t.mean + t.cov[:, 2] / t.cov[2, 2] * (grid[:, None] - t.mean[2])
    np.testing.assert_allclose(p.nuisances, cond, atol=1e-4)
    assert p.converged.all()


class BoundedGaussianPOI(Target):
    """mu in (-1, 5) with a Gaussian likelihood centred at m, one correlated nuisance."""

    names, poi = ["mu", "theta"], ["mu"]
    bounds = np.array([[-1.0, 5.0], [-np.inf, np.inf]])

    def __init__(self, m):
        self.m = m
        self.cov = np.array([[0.25, 0.1], [0.1, 1.0]])
        self.prec = np.linalg.inv(self.cov)

    def log_likelihood(self, x):
        d = x - tf.constant([self.m, 0.0], tf.float64)
        return -0.5 * tf.einsum("...i,ij,...j->...", d, tf.constant(self.prec), d)

    def log_prior(self, x):
        return tf.zeros_like(x[..., 0])

    def sample(self, n, seed=0):
        x = np.random.default_rng(seed).multivariate_normal([self.m, 0], self.cov, size=4 * n)
        return x[(x[:, 0] > -1) & (x[:, 0] < 5)][:n]


@pytest.mark.parametrize("m", [0.8, -0.3])
def test_asymptotic_upper_limit_of_a_gaussian(m):
    t = BoundedGaussianPOI(m)
    ul = upper_limit(t, "mu")
    sigma = 0.5
    # q~ = (mu - max(m, 0))^2 / sigma^2 - (0 - m)^2/sigma^2 when m < 0 ... solve analytically
    if m >= 0:
        expected = m + 1.6448536 * sigma
    else:
        # q~(mu) = ((mu - m)^2 - m^2) / sigma^2 = 2.7055
        expected = m + np.sqrt(m ** 2 + 2.7055435 * sigma ** 2)
    assert ul.value == pytest.approx(expected, abs=1e-4)
    assert "asymptotic" in ul.method and ul.best_fit == pytest.approx(m, abs=1e-5)


def test_credible_upper_limit_is_the_quantile():
    x = np.random.default_rng(0).normal(size=200000)
    ul = credible_upper_limit(x)
    assert ul.value == pytest.approx(1.6449, abs=0.02) and "Bayesian" in ul.method
    w = np.ones_like(x)
    assert credible_upper_limit(x, weights=w).value == pytest.approx(ul.value, abs=1e-3)
