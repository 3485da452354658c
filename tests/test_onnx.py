"""ONNX export: onnxruntime's log density (and sampling map, for coupling flows) equal to
likeflow's, for every flow, bound map and activation; metadata; the refusals.

Needs onnx and onnxruntime (``pip install 'likeflow[onnx]'``), not TensorFlow: the flows are
built with the numpy reader from the committed version-1 files and from random weights.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'likeflow[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the check needs onnxruntime")

import likeflow  # noqa: E402
from likeflow.flows.config import FlowConfig  # noqa: E402
from likeflow.flows.numpy_flow import NumpyFlow  # noqa: E402
from likeflow.surrogate.artifact import Surrogate  # noqa: E402
from flow_helpers import random_weights  # noqa: E402

V1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1")
FILES = [f"{flow}_{dtype}" for flow in ("maf", "realnvp", "ansf", "cnsf")
         for dtype in ("float32", "float64")]


def _run(path, feed):
    sess = ort.InferenceSession(str(path))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed))), sess


def _rel(a, b):
    fin = np.isfinite(b)
    assert np.array_equal(np.isfinite(a), fin)
    return np.max(np.abs(a[fin] - b[fin]) / np.maximum(np.abs(b[fin]), 1.0))


@pytest.mark.parametrize("name", FILES)
def test_onnx_log_prob_equals_likeflow(name, tmp_path):
    e = np.load(os.path.join(V1, "expected.npz"))
    sur = likeflow.load(os.path.join(V1, f"{name}.likeflow.h5"), backend="numpy")
    out = tmp_path / "s.onnx"
    info = likeflow.export_onnx(sur, out)
    pts = e["points"].astype(np.float64)          # random, on and near the bounds, outside
    feed = {"x": pts}
    sampling = sur.config.flow in ("realnvp", "cnsf")
    if sampling:
        feed["z"] = e["latent"]
    res, sess = _run(out, feed)
    assert _rel(res["log_prob"], sur.log_prob(pts)) < 1e-10
    assert ("x_of_z" in res) == sampling and info["outputs"][0] == "log_prob"
    if sampling:
        np.testing.assert_allclose(res["x_of_z"], sur.from_latent(e["latent"]), atol=1e-10)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"]) == sur.names
    assert json.loads(meta["bounds"]) == sur.config.bounds
    assert json.loads(meta["flow"]) == sur.config.flow


def _random_surrogate(flow, activation, bound_map, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 4))
    x[:, 0] = np.abs(x[:, 0])
    x[:, 1] = rng.uniform(0, 1, 2000)
    bounds = np.array([[0, 10], [0, 1], [-np.inf, 30], [-8, 8]], float)
    cfg = FlowConfig.from_data(x, flow=flow, layers=2, hidden=(6,), bins=4, bounds=bounds,
                               activation=activation, bound_map=bound_map, dtype=dtype,
                               permutation="random", marginal_spline=True)
    return Surrogate(NumpyFlow(cfg, random_weights(cfg, rng))), x


@pytest.mark.parametrize("flow", ["maf", "realnvp", "ansf", "cnsf"])
@pytest.mark.parametrize("activation,bound_map", [("tanh", "sigmoid"), ("gelu", "probit"),
                                                  ("elu", "probit"), ("silu", "sigmoid")])
def test_every_activation_and_bound_map_exports(flow, activation, bound_map, tmp_path):
    sur, x = _random_surrogate(flow, activation, bound_map)
    likeflow.export_onnx(sur, tmp_path / "r.onnx")
    pts = np.concatenate([x[:500], sur.sample(500, seed=1)])
    res, _ = _run(tmp_path / "r.onnx", {"x": pts, **({"z": np.random.default_rng(2).normal(
        size=(300, 4))} if flow in ("realnvp", "cnsf") else {})})
    assert _rel(res["log_prob"], sur.log_prob(pts)) < 1e-9


def test_float32_graph(tmp_path):
    sur = likeflow.load(os.path.join(V1, "cnsf_float32.likeflow.h5"), backend="numpy")
    likeflow.export_onnx(sur, tmp_path / "f.onnx", dtype="float32")
    pts = sur.sample(2000, seed=3)
    res, _ = _run(tmp_path / "f.onnx", {"x": pts.astype(np.float32),
                                        "z": np.zeros((3, sur.dim), np.float32)})
    assert res["log_prob"].dtype == np.float32
    assert _rel(res["log_prob"].astype(np.float64), sur.log_prob(pts.astype(np.float32))) < 1e-4


def test_refusals(tmp_path):
    sur = likeflow.load(os.path.join(V1, "maf_float32.likeflow.h5"), backend="numpy")
    with pytest.raises(likeflow.LikeflowError, match="sequential steps"):
        likeflow.export_onnx(sur, tmp_path / "m.onnx", sampling=True)
    with pytest.raises(likeflow.LikeflowError, match="float32 or float64"):
        likeflow.export_onnx(sur, tmp_path / "m.onnx", dtype="float16")


def test_cli_export(tmp_path):
    from click.testing import CliRunner
    from likeflow.cli import cli

    src = os.path.join(V1, "realnvp_float64.likeflow.h5")
    r = CliRunner().invoke(cli, ["export", src, "-o", str(tmp_path / "c.onnx")])
    assert r.exit_code == 0, r.output
    assert "log_prob" in r.output and "x_of_z" in r.output
    r = CliRunner().invoke(cli, ["export", src, "-o", str(tmp_path / "c.txt")])
    assert r.exit_code == 2 and ".onnx" in r.output
