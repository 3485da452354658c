"""pyhf workspaces as targets: names, bounds, log densities equal pyhf's, MCMC sampling."""

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


def _written(tmp_path_factory, name: str, spec: dict):
    """``spec`` as ws.json in a fresh folder (module fixtures share one file)."""
    p = tmp_path_factory.mktemp(name) / "ws.json"
    p.write_text(json.dumps(spec))
    return p


@pytest.fixture(scope="module")
def ws_file(tmp_path_factory):
    return _written(tmp_path_factory, "pyhf", workspace())


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
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(ws_file), "-n", "1000", "-o", str(out),
                                 "--chains", "4", "--warmup", "300", "--thin", "1",
                                 "--allow-unconverged"])
    assert r.exit_code == 0, r.output
    s = read_samples(out)
    assert s.n == 1000 and s.dim == 61 and s.poi == ["mu"]
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


# --- exact inference on pyhf targets against pyhf's own numbers -------------------------------

def small_workspace(signal_scale: float = 1.0, observed_shift: float = 0.0) -> dict:
    """Two channels of 4 bins, staterror, normsys and histosys: 12 parameters, POI mu in
    [0, 10]. ``observed_shift`` moves the observed counts (negative: a deficit, so the best
    fit of mu sits at its bound 0)."""
    bkg = [[50.0, 40.0, 25.0, 10.0], [120.0, 80.0, 30.0, 12.0]]
    sig = [[2.0, 4.0, 6.0, 5.0], [1.0, 3.0, 5.0, 6.0]]
    chans, obs = [], []
    for c, (b, s) in enumerate(zip(bkg, sig)):
        chans.append({"name": f"ch{c}", "samples": [
            {"name": "signal", "data": [signal_scale * v for v in s], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": b, "modifiers": [
                {"name": f"stat{c}", "type": "staterror", "data": [0.05 * v for v in b]},
                {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                {"name": "bkg_shape", "type": "histosys", "data": {
                    "hi_data": [v * f for v, f in zip(b, (1.05, 1.02, 0.98, 0.95))],
                    "lo_data": [v * f for v, f in zip(b, (0.95, 0.98, 1.02, 1.05))]}}]}]})
        obs.append({"name": f"ch{c}", "data": [max(0.0, v + observed_shift * v ** 0.5)
                                               for v in b]})
    return {"channels": chans, "observations": obs, "version": "1.0.0",
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0.0, 10.0]]}]}}]}


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory):
    return _written(tmp_path_factory, "small", small_workspace(observed_shift=-0.5))


def _pyhf_q(t, grid):
    """pyhf's -2 Delta log L at ``grid`` (fixed_poi_fit against fit) on the same workspace."""
    _, free = pyhf.infer.mle.fit(t.data, t.model, return_fitted_val=True)
    return np.array([float(pyhf.infer.mle.fixed_poi_fit(
        float(m), t.data, t.model, return_fitted_val=True)[1]) - float(free) for m in grid])


def test_exact_profile_and_best_fit_equal_pyhfs(small_ws):
    from likeflow.infer.inference import best_fit, scan

    t = PyhfTarget(small_ws)
    i = t.names.index("mu")
    ours = best_fit(t)
    ref = np.asarray(pyhf.infer.mle.fit(t.data, t.model))
    assert ours.x[i] == pytest.approx(float(ref[i]), abs=2e-3)  # the deficit: best fit at 0
    assert ours.x[i] < 0.01
    grid = np.linspace(0.0, 3.0, 7)
    prof = scan(t, "mu", grid)
    np.testing.assert_allclose(prof.q, _pyhf_q(t, grid), atol=0.01)
    assert prof.trusted.all() and prof.kind == "exact (pyhf)"


