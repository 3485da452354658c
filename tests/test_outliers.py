"""Outlier scores (likeflow.typicality, likeflow eval --typicality) on an exact standard normal:
points of the distribution get uniform p-values and percentiles, shifted points are flagged."""

from __future__ import annotations

import h5py
import numpy as np
from click.testing import CliRunner
from scipy import stats

import likeflow
from likeflow.cli import cli
from likeflow.flows.config import FlowConfig, expected_weight_shapes
from likeflow.flows.numpy_flow import NumpyFlow
from likeflow.surrogate.artifact import Surrogate

D = 10


def standard_normal() -> Surrogate:
    """A flow with zero weights: exactly N(0, I_D) (no TensorFlow, no training)."""
    cfg = FlowConfig(dim=D, flow="maf", layers=2, hidden=(8,))
    return Surrogate(NumpyFlow(cfg, [np.zeros(s) for s in expected_weight_shapes(cfg)]))


def test_typical_points_are_uniform_and_shifted_ones_flagged():
    sur = standard_normal()
    x = np.random.default_rng(0).standard_normal((4000, D))
    t = likeflow.typicality(sur, x, seed=1)
    np.testing.assert_allclose(t["latent_radius"], np.linalg.norm(x, axis=1), rtol=1e-10)
    assert stats.kstest(t["radius_pvalue"], "uniform").pvalue > 0.01
    assert stats.kstest(t["log_prob_percentile"], "uniform").pvalue > 0.01
    shifted = likeflow.typicality(sur, x[:500] + 3.0)    # 3 sigma in every direction
    assert np.mean(shifted["radius_pvalue"] < 0.01) > 0.99
    assert np.mean(shifted["log_prob_percentile"] < 0.01) > 0.99
    # the mode is atypical in 10 dimensions: too close in
    centre = likeflow.typicality(sur, np.zeros((1, D)))
    assert centre["radius_pvalue"][0] < 1e-3 and centre["log_prob_percentile"][0] == 1.0


def test_cli_eval_typicality(tmp_path):
    sur = standard_normal()
    sur.save(tmp_path / "n.likeflow.h5")
    x = np.random.default_rng(2).standard_normal((50, D))
    x[0] += 4.0
    likeflow.write_samples(tmp_path / "p.h5", likeflow.SampleSet(x))
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "n.likeflow.h5"), str(tmp_path / "p.h5"),
                                 "--typicality", "-o", str(tmp_path / "out.h5")])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "out.h5") as f:
        p = f["radius_pvalue"][()]
        assert f["latent_radius"].shape == (50,) and "log_prob_percentile" in f
    assert p[0] < 1e-4 and np.median(p[1:]) > 0.1
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "n.likeflow.h5"), str(tmp_path / "p.h5"),
                                 "--typicality"])
    assert r.exit_code == 0 and len(r.output.splitlines()) == 51
