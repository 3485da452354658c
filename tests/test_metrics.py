"""Each metric against a case with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from likeflow.validation import metrics

N = 40000


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_identical_distributions_sit_at_the_noise_floor(rng):
    a, b = rng.normal(size=(N, 4)), rng.normal(size=(N, 4))
    mean_p, std_p = metrics.ks_mean_pvalue_batched(a, b, batches=20)
    assert abs(mean_p - 0.5) < 0.08 and std_p < 0.25
    stat, p = metrics.ks_per_dim(a, b)
    assert stat.max() < 2.0 * np.sqrt(2 / N) * 1.36  # well inside the 5% critical value x 2
    w, ws = metrics.wasserstein_per_dim(a, b)
    assert ws.max() < 0.03
    assert metrics.sliced_wasserstein(a, b) < 0.03
    assert metrics.correlation_frobenius(a, b)[1] < 0.02


@pytest.mark.parametrize("delta", [0.1, 0.5])
def test_shifted_gaussian_gives_the_analytic_ks_and_w1(rng, delta):
    a, b = rng.normal(delta, 1, size=(N, 1)), rng.normal(0, 1, size=(N, 1))
    stat, p = metrics.ks_per_dim(a, b)
    assert stat[0] == pytest.approx(2 * stats.norm.cdf(delta / 2) - 1, abs=0.01)
    w, ws = metrics.wasserstein_per_dim(a, b)
    assert w[0] == pytest.approx(delta, abs=0.015)
    iv = metrics.interval_differences(a, b)
    assert iv["0.68"]["diff_std"][0] == pytest.approx(delta, abs=0.03)


def test_rescaled_gaussian_gives_the_analytic_w1_and_ks(rng):
    s = 1.5
    a, b = rng.normal(0, s, size=(N, 1)), rng.normal(0, 1, size=(N, 1))
    w, ws = metrics.wasserstein_per_dim(a, b)
    assert w[0] == pytest.approx((s - 1) * np.sqrt(2 / np.pi), abs=0.015)
    x = np.linspace(-5, 5, 20001)
    ks_exact = np.abs(stats.norm.cdf(x / s) - stats.norm.cdf(x)).max()
    assert metrics.ks_per_dim(a, b)[0][0] == pytest.approx(ks_exact, abs=0.01)


def test_known_correlation_change_gives_the_frobenius_norm(rng):
    def corr_sample(rho):
        return rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=N)

    frob, norm, diff = metrics.correlation_frobenius(corr_sample(0.8), corr_sample(0.2))
    assert frob == pytest.approx(np.sqrt(2) * 0.6, abs=0.02)
    assert norm == pytest.approx(0.6, abs=0.015)
    assert diff[0, 1] == pytest.approx(0.6, abs=0.015)


def test_log_prob_of_the_exact_density_correlates_perfectly(rng):
    x = rng.normal(size=(5000, 3))
    truth = stats.multivariate_normal(np.zeros(3)).logpdf(x)
    res = metrics.log_prob_agreement(truth + 12.5, truth)
    assert res["pearson"] == pytest.approx(1.0) and res["spearman"] == pytest.approx(1.0)
    assert res["diff_mean"] == pytest.approx(12.5) and res["diff_std"] < 1e-9
    noisy = metrics.log_prob_agreement(truth + rng.normal(size=5000), truth)
    assert noisy["pearson"] < 0.9 and noisy["diff_std"] == pytest.approx(1.0, abs=0.05)
    with_inf = metrics.log_prob_agreement(np.append(truth, -np.inf), np.append(truth, 0.0))
    assert with_inf["nonfinite"] == 1


def test_latent_chi2_accepts_normals_and_rejects_scaled(rng):
    assert metrics.latent_chi2(rng.normal(size=(5000, 10)))["pvalue"] > 0.01
    bad = metrics.latent_chi2(1.2 * rng.normal(size=(5000, 10)))
    assert bad["pvalue"] < 1e-6 and bad["mean_r2"] == pytest.approx(14.4, rel=0.05)


def test_two_sample_metrics_summary_keys(rng):
    a, b = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3))
    m = metrics.two_sample_metrics(a, b)
    assert len(m["ks_pvalue"]) == 3 and m["n"] == 2000
    assert set(m["interval_diff_std_max"]) == {"0.68", "0.95", "0.997"}


@pytest.mark.parametrize("n_a", [700, 1000])
def test_w1_equals_scipy_for_equal_and_unequal_sizes(n_a):
    """Equal sizes take the sorted-difference shortcut; it must be scipy's number."""
    from scipy import stats
    rng = np.random.default_rng(4)
    a, b = rng.standard_t(3, size=(n_a, 4)), rng.normal(size=(1000, 4)) * [1, 2, 3, 4]
    w, _ = metrics.wasserstein_per_dim(a, b)
    ref = [stats.wasserstein_distance(a[:, i], b[:, i]) for i in range(4)]
    np.testing.assert_allclose(w, ref, rtol=1e-10)