def _pyhf_limits_numpy(ws_path) -> tuple[float, list[float]]:
    """pyhf's own CLs limits, computed by pyhf's numpy backend in a process of its own (pyhf's
    backend is global, and its limit scan does not run on the TF backend)."""
    import subprocess
    import sys

    code = ("import json, sys, pyhf; pyhf.set_backend('numpy');"
            "ws = pyhf.Workspace(json.load(open(sys.argv[1]))); m = ws.model();"
            "o, e = pyhf.infer.intervals.upper_limits.toms748_scan(ws.data(m), m, 0.0, 10.0, "
            "rtol=1e-6); print(json.dumps([float(o), [float(x) for x in e]]))")
    out = subprocess.run([sys.executable, "-c", code, str(ws_path)], capture_output=True,
                         text=True, check=True, timeout=300)
    obs, exp = json.loads(out.stdout.strip().splitlines()[-1])
    return obs, exp


def test_exact_cls_limits_equal_pyhfs_within_one_percent(small_ws):
    from likeflow.infer.cls import cls_limits

    t = PyhfTarget(small_ws)
    a = PyhfTarget(small_ws, asimov=True)
    ours = cls_limits(t, a, "mu")
    obs, exp = _pyhf_limits_numpy(small_ws)
    assert ours.observed == pytest.approx(obs, rel=0.01)
    np.testing.assert_allclose(ours.expected, sorted(exp), rtol=0.01)
    assert "CLs" in ours.method and "q~" in ours.method


def test_band_error_of_the_exact_likelihood_is_zero(small_ws):
    from likeflow.infer.cls import band_difference, band_error, cls_limits

    a = PyhfTarget(small_ws, asimov=True)
    exact = cls_limits(a, a, "mu").expected
    assert band_error(a, exact, "mu") == pytest.approx(0.0, abs=1e-9)
    moved = [e * f for e, f in zip(exact, (1.0, 1.05, 0.9, 1.0, 1.02))]
    assert band_difference(moved, exact) == pytest.approx(0.1, rel=1e-9)
    assert band_difference([None, *exact[1:]], exact) == np.inf   # a limit on one side only


def test_pyhfs_best_fit_is_computed_once_per_target(small_ws, monkeypatch):
    """Every scan, band and candidate set of an exact likelihood starts at pyhf's best fit:
    fitted once per target, a copy handed out (a caller's change does not reach the next)."""
    t = PyhfTarget(small_ws)
    fits = []
    real = t._fit
    monkeypatch.setattr(t, "_fit", lambda *a, **k: fits.append(1) or real(*a, **k))
    first = t.best_fit()
    n = len(fits)
    assert n >= 5                                  # the free fit and 4 checks along the POI
    first[:] = np.nan
    t.initial_points(8)
    again = t.best_fit()
    assert len(fits) == n and np.isfinite(again).all()
    np.testing.assert_array_equal(again, t.best_fit())
    t.best_fit(checks=1)                           # another request is fitted
    assert len(fits) > n


def test_cls_values_match_pyhfs_calculator(small_ws):
    """The formulae alone, on pyhf's own test statistics at one mu."""
    from likeflow.infer.inference import cls_values

    t = PyhfTarget(small_ws)
    calc = pyhf.infer.calculators.AsymptoticCalculator(t.data, t.model, test_stat="qtilde")
    ts = calc.teststatistic(1.5)
    sb, b = calc.distributions(1.5)
    _, _, cls = calc.pvalues(ts, sb, b)
    q_a = float(calc.sqrtqmuA_v) ** 2
    # invert pyhf's test statistic to q~ (both branches of its definition)
    sqa = np.sqrt(q_a)
    t_ = float(ts)
    q = (t_ + sqa) ** 2 if t_ <= 0 else 2 * sqa * t_ + q_a
    ours, band = cls_values(np.array([q]), np.array([q_a]))
    assert ours[0] == pytest.approx(float(cls), rel=1e-6)
    _, _, exp = calc.expected_pvalues(sb, b)
    np.testing.assert_allclose(band[:, 0], [float(e) for e in exp], rtol=1e-6)


