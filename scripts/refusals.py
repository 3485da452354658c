"""How fast and how small likeflow's refusals are (issue 32): bad sample files, damaged
surrogate records and bad options, each refused by a real ``likeflow`` subprocess. Prints a
table (slowest first), the slowest and the largest, and writes JSON with the machine.

    python scripts/refusals.py --workdir /tmp/refusals --out refusals.json

Target: every refusal exit 2 with one line, at most 2 s wall and 1 GB peak RSS (of the
command and its forked probe). The inputs are made here,
small, the way the tests make them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench import machine  # noqa: E402


def make_inputs(w: str) -> dict[str, str]:
    """The bad inputs (and a good file and surrogate to pair them with), in folder ``w``."""
    from likeflow.fitting import fit
    from likeflow.samples import SampleSet, write_samples
    from likeflow.training import TrainConfig
    p = {k: os.path.join(w, v) for k, v in {
        "good": "good4.h5", "sur": "s.likeflow.h5", "random": "random.h5", "rank1": "rank1.h5",
        "bomb": "gzip_bomb.h5", "lazy": "lazy_3g.h5", "tera": "tera.h5", "contig": "half.h5",
        "extlink": "extlink.h5", "notes": "noth5.bin"}.items()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 4))
    x[:, 0] = np.abs(x[:, 0])
    write_samples(p["good"], SampleSet(x, names=["mu", "a", "b", "c"], poi=["mu"],
                                       log_prob=-0.5 * (x ** 2).sum(1),
                                       bounds=[[0, np.inf]] + [[-np.inf, np.inf]] * 3))
    fit(p["good"], out=p["sur"], validate=False, flow_config={"layers": 1, "hidden": (8,)},
        train_config=TrainConfig(epochs=1))
    with open(p["random"], "wb") as f:
        f.write(rng.bytes(3000))
    with h5py.File(p["rank1"], "w") as f:
        f["samples"] = np.arange(10.0)
    with h5py.File(p["bomb"], "w") as f:
        d = f.create_dataset("samples", shape=(5_000_000, 10), dtype="f8", chunks=(100_000, 10),
                             compression="gzip")
        for i in range(0, 5_000_000, 100_000):
            d[i:i + 100_000] = np.zeros((100_000, 10))
    with h5py.File(p["lazy"], "w") as f:
        f.create_dataset("samples", shape=(37_500_000, 10), dtype="f8", chunks=(100_000, 10))
    with h5py.File(p["tera"], "w") as f:
        f.create_dataset("samples", shape=(10 ** 12, 1), dtype="f8", chunks=(102400, 1),
                         maxshape=(None, 1))
    with h5py.File(p["contig"], "w") as f:
        ds = f.create_dataset("samples", shape=(200_000, 10), dtype="f8")
        ds[:100_000] = rng.normal(size=(100_000, 10))
    with open(p["notes"], "wb") as f:
        f.write(b"not hdf5" * 100)
    with h5py.File(p["extlink"], "w") as f:
        f["samples"] = h5py.ExternalLink("noth5.bin", "/data")
    for name, change in {"inverted": lambda c: c["bounds"].__setitem__(1, [2.0, -1.0]),
                         "twice": lambda c: c["names"].__setitem__(2, c["names"][1]),
                         "poi": lambda c: c.update(poi=["nope"]),
                         "seed": lambda c: c.update(seed=10 ** 30),
                         "perm": lambda c: c.update(layers=2, permutations=[
                             [float(i) for i in range(c["dim"])][::-1]])}.items():
        p[f"cfg_{name}"] = os.path.join(w, f"cfg_{name}.likeflow.h5")
        shutil.copyfile(p["sur"], p[f"cfg_{name}"])
        with h5py.File(p[f"cfg_{name}"], "a") as f:
            cfg = json.loads(f["config"][()])
            change(cfg)
            del f["config"]
            f["config"] = json.dumps(cfg)
    return p


def commands(p: dict, w: str) -> list[list[str]]:
    o = os.path.join(w, "out")
    bad_files = ["random", "rank1", "bomb", "lazy", "tera", "contig", "extlink"]
    out = []
    for k in bad_files:
        out += [["info", p[k]], ["eval", p["sur"], p[k]], ["validate", p["sur"], p[k]],
                ["fit", p[k], "-o", o + ".likeflow.h5"]]
    for k in [k for k in p if k.startswith("cfg_")]:
        out += [["eval", p[k], p["good"]], ["sample", p[k], "-n", "5", "-o", o + ".h5"],
                ["validate", p[k], p["good"]], ["profile", p[k]]]
    out += [["profile", p["sur"], "--poi", "nope"],
            ["profile", p["sur"], "--range", "0:1e308", "--points", "3"],
            ["sample", p["sur"], "-n", "0", "-o", o + ".h5"],
            ["eval", p["sur"], p["sur"]],
            ["validate", p["sur"], p["good"], "--report", p["good"]],
            ["fit", p["good"], "--seed", str(2 ** 40), "-o", o + ".likeflow.h5"]]
    return out


# a parent of its own per command: its children's peak RSS is the command's (the forked
# probe included), not a running maximum over earlier commands
_WRAPPER = ("import json, resource, subprocess, sys, time; t = time.perf_counter();"
            "r = subprocess.run([sys.executable, '-m', 'likeflow', *sys.argv[1:]],"
            " capture_output=True, text=True);"
            "print(json.dumps([r.returncode, time.perf_counter() - t,"
            " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r.stderr]))")


def run(cmd: list[str]) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True,
                         text=True, env=env)
    code, seconds, peak, err = json.loads(out.stdout.strip().splitlines()[-1])
    # one line: likeflow's own "likeflow: error: ..."; click's usage errors say it in
    # their "Error: ..." line below the usage
    lines = [ln for ln in err.strip().splitlines() if ln.startswith(("likeflow", "Error:"))]
    return {"command": " ".join(os.path.basename(c) for c in cmd), "exit": code,
            "seconds": seconds, "peak_mb": peak, "lines": len(lines),
            "message": lines[-1][:160] if lines else err.strip()[-160:],
            "traceback": "Traceback" in err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="refusals-work")
    ap.add_argument("--out", default="refusals.json")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    p = make_inputs(args.workdir)
    rows = []
    for cmd in commands(p, args.workdir):
        rows.append(run(cmd))
        r = rows[-1]
        print(f"{r['exit']:>3} {r['seconds']:6.2f} s {r['peak_mb']:7.0f} MB  {r['command'][:60]:60}"
              f"  {r['message'][:90]}", flush=True)
    bad = [r for r in rows if r["exit"] != 2 or r["lines"] != 1 or r["traceback"]]
    slow = max(rows, key=lambda r: r["seconds"])
    large = max(rows, key=lambda r: r["peak_mb"])
    print(f"\n{len(rows)} commands; not 'exit 2 with one line': {len(bad)}")
    for r in bad:
        print(f"  exit {r['exit']}, {r['lines']} lines: {r['command']}: {r['message']}")
    print(f"slowest: {slow['seconds']:.2f} s  {slow['command']}")
    print(f"largest: {large['peak_mb']:.0f} MB  {large['command']}")
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                   "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
