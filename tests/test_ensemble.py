"""Ensembles (likeflow ensemble): surrogates of the same data as one; held-out likelihood at
least the best member's, the members' spread larger off the data than on it; the file, eval
--spread, profiles with the members' limits."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import likeflow
from likeflow.cli import cli

pytest.importorskip("tensorflow", reason="fits the members")
COV = np.array([[1.0, 0.6], [0.6, 1.0]])


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ens")
    data = likeflow.SampleSet(np.random.default_rng(0).multivariate_normal([0, 0], COV, 20000),
                              names=["mu", "theta"], poi=["mu"])
    paths = []
    for seed in range(3):
        paths.append(folder / f"m{seed}.likeflow.h5")
        likeflow.fit(data, seed=seed, out=paths[-1], validate=False,
                     flow_config={"layers": 3, "hidden": (32,)},
                     train_config=likeflow.TrainConfig(epochs=20))
    return folder, paths


def test_ensemble_likelihood_and_spread(members):
    folder, paths = members
    ens = likeflow.ensemble(paths, out=folder / "ens.likeflow.h5")
    assert ens.kind == "ensemble" and len(ens.components) == 3
    test = np.random.default_rng(7).multivariate_normal([0, 0], COV, 20000)
    lp_members = [likeflow.load(p).log_prob(test) for p in paths]
    lp_ens = ens.log_prob(test)
    # never below the members' mean (Jensen), and at least as good as the best member
    # within the test points' precision (two standard errors of the mean difference)
    assert lp_ens.mean() >= np.mean([m.mean() for m in lp_members])
    best = max(lp_members, key=np.mean)
    diff = lp_ens - best
    assert diff.mean() >= -2 * diff.std() / np.sqrt(len(diff))
    on = np.median(ens.member_spread(test))
    far = np.median(ens.member_spread(np.random.default_rng(8).normal(0, 1, (500, 2)) * 0.3
                                      + np.array([5.0, -5.0])))
    assert far > 3 * on
    again = likeflow.load(folder / "ens.likeflow.h5", backend="numpy")
    assert again.kind == "ensemble"
    summary = again.summary()
    assert summary["kind"] == "ensemble" and summary["components"]["flows"] == 3
    assert sum(summary["components"]["weights"]) == pytest.approx(1.0)
    np.testing.assert_allclose(again.log_prob(test[:200]), ens.log_prob(test[:200]), atol=1e-4)


def test_ensemble_cli_eval_spread_and_profile(members, tmp_path):
    folder, paths = members
    out = tmp_path / "e.likeflow.h5"
    r = CliRunner().invoke(cli, ["ensemble", *map(str, paths), "-o", str(out)])
    assert r.exit_code == 0, r.output
    pts = tmp_path / "p.h5"
    likeflow.write_samples(pts, likeflow.SampleSet(np.array([[0.0, 0.0], [6.0, -6.0]]),
                                                   names=["mu", "theta"]))
    r = CliRunner().invoke(cli, ["eval", str(out), str(pts), "--spread"])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines()[1:]]
    assert float(rows[1][1]) > float(rows[0][1])
    r = CliRunner().invoke(cli, ["eval", str(paths[0]), str(pts), "--spread"])
    assert r.exit_code == 2 and "ensemble" in r.output
    res = likeflow.profile(likeflow.load(out), "mu", values=np.linspace(-1, 3, 5),
                           bayesian_samples=5000)
    assert len(res.member_upper_limits) == 3 and "members'" in res.table()
    with pytest.raises(likeflow.LikeflowError, match="at least two"):
        likeflow.ensemble(paths[:1])


def test_eval_ensemble_and_export_check_their_outputs_in_the_api(members, tmp_path):
    """What 'likeflow eval' prints is likeflow.evaluate's; an output that is an input is
    refused by the API itself (evaluate, ensemble, export_onnx), before anything is written."""
    _, paths = members
    points = np.array([[0.1, 0.2], [np.nan, 0.0], [1.0, -1.0]])
    pts = tmp_path / "points.h5"
    likeflow.write_samples(pts, likeflow.SampleSet(points, names=["mu", "theta"]))
    sur = likeflow.load(paths[0])
    ev = likeflow.evaluate(paths[0], pts)
    assert ev.undefined.tolist() == [1] and np.isnan(ev.log_prob[1])
    np.testing.assert_allclose(ev.log_prob[[0, 2]], sur.log_prob(points[[0, 2]]), rtol=1e-12)
    r = CliRunner().invoke(cli, ["eval", str(paths[0]), str(pts)])
    assert r.exit_code == 0 and "hold NaN or inf (row 1)" in r.stderr
    np.testing.assert_allclose([float(v) for v in r.stdout.split()], ev.log_prob, rtol=1e-9)
    with pytest.raises(likeflow.LikeflowError, match="needs an ensemble"):
        likeflow.evaluate(sur, pts, spread=True)
    before = paths[0].read_bytes()
    for call in (lambda: likeflow.evaluate(paths[0], pts, out=pts),
                 lambda: likeflow.ensemble(paths, out=paths[0]),
                 lambda: likeflow.export_onnx(sur, tmp_path / "m.h5")):
        with pytest.raises(likeflow.LikeflowError, match="also an input|\\.onnx name"):
            call()
    assert paths[0].read_bytes() == before
    ens = likeflow.ensemble(paths[:2], out=tmp_path / "ens.likeflow.h5")
    spread = likeflow.evaluate(ens, pts, spread=True, out=tmp_path / "scored.h5").scores
    assert spread["log_prob_spread"][0] > 0
    assert likeflow.read_samples(tmp_path / "scored.h5", check=False).dim == 2
