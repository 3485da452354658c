"""The surrogate file's records: versioned JSON schemas, one read policy, version-1 files.

Runs without TensorFlow (the files are read and rewritten on the numpy backend), so it runs in
the TensorFlow-free environment of ``.ci/run`` too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import h5py
import jsonschema
import numpy as np
import pytest

import likeflow
from likeflow.surrogate import schema

V1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1")


@pytest.fixture
def v2_file(tmp_path):
    """A version-2 file: a version-1 file loaded and written again."""
    sur = likeflow.load(os.path.join(V1, "maf_float32.likeflow.h5"), backend="numpy")
    path = tmp_path / "v2.likeflow.h5"
    sur.save(path)
    return path


def _rewrite(path, name, change):
    with h5py.File(path, "r+") as f:
        record = json.loads(f[name][()])
        record = change(record)
        del f[name]
        f.create_dataset(name, data=record if isinstance(record, str) else json.dumps(record))


def _load_error(path) -> str:
    with pytest.raises(likeflow.SurrogateFileError) as e:
        likeflow.load(path, backend="numpy")
    text = str(e.value)
    assert "\n" not in text and str(path) in text
    return text


def test_schemas_are_valid_and_versioned():
    for fmt, versions in schema.SCHEMAS_OF_FORMAT.items():
        for version in versions:
            for record in schema.RECORDS[fmt]:
                s = schema.schema(record, version)
                jsonschema.Draft202012Validator.check_schema(s)
                assert version in s["$id"] and s["title"]
    assert schema.SCHEMAS_OF_FORMAT[2][-1] == schema.SCHEMA_VERSION
    assert schema.FORMAT_VERSION == int(schema.SCHEMA_VERSION.split(".")[0]) == 2


def test_written_file_follows_the_current_schema(v2_file):
    with h5py.File(v2_file, "r") as f:
        assert f.attrs["format_version"] == 2 and f.attrs["schema_version"] == "2.7.0"
        for record in schema.RECORDS[2]:
            schema.check(record, json.loads(f[record][()]))
        prov = json.loads(f["provenance"][()])
    assert prov["backend"] == "numpy" and prov["likeflow_version"] == likeflow.__version__
    assert prov["created"].endswith("+00:00")
    sur = likeflow.load(v2_file, backend="numpy")
    assert sur.provenance["numpy_version"] == np.__version__


@pytest.mark.parametrize("name", sorted(os.listdir(V1)))
def test_every_version_1_file_loads_and_upgrades(name):
    if not name.endswith(".likeflow.h5"):
        return
    path = os.path.join(V1, name)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1 and "provenance" not in f
    sur = likeflow.load(path, backend="numpy")
    assert sur.provenance == {}
    for record, value in (("config", sur.config.to_dict()), ("training", sur.training),
                          ("validation", sur.validation)):
        schema.check(record, value)


def test_version_1_legacy_seed_moves_to_the_training_record(tmp_path):
    path = tmp_path / "old.likeflow.h5"
    shutil.copy(os.path.join(V1, "realnvp_float32.likeflow.h5"), path)

    def early(t):  # how the first builds stored the seed, with a key nobody reads any more
        seed = t.pop("seed")
        t["data"]["split"]["seed"] = seed
        t["config"]["seed"] = seed
        t["data"]["read_options"]["seed"] = seed
        t["early_key"] = {"anything": 1}
        return t

    _rewrite(path, "training", early)
    sur = likeflow.load(path, backend="numpy")
    assert sur.training["seed"] == 1 and "early_key" not in sur.training
    assert "seed" not in sur.training["config"] and "seed" not in sur.training["data"]["split"]
    assert sur.split_spec().seed == 1


# one damaged field per record: (record, change, words the one-line error must hold)
DAMAGE = [
    ("config", lambda r: {k: v for k, v in r.items() if k != "dim"}, "config: 'dim' is missing"),
    ("config", lambda r: {**r, "layers": "three"}, "config: field 'layers'"),
    ("config", lambda r: {**r, "flow": "glow"}, "must be one of"),
    ("config", lambda r: {**r, "colour": "blue"}, "config: unknown field 'colour'"),
    ("training", lambda r: {**r, "result": {**r["result"], "best_epoch": 2.5}},
     "training: field 'result.best_epoch'"),
    ("training", lambda r: {**r, "support": {"hi": r["support"]["hi"]}},
     "training: 'support.lo' is missing"),
    ("training", lambda r: {**r, "data": {**r["data"], "n_rows": 3}},
     "training: unknown field 'data.n_rows'"),
    ("validation", lambda r: {"verdict": "PASS"}, "validation: 'verdict_reasons' is missing"),
    ("validation", lambda r: {"verdict": "GOOD", "verdict_reasons": [], "n": 3, "rows": []},
     "validation: field 'verdict'"),
    ("provenance", lambda r: {k: v for k, v in r.items() if k != "created"},
     "provenance: 'created' is missing"),
    ("provenance", lambda r: {**r, "python": 3.11}, "provenance: field 'python'"),
    ("training", lambda r: "{not json", "'training' is not valid JSON"),
]


@pytest.mark.parametrize("record,change,words", DAMAGE)
def test_a_damaged_record_field_is_named_in_one_line(v2_file, record, change, words):
    _rewrite(v2_file, record, change)
    assert words in _load_error(v2_file)


@pytest.mark.parametrize("record", schema.RECORDS[2])
def test_a_missing_record_is_named(v2_file, record):
    with h5py.File(v2_file, "r+") as f:
        del f[record]
    assert f"damaged: '{record}' is missing" in _load_error(v2_file)


def test_unknown_keys_are_refused_in_a_version_2_file_at_every_level(v2_file):
    _rewrite(v2_file, "training",
             lambda r: {**r, "result": {**r["result"],
                                        "history": [{**r["result"]["history"][0], "x": 1}]}})
    assert "unknown field 'result.history.0.x'" in _load_error(v2_file)


def test_newer_and_unknown_format_versions(v2_file):
    with h5py.File(v2_file, "r+") as f:
        f.attrs["format_version"] = 3
    assert "newer than this likeflow" in _load_error(v2_file)
    with h5py.File(v2_file, "r+") as f:
        f.attrs["format_version"] = 0
    assert "unknown format version 0" in _load_error(v2_file)


def test_minor_versions_read_what_they_know(v2_file):
    """2.1.0 added the training record's ``devices`` and ``data.stream``: a 2.0.0 file reads,
    and a 2.0.0 file holding them is refused as 2.0.0 would refuse it."""
    devices = {"replicas": 2, "devices": ["GPU:0", "GPU:1"], "global_batch": 512,
               "per_replica_batch": 256}
    with h5py.File(v2_file, "r+") as f:
        f.attrs["schema_version"] = "2.0.0"
    likeflow.load(v2_file, backend="numpy")
    _rewrite(v2_file, "training", lambda r: dict(r, devices=devices))
    assert "unknown field 'devices' (schema 2.0.0" in _load_error(v2_file)
    with h5py.File(v2_file, "r+") as f:
        f.attrs["schema_version"] = "2.1.0"
    assert likeflow.load(v2_file, backend="numpy").training["devices"] == devices
    _rewrite(v2_file, "training", lambda r: dict(r, devices=dict(devices, replicas=0)))
    assert "devices.replicas" in _load_error(v2_file)


V1_EARLY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1_early")


@pytest.mark.parametrize("name", ["maf_float32", "cnsf_float64"])
@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
def test_version_1_files_from_before_the_bound_maps_load_and_evaluate_as_written(name, backend):
    """Files written before the config had ``bound_map``, ``softclip`` and
    ``marginal_spline`` (tests/data/v1_early/make.py): they load as sigmoid bound maps without
    soft clip or marginal spline, and evaluate as the build that wrote them did. (They were
    refused as damaged: "config: 'bound_map' is missing".)"""
    if backend == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("compares with TensorFlow (not installed)")
    e = np.load(os.path.join(V1_EARLY, "expected.npz"))
    sur = likeflow.load(os.path.join(V1_EARLY, f"{name}.likeflow.h5"), backend=backend)
    c = sur.config
    assert (c.bound_map, c.marginal_spline, set(c.softclip)) == ("sigmoid", False, {0.0})
    schema.check("config", c.to_dict())
    pts = e["points"].astype(np.float64)
    ref = e[f"{name}/log_prob"]
    got = sur.log_prob(pts)
    fin = np.isfinite(ref)
    assert np.array_equal(np.isfinite(got), fin) and (~fin).sum() == 50  # outside the bounds
    rel = np.abs(got[fin] - ref[fin]) / np.abs(ref[fin])
    inside = np.all((pts >= sur.support["lo"]) & (pts <= sur.support["hi"]), axis=1)[fin]
    assert inside.sum() > 100
    if c.dtype == "float64":
        assert rel.max() < 1e-10  # measured 1e-14
    elif backend == "tensorflow":
        assert rel.max() < 1e-4   # float32 rounding: measured 1e-5
    else:
        # numpy computes in float64; the writer's float32 sigmoid saturates far outside the
        # data (x0 -> 10, log densities ~ -5000): measured 4e-7 inside, 7e-3 there
        assert rel[inside].max() < 1e-5 and rel.max() < 2e-2
