"""The whole path from a workspace in one command: ``likeflow fit WS.json`` samples the
observed likelihood and its Asimov partner, fits, refines and chooses the partner, fits and
refines the observed surrogate, holds the pair to pyhf and records the check; resumes, publishes,
verifies; and refuses what it cannot do."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")
pyhf = pytest.importorskip("pyhf")

from likeflow.cli import cli  # noqa: E402
from likeflow.data.samples import read_samples  # noqa: E402

from pyhf_workspaces import small_workspace, written  # noqa: E402


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory):
    return written(tmp_path_factory, "small", small_workspace(observed_shift=-0.5))


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
    from likeflow.fitting.workspace import (OBSERVED_REFINE_ROUNDS, PARTNER_Q_MAX,
                                            REFINE_DENSITY_WEIGHT)
    for name in ("asimov", "asimov-rejected"):
        pref = likeflow.load(f"{stem}.{name}.likeflow.h5", backend="numpy").training["refinement"]
        assert pref["q_max"] == PARTNER_Q_MAX and pref["anchors_added"] > 0, name
        assert pref["score"] == "band", name
        assert pref["density_weight"] == REFINE_DENSITY_WEIGHT, name
        scores = [np.inf if v is None else v for v in pref["scores"]]
        assert scores[pref["kept"]] == min(scores), name
    # the choice reads each partner's band error from its refinement record: the saved file's
    # own band error, not a second computation of it
    from likeflow.infer.cls import band_error, cls_limits
    from likeflow.targets.likelihoods.pyhf_target import PyhfTarget
    exact_a = PyhfTarget(str(ws), asimov=True)
    band = cls_limits(exact_a, exact_a, "mu", seed=1).expected
    for name in ("asimov", "asimov-rejected"):
        p = likeflow.load(f"{stem}.{name}.likeflow.h5")
        pref = p.training["refinement"]
        kept = pref["scores"][pref["kept"]]     # None: a limit missing (inf)
        assert band_error(p, band, "mu", seed=1) == pytest.approx(
            np.inf if kept is None else kept, rel=1e-6, abs=1e-9), name
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
    assert ref["density_weight"] == REFINE_DENSITY_WEIGHT
    assert ref["rounds"] == OBSERVED_REFINE_ROUNDS and len(ref["scores"]) == ref["rounds"] + 1
    assert ref["scores"][ref["kept"]] == min(ref["scores"])
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
