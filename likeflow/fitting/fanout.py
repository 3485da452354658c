"""Fits fanned out: a grid of fit configurations and seeds run as tasks on Dask.

``likeflow scan grid.json SAMPLES.h5`` (:func:`scan`) expands a grid file into tasks, one fit
each, and runs them on ``dask.distributed``: a local cluster of worker processes by default, or
a running cluster by its scheduler address (e.g. one started on Slurm, PBS or HTCondor with
``dask-jobqueue``). A grid file::

    {"flow_config": {"flow": ["maf", "cnsf"], "layers": [3, 5]},
     "train_config": {"epochs": [200], "learning_rate": [1e-3, 5e-3]},
     "seeds": [0, 1, 2]}

gives every combination of the listed values (here 2 x 2 x 1 x 2 x 3 = 24 fits); single
values need no list. Each task writes ``<out>/<task>.likeflow.h5`` and its record
``<out>/<task>.json``; the result is a leaderboard (validation loss, verdict, time, config),
printed and written as ``leaderboard.json``, and the best surrogate copied to
``best.likeflow.h5``. A task that fails (a bad configuration, a diverged fit) is listed with its
error while the others finish; a scan run again skips the tasks whose record says done.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass, field

from ..errors import LikeflowError

LEADERBOARD = "leaderboard.json"
BEST = "best.likeflow.h5"


def expand(grid: dict) -> list[dict]:
    """The tasks of a grid: every combination of its listed values, with a stable id each."""
    if not isinstance(grid, dict):
        raise LikeflowError("a scan grid is a JSON object with flow_config, train_config, seeds")
    unknown = set(grid) - {"flow_config", "train_config", "seeds"}
    if unknown:
        raise LikeflowError(f"scan grid: unknown keys {sorted(unknown)} (flow_config, "
                            "train_config, seeds)")
    axes = []
    for part in ("flow_config", "train_config"):
        block = grid.get(part, {})
        if not isinstance(block, dict):
            raise LikeflowError(f"scan grid: '{part}' must be an object of option: values")
        for key, values in block.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                raise LikeflowError(f"scan grid: {part}.{key} lists no values")
            axes.append([(part, key, v) for v in values])
    seeds = grid.get("seeds", [0])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    tasks = []
    for combo in itertools.product(*axes, [("seed", None, s) for s in seeds]):
        task = {"flow_config": {}, "train_config": {}, "seed": None}
        for part, key, value in combo:
            if part == "seed":
                task["seed"] = value
            else:
                task[part][key] = value
        text = json.dumps(task, sort_keys=True)
        task["id"] = hashlib.sha1(text.encode()).hexdigest()[:10]
        tasks.append(task)
    return tasks


def run_task(task: dict, samples: str, out_dir: str, validate: bool = True) -> dict:
    """One fit of a scan, in a worker: its record (``status`` ok or failed, never raises)."""
    import likeflow

    out = os.path.join(out_dir, f"{task['id']}.likeflow.h5")
    t0 = time.perf_counter()
    record = {"id": task["id"], "flow_config": task["flow_config"],
              "train_config": task["train_config"], "seed": task["seed"], "surrogate": out}
    try:
        tcfg = likeflow.TrainConfig(**task["train_config"])
        sur = likeflow.fit(samples, out=out, seed=task["seed"], flow_config=task["flow_config"],
                           train_config=tcfg, validate=validate)
        res = sur.training["result"]
        record.update(status="ok", best_val_loss=res["best_val_loss"],
                      epochs=len(res["history"]), stopped=res["stopped"],
                      test_log_prob=sur.training.get("test_log_prob"),
                      verdict=sur.validation.get("verdict"))
    except Exception as e:  # noqa: BLE001 - a failed task is reported, the scan goes on
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        record.update(status="failed", error=f"{type(e).__name__}: {msg}")
    record["time"] = time.perf_counter() - t0
    from ..fileio import write_text
    write_text(os.path.join(out_dir, f"{task['id']}.json"), json.dumps(record, indent=1))
    return record


@dataclass
class ScanResult:
    """Every task's record, the leaderboard (done tasks by validation loss) and the failures."""

    records: list[dict]
    out_dir: str
    skipped: list[str] = field(default_factory=list)

    @property
    def leaderboard(self) -> list[dict]:
        done = [r for r in self.records if r["status"] == "ok"]
        return sorted(done, key=lambda r: r["best_val_loss"])

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] != "ok"]

    @property
    def best(self) -> str | None:
        """The best surrogate's file (a copy in the scan folder), or None."""
        path = os.path.join(self.out_dir, BEST)
        return path if self.leaderboard and os.path.exists(path) else None

    def to_dict(self) -> dict:
        return {"leaderboard": self.leaderboard, "failed": self.failed,
                "skipped": self.skipped, "best": self.best}

    def table(self) -> str:
        lines = [f"{len(self.records)} fits: {len(self.leaderboard)} done, {len(self.failed)} "
                 f"failed ({len(self.skipped)} done before and skipped)",
                 f"{'rank':>4} {'task':>10} {'val loss':>10} {'verdict':>7} {'time s':>7}  config"]
        for i, r in enumerate(self.leaderboard, 1):
            conf = {**r["flow_config"], **r["train_config"], "seed": r["seed"]}
            lines.append(f"{i:>4} {r['id']:>10} {r['best_val_loss']:>10.4f} "
                         f"{r.get('verdict') or '-':>7} {r['time']:>7.1f}  {json.dumps(conf)}")
        for r in self.failed:
            lines.append(f"FAILED {r['id']}: {r['error']}  "
                         f"{json.dumps({**r['flow_config'], **r['train_config']})}")
        if self.best:
            lines.append(f"best: {self.best}")
        return "\n".join(lines)


