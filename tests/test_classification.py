"""Density-ratio classification (likeflow.classify, likeflow classify): two Gaussians of equal
covariance, whose Bayes-optimal classifier and AUC are known, each fitted by a small flow."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

import likeflow
from likeflow.infer.classification import roc_curve
from likeflow.cli import cli

D = 4
COV = np.array([[1.0, 0.5, 0.0, 0.0], [0.5, 1.0, 0.3, 0.0], [0.0, 0.3, 1.0, -0.4],
                [0.0, 0.0, -0.4, 1.0]])
MU_S = np.array([1.0, 0.5, -0.5, 0.8])
MU_B = np.zeros(D)


def optimal_auc() -> float:
    d = MU_S - MU_B
    delta = np.sqrt(d @ np.linalg.solve(COV, d))
    return float(stats.norm.cdf(delta / np.sqrt(2)))


def test_roc_known_answers():
    fpr, tpr, auc = roc_curve(np.array([3, 2, 1, 0.0]), np.array([1, 1, 0, 0]))
    assert auc == 1.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    _, _, auc = roc_curve(np.array([1, 1, 1, 1.0]), np.array([1, 0, 1, 0]))
    assert auc == 0.5                      # ties count half
    with pytest.raises(likeflow.LikeflowError, match="both"):
        roc_curve(np.zeros(3), np.ones(3))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="fits the two surrogates")
    folder = tmp_path_factory.mktemp("classify")
    rng = np.random.default_rng(0)
    for name, mu in (("sig", MU_S), ("bkg", MU_B)):
        likeflow.fit(rng.multivariate_normal(mu, COV, 20000), seed=1, validate=False,
                     out=folder / f"{name}.likeflow.h5",
                     flow_config={"layers": 3, "hidden": (32, 32)},
                     train_config=likeflow.TrainConfig(epochs=20))
    n = 10000
    x = np.concatenate([rng.multivariate_normal(MU_S, COV, n), rng.multivariate_normal(MU_B, COV, n)])
    labels = np.r_[np.ones(n), np.zeros(n)].astype(int)
    likeflow.write_samples(folder / "points.h5", likeflow.SampleSet(x),
                           columns={"labels": labels})
    return folder, x, labels


def test_auc_within_001_of_the_bayes_optimal(pair):
    folder, x, labels = pair
    res = likeflow.classify(folder / "sig.likeflow.h5", folder / "bkg.likeflow.h5",
                            folder / "points.h5")
    exact = (stats.multivariate_normal(MU_S, COV).logpdf(x)
             - stats.multivariate_normal(MU_B, COV).logpdf(x))
    _, _, auc_exact = roc_curve(exact, labels)     # the optimal classifier on these points
    assert abs(auc_exact - optimal_auc()) < 0.01
    assert abs(res.auc - auc_exact) < 0.01
    assert res.accuracy == pytest.approx(np.mean((exact > 0) == (labels == 1)), abs=0.01)
    assert 0 < res.tpr_at(0.01) < res.tpr_at(0.1) < 1


def test_prior_ratio_moves_the_bayes_threshold(pair):
    folder, x, labels = pair
    a = likeflow.classify(folder / "sig.likeflow.h5", folder / "bkg.likeflow.h5", x)
    b = likeflow.classify(folder / "sig.likeflow.h5", folder / "bkg.likeflow.h5", x,
                          prior_ratio=0.01, labels=labels)
    np.testing.assert_allclose(b.log_ratio - a.log_ratio, np.log(0.01))
    assert a.labels is None and a.auc is None and b.auc is not None
    with pytest.raises(likeflow.LikeflowError, match="prior ratio"):
        likeflow.classify(folder / "sig.likeflow.h5", folder / "bkg.likeflow.h5", x,
                          prior_ratio=-1)
    with pytest.raises(likeflow.LikeflowError, match="labels must be"):
        likeflow.classify(folder / "sig.likeflow.h5", folder / "bkg.likeflow.h5", x,
                          labels=np.full(len(x), 2))


def test_cli_classify(pair, tmp_path):
    folder, x, labels = pair
    args = ["classify", str(folder / "sig.likeflow.h5"), str(folder / "bkg.likeflow.h5"),
            str(folder / "points.h5"), "--plot", str(tmp_path / "roc.png"), "--json",
            str(tmp_path / "c.json"), "-o", str(tmp_path / "scored.h5"), "--fpr", "0.01,0.2"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "AUC" in r.output and "TPR at FPR 0.2" in r.output
    assert (tmp_path / "roc.png").stat().st_size > 10000
    summary = json.loads((tmp_path / "c.json").read_text())
    assert summary["n_signal"] == 10000 and "0.01" in summary["tpr_at_fpr"]
    with h5py.File(tmp_path / "scored.h5") as f:
        assert f["log_ratio"].shape == (len(x),) and f["labels"][0] == 1
    r = CliRunner().invoke(cli, args[:4] + ["--fpr", "2"])
    assert r.exit_code == 2 and "(0, 1)" in r.output
