"""Surrogate files: save/load fidelity, no pickle, damaged and foreign files, fit and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from likeflow.cli import cli  # noqa: E402
from likeflow.errors import SurrogateFileError  # noqa: E402
from likeflow.data.samples import read_samples  # noqa: E402
from likeflow.fitting.run import fit  # noqa: E402
from likeflow.data.samples import SplitSpec, split_of  # noqa: E402
from likeflow.surrogate.schema import FORMAT_VERSION  # noqa: E402
from likeflow.surrogate.loading import load  # noqa: E402
from likeflow.fitting.loop import TrainConfig  # noqa: E402


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small surrogate of a bounded 3-dim Gaussian, saved to a file."""
    rng = np.random.default_rng(0)
    from likeflow.data.samples import SampleSet, write_samples
    x = rng.multivariate_normal([1, 0, 0], [[1, .5, 0], [.5, 1, 0], [0, 0, .2]], size=3000)
    x[:, 0] = np.clip(x[:, 0], -1.9, 5.9)
    s = SampleSet(x, names=["mu", "a", "b"], poi=["mu"],
                  bounds=[[-2, 6], [-np.inf, np.inf], [-np.inf, np.inf]])
    folder = tmp_path_factory.mktemp("sur")
    write_samples(folder / "s.h5", s)
    out = folder / "s.likeflow.h5"
    sur = fit(s, validate=False, flow_config={"flow": "realnvp", "layers": 3, "hidden": (16, 16)},
              train_config=TrainConfig(epochs=3), out=out)
    return sur, out, s, folder


def test_save_load_identical_log_prob_and_samples(fitted):
    sur, out, s, _ = fitted
    again = load(out)
    x = s.values[:500]
    np.testing.assert_array_equal(sur.log_prob(x), again.log_prob(x))
    np.testing.assert_array_equal(sur.sample(1000, seed=7), again.sample(1000, seed=7))
    assert not np.array_equal(sur.sample(100, seed=7), sur.sample(100, seed=8))
    assert again.config == sur.config and again.names == ["mu", "a", "b"]
    assert again.training["data"]["fingerprint"] == s.fingerprint()


def test_file_holds_no_pickle_and_no_code(fitted):
    _, out, _, _ = fitted
    with h5py.File(out) as f:
        assert f.attrs["format"] == "likeflow-surrogate"
        assert f.attrs["format_version"] == FORMAT_VERSION
        json.loads(f["config"][()])
        found = []
        f.visititems(lambda n, o: found.append(o) if isinstance(o, h5py.Dataset) else None)
        for ds in found:
            assert ds.dtype.kind in "fiS" or h5py.check_string_dtype(ds.dtype), ds.name
    raw = out.read_bytes()
    assert b"\x80\x04\x95" not in raw and b"cdill" not in raw and b"cloudpickle" not in raw


def test_log_prob_outside_bounds_is_minus_inf(fitted):
    sur = fitted[0]
    lp = sur.log_prob([[-2.5, 0, 0], [6.5, 0, 0], [1.0, 0, 0]])
    assert lp[0] == -np.inf and lp[1] == -np.inf and np.isfinite(lp[2])
    assert sur.log_prob([1.0, 0, 0]).shape == (1,)


def test_batching_and_padding_do_not_change_results(fitted):
    """Compiled calls pad batches to powers of two: the padding must not leak into results."""
    sur = fitted[0]
    x = sur.sample(1000, seed=3)
    assert x.shape == (1000, 3) and np.isfinite(x).all()
    assert (x[:, 0] > -2).all() and (x[:, 0] < 6).all()
    lp = sur.log_prob(x)
    np.testing.assert_allclose(sur.log_prob(x[:37]), lp[:37], rtol=1e-5)
    z = sur.to_latent(x)
    np.testing.assert_allclose(sur.from_latent(z[:300]), x[:300], atol=1e-4)


