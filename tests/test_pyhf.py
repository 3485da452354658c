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

from pyhf_workspaces import pyhf_q, small_workspace, workspace, written  # noqa: E402


@pytest.fixture(scope="module")
def ws_file(tmp_path_factory):
    return written(tmp_path_factory, "pyhf", workspace())


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


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory):
    return written(tmp_path_factory, "small", small_workspace(observed_shift=-0.5))



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
    np.testing.assert_allclose(prof.q, pyhf_q(t, grid), atol=0.01)
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


@pytest.mark.slow
def test_exact_cls_limits_equal_pyhfs_within_one_percent(small_ws):
    from likeflow.infer.cls import cls_limits

    t = PyhfTarget(small_ws)
    a = PyhfTarget(small_ws, asimov=True)
    ours = cls_limits(t, a, "mu")
    obs, exp = _pyhf_limits_numpy(small_ws)
    assert ours.observed == pytest.approx(obs, rel=0.01)
    np.testing.assert_allclose(ours.expected, sorted(exp), rtol=0.01)
    assert "CLs" in ours.method and "q~" in ours.method


@pytest.mark.slow
def test_band_error_of_the_exact_likelihood_is_zero(small_ws):
    from likeflow.infer.cls import band_error, cls_limits

    a = PyhfTarget(small_ws, asimov=True)
    exact = cls_limits(a, a, "mu").expected
    assert band_error(a, exact, "mu") == pytest.approx(0.0, abs=1e-9)


def test_band_difference_is_the_largest_relative_shift():
    from likeflow.infer.cls import band_difference

    exact = [0.8, 1.1, 1.6, 2.4, 3.5]
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


@pytest.mark.slow
def test_exact_profile_command_with_plain_compare_file(small_ws, tmp_path):
    t = PyhfTarget(small_ws)
    grid = np.linspace(0.0, 2.0, 5)
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"grid": grid.tolist(), "q": pyhf_q(t, grid).tolist()}))
    out = tmp_path / "exact.json"
    r = CliRunner().invoke(cli, ["profile", str(small_ws), "--range", "0:2", "--points", "5",
                                 "--compare", str(ref), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "exact (pyhf)" in r.output and "CLs upper limit on mu" in r.output
    res = json.loads(out.read_text())
    diff = np.asarray(res["profile"]["q"]) - pyhf_q(t, grid)
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
