"""`likeflow info` on every layout, and every bad input: exit code 2, one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from likeflow import __version__
from likeflow.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_bad_input(result, *fragments):
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.output
    assert len(err.strip().splitlines()) == 1, err
    for frag in fragments:
        assert frag in err, err


def summary_of(path, *args):
    r = run("info", path, "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def assert_matches_numpy(summary, x):
    assert summary["n"] == x.shape[0] and summary["dim"] == x.shape[1]
    for i, p in enumerate(summary["parameters"]):
        np.testing.assert_allclose(p["mean"], x[:, i].mean(), rtol=1e-12)
        np.testing.assert_allclose(p["std"], x[:, i].std(), rtol=1e-12)
        assert p["min"] == x[:, i].min() and p["max"] == x[:, i].max()


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_info_likeflow_file(likeflow_file, gauss_set):
    s = summary_of(likeflow_file)
    assert_matches_numpy(s, gauss_set.values)
    assert s["poi"] == ["mu"] and s["parameters"][0]["bounds"] == [-4.0, 5.0]
    assert s["parameters"][1]["bounds"] == [None, None]
    assert s["datasets"] == ["log_prob"]
    table = run("info", likeflow_file)
    assert table.exit_code == 0 and "2000 samples of 3 parameters" in table.stdout
    assert "theta" in table.stdout and "[-4, 5]" in table.stdout


def test_info_dnnlikelihood_file(dnn_file):
    path, x = dnn_file
    assert_matches_numpy(summary_of(path), x)
    assert_matches_numpy(summary_of(path, "--dataset", "data/X"), x)


def test_info_emcee_file(emcee_file):
    path, chain, _ = emcee_file
    assert_matches_numpy(summary_of(path, "--burn", 20, "--thin", 2),
                         chain[20::2].reshape(-1, 3))


def test_info_max_samples(likeflow_file):
    assert summary_of(likeflow_file, "--max-samples", 700)["n"] == 700


# --- every bad input --------------------------------------------------------------------------

def write(path, **datasets):
    attrs = datasets.pop("attrs", {})
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


def test_missing_file(tmp_path):
    assert_bad_input(run("info", tmp_path / "nope.h5"), "nope.h5", "no such file")


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("mu,theta\n1,2\n")
    assert_bad_input(run("info", p), "x.h5", "not an HDF5 file")


def test_truncated_file(tmp_path, rng):
    p = write(tmp_path / "t.h5", samples=rng.normal(size=(20000, 5)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert_bad_input(run("info", p), "t.h5", "damaged or truncated")


def test_dataset_missing_lists_what_is_there(tmp_path, rng):
    p = write(tmp_path / "m.h5", chain=rng.normal(size=(300, 2)))
    assert_bad_input(run("info", p), "m.h5", "chain (300, 2)")
    assert_bad_input(run("info", p, "--dataset", "data/X"), "'data/X'", "no such dataset",
                     "chain (300, 2)")


def test_wrong_rank(tmp_path, rng):
    p = write(tmp_path / "r.h5", samples=rng.normal(size=(300, 2, 2)))
    assert_bad_input(run("info", p), "'samples'", "must be 2-D", "(300, 2, 2)")


def test_non_numeric(tmp_path):
    p = write(tmp_path / "s.h5", samples=np.array([["a", "b"]] * 300, dtype="S1"))
    assert_bad_input(run("info", p), "'samples'", "not numeric")


def test_nonfinite_rows_refused_then_dropped(tmp_path, rng):
    x = rng.normal(size=(500, 3))
    x[[5, 9], 0] = np.nan
    x[11, 2] = np.inf
    p = write(tmp_path / "n.h5", samples=x)
    assert_bad_input(run("info", p), "'samples'", "3 rows hold NaN or inf", "--drop-nonfinite")
    r = run("info", p, "--drop-nonfinite")
    assert r.exit_code == 0 and "dropped 3 rows" in r.stderr
    assert "497 samples" in r.stdout


def test_zero_variance_column(tmp_path, rng):
    x = rng.normal(size=(500, 3))
    x[:, 1] = 4.2
    p = write(tmp_path / "z.h5", samples=x,
              attrs={"parameter_names": np.array(["a", "b", "c"], dtype="S")})
    assert_bad_input(run("info", p), "zero variance", "b")


def test_too_few_samples(tmp_path, rng):
    p = write(tmp_path / "f.h5", samples=rng.normal(size=(150, 20)))
    assert_bad_input(run("info", p), "only 150 usable samples for 20 parameters", "200")


def test_names_do_not_match_columns(tmp_path, rng):
    p = write(tmp_path / "c.h5", samples=rng.normal(size=(300, 3)),
              attrs={"parameter_names": np.array(["a", "b"], dtype="S")})
    assert_bad_input(run("info", p), "2 names for 3 columns")


def test_samples_outside_bounds(tmp_path, rng):
    x = rng.normal(size=(300, 2))
    p = write(tmp_path / "o.h5", samples=x,
              attrs={"bounds": np.array([[-1.0, 1.0], [-np.inf, np.inf]]),
                     "parameter_names": np.array(["mu", "b"], dtype="S")})
    n_out = int(((x[:, 0] < -1) | (x[:, 0] > 1)).sum())
    assert_bad_input(run("info", p), f"{n_out} samples lie outside the declared bounds of mu")


@pytest.mark.parametrize("w,msg", [(-1.0, "weights are negative"), (np.nan, "weights are NaN")])
def test_bad_weights(tmp_path, rng, w, msg):
    weights = np.ones(300)
    weights[4] = w
    p = write(tmp_path / "w.h5", samples=rng.normal(size=(300, 2)), weights=weights)
    assert_bad_input(run("info", p), "'weights'", msg)


def test_log_prob_length_mismatch(tmp_path, rng):
    p = write(tmp_path / "l.h5", samples=rng.normal(size=(300, 2)), log_prob=np.zeros(299))
    assert_bad_input(run("info", p), "'log_prob'", "299 entries", "300 rows")
    q = write(tmp_path / "d.h5", **{"data/X": rng.normal(size=(300, 2)),
                                    "data/Y": np.zeros(200)})
    assert_bad_input(run("info", q), "'data/Y'", "does not match 300 samples")


def test_unknown_poi(tmp_path, rng):
    p = write(tmp_path / "p.h5", samples=rng.normal(size=(300, 2)),
              attrs={"poi": np.array(["mu"], dtype="S")})
    assert_bad_input(run("info", p), "POI ['mu'] not among")


def test_burn_longer_than_chain(emcee_file):
    path, _, _ = emcee_file
    assert_bad_input(run("info", path, "--burn", 500), "burn-in 500 leaves nothing of 100 steps")


def test_unexpected_fault_exits_1_and_debug_shows_traceback(likeflow_file, monkeypatch):
    import likeflow.cli as cli_mod

    def boom(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli_mod.likeflow, "read_samples", boom)
    r = run("info", likeflow_file)
    assert r.exit_code == 1 and "ZeroDivisionError: boom" in r.stderr
    assert "Traceback" not in r.stderr and "--debug" in r.stderr
    r = run("--debug", "info", likeflow_file)
    assert r.exit_code == 1 and "Traceback" in r.stderr


def test_real_subprocess(likeflow_file):
    """The installed console entry point, as a user runs it."""
    out = subprocess.run([sys.executable, "-m", "likeflow", "info", str(likeflow_file), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 2000
    bad = subprocess.run([sys.executable, "-m", "likeflow", "info", "/nonexistent.h5"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_overfitting_hint():
    from likeflow.fitting.run import overfitting_hint

    def hist(train, val):
        return [{"train_loss": t, "val_loss": v} for t, v in zip(train, val)]

    over = {"history": hist([74.5, 74.37, 74.35, 74.33, 74.31, 74.28, 74.25, 74.24],
                            [74.40, 74.389, 74.388, 74.399, 74.388, 74.396, 74.399, 74.399]),
            "best_epoch": 2}
    assert "--lr 1e-3" in overfitting_hint({"result": over})
    fine = dict(over, best_epoch=7)
    assert overfitting_hint({"result": fine}) is None
    flat = {"history": hist([74.3] * 8, [74.4] * 8), "best_epoch": 1}
    assert overfitting_hint({"result": flat}) is None


V1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1")


def test_info_of_a_surrogate_file(tmp_path):
    """`info` on a surrogate says what it is (flow, data, fit, verdict, provenance, the range
    each parameter was trained on), without TensorFlow; it used to read it as a sample file
    and fail with "no 'samples' dataset"."""
    import likeflow

    path = tmp_path / "s.likeflow.h5"
    likeflow.load(os.path.join(V1, "cnsf_float32.likeflow.h5"), backend="numpy").save(path)
    r = run("info", path)
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert "likeflow surrogate (cnsf, 3 layers of [8, 8], 6 bins, float32) of 5 parameters" in first
    assert "fit: 4 epochs" in r.stdout and "written: " in r.stdout and "(numpy)" in r.stdout
    s = summary_of(path)
    assert s["kind"] == "surrogate" and s["flow"]["flow"] == "cnsf" and s["flow"]["dim"] == 5
    assert s["provenance"]["backend"] == "numpy" and s["training"]["epochs"] == 4
    assert [p["bounds"] for p in s["parameters"]][:2] == [[0.0, 10.0], [0.0, 1.0]]
    lo, hi = s["parameters"][0]["trained_on"]
    assert 0.0 <= lo < hi <= 10.0
    # a version-1 file (no provenance) too
    r = run("info", os.path.join(V1, "maf_float32.likeflow.h5"))
    assert r.exit_code == 0 and "written:" not in r.stdout, r.output


def test_output_cut_short_by_its_reader_ends_quietly(likeflow_file):
    """`likeflow info f.h5 | head -1`: exit 141 (SIGPIPE's code), nothing on stderr; it printed
    "unexpected error: BrokenPipeError" before. The reader here (`true`) is gone before
    likeflow has started, so that every write meets a closed pipe (with `head` it would
    depend on which of the two is faster)."""
    cmd = f"{sys.executable} -m likeflow info {likeflow_file} | true"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert r.stderr == "" and r.returncode == 141, (r.returncode, r.stderr)
