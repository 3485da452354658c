"""likeflow scan: a grid of fits on a local Dask cluster of 2 workers, its leaderboard and best
surrogate; a re-run skips every finished fit; a failing fit is listed while the others finish."""

from __future__ import annotations

import json

import numpy as np
import pytest

import likeflow
from likeflow.fitting.fanout import expand

pytest.importorskip("dask.distributed", reason="scan needs dask.distributed")
pytest.importorskip("tensorflow", reason="the fits need TensorFlow")


def test_grid_expansion():
    tasks = expand({"flow_config": {"flow": ["maf", "realnvp"], "layers": 2},
                    "train_config": {"epochs": [1, 2]}, "seeds": [0, 1]})
    assert len(tasks) == 8 and len({t["id"] for t in tasks}) == 8
    assert tasks[0]["flow_config"]["layers"] == 2
    assert expand({"seeds": 3})[0]["seed"] == 3
    with pytest.raises(likeflow.LikeflowError, match="unknown keys"):
        expand({"flows": {}})


@pytest.mark.slow
def test_scan_on_two_workers(tmp_path):
    x = np.random.default_rng(0).multivariate_normal([0, 1], [[1, 0.5], [0.5, 2]], 2000)
    likeflow.write_samples(tmp_path / "s.h5", likeflow.SampleSet(x))
    grid = {"flow_config": {"flow": ["maf", "realnvp", "nope"], "layers": 1, "hidden": [[8]]},
            "train_config": {"epochs": 2}, "seeds": [0, 1]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    out = tmp_path / "scan"
    res = likeflow.scan(tmp_path / "grid.json", tmp_path / "s.h5", out_dir=out, workers=2,
                        validate=False)
    assert len(res.leaderboard) == 4 and len(res.failed) == 2
    assert all("unknown flow 'nope'" in r["error"] for r in res.failed)
    losses = [r["best_val_loss"] for r in res.leaderboard]
    assert losses == sorted(losses)
    best = likeflow.load(res.best)
    assert best.config.flow in ("maf", "realnvp")
    board = json.loads((out / "leaderboard.json").read_text())
    assert len(board["leaderboard"]) == 4 and board["best"].endswith("best.likeflow.h5")
    again = likeflow.scan(tmp_path / "grid.json", tmp_path / "s.h5", out_dir=out, workers=2,
                          validate=False)
    assert len(again.skipped) == 4 and len(again.failed) == 2   # failed ones are tried again
    assert "2 failed" in again.table() and "4 done before" in again.table()