def test_no_training_rows_in_the_test_split(fitted):
    sur, _, s, _ = fitted
    data = sur.training["data"]
    assert data["n_train"] + data["n_validation"] + data["n_test"] == s.n
    assert np.isfinite(sur.training["test_log_prob"])


@pytest.mark.parametrize("damage,message", [
    ("truncate", "damaged"),
    ("foreign", "not a likeflow surrogate"),
    ("newer", "newer than this likeflow"),
    ("no_weights", "'weights' is missing"),
    ("wrong_shape", "do not match the config"),
    ("bad_config", "damaged: config"),
    ("text", "not an HDF5 file"),
    ("missing", "no such file"),
])
def test_damaged_and_foreign_files(fitted, tmp_path, damage, message):
    _, out, _, _ = fitted
    p = tmp_path / "bad.likeflow.h5"
    p.write_bytes(out.read_bytes())
    if damage == "truncate":
        p.write_bytes(out.read_bytes()[:3000])
    elif damage == "foreign":
        with h5py.File(p, "w") as f:
            f["x"] = 1
    elif damage == "text":
        p.write_text("hello")
    elif damage == "missing":
        p.unlink()
    else:
        with h5py.File(p, "a") as f:
            if damage == "newer":
                f.attrs["format_version"] = FORMAT_VERSION + 1
            elif damage == "no_weights":
                del f["weights"]
            elif damage == "wrong_shape":
                del f["weights/0000"]
                f["weights/0000"] = np.zeros((2, 2))
            elif damage == "bad_config":
                del f["config"]
                f["config"] = '{"dim": 3, "flow": "nope"}'
    with pytest.raises(SurrogateFileError, match=message):
        load(p)
    r = CliRunner().invoke(cli, ["sample", str(p), "-n", "10", "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and message.split("'")[0] in r.stderr and "Traceback" not in r.stderr


def test_sample_file_is_not_a_surrogate(fitted):
    _, _, _, folder = fitted
    r = CliRunner().invoke(cli, ["eval", str(folder / "s.h5"), str(folder / "s.h5")])
    assert r.exit_code == 2 and "is a likeflow sample file, not a likeflow surrogate" in r.stderr


def test_cli_fit_sample_eval(tmp_path, likeflow_file):
    out = tmp_path / "g.likeflow.h5"
    log = tmp_path / "h.jsonl"
    r = CliRunner().invoke(cli, ["fit", str(likeflow_file), "-o", str(out), "--flow", "maf",
                                 "--layers", "2", "--hidden", "16,16", "--epochs", "4",
                                 "--log", str(log)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.stdout and "test log-likelihood" in r.stdout
    assert "epoch    4/4" in r.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3]
    r = CliRunner().invoke(cli, ["sample", str(out), "-n", "5000", "-o", str(tmp_path / "f.h5"),
                                 "--seed", "2"])
    assert r.exit_code == 0, r.output
    fresh = read_samples(tmp_path / "f.h5")
    assert fresh.n == 5000 and fresh.names == ["mu", "theta", "phi"] and fresh.poi == ["mu"]
    np.testing.assert_allclose(fresh.log_prob, load(out).log_prob(fresh.values), rtol=1e-6)
    r = CliRunner().invoke(cli, ["eval", str(out), str(tmp_path / "f.h5")])
    assert r.exit_code == 0
    vals = np.array([float(v) for v in r.stdout.split()])
    np.testing.assert_allclose(vals, fresh.log_prob, rtol=1e-6)


def test_cli_fit_config_file_and_overrides(tmp_path, likeflow_file):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"flow": "cnsf", "layers": 2, "hidden": [8], "epochs": 2,
                                "bins": 4}))
    out = tmp_path / "c.likeflow.h5"
    r = CliRunner().invoke(cli, ["fit", str(likeflow_file), "--config", str(conf), "-o",
                                 str(out), "--layers", "3", "-q"])
    assert r.exit_code == 0, r.output
    c = load(out).config
    assert (c.flow, c.layers, c.hidden, c.bins) == ("cnsf", 3, (8,), 4)
    conf.write_text(json.dumps({"flw": "maf"}))
    r = CliRunner().invoke(cli, ["fit", str(likeflow_file), "--config", str(conf)])
    assert r.exit_code == 2 and "unknown keys ['flw']" in r.stderr


