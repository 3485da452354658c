"""The rules of a fit's inputs, each written once in the API: the typed flow options, a config
file's checks, the default output names, combine's MCMC defaults (no TensorFlow needed)."""

import dataclasses
import json

import numpy as np
import pytest

import likeflow
from likeflow import FlowConfig, FlowOptions, LikeflowError, read_fit_config


def test_flow_options_are_keyword_only_typed_and_frozen():
    with pytest.raises(TypeError):
        FlowOptions("maf")                          # keyword-only
    opts = FlowOptions(flow="ansf", hidden=[32, 32], whiten="on")
    assert opts.hidden == (32, 32) and opts.whiten is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.layers = 3
    assert opts.replace(layers=3).layers == 3 and opts.layers == 5


@pytest.mark.parametrize("bad, message", [
    ({"flow": "nope"}, "unknown flow 'nope'"), ({"layers": 0}, "must be positive"),
    ({"layers": 2.5}, "'layers' must be an integer"), ({"hidden": "a,b"}, "'hidden'"),
    ({"bins": 1}, "bins must be >= 2"), ({"whiten": "maybe"}, "whiten must be"),
    ({"reflect": "sometimes"}, "reflect must be"), ({"dtype": "float16"}, "dtype"),
    ({"bound_map": "tanh"}, "bound_map"), ({"marginal_spline": "yes"}, "marginal_spline"),
    ({"activation": "sigmoid"}, "activation"), ({"flw": "maf"}, "unknown keys \\['flw'\\]"),
    ({"seed": 3}, "one seed"),
])
def test_bad_flow_options_are_refused_before_any_data_are_read(bad, message):
    with pytest.raises(LikeflowError, match=message):
        FlowOptions.coerce(bad)


def test_the_defaults_are_written_once():
    """A FlowConfig's architecture defaults are the options' (FlowConfig(dim=...) of files
    without those keys and a new fit agree); a dict, FlowOptions and keywords give the same
    config; given() names what differs from the defaults."""
    default = FlowOptions()
    config = FlowConfig(dim=3)
    for key, value in default.architecture().items():
        assert getattr(config, key) == value or key == "bins"
    x = np.random.default_rng(0).normal(size=(400, 3))
    a = FlowConfig.from_data(x, {"flow": "cnsf", "layers": 2})
    b = FlowConfig.from_data(x, FlowOptions(flow="cnsf", layers=2))
    c = FlowConfig.from_data(x, flow="cnsf", layers=2)
    assert a == b == c and a.bins == likeflow.DEFAULT_BINS["cnsf"]
    assert FlowOptions(flow="cnsf", layers=2).given() == {"flow": "cnsf", "layers": 2}


def test_hidden_auto_follows_the_training_rows():
    """hidden="auto" (the default) is (64, 64) below WIDE_ROWS training rows and (128, 128)
    from there (weighted rows by their effective number); given units are kept as they are."""
    from likeflow.flows.config import HIDDEN, WIDE_HIDDEN, WIDE_ROWS, hidden_by_default

    assert FlowOptions().hidden == "auto"
    assert FlowOptions.coerce({"hidden": "auto"}).hidden == "auto"
    assert hidden_by_default(WIDE_ROWS - 1) == HIDDEN == (64, 64)
    assert hidden_by_default(WIDE_ROWS) == WIDE_HIDDEN == (128, 128)
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=(WIDE_ROWS - 1, 2)), rng.normal(size=(WIDE_ROWS, 2))
    assert FlowConfig.from_data(few).hidden == HIDDEN
    assert FlowConfig.from_data(many).hidden == WIDE_HIDDEN
    assert FlowConfig.from_data(many, hidden=(16,)).hidden == (16,)
    # as many rows, half of them with weight 1e-9: about half the effective rows
    w = np.where(np.arange(WIDE_ROWS) % 2 == 0, 1.0, 1e-9)
    assert FlowConfig.from_data(many, weights=w).hidden == HIDDEN
    with pytest.raises(LikeflowError, match="hidden"):
        FlowOptions(hidden="wide")


def test_a_config_file_is_read_and_checked_by_the_api(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"flow": "ansf", "hidden": "32,32", "lr": 0.001,
                                "min_delta": 0.01, "whiten": "off", "seed": 4}))
    s = read_fit_config(path)
    assert s.flow == {"flow": "ansf", "hidden": (32, 32), "whiten": False}
    assert s.train == {"learning_rate": 0.001, "min_delta": 0.01} and s.seed == 4
    for bad, message in (({"epochs": "5"}, "'epochs' must be an integer"),
                         ({"patience": None}, "'patience'"), ({"seed": True}, "'seed'"),
                         ({"seed": 1.5}, "'seed'"), ({"max_time": -1}, "max_time"),
                         ({"layers": 2.5}, "'layers'"), ({"nope": 1}, "unknown keys")):
        path.write_text(json.dumps(bad))
        with pytest.raises(LikeflowError, match=message) as e:
            read_fit_config(path)
        assert "c.json" in str(e.value)
    path.write_text("[1, 2]")
    with pytest.raises(LikeflowError, match="JSON object"):
        read_fit_config(path)
    path.write_text("{not json")
    with pytest.raises(LikeflowError, match="not a JSON config"):
        read_fit_config(path)


def test_default_names_and_combine_defaults_come_from_the_api():
    from click.testing import CliRunner
    from likeflow.cli import cli
    assert likeflow.default_output("a/b.c.h5") == "a/b.c.likeflow.h5"
    assert likeflow.default_report("a/b.likeflow.h5") == "a/b.likeflow-report"
    help_text = CliRunner().invoke(cli, ["combine", "--help"]).output
    assert f"default: {likeflow.COMBINE_MCMC.chains};" in help_text
    assert f"default: {likeflow.COMBINE_MCMC.warmup};" in help_text