def test_asimov_target_has_its_best_fit_at_zero(small_ws):
    from likeflow.infer.inference import best_fit

    a = PyhfTarget(small_ws, asimov=True)
    assert "asimov" in a.describe()["data"]
    assert best_fit(a).x[a.names.index("mu")] < 1e-3


def test_cls_partner_of_another_dimension_is_refused():
    from likeflow.errors import LikeflowError
    from likeflow.infer.cls import cls_limits
    from likeflow.targets.likelihoods import CorrelatedGaussian

    with pytest.raises(LikeflowError, match="other parameters"):
        cls_limits(CorrelatedGaussian(3), CorrelatedGaussian(4), "x0")


def test_patch_that_does_not_apply(small_ws, tmp_path):
    bad = tmp_path / "patch.json"
    bad.write_text(json.dumps([{"op": "remove", "path": "/channels/7"}]))
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(small_ws), "--patch", str(bad), "-n",
                                 "10", "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and "does not apply" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_poi(small_ws, tmp_path):
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(small_ws), "--poi", "nope", "-n", "10",
                                 "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and "unknown POI 'nope'" in r.stderr, r.output


def test_workspace_that_is_not_json(tmp_path):
    p = tmp_path / "ws.json"
    p.write_text("{not json")
    r = CliRunner().invoke(cli, ["profile", str(p)])
    assert r.exit_code == 2 and "cannot read the pyhf workspace" in r.stderr, r.output


