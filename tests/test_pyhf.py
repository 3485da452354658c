"""pyhf workspaces as targets: names, bounds, log densities equal pyhf's, MCMC sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")
pyhf = pytest.importorskip("pyhf")

from likeflow.cli import cli  # noqa: E402
from likeflow.likelihoods.pyhf_target import PyhfTarget  # noqa: E402
from likeflow.samples import read_samples  # noqa: E402

N_BINS = 56


def workspace() -> dict:
    """One channel of 56 bins: per-bin staterror, three normsys, one histosys: 61 parameters."""
    rng = np.random.default_rng(0)
    bkg = (200 * np.exp(-np.arange(N_BINS) / 15) + 5).round(1)
    sig = (8 * np.exp(-0.5 * ((np.arange(N_BINS) - 20) / 5) ** 2)).round(2)
    obs = rng.poisson(bkg).astype(float)
    samples = [
        {"name": "signal", "data": sig.tolist(), "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "lumi_sig", "type": "normsys", "data": {"hi": 1.02, "lo": 0.98}}]},
        {"name": "background", "data": bkg.tolist(), "modifiers": [
            {"name": "staterror_sr", "type": "staterror", "data": (0.05 * bkg).tolist()},
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            {"name": "bkg_xsec", "type": "normsys", "data": {"hi": 1.05, "lo": 0.94}},
            {"name": "bkg_shape", "type": "histosys", "data": {
                "hi_data": (bkg * np.linspace(1.08, 0.92, N_BINS)).tolist(),
                "lo_data": (bkg * np.linspace(0.93, 1.07, N_BINS)).tolist()}}]},
    ]
    return {"channels": [{"name": "sr", "samples": samples}],
            "observations": [{"name": "sr", "data": obs.tolist()}],
            "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0.0, 5.0]]}]}}],
            "version": "1.0.0"}


@pytest.fixture(scope="module")
def ws_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("pyhf") / "ws.json"
    p.write_text(json.dumps(workspace()))
    return p


def test_target_names_bounds_and_log_density(ws_file):
    t = PyhfTarget(ws_file)
    assert t.dim == 61 and t.poi == ["mu"]
    assert "mu" in t.names and "staterror_sr[0]" in t.names
    assert list(t.bounds[t.names.index("mu")]) == [0.0, 5.0]
    x = t.initial_points(7, seed=1)
    ev = t.evaluate(x)
    ref = [float(t.model.logpdf(p, t.data)[0]) for p in x]
    np.testing.assert_allclose(ev["log_likelihood"], ref, rtol=1e-12)
    outside = x[:1].copy()
    outside[0, t.names.index("mu")] = -0.5
    assert t.evaluate(outside)["log_prob"][0] == -np.inf


@pytest.mark.slow
def test_generate_pyhf_samples_with_pyhf_log_densities(ws_file, tmp_path):
    out = tmp_path / "pyhf.h5"
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(ws_file), "-n", "2000", "-o", str(out),
                                 "--chains", "40", "--warmup", "600", "--allow-unconverged"])
    assert r.exit_code == 0, r.output
    s = read_samples(out)
    assert s.n == 2000 and s.dim == 61 and s.poi == ["mu"]
    t = PyhfTarget(ws_file)
    rows = np.random.default_rng(0).choice(s.n, 10, replace=False)
    ref = [float(t.model.logpdf(s.values[i], t.data)[0]) for i in rows]
    np.testing.assert_allclose(s.log_prob[rows], ref, rtol=1e-10)
    mu = s.values[:, s.names.index("mu")]
    assert (mu > 0).all() and (mu < 5).all()
    # the sampler moved: the chains spread around the best fit
    assert mu.std() > 0.05
    assert "R-hat" in r.stderr


def test_bad_workspace(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"channels": []}))
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(p), "-n", "10", "-o",
                                 str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and "not a valid pyhf workspace" in r.stderr