def test_cli_fit_bad_input(tmp_path):
    r = CliRunner().invoke(cli, ["fit", str(tmp_path / "none.h5")])
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = CliRunner().invoke(cli, ["fit", str(tmp_path / "none.h5"), "--hidden", "a,b"])
    assert r.exit_code == 2 and "hidden" in r.output + r.stderr
    r = CliRunner().invoke(cli, ["fit", str(tmp_path / "none.h5"), "--hidden", "wide"])
    assert r.exit_code == 2 and "or auto" in r.output + r.stderr
    # "auto" (the default) is an answer: the missing file is what stops this one
    r = CliRunner().invoke(cli, ["fit", str(tmp_path / "none.h5"), "--hidden", "auto"])
    assert r.exit_code == 2 and "no such file" in r.stderr


@pytest.mark.slow
def test_sigterm_leaves_a_loadable_surrogate_and_resume_continues(tmp_path):
    """A real `likeflow fit` process killed with SIGTERM mid-run, then resumed."""
    rng = np.random.default_rng(0)
    from likeflow.data.samples import SampleSet, write_samples
    write_samples(tmp_path / "s.h5", SampleSet(rng.normal(size=(20000, 4))))
    out = tmp_path / "s.likeflow.h5"
    cmd = [sys.executable, "-m", "likeflow", "fit", str(tmp_path / "s.h5"), "-o", str(out),
           "--epochs", "500", "--patience", "500", "--layers", "2", "--hidden", "16"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    seen = 0
    while time.time() < deadline and seen < 3:
        line = proc.stderr.readline()
        seen += line.startswith("epoch")
    assert seen == 3, "the fit never got going"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    first = load(out)
    n_done = len(first.training["result"]["history"])
    assert first.training["result"]["stopped"] == "interrupted" and 3 <= n_done < 500
    resumed = subprocess.run(cmd[:-8] + ["--epochs", str(n_done + 2), "--resume", "-q",
                                         "--layers", "2", "--hidden", "16"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    second = load(out)
    hist = second.training["result"]["history"]
    assert len(hist) == n_done + 2
    assert [h["epoch"] for h in hist] == list(range(n_done + 2))


def test_validation_on_the_training_file_read_otherwise_leaves_training_rows_out(tmp_path):
    """Training on a subsample, then validating on the whole file: no training row may leak."""
    from likeflow.data.samples import ReadOptions, SampleSet, read_samples, write_samples
    rng = np.random.default_rng(5)
    x = np.column_stack([np.arange(3000.0), rng.normal(size=3000)])  # column 0 = file row
    path = tmp_path / "s.h5"
    write_samples(path, SampleSet(x, names=["row", "y"]))
    sur = fit(path, validate=False, read_options=ReadOptions(max_samples=1500), seed=2,
              flow_config={"flow": "realnvp", "layers": 2, "hidden": (8,)},
              train_config=TrainConfig(epochs=1))
    trained = read_samples(path, max_samples=1500, seed=2)
    parts = split_of(trained, SplitSpec(seed=2))  # one seed: the read's and the split's
    seen = set(trained.values[np.concatenate([parts.train, parts.validation]), 0])
    test = set(trained.values[parts.test, 0])

    held, notes = sur.held_out(read_samples(path))
    rows = set(held.values[:, 0])
    assert not rows & seen
    assert test <= rows and len(rows) == 3000 - len(seen)
    assert "left out" in notes[0]
    # another subsample of the same file: still nothing the surrogate saw
    held, _ = sur.held_out(read_samples(path, max_samples=2000, seed=9))
    assert not set(held.values[:, 0]) & seen and held.n > 0
    # the very same read: exactly the recorded test split
    held, notes = sur.held_out(trained)
    assert set(held.values[:, 0]) == test and notes == []
