"""Weighted samples: weighted metrics against their known answers, and validation of
importance-weighted test samples (at the noise floor with their weights, flagged without)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import likeflow
from likeflow.validation import metrics
from likeflow.flows.config import FlowConfig, expected_weight_shapes
from likeflow.flows.numpy_flow import NumpyFlow
from likeflow.surrogate.artifact import Surrogate

D = 8


def standard_normal() -> Surrogate:
    cfg = FlowConfig(dim=D, flow="maf", layers=1, hidden=(4,))
    return Surrogate(NumpyFlow(cfg, [np.zeros(s) for s in expected_weight_shapes(cfg)]))


def importance_sample(n: int, seed: int):
    """N(0, I) by importance sampling from N(0, 1.6^2 I)."""
    x = np.random.default_rng(seed).normal(0, 1.6, size=(n, D))
    logw = (stats.norm.logpdf(x).sum(1) - stats.norm.logpdf(x, scale=1.6).sum(1))
    return x, np.exp(logw - logw.max())


def test_weighted_metrics_known_answers():
    x, w = importance_sample(200_000, 0)
    np.testing.assert_allclose(metrics.weighted_std(x, w), 1.0, atol=0.01)
    np.testing.assert_allclose(metrics.weighted_quantile(x, [0.025, 0.975], w),
                               [[-1.96] * D, [1.96] * D], atol=0.03)
    ess = metrics.effective_size(w, len(w))
    # E[w^2] / E[w]^2 = (s^2 / sqrt(2 s^2 - 1))^D for a N(0, s^2) proposal of N(0, 1)
    expected = len(w) / (1.6 ** 2 / np.sqrt(2 * 1.6 ** 2 - 1)) ** D
    assert ess == pytest.approx(expected, rel=0.1)
    assert metrics.effective_size(None, 10) == 10.0
    # weights that duplicate rows give the statistics of the duplicated sample
    a = np.random.default_rng(1).normal(size=(300, 2))
    k = np.random.default_rng(2).integers(1, 4, size=300)
    rep = np.repeat(a, k, axis=0)
    b = np.random.default_rng(3).normal(size=(500, 2))
    s_w, _ = metrics.ks_per_dim(a, b, wa=k.astype(float))
    s_r, _ = metrics.ks_per_dim(rep, b)
    np.testing.assert_allclose(s_w, s_r, atol=1e-12)
    w1_w, _ = metrics.wasserstein_per_dim(a, b, wa=k.astype(float))
    w1_r, _ = metrics.wasserstein_per_dim(rep, b)
    np.testing.assert_allclose(w1_w, w1_r, rtol=1e-10)
    c_w = metrics.correlation_frobenius(a, b, wa=k.astype(float))[0]
    c_r = metrics.correlation_frobenius(rep, b)[0]
    assert c_w == pytest.approx(c_r, rel=1e-10)


def test_weighted_ks_pvalues_are_uniform_under_the_null():
    p = []
    for seed in range(60):
        x, w = importance_sample(2000, seed)
        y = np.random.default_rng(1000 + seed).normal(size=(2000, 1))
        p.append(metrics.ks_per_dim(y, x[:, :1], wb=w)[1][0])
    assert stats.kstest(p, "uniform").pvalue > 0.01


def test_importance_weighted_samples_validate_at_the_noise_floor():
    sur = standard_normal()
    x, w = importance_sample(100_000, 5)
    weighted = likeflow.validate(sur, likeflow.SampleSet(x, weights=w), seed=1)
    assert weighted.verdict()[0] == "PASS", weighted.table()
    assert weighted.flagged == []
    assert any("effective size" in n for n in weighted.notes)
    unweighted = likeflow.validate(sur, likeflow.SampleSet(x), seed=1)
    assert set(unweighted.flagged) == {f"x{i}" for i in range(D)}
    assert unweighted.verdict()[0] != "PASS"
