"""Marginal KL divergence and Bayesian model dimensionality (likeflow.marginal_stats) against
their analytic values for a correlated Gaussian posterior inside a uniform prior; the
nuisance-free likelihood; bad priors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import likeflow
from likeflow.infer.information import nuisance_free_log_likelihood

COV = np.array([[0.04, 0.012], [0.012, 0.09]])
MEAN = np.array([0.3, -0.2])
BOX = np.array([[-2.0, 3.0], [-4.0, 2.0]])     # a uniform prior far wider than the posterior


class ExactGaussian:
    """The marginal posterior, exactly: what a perfect surrogate of it would be."""

    names = ["a", "b"]
    bounds = BOX

    def __init__(self):
        self.dist = stats.multivariate_normal(MEAN, COV)

    def sample(self, n, seed=None):
        return self.dist.rvs(n, random_state=np.random.default_rng(seed))

    def log_prob(self, x):
        return self.dist.logpdf(x)


def analytic():
    d = 2
    entropy = 0.5 * math.log((2 * math.pi * math.e) ** d * np.linalg.det(COV))
    kl = math.log(np.prod(BOX[:, 1] - BOX[:, 0])) - entropy
    return kl, float(d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_and_bmd_equal_the_analytic_values_within_3_standard_errors(seed):
    kl, bmd = analytic()
    s = likeflow.marginal_stats(ExactGaussian(), n=200_000, seed=seed)
    assert abs(s.kl - kl) < 3 * s.kl_error
    assert abs(s.bmd - bmd) < 3 * s.bmd_error
    assert 0 < s.kl_error < 0.01 and 0 < s.bmd_error < 0.02
    assert "uniform" in s.prior and "KL" in s.table()


def test_a_prior_given_by_name_or_as_a_density():
    kl, _ = analytic()
    wider = likeflow.marginal_stats(ExactGaussian(), prior={"a": (-4.5, 5.5)}, n=50_000)
    # twice the width in a: log 2 more information
    assert wider.kl - kl == pytest.approx(math.log(2), abs=4 * wider.kl_error)

    class Prior:  # a Gaussian prior as a density: KL is then the analytic Gaussian one
        names = ["b", "a"]
        def log_prob(self, x):
            return stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(x)

    s = likeflow.marginal_stats(ExactGaussian(), prior=Prior(), n=200_000)
    cov_b = np.eye(2)[[1, 0]][:, [1, 0]]  # the prior's columns are b, a: the same unit matrix
    exact = 0.5 * (np.trace(np.linalg.solve(cov_b, COV)) + MEAN @ MEAN - 2
                   + math.log(np.linalg.det(cov_b) / np.linalg.det(COV)))
    assert abs(s.kl - exact) < 3 * s.kl_error


def test_nuisance_free_likelihood_and_errors():
    g = ExactGaussian()
    x = np.array([[0.3, -0.2], [0.0, 0.0]])
    log_l = nuisance_free_log_likelihood(g, x, log_evidence=-3.0)
    np.testing.assert_allclose(log_l, g.log_prob(x) - 3.0 + math.log(30.0))
    with pytest.raises(likeflow.LikeflowError, match="cover the posterior"):
        likeflow.marginal_stats(g, prior={"a": (0.0, 0.1)}, n=1000)
    with pytest.raises(likeflow.LikeflowError, match="finite bounds"):
        likeflow.marginal_stats(g, prior={"a": (0.0, None)}, n=1000)
    with pytest.raises(likeflow.LikeflowError, match="at least 100"):
        likeflow.marginal_stats(g, n=5)
    with pytest.raises(likeflow.LikeflowError, match="log evidence"):
        nuisance_free_log_likelihood(g, x, log_evidence=float("nan"))


def test_cli_marginal_stats(tmp_path):
    from click.testing import CliRunner

    from likeflow.cli import cli
    from likeflow.flows.config import FlowConfig, expected_weight_shapes
    from likeflow.flows.numpy_flow import NumpyFlow
    from likeflow.surrogate.artifact import Surrogate

    # an exact N(0, 1) in 'mu' (zero weights, no bounds)
    cfg = FlowConfig(dim=1, flow="maf", layers=1, hidden=(4,), names=["mu"])
    Surrogate(NumpyFlow(cfg, [np.zeros(s) for s in expected_weight_shapes(cfg)])).save(
        tmp_path / "mu.likeflow.h5")
    r = CliRunner().invoke(cli, ["marginal-stats", str(tmp_path / "mu.likeflow.h5"),
                                 "--bounds", "mu=-5:5", "-n", "50000", "--json",
                                 str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    import json
    s = json.loads((tmp_path / "s.json").read_text())
    # N(0, 1) in a box of width 10: KL = log 10 - 0.5 log(2 pi e), BMD = 1
    assert abs(s["kl"] - (math.log(10) - 0.5 * math.log(2 * math.pi * math.e))) < 4 * s["kl_error"]
    assert abs(s["bmd"] - 1.0) < 4 * s["bmd_error"]
    r = CliRunner().invoke(cli, ["marginal-stats", str(tmp_path / "mu.likeflow.h5"),
                                 "--bounds", "mu=0-5"])
    assert r.exit_code == 2 and "NAME=LO:HI" in r.output
