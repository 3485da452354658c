"""pyhf workspaces that fix parameters in their measurement (a luminosity, a normalisation):
held at their values, recorded, not sampled; the exact profile equals pyhf's fixed-POI fit;
sampled, fitted and profiled end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")
pyhf = pytest.importorskip("pyhf")

from likeflow.cli import cli  # noqa: E402
from likeflow.targets.likelihoods.pyhf_target import PyhfTarget  # noqa: E402
from likeflow.data.samples import read_samples  # noqa: E402

from pyhf_workspaces import fixed_workspace, pyhf_q, small_workspace, written  # noqa: E402


@pytest.fixture(scope="module")
def fixed_ws(tmp_path_factory):
    return written(tmp_path_factory, "fixed", fixed_workspace())


def test_fixed_parameters_are_held_recorded_and_not_sampled(fixed_ws):
    t = PyhfTarget(fixed_ws)
    full = t.model.config.par_names
    assert "k_bkg" in full and "bkg_norm" in full
    assert t.names == [n for n in full if n not in ("k_bkg", "bkg_norm")]
    assert t.dim == len(full) - 2 and t.bounds.shape == (t.dim, 2)
    assert t.fixed_parameters == {"k_bkg": 1.1, "bkg_norm": 0.5}
    assert t.describe()["fixed_parameters"] == {"k_bkg": 1.1, "bkg_norm": 0.5}
    x = t.initial_points(5, seed=2)
    x_full = t.full(x)
    assert np.all(x_full[:, full.index("k_bkg")] == 1.1)
    ref = [float(t.model.logpdf(p, t.data)[0]) for p in x_full]
    np.testing.assert_allclose(t.evaluate(x)["log_likelihood"], ref, rtol=1e-12)
    # the TF log density and its gradient run on the free parameters alone
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = t.log_likelihood(xt)
    g = tape.gradient(y, xt).numpy()
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12)
    assert g.shape == x.shape and np.isfinite(g).all()


@pytest.mark.slow
def test_fixed_parameters_exact_profile_equals_pyhfs_fixed_poi_fit(fixed_ws):
    from likeflow.infer.inference import best_fit, scan

    t = PyhfTarget(fixed_ws)
    i = t.names.index("mu")
    ref = np.asarray(pyhf.infer.mle.fit(t.data, t.model))
    assert best_fit(t).x[i] == pytest.approx(float(ref[t.model.config.poi_index]), abs=2e-3)
    assert t.best_fit()[i] == pytest.approx(float(ref[t.model.config.poi_index]), abs=2e-3)
    grid = np.linspace(0.0, 3.0, 7)
    prof = scan(t, "mu", grid)
    np.testing.assert_allclose(prof.q, pyhf_q(t, grid), atol=0.01)
    # the fixed values matter: the same workspace with them free profiles differently
    free = PyhfTarget(small_workspace(observed_shift=-0.5))
    assert np.max(np.abs(scan(free, "mu", grid).q - prof.q)) > 0.05


def test_a_fixed_poi_is_refused(tmp_path):
    spec = small_workspace()
    spec["measurements"][0]["config"]["parameters"] = [{"name": "mu", "fixed": True,
                                                        "inits": [1.0]}]
    p = tmp_path / "ws.json"
    p.write_text(json.dumps(spec))
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(p), "-n", "10", "-o",
                                 str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and "the POI 'mu' is fixed" in r.stderr


@pytest.mark.slow
def test_fixed_parameters_sample_fit_and_profile(fixed_ws, tmp_path):
    """The whole path on a workspace that fixes parameters: generate, fit, profile against
    the exact profile."""
    out, sur = tmp_path / "s.h5", tmp_path / "s.likeflow.h5"
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(fixed_ws), "-n", "20000", "-o",
                                 str(out)])
    assert r.exit_code == 0, r.output
    s = read_samples(out)
    t = PyhfTarget(fixed_ws)
    assert s.names == t.names and s.dim == t.dim
    np.testing.assert_allclose(s.log_prob[:20], t.evaluate(s.values[:20])["log_prob"],
                               rtol=1e-9)
    r = CliRunner().invoke(cli, ["fit", str(out), "-o", str(sur), "--seed", "1"])
    assert r.exit_code == 0, r.output
    exact, approx = tmp_path / "exact.json", tmp_path / "sur.json"
    r = CliRunner().invoke(cli, ["profile", str(fixed_ws), "--range", "0:0.4", "--points", "9",
                                 "--json", str(exact)])
    assert r.exit_code == 0, r.output
    ex = json.loads(exact.read_text())["profile"]
    np.testing.assert_allclose(ex["q"], pyhf_q(t, ex["values"]), atol=0.01)
    r = CliRunner().invoke(cli, ["profile", str(sur), "--range", "0:0.4", "--points", "9",
                                 "--compare", str(exact), "--json", str(approx)])
    assert r.exit_code == 0, r.output
    got = json.loads(approx.read_text())["profile"]
    assert got["values"] == ex["values"]
    near = np.asarray(ex["q"]) < 4
    assert near.sum() >= 3
    # measured 0.14 (with 4,000 samples 0.94: a profile needs the samples)
    assert np.max(np.abs(np.asarray(got["q"]) - ex["q"])[near]) < 0.3
    # the exact check on the same surrogate: the same profile difference, importance weights
    rep = tmp_path / "rep"
    r = CliRunner().invoke(cli, ["validate", str(sur), str(out), "--exact", str(fixed_ws),
                                 "--range", "0:0.4", "--points", "9", "--report", str(rep),
                                 "--importance-samples", "20000"])
    assert r.exit_code == 0, r.output
    assert "exact verdict:" in r.output and "importance sampling" in r.output
    check = json.loads((rep / "exact.json").read_text())
    assert check["profile"]["values"] == ex["values"]
    np.testing.assert_allclose(check["profile"]["q_exact"], ex["q"], atol=1e-3)
    assert check["profile"]["max_difference"] < 0.3
    assert check["importance"]["ess_fraction"] > 0.3
    assert check["importance"]["reference_credible_limit"] is not None
    assert (rep / "exact_profile.png").exists() and (rep / "index.html").exists()
