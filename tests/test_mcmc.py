"""MCMC: exact moments of a 50-dim correlated Gaussian, bounds respected, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from likeflow.targets.likelihoods import CorrelatedGaussian  # noqa: E402
from likeflow.targets.mcmc import MCMCConfig, run_mcmc  # noqa: E402


@pytest.mark.slow
def test_nuts_reproduces_a_50d_gaussian_within_monte_carlo_errors():
    t = CorrelatedGaussian(50, seed=1)
    r = run_mcmc(t, 40 * 250, MCMCConfig(chains=40, warmup=300, seed=2))
    assert r.converged and r.rhat.max() < 1.01
    x = r.samples
    ess = r.ess
    # means: |error| < 4.5 Monte Carlo standard errors (std / sqrt(ESS)) in every dimension
    se = np.sqrt(np.diag(t.cov) / ess)
    z = (x.mean(0) - t.mean) / se
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    # covariance: entries within 4.5 of their approximate MC errors (Gaussian: var(s_ij) =
    # (s_ij^2 + s_ii s_jj) / n_eff), with the smallest ESS as n_eff
    cov = np.cov(x.T)
    n_eff = ess.min()
    se_cov = np.sqrt((t.cov ** 2 + np.outer(np.diag(t.cov), np.diag(t.cov))) / n_eff)
    assert np.abs((cov - t.cov) / se_cov).max() < 4.5


def test_diagnostics_catch_chains_that_have_not_mixed():
    t = CorrelatedGaussian(3, seed=0)
    r = run_mcmc(t, 8 * 20, MCMCConfig(chains=8, warmup=100, seed=0, kernel="hmc"))
    d = r.diagnostics()
    assert set(d) >= {"rhat_max", "ess_min", "converged", "rhat_worst_parameter"}
    assert r.samples.shape == (160, 3)


def test_bounded_parameter_stays_inside():
    from likeflow.targets.likelihoods.base import Target

    class HalfNormal(Target):
        names, poi = ["s", "x"], ["s"]
        bounds = np.array([[0.0, np.inf], [-1.0, 1.0]])

        def log_likelihood(self, x):
            return -0.5 * x[..., 0] ** 2 - 0.5 * (x[..., 1] / 0.5) ** 2

        def log_prior(self, x):
            return tf.zeros_like(x[..., 0])

        def initial_points(self, n, seed=0):
            rng = np.random.default_rng(seed)
            return np.c_[rng.uniform(0.1, 1, n), rng.uniform(-0.5, 0.5, n)]

    r = run_mcmc(HalfNormal(), 32 * 200, MCMCConfig(chains=32, warmup=300, seed=1))
    s = r.samples
    assert (s[:, 0] > 0).all() and (np.abs(s[:, 1]) < 1).all()
    assert s[:, 0].mean() == pytest.approx(np.sqrt(2 / np.pi), abs=0.05)


def test_the_sampler_is_traced_once_whatever_the_rounds_and_blocks():
    """Tracing NUTS costs seconds: a run traces its warm-up once and its draws once, however
    many warm-up rounds (of different lengths) and blocks of draws (a partial one last) it
    runs. Counted as the Python calls of the target's log density, which only tracing makes."""
    class Counted(CorrelatedGaussian):
        calls = 0

        def log_likelihood(self, x):
            type(self).calls += 1
            return super().log_likelihood(x)

    def calls_of(config):
        Counted.calls = 0
        run_mcmc(Counted(2, seed=0), 4 * 30, config)
        return Counted.calls

    # one block of draws, three warm-up rounds of 50 steps
    few = calls_of(MCMCConfig(chains=4, warmup=100, thin=1, block=30, seed=0))
    # five blocks of draws (four of 7 and a partial one of 2), rounds of 50, 90 and 165 steps
    many = calls_of(MCMCConfig(chains=4, warmup=300, thin=1, block=7, seed=0))
    assert few > 0 and many == few


def test_random_walk_metropolis_reproduces_a_gaussian():
    """The gradient-free kernel (targets without TensorFlow gradients): five warm-up rounds
    rescale its proposal towards an acceptance of about 0.23 and learn a dense metric."""
    t = CorrelatedGaussian(3, seed=0)
    r = run_mcmc(t, 8 * 1000, MCMCConfig(chains=8, warmup=1000, seed=3, kernel="rwm"))
    assert r.kernel == "rwm" and r.tree_size is None
    assert 0.1 < r.accept_rate < 0.6, r.accept_rate
    assert r.rhat.max() < 1.05, r.rhat
    se = np.sqrt(np.diag(t.cov) / r.ess)
    assert np.abs((r.samples.mean(0) - t.mean) / se).max() < 4.5
    np.testing.assert_allclose(np.cov(r.samples.T), t.cov, atol=0.25 * np.abs(t.cov).max())
