"""Training from a file without reading it into memory (fit --stream), and the row sources."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

import likeflow
from likeflow.fitting import stream as streaming
from likeflow.cli import cli
from likeflow.errors import LikeflowError, SampleFileError
from likeflow.fitting.rows import ArrayRows, pad_steps
from likeflow.data.samples import (ReadOptions, SampleSet, SplitSpec, split_indices, split_labels,
                              write_samples)
from likeflow.fitting.loop import TrainConfig

SMALL = dict(flow_config=dict(layers=2, hidden=(16, 16)),
             train_config=TrainConfig(epochs=6, batch_size=256, cosine_steps=600))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 5000), seed=st.integers(0, 2 ** 31), val=st.floats(0.01, 0.4),
       test=st.floats(0.01, 0.4))
def test_split_labels_are_the_split_of_a_fit_in_memory(n, seed, val, test):
    part = split_labels(n, seed=seed, validation=val, test=test)
    rows = split_indices(n, seed=seed, validation=val, test=test)
    assert part.dtype == np.int8
    for label, idx in enumerate((rows.train, rows.validation, rows.test)):
        np.testing.assert_array_equal(np.flatnonzero(part == label), idx)


def test_array_rows_are_the_seeded_permutation_in_blocks():
    x = np.arange(40.0)[:, None] * [1, -1]
    blocks = list(ArrayRows(x).blocks(seed=3, epoch=2, batch=4, steps=9, block=4))
    order = np.random.default_rng([3, 2]).permutation(40)[:36].reshape(9, 4)
    assert [b[0].shape for b in blocks] == [(4, 4, 2)] * 3
    got = np.concatenate([b[0][:, :, 0] for b in blocks])[:9]
    np.testing.assert_array_equal(got, order)
    np.testing.assert_array_equal(pad_steps(np.arange(3), 5), [0, 1, 2, 0, 1])


@pytest.fixture
def indexed_file(tmp_path):
    """10,000 rows whose first column is the row's index, with weights."""
    n = 10_000
    rng = np.random.default_rng(0)
    x = np.column_stack([np.arange(n), rng.normal(size=(n, 2))])
    path = tmp_path / "indexed.h5"
    write_samples(path, SampleSet(x, names=["row", "a", "b"], weights=1 + np.arange(n) % 3))
    return path, x


def _rows(path, **kw):
    s = streaming.open_stream(path, ReadOptions(), SplitSpec(seed=5))
    return dataclasses.replace(s.rows, **kw), split_indices(s.n, seed=5)


def test_an_epoch_uses_every_training_row_once(indexed_file):
    path, x = indexed_file
    rows, split = _rows(path, block_rows=700, buffer_blocks=3)
    assert rows.n == len(split.train)
    batch, steps = 64, len(split.train) // 64
    seen, weights = [], []
    for xb, wb in rows.blocks(seed=1, epoch=0, batch=batch, steps=steps, block=16):
        seen.append(xb[..., 0].reshape(-1))
        weights.append(wb.reshape(-1))
    seen = np.concatenate(seen)[:steps * batch].astype(int)
    w = np.concatenate(weights)[:steps * batch]
    assert len(np.unique(seen)) == steps * batch          # no row twice
    assert np.isin(seen, split.train).all()               # only training rows
    np.testing.assert_allclose(w, (1 + seen % 3) / 3, rtol=1e-6)  # its weight / the largest
    # shuffled across blocks, and another order in the next epoch
    assert abs(np.corrcoef(np.arange(len(seen)), seen)[0, 1]) < 0.1
    again = next(rows.blocks(seed=1, epoch=1, batch=batch, steps=steps, block=16))[0]
    assert not np.array_equal(again[..., 0].reshape(-1)[:batch], seen[:batch])


@pytest.mark.slow
def test_streamed_fit_equals_the_fit_in_memory(tmp_path, indexed_file):
    rng = np.random.default_rng(2)
    cov = [[1, 0.8, 0], [0.8, 1, 0.3], [0, 0.3, 1]]
    x = rng.multivariate_normal(np.zeros(3), cov, size=20_000)
    x[:, 2] = np.abs(x[:, 2])
    path = tmp_path / "g.h5"
    write_samples(path, SampleSet(x, names=["a", "b", "mu"], poi=["mu"],
                                  bounds=[[-np.inf, np.inf]] * 2 + [[0, np.inf]]))
    msgs = []
    streamed = likeflow.fit(path, seed=3, stream=True, out=tmp_path / "s.likeflow.h5",
                            messages=msgs.append, **SMALL)
    memory = likeflow.fit(path, seed=3, stream=False, validate=False, **SMALL)
    assert any("streamed" in m for m in msgs)
    a, b = (s.training["result"]["best_val_loss"] for s in (streamed, memory))
    assert abs(a - b) / 3 < 0.01
    data = streamed.training["data"]
    assert data["stream"]["test_rows"] == data["n_test"] == memory.training["data"]["n_test"]
    assert streamed.validation["verdict"] in ("PASS", "WARN")
    # validate later finds the same test rows in the file (training rows left out)
    res = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.likeflow.h5"), str(path),
                                   "--no-plots"])
    assert res.exit_code == 0, res.output
    assert f"{data['n_test']} rows remain as test data" in res.output.replace("\n", " ")


