"""Publication bundles (``likeflow publish`` / ``verify``): the bundle's files, its card
against the schema, the README's snippets run, ONNX and spey agree with the card, and a
tampered bundle fails naming the file. The stored bundle in tests/data/bundle is verified in
the TensorFlow-free environment too (.ci/run)."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import likeflow
from likeflow.cli import cli
from likeflow.surrogate.publishing import REPRODUCE_RTOL, verify

STORED = os.path.join(os.path.dirname(__file__), "data", "bundle")


def _samples(mu_hat: float, n: int, seed: int) -> np.ndarray:
    from scipy import stats
    rng = np.random.default_rng(seed)
    mu = stats.truncnorm.rvs(-mu_hat, 10 - mu_hat, loc=mu_hat, size=n, random_state=rng)
    theta = 0.5 * (mu - mu_hat) + rng.normal(0, 0.8, n)
    return np.column_stack([mu, theta])


def make_pair(folder) -> str:
    """An observed surrogate (best fit 0.6) and its Asimov partner of a 2-parameter Gaussian
    with mu in [0, 10]: small flows, a few seconds."""
    for name, mu_hat, seed in (("asimov", 0.0, 1), ("obs", 0.6, 2)):
        likeflow.fit(_samples(mu_hat, 6000, seed), names=["mu", "theta"], poi=["mu"],
                     bounds={"mu": (0, 10)}, seed=seed, out=os.path.join(folder,
                                                                          f"{name}.likeflow.h5"),
                     asimov_partner=(os.path.join(folder, "asimov.likeflow.h5")
                                     if name == "obs" else None),
                     report=(os.path.join(folder, "obs.likeflow-report")
                             if name == "obs" else None),
                     flow_config={"layers": 2, "hidden": (16,), "dtype": "float64"},
                     train_config=likeflow.TrainConfig(epochs=6))
    return os.path.join(folder, "obs.likeflow.h5")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("pub")
    obs = make_pair(str(folder))
    out = folder / "bundle"
    r = CliRunner().invoke(cli, ["publish", obs, "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_the_bundle_holds_what_a_reinterpreter_needs(bundle):
    names = sorted(p.name for p in bundle.iterdir())
    assert names == sorted(["obs.likeflow.h5", "asimov.likeflow.h5", "obs.onnx", "asimov.onnx",
                            "card.json", "README.md", "SHA256SUMS", "report"])
    card = json.loads((bundle / "card.json").read_text())
    assert card["poi"] == ["mu"] and [p["name"] for p in card["parameters"]] == ["mu", "theta"]
    mu = card["parameters"][0]
    assert mu["bounds"] == [0.0, 10.0] and 0 <= mu["trained_on"][0] < mu["trained_on"][1] <= 10
    assert card["files"]["partner"] == "asimov.likeflow.h5"
    lim = card["limits"]
    assert lim["profile"] > 0 and len(lim["cls_expected"]) == 5 and lim["cls_observed"] > 0
    assert card["validation"]["verdict"] in ("PASS", "WARN", "FAIL")
    sums = (bundle / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("  report/index.html") for line in sums)
    r = CliRunner().invoke(cli, ["verify", str(bundle)])
    assert r.exit_code == 0, r.output
    assert "limits reproduce" in r.output


def test_every_snippet_of_the_bundles_readme_runs(bundle, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("spey")
    text = (bundle / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(snippets) == 3       # likeflow without TensorFlow, onnxruntime, spey
    monkeypatch.chdir(bundle)
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "CLs upper limit on the POI" in out


def test_onnx_and_spey_agree_with_the_bundle(bundle):
    ort = pytest.importorskip("onnxruntime")
    spey = pytest.importorskip("spey")
    card = json.loads((bundle / "card.json").read_text())
    sur = likeflow.load(bundle / "obs.likeflow.h5", backend="numpy")
    x = sur.sample(200, seed=3)
    got = ort.InferenceSession(str(bundle / "obs.onnx")).run(["log_prob"], {"x": x})[0]
    np.testing.assert_allclose(got, sur.log_prob(x), rtol=1e-10, atol=1e-10)
    model = spey.get_backend("likeflow")(surrogate=str(bundle / "obs.likeflow.h5"),
                                         asimov=str(bundle / "asimov.likeflow.h5"),
                                         analysis="bundle", xsection=1.0)
    assert model.poi_upper_limit() == pytest.approx(card["limits"]["cls_observed"], rel=1e-4)


def test_a_tampered_bundle_fails_naming_the_file(bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    data = bytearray((b / "obs.onnx").read_bytes())
    data[-10] ^= 1
    (b / "obs.onnx").write_bytes(bytes(data))
    (b / "report" / "index.html").unlink()
    (b / "extra.txt").write_text("x")
    res = verify(b)
    assert res.problems == ["obs.onnx: changed (its SHA-256 is not the one in SHA256SUMS)",
                            "report/index.html: missing", "extra.txt: not in SHA256SUMS"]
    r = CliRunner().invoke(cli, ["verify", str(b)])
    assert r.exit_code == 2 and "obs.onnx: changed" in r.stderr
    # a card whose limit was edited, with its checksum updated: the files disagree
    c = tmp_path / "c"
    shutil.copytree(bundle, c)
    card = json.loads((c / "card.json").read_text())
    card["limits"]["profile"] *= 1.01
    (c / "card.json").write_text(json.dumps(card))
    _resum(c)
    res = verify(c)
    assert len(res.problems) == 1 and "limit 'profile'" in res.problems[0]
    # a card that breaks its schema
    card["limits"]["backend"] = "tensorflow"
    (c / "card.json").write_text(json.dumps(card))
    _resum(c)
    assert "does not follow the card schema 1.0.0 at limits/backend" in verify(c).problems[0]


def _resum(folder) -> None:
    from likeflow.fileio import file_sha256
    from likeflow.surrogate.publishing import SUMS, _files
    (folder / SUMS).write_text("".join(f"{file_sha256(folder / p)}  {p}\n"
                                       for p in _files(str(folder))))


def test_publish_refusals(bundle, tmp_path):
    obs = str(bundle / "obs.likeflow.h5")
    r = CliRunner().invoke(cli, ["publish", obs, "-o", str(bundle)])
    assert r.exit_code == 2 and "must be new or empty" in r.stderr
    r = CliRunner().invoke(cli, ["verify", str(tmp_path)])
    assert r.exit_code == 2 and "no SHA256SUMS; not a likeflow bundle" in r.stderr
    lone = tmp_path / "lone.likeflow.h5"
    shutil.copyfile(obs, lone)
    r = CliRunner().invoke(cli, ["publish", str(lone), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "its Asimov partner" in r.stderr and "is missing" in r.stderr
    other = os.path.join(os.path.dirname(__file__), "data", "v1", "maf_float64.likeflow.h5")
    r = CliRunner().invoke(cli, ["publish", obs, "--asimov", other, "-o", str(tmp_path / "p")])
    assert r.exit_code == 2 and "has other parameters than" in r.stderr
    assert not (tmp_path / "p").exists()     # refused before the folder is made


def test_the_stored_bundle_verifies_without_tensorflow():
    """tests/data/bundle (make_bundle.py): checksums, card and limits, with the numpy reader
    alone: what a reinterpreter with `pip install likeflow` runs."""
    res = verify(STORED)
    assert res.ok, res.problems
    card = json.loads(open(os.path.join(STORED, "card.json")).read())
    assert res.limits["cls_observed"] == pytest.approx(card["limits"]["cls_observed"],
                                                       rel=REPRODUCE_RTOL)