def test_exact_profile_command_with_plain_compare_file(small_ws, tmp_path):
    t = PyhfTarget(small_ws)
    grid = np.linspace(0.0, 2.0, 5)
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"grid": grid.tolist(), "q": _pyhf_q(t, grid).tolist()}))
    out = tmp_path / "exact.json"
    r = CliRunner().invoke(cli, ["profile", str(small_ws), "--range", "0:2", "--points", "5",
                                 "--compare", str(ref), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "exact (pyhf)" in r.output and "CLs upper limit on mu" in r.output
    res = json.loads(out.read_text())
    diff = np.asarray(res["profile"]["q"]) - _pyhf_q(t, grid)
    assert np.abs(diff).max() < 0.01
    assert res["cls"]["observed"] > 0 and len(res["cls"]["expected"]) == 5


@pytest.mark.parametrize("content", ["{bad json", json.dumps({"values": [1, 2]}),
                                     json.dumps({"grid": [0, 1], "q": [0]}), json.dumps([1])])
def test_bad_compare_file_fails_before_any_work(small_ws, tmp_path, content):
    ref = tmp_path / "ref.json"
    ref.write_text(content)
    r = CliRunner().invoke(cli, ["profile", str(small_ws), "--compare", str(ref)])
    assert r.exit_code == 2 and "--compare" in r.stderr, r.output
    assert "best fit" not in r.output  # nothing was computed


@pytest.mark.slow
def test_generate_small_workspace_converges_with_defaults(small_ws, tmp_path):
    from likeflow.data.samples import mcmc_record

    out = tmp_path / "s.h5"
    r = CliRunner().invoke(cli, ["generate", "pyhf", str(small_ws), "-n", "2000", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rec = mcmc_record(out)
    assert rec["kernel"] == "nuts" and rec["converged"] and rec["rhat_max"] < 1.01
    assert rec["chains"] * rec["draws_per_chain"] >= 2000 and rec["draws_per_chain"] >= 500
    s = read_samples(out)
    assert s.chain is not None and len(np.unique(s.chain)) == rec["chains"]
    t = PyhfTarget(small_ws)
    np.testing.assert_allclose(s.log_prob[:50], t.evaluate(s.values[:50])["log_prob"],
                               rtol=1e-9)
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert "MCMC: converged, kernel nuts" in info.output and "R-hat max" in info.output


# --- parameters fixed in the measurement -------------------------------------------------------

def fixed_workspace() -> dict:
    """``small_workspace`` with two parameters fixed in its measurement, as published
    workspaces fix a luminosity or a normalisation: a normfactor ``k_bkg`` held at 1.1 and the
    normsys ``bkg_norm`` held at 0.5."""
    spec = small_workspace(observed_shift=-0.5)
    for ch in spec["channels"]:
        ch["samples"][1]["modifiers"].append({"name": "k_bkg", "type": "normfactor",
                                              "data": None})
    spec["measurements"][0]["config"]["parameters"] += [
        {"name": "k_bkg", "fixed": True, "inits": [1.1], "bounds": [[0.5, 2.0]]},
        {"name": "bkg_norm", "fixed": True, "inits": [0.5]}]
    return spec


@pytest.fixture(scope="module")
def fixed_ws(tmp_path_factory):
    return _written(tmp_path_factory, "fixed", fixed_workspace())


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


def test_fixed_parameters_exact_profile_equals_pyhfs_fixed_poi_fit(fixed_ws):
    from likeflow.infer.inference import best_fit, scan

    t = PyhfTarget(fixed_ws)
    i = t.names.index("mu")
    ref = np.asarray(pyhf.infer.mle.fit(t.data, t.model))
    assert best_fit(t).x[i] == pytest.approx(float(ref[t.model.config.poi_index]), abs=2e-3)
    assert t.best_fit()[i] == pytest.approx(float(ref[t.model.config.poi_index]), abs=2e-3)
    grid = np.linspace(0.0, 3.0, 7)
    prof = scan(t, "mu", grid)
    np.testing.assert_allclose(prof.q, _pyhf_q(t, grid), atol=0.01)
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
    np.testing.assert_allclose(ex["q"], _pyhf_q(t, ex["values"]), atol=0.01)
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


# --- the whole path from a workspace: likeflow fit WS.json -------------------------------------

@pytest.mark.slow
def test_fit_a_workspace_in_one_command_and_resume(tmp_path):
    """Sample both likelihoods, fit both, check the pair against pyhf, record the check in the
    file; run again after losing the surrogate: the samples and the partner are reused; then
    publish and verify the bundle."""
    import likeflow
    ws = tmp_path / "ws.json"
    ws.write_text(json.dumps(small_workspace(observed_shift=-0.5)))
    r = CliRunner().invoke(cli, ["fit", str(ws), "-n", "4000", "--seed", "1", "-q"])
    assert r.exit_code == 0, r.output
    stem = tmp_path / "ws"
    for suffix in (".samples.h5", ".asimov.samples.h5", ".likeflow.h5", ".asimov.likeflow.h5"):
        assert (tmp_path / f"ws{suffix}").exists(), suffix
    assert (tmp_path / "ws.likeflow-report" / "exact_profile.png").exists()
    assert "CLs expected median" in r.output and "stages (s):" in r.output
    # the partner's bound is reflected by the sample rule: it is fitted both ways and the one
    # nearer the exact expected band kept, the other left beside it
    assert "partner_choice" in r.output and "keeping the" in r.stderr
    assert (tmp_path / "ws.asimov-rejected.likeflow.h5").exists()
    # both partners refined against the exact Asimov likelihood out to PARTNER_Q_MAX before the
    # choice (the +2 sigma expected limit lies past the anchors), each round scored by its
    # expected band: never left worse than fitted
    from likeflow.fitting.workspace import PARTNER_Q_MAX
    for name in ("asimov", "asimov-rejected"):
        pref = likeflow.load(f"{stem}.{name}.likeflow.h5", backend="numpy").training["refinement"]
        assert pref["q_max"] == PARTNER_Q_MAX and pref["anchors_added"] > 0, name
        assert pref["score"] == "band", name
        scores = [np.inf if v is None else v for v in pref["scores"]]
        assert scores[pref["kept"]] == min(scores), name
    sur = likeflow.load(f"{stem}.likeflow.h5", backend="numpy")
    exact = sur.validation["exact"]
    assert exact["workspace"] == str(ws) and len(exact["workspace_sha256"]) == 64
    assert [lim["name"] for lim in exact["limits"]][:2] == ["q~ profile limit", "CLs observed"]
    assert exact["importance"]["ess_fraction"] > 0.2
    order = ["PASS", "WARN", "FAIL"]
    assert order.index(sur.validation["verdict"]) >= order.index(exact["verdict"])
    assert sur.training["asimov_partner"] == "ws.asimov.likeflow.h5"
    # refined against the exact likelihood at its own modes: the kept round is the best
    # scored, the fit as it came (round 0) among them, so never worse than the fit
    ref = sur.training["refinement"]
    assert "refine" in r.output and ref["anchors_added"] > 0
    assert len(ref["scores"]) == ref["rounds"] + 1
    assert ref["scores"][ref["kept"]] == min(ref["scores"])
    from likeflow.targets.likelihoods.pyhf_target import PyhfTarget
    with pytest.raises(likeflow.LikeflowError, match="was not fitted to"):
        likeflow.refine(f"{stem}.likeflow.h5", f"{stem}.asimov.samples.h5", PyhfTarget(str(ws)))
    with pytest.raises(likeflow.LikeflowError, match="score must be one of profile, limits"):
        likeflow.refine(f"{stem}.likeflow.h5", f"{stem}.samples.h5", PyhfTarget(str(ws)),
                        score="q")
    asimov = read_samples(f"{stem}.asimov.samples.h5")
    assert asimov.n == 4000
    # the surrogate lost: samples and partner are reused, only the observed fit reruns
    (tmp_path / "ws.likeflow.h5").unlink()
    r = CliRunner().invoke(cli, ["fit", str(ws), "-n", "4000", "--seed", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "reused: samples, asimov_samples, partner" in r.output
    assert "not redrawn" in r.stderr and "not refitted" in r.stderr
    # publish the checked pair, then verify the bundle: its card carries the exact check
    r = CliRunner().invoke(cli, ["publish", f"{stem}.likeflow.h5", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["provenance"]["workspace"] == "ws.json"
    assert card["provenance"]["workspace_sha256"] == exact["workspace_sha256"]
    assert card["exact_check"]["limits"] == exact["limits"]
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    # a sample file of another request in the way is named, not overwritten
    r = CliRunner().invoke(cli, ["fit", str(ws), "-n", "5000", "-q"])
    assert r.exit_code == 2 and "a sample file of another request is in the way" in r.stderr


def test_fit_workspace_refusals(small_ws, tmp_path):
    for extra in (["--resume"], ["--no-validate"], ["--report", str(tmp_path / "r")]):
        r = CliRunner().invoke(cli, ["fit", str(small_ws), *extra])
        assert r.exit_code == 2 and "--resume and --asimov-partner are implied" in r.output
    h5 = tmp_path / "x.h5"
    h5.write_bytes(b"")
    r = CliRunner().invoke(cli, ["fit", str(h5), "--patch", str(small_ws)])
    assert r.exit_code == 2 and "--patch is for a pyhf workspace" in r.output
    bad = tmp_path / "patch.json"
    bad.write_text(json.dumps([{"op": "replace", "path": "/channels/7/samples", "value": []}]))
    r = CliRunner().invoke(cli, ["fit", str(small_ws), "--patch", str(bad)])
    assert r.exit_code == 2 and "does not apply" in r.stderr
    spec = small_workspace()
    del spec["measurements"][0]["config"]["poi"]
    nopoi = tmp_path / "nopoi.json"
    nopoi.write_text(json.dumps(spec))
    r = CliRunner().invoke(cli, ["fit", str(nopoi)])
    assert r.exit_code == 2 and "'poi' is a required property" in r.stderr  # pyhf's schema
    assert not list(tmp_path.glob("*.samples.h5"))