def scan(grid, samples, *, out_dir: str | os.PathLike, scheduler: str | None = None,
         workers: int = 2, validate: bool = True, progress=None) -> ScanResult:
    """Run the fits of ``grid`` (a dict, or a JSON file) on ``samples`` on Dask.

    Args:
        grid: the grid (see the module docstring) or its JSON file.
        samples: the sample file every fit reads (its path: workers read it themselves).
        out_dir: the scan's folder (made if missing): surrogates, records, leaderboard.
        scheduler: the address of a running Dask scheduler; default: a local cluster of
            ``workers`` processes (one thread each).
        validate: validate every fit (its verdict enters the leaderboard).
        progress: called with each finished task's record.
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise LikeflowError("scan needs dask.distributed: pip install 'likeflow[scan]'") from None
    if isinstance(grid, (str, os.PathLike)):
        try:
            with open(grid) as f:
                grid = json.load(f)
        except (OSError, ValueError) as e:
            raise LikeflowError(f"{grid}: not a readable JSON grid ({e})") from None
    tasks = expand(grid)
    samples = os.path.abspath(os.fspath(samples))
    if not os.path.exists(samples):
        raise LikeflowError(f"{samples}: no such sample file")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    records, todo, skipped = [], [], []
    for task in tasks:
        prior = _done(out_dir, task["id"])
        if prior is not None:
            records.append(prior)
            skipped.append(task["id"])
        else:
            todo.append(task)
    if todo:
        if scheduler:
            client, cluster = Client(scheduler), None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None,
                                   env={"TF_NUM_INTRAOP_THREADS": "1",
                                        "TF_NUM_INTEROP_THREADS": "1",
                                        "TF_CPP_MIN_LOG_LEVEL": "2"})
            client = Client(cluster)
        try:
            futures = [client.submit(run_task, t, samples, out_dir, validate, key=f"fit-{t['id']}",
                                     pure=False) for t in todo]
            for future in as_completed(futures):
                rec = future.result()
                records.append(rec)
                if progress is not None:
                    progress(rec)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    result = ScanResult(records, out_dir, skipped)
    board = result.leaderboard
    if board:
        shutil.copyfile(board[0]["surrogate"], os.path.join(out_dir, BEST))
    from ..fileio import write_text
    write_text(os.path.join(out_dir, LEADERBOARD), json.dumps(result.to_dict(), indent=1))
    return result


def _done(out_dir: str, task_id: str) -> dict | None:
    """The record of a task finished before (its surrogate there too), or None."""
    path = os.path.join(out_dir, f"{task_id}.json")
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if rec.get("status") == "ok" and os.path.exists(rec.get("surrogate", "")):
        return rec
    return None