def test_fit_streams_a_file_too_large_for_memory_by_itself(tmp_path, likeflow_file,
                                                          monkeypatch):
    monkeypatch.setattr(streaming, "available_memory", lambda: 1000)
    msgs = []
    sur = likeflow.fit(likeflow_file, seed=0, validate=False, messages=msgs.append, **SMALL)
    assert "stream" in sur.training["data"] and any("streamed" in m for m in msgs)
    monkeypatch.setattr(streaming, "available_memory", lambda: 10 ** 12)
    assert not streaming.should_stream(str(likeflow_file), ReadOptions())


def _damaged(tmp_path, change):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 2))
    x[:, 1] = np.abs(x[:, 1])
    change(x)
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("samples", data=x)
        f.attrs["bounds"] = [[-np.inf, np.inf], [0, np.inf]]
    return path


def _first_train_row(n=3000):
    return int(split_indices(n, seed=0).train[0])


@pytest.mark.parametrize("change, message", [
    (lambda x: x.__setitem__((2500, 0), np.nan), "row 2500 holds NaN or inf"),
    (lambda x: x.__setitem__((2500, 1), -1.0), "row 2500 lies outside the declared bounds"),
])
def test_bad_rows_found_while_streaming_name_the_row(tmp_path, change, message):
    path = _damaged(tmp_path, change)
    rows = streaming.FileRows(str(path), "samples", None, np.zeros(3000, np.int8),
                              np.array([[-np.inf, np.inf], [0, np.inf]]), block_rows=500)
    with pytest.raises(SampleFileError, match=message):
        list(rows.blocks(seed=0, epoch=0, batch=100, steps=30, block=4))
    # a bad row among those read into memory is found before training
    with pytest.raises(SampleFileError, match="row 2500|outside the declared bounds"):
        likeflow.fit(path, stream=True, validate=False, **SMALL)


def test_nonfinite_rows_are_dropped_when_asked(tmp_path):
    path = _damaged(tmp_path, lambda x: x.__setitem__((_first_train_row(), 0), np.inf))
    s = streaming.open_stream(path, ReadOptions(drop_nonfinite=True), SplitSpec())
    got = np.concatenate([b[0].reshape(-1, 2) for b in s.rows.blocks(
        seed=0, epoch=0, batch=100, steps=23, block=4)])
    assert np.isfinite(got).all()


def test_what_cannot_be_streamed_is_refused(tmp_path, likeflow_file, emcee_file):
    with pytest.raises(LikeflowError, match="--max-samples"):
        likeflow.fit(likeflow_file, stream=True, read_options=ReadOptions(max_samples=500))
    with pytest.raises(LikeflowError, match="likeflow or array"):
        likeflow.fit(emcee_file[0], stream=True, read_options=ReadOptions(layout="emcee"))
    with pytest.raises(LikeflowError, match="piecewise"):
        likeflow.fit(likeflow_file, stream=True, clusters=2)
    with pytest.raises(LikeflowError, match="a file"):
        likeflow.fit(np.zeros((100, 2)), stream=True)


def test_chains_are_split_in_blocks_as_in_memory(tmp_path):
    s = SampleSet(np.random.default_rng(0).normal(size=(4000, 2)),
                  chain=np.repeat([0, 1, 2, 3], 1000))
    write_samples(tmp_path / "chains.h5", s)
    st = streaming.open_stream(tmp_path / "chains.h5", ReadOptions(), SplitSpec(seed=4))
    split = SplitSpec(seed=4).rows(s.n, s.chain)
    for label, rows in enumerate((split.train, split.validation, split.test)):
        np.testing.assert_array_equal(np.flatnonzero(st.rows.part == label), rows)
    sur = likeflow.fit(tmp_path / "chains.h5", stream=True, validate=False, **SMALL)
    assert sur.training["data"]["split_kind"] == "chain blocks"


def test_cli_streams_an_array_layout_file(tmp_path, dnn_file):
    path, _ = dnn_file
    out = tmp_path / "dnn.likeflow.h5"
    res = CliRunner().invoke(cli, ["fit", str(path), "-o", str(out), "--stream", "--layers", "2",
                                   "--hidden", "16", "--epochs", "3", "-q", "--no-validate"])
    assert res.exit_code == 0, res.output
    assert "streamed" in res.output
    assert likeflow.load(out).training["data"]["stream"]["validation_rows"] == 150


def test_weights_beyond_float32_stream_as_relative_weights(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 2))
    path = tmp_path / "heavy.h5"
    write_samples(path, SampleSet(x, weights=1e39 * (1 + rng.random(4000))))
    sur = likeflow.fit(path, stream=True, validate=False, **SMALL)
    assert np.isfinite(sur.training["result"]["best_val_loss"])
    assert all(h["bad_steps"] == 0 for h in sur.training["result"]["history"])


@pytest.mark.slow
def test_a_streamed_fit_resumes(tmp_path, likeflow_file):
    out = tmp_path / "r.likeflow.h5"
    short = dict(flow_config=SMALL["flow_config"],
                 train_config=TrainConfig(epochs=2, batch_size=256, cosine_steps=600))
    likeflow.fit(likeflow_file, stream=True, out=out, validate=False, **short)
    more = dict(short, train_config=TrainConfig(epochs=4, batch_size=256, cosine_steps=600))
    sur = likeflow.fit(likeflow_file, stream=True, out=out, resume=True, validate=False, **more)
    assert [h["epoch"] for h in sur.training["result"]["history"]] == [0, 1, 2, 3]
    with pytest.raises(LikeflowError, match="other data"):   # in memory it is read another way
        likeflow.fit(likeflow_file, stream=False, out=out, resume=True, validate=False, **more)
