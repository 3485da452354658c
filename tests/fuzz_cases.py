"""Damaged sample and surrogate files, made from good ones by a seeded random generator, and a
driver that runs each through the CLI (in one process, so a crash names its case).

    python tests/fuzz_cases.py FOLDER SEED N   # prints one JSON line per case

Used by tests/test_fuzz.py, which runs it in a subprocess and judges the lines.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time

import h5py
import numpy as np


def _flip(src: str, dst: str, rng, k: int) -> None:
    data = bytearray(open(src, "rb").read())
    for _ in range(k):
        i = int(rng.integers(0, len(data)))
        data[i] ^= 1 << int(rng.integers(0, 8))
    open(dst, "wb").write(bytes(data))


def _truncate(src: str, dst: str, rng) -> None:
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:int(rng.integers(0, len(data)))])


def _damage_bytes(kind: str, good: str, dst: str, rng) -> str:
    """The byte-level damages every file kind gets: bits flipped or truncation."""
    if kind == "flip":
        m = int(rng.integers(1, 40))
        _flip(good, dst, rng, m)
        return f"{m} bits flipped"
    _truncate(good, dst, rng)
    return "truncated"


WRONG = ["x", -1, 10 ** 9, None, [1, 2], {"a": 1}, 1.5, True, 1e308, "inf"]


def sample_cases(good: str, folder: str, rng, n: int) -> list[tuple[str, str]]:
    """(description, path) of damaged sample files."""
    out = []
    for k in range(n):
        p = os.path.join(folder, f"s{k}.h5")
        kind = ["flip", "flip", "truncate", "delete", "attr", "values"][k % 6]
        shutil.copy(good, p)
        if kind in ("flip", "truncate"):
            what = _damage_bytes(kind, good, p, rng)
        elif kind == "delete":
            name = ["samples", "log_prob"][int(rng.integers(0, 2))]
            with h5py.File(p, "a") as f:
                del f[name]
            what = f"dataset {name} deleted"
        elif kind == "attr":
            key = ["bounds", "parameter_names", "poi", "likeflow_complete"][int(rng.integers(0, 4))]
            val = WRONG[int(rng.integers(0, len(WRONG)))]
            with h5py.File(p, "a") as f:
                f.attrs[key] = json.dumps(val) if isinstance(val, (dict, type(None))) else val
            what = f"attribute {key} = {val!r}"
        else:
            v = [np.nan, np.inf, 1e300, -1e308][int(rng.integers(0, 4))]
            with h5py.File(p, "a") as f:
                x = f["samples"][()]
                x[int(rng.integers(0, len(x))), int(rng.integers(0, x.shape[1]))] = v
                f["samples"][...] = x
            what = f"a value {v}"
        out.append((f"sample file: {what}", p))
    return out


def surrogate_cases(good: str, folder: str, rng, n: int) -> list[tuple[str, str]]:
    out = []
    with h5py.File(good, "r") as f:
        config = json.loads(f["config"][()])
    for k in range(n):
        p = os.path.join(folder, f"m{k}.likeflow.h5")
        kind = ["flip", "flip", "truncate", "delete", "config", "config", "json",
                "semantic"][k % 8]
        shutil.copy(good, p)
        if kind in ("flip", "truncate"):
            what = _damage_bytes(kind, good, p, rng)
        elif kind == "delete":
            name = ["config", "training", "validation", "weights/0000", "weights"][
                int(rng.integers(0, 5))]
            with h5py.File(p, "a") as f:
                del f[name]
            what = f"{name} deleted"
        elif kind == "config":
            key = sorted(config)[int(rng.integers(0, len(config)))]
            val = WRONG[int(rng.integers(0, len(WRONG)))]
            bad = dict(config, **{key: val})
            with h5py.File(p, "a") as f:
                del f["config"]
                f["config"] = json.dumps(bad)
            what = f"config {key} = {val!r}"
        elif kind == "semantic":  # well-typed fields that no flow can mean (issue 32)
            bad = json.loads(json.dumps(config))
            change = int(rng.integers(0, 5))
            if change == 0:
                bad["bounds"][0] = [1.0, -1.0]
            elif change == 1:
                bad["names"][1] = bad["names"][0]
            elif change == 2:
                bad["poi"] = ["not_a_parameter"]
            elif change == 3:
                bad["seed"] = 10 ** 30
            else:
                bad["permutations"] = [[float(i) for i in p] for p in bad["permutations"]]
            with h5py.File(p, "a") as f:
                del f["config"]
                f["config"] = json.dumps(bad)
            what = f"config with semantic damage {change}"
        else:
            name = ["training", "validation", "config"][int(rng.integers(0, 3))]
            val = ["[]", "not json", "null", '{"result": 5}', "\udcff"][int(rng.integers(0, 5))]
            with h5py.File(p, "a") as f:
                del f[name]
                f[name] = val.encode("utf-8", "surrogateescape")
            what = f"{name} = {val!r}"
        out.append((f"surrogate file: {what}", p))
    return out


def main() -> None:
    folder, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from click.testing import CliRunner

    from likeflow.cli import cli
    from likeflow.fileio import guard_reads
    from likeflow.data.samples import SampleSet, write_samples
    from likeflow.fitting.run import fit
    from likeflow.fitting.loop import TrainConfig

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 3))
    good = os.path.join(folder, "good.h5")
    guard_reads()  # as 'likeflow' itself does: a read that hangs ends the process, exit 2
    write_samples(good, SampleSet(x, names=["mu", "a", "b"], poi=["mu"],
                                  bounds=[[-10, 10], [-np.inf, np.inf], [-np.inf, np.inf]],
                                  log_prob=-0.5 * (x ** 2).sum(1)))
    good_sur = os.path.join(folder, "good.likeflow.h5")
    fit(good, validate=False, flow_config={"layers": 2, "hidden": (8,)}, train_config=TrainConfig(epochs=1),
        out=good_sur)
    runner = CliRunner()
    runner.invoke(cli, ["sample", good_sur, "-n", "5", "-o", os.path.join(folder, "w.h5")])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cases = [(d, p, ["info", p]) for d, p in sample_cases(good, folder, rng, n)]
    cases += [(d, p, ["sample", p, "-n", "5", "-o", os.path.join(folder, "o.h5")])
              for d, p in surrogate_cases(good_sur, folder, rng, n)]
    print(json.dumps({"baseline_mb": base}), flush=True)
    for what, path, args in cases[first:]:
        out = os.path.join(folder, "o.h5")
        if os.path.exists(out):
            os.remove(out)
        print(json.dumps({"start": what}), flush=True)
        t0 = time.perf_counter()
        r = runner.invoke(cli, args)
        rows = None
        if r.exit_code == 0 and args[0] == "sample":
            with h5py.File(out, "r") as f:
                rows = int(f["samples"].shape[0]) if np.isfinite(f["samples"][()]).all() else -1
        print(json.dumps({
            "case": what, "file": path, "exit": r.exit_code, "stderr": r.stderr,
            "stdout_has_traceback": "Traceback" in r.output, "rows": rows,
            "seconds": time.perf_counter() - t0,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()
