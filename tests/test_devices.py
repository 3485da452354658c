"""Data-parallel training (fit --devices) on two logical CPU devices.

The CPU can only be split before TensorFlow starts, so the fits run in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from likeflow.fitting.devices import parse
from likeflow.errors import LikeflowError

SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import likeflow
    from click.testing import CliRunner
    from likeflow.cli import cli
    from likeflow.data.samples import SampleSet, write_samples
    from likeflow.fitting.loop import TrainConfig

    folder = sys.argv[1]
    rng = np.random.default_rng(1)
    cov = [[1, .8, 0, 0], [.8, 1, .3, 0], [0, .3, 1, 0], [0, 0, 0, 1]]
    x = rng.multivariate_normal(np.zeros(4), cov, size=12000)
    small = dict(flow_config=dict(layers=2, hidden=(16, 16)), validate=False,
                 train_config=TrainConfig(epochs=5, batch_size=512, cosine_steps=100))
    out = {}
    mirrored = likeflow.fit(x, seed=3, devices=2, out=f"{folder}/m.likeflow.h5", **small)
    single = likeflow.fit(x, seed=3, devices=1, **small)
    out["loss"] = [s.training["result"]["best_val_loss"] for s in (mirrored, single)]
    out["devices"] = likeflow.load(f"{folder}/m.likeflow.h5").training["devices"]
    # a mirrored fit continued (resume) and the CLI with a batch the devices cannot share
    again = likeflow.fit(x, seed=3, devices=2, out=f"{folder}/m.likeflow.h5", resume=True,
                         **dict(small, train_config=TrainConfig(epochs=7, batch_size=512,
                                                                cosine_steps=100)))
    out["resumed_epochs"] = len(again.training["result"]["history"])
    write_samples(f"{folder}/x.h5", SampleSet(x))
    res = CliRunner().invoke(cli, ["fit", f"{folder}/x.h5", "--devices", "2", "--batch-size",
                                   "511", "-o", f"{folder}/bad.likeflow.h5"])
    out["odd_batch"] = [res.exit_code, res.output]
    # the NaN guard under the strategy: a learning rate that diverges is survived
    from likeflow.fitting.devices import strategy
    from likeflow.flows.config import FlowConfig
    from likeflow.flows.tf_flow import build_flow
    from likeflow.fitting.loop import make_mean_loss, train
    y = np.random.default_rng(1).normal(size=(2000, 4)) * [1, 10, 0.1, 1]
    mirrored = strategy(2)
    with mirrored.scope():
        f = build_flow(FlowConfig.from_data(y[:1500], layers=3, hidden=(32, 32), flow="realnvp"))
    r = train(f, y[:1500], y[1500:], strategy=mirrored, config=TrainConfig(
        epochs=8, learning_rate=50.0, batch_size=50, clip_norm=1e6))
    out["nan_guard"] = [r.rollbacks, sum(h["bad_steps"] for h in r.history),
                        all(np.isfinite(v.numpy()).all() for v in f.trainable_variables),
                        bool(np.isfinite(make_mean_loss(f, y[1500:], None)()))]
    print("RESULT " + json.dumps(out))
''')


@pytest.mark.slow
def test_mirrored_fit_equals_the_fit_on_one_device(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[0][len("RESULT "):])
    mirrored, single = out["loss"]
    assert abs(mirrored - single) / 4 < 0.01
    assert out["devices"] == {"replicas": 2, "devices": ["CPU:0", "CPU:1"],
                              "global_batch": 512, "per_replica_batch": 256}
    assert out["resumed_epochs"] == 6   # continued to the cosine's sixth epoch, not restarted
    rollbacks, bad_steps, weights_finite, loss_finite = out["nan_guard"]
    assert (rollbacks > 0 or bad_steps > 0) and weights_finite and loss_finite
    code, text = out["odd_batch"]
    assert code == 2 and "511 rows cannot be shared equally by 2 devices" in text


def test_devices_after_tensorflow_started_is_a_clear_error(tmp_path):
    code = ("import tensorflow as tf, numpy as np, likeflow\n"
            "tf.constant(1.0) + 1\n"
            "try:\n"
            "    likeflow.fit(np.random.default_rng(0).normal(size=(2000, 2)), devices=3)\n"
            "except likeflow.LikeflowError as e:\n"
            "    print('ERROR', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert "ERROR 3 devices asked for" in proc.stdout and "new process" in proc.stdout, \
        proc.stderr[-2000:]


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True, ""])
def test_bad_device_counts_are_refused(bad):
    with pytest.raises(LikeflowError, match="positive integer or 'all'"):
        parse(bad)


def test_device_counts_as_given():
    assert parse(None) is None and parse("all") == "all" and parse("2") == 2 and parse(3) == 3
