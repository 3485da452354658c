"""The validation suite end to end: a bad surrogate is flagged, a good one sits at the floor."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from likeflow.cli import cli  # noqa: E402
from likeflow.targets.likelihoods import CorrelatedGaussian, GaussianMixture  # noqa: E402
from likeflow.validation.report import validate_test  # noqa: E402
from likeflow.data.samples import SampleSet, write_samples  # noqa: E402
from likeflow.fitting.run import fit  # noqa: E402
from likeflow.surrogate.loading import load  # noqa: E402
from likeflow.fitting.loop import TrainConfig  # noqa: E402


def target_set(target, n, seed=0):
    x = target.sample(n, seed=seed)
    return SampleSet(x, names=target.names, log_prob=target.evaluate(x)["log_prob"])


@pytest.mark.slow
def test_one_epoch_surrogate_of_a_mixture_is_flagged():
    s = target_set(GaussianMixture(4, components=3, seed=2), 20000)
    sur = fit(s, validate=False, flow_config={"layers": 2, "hidden": (16,)},
              train_config=TrainConfig(epochs=1, learning_rate=1e-4))
    test, notes = sur.held_out(s)
    assert notes == [] and test.n == 2000
    res = validate_test(sur, test, seed=1)
    assert len(res.flagged) >= 2
    assert res.model["ks_mean_pvalue_batched"] < 0.2 < res.floor["ks_mean_pvalue_batched"]
    assert res.log_prob["pearson"] < 0.99
    assert "FLAGGED" in res.table()


@pytest.mark.slow
def test_well_trained_surrogate_sits_at_the_noise_floor():
    s = target_set(CorrelatedGaussian(4, seed=5), 30000)
    sur = fit(s, validate=False, flow_config={"layers": 3, "hidden": (32, 32)},
              train_config=TrainConfig(epochs=30, patience=5, batch_size=256))
    test, _ = sur.held_out(s)
    res = validate_test(sur, test, seed=2)
    m, f = res.model, res.floor
    assert res.flagged == []
    assert m["ks_mean_pvalue_batched"] > 0.3
    assert m["w1_std_units_median"] < 2.0 * f["w1_std_units_median"] + 0.01
    assert m["corr_frobenius_normalised"] < 2.0 * f["corr_frobenius_normalised"] + 0.01
    assert res.log_prob["pearson"] > 0.995
    assert res.latent["pvalue"] > 1e-3


def test_validate_cli_writes_the_report(tmp_path):
    s = target_set(CorrelatedGaussian(3, seed=1), 4000)
    s.poi = ["x0"]
    write_samples(tmp_path / "g.h5", s)
    out = tmp_path / "g.likeflow.h5"
    r = CliRunner().invoke(cli, ["fit", str(tmp_path / "g.h5"), "-o", str(out), "--layers", "2",
                                 "--hidden", "16", "--epochs", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "KS mean p-value" in r.stdout and (tmp_path / "g.likeflow-report" / "index.html").exists()
    assert load(out).validation["rows"][0]["metric"].startswith("KS mean p-value")
    rep = tmp_path / "rep"
    r = CliRunner().invoke(cli, ["validate", str(out), str(tmp_path / "g.h5"), "--report",
                                 str(rep)])
    assert r.exit_code == 0, r.output
    assert "noise floor" in r.stdout and "worst dimensions" in r.stdout
    for f in ("metrics.json", "index.html", "marginals.png", "corner.png", "corr_diff.png",
              "log_prob.png", "training.png"):
        assert (rep / f).exists(), f
    m = json.loads((rep / "metrics.json").read_text())
    assert m["n"] == 200  # the 400-row test split, in two halves
    html = (rep / "index.html").read_text()
    assert "marginals.png" in html and "noise floor" in html
    # another file: all rows used, and said so
    write_samples(tmp_path / "other.h5", target_set(CorrelatedGaussian(3, seed=1), 1000, seed=9))
    r = CliRunner().invoke(cli, ["validate", str(out), str(tmp_path / "other.h5"), "--json"])
    assert r.exit_code == 0
    m = json.loads(r.stdout)
    assert m["n"] == 500 and "differ from the data" in m["notes"][0]
    # the training file read another way: the rows training used are left out
    r = CliRunner().invoke(cli, ["validate", str(out), str(tmp_path / "g.h5"), "--json",
                                 "--max-samples", "3000", "--seed", "4"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert "are left out" in m["notes"][0] and m["n"] < 3000 * 0.25
