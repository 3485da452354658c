"""How fast and how small likeflow's refusals are (issue 32): bad sample files, damaged
surrogate records, bad options and (as root, on tmpfs mounts) read-only outputs, each refused
by a real ``likeflow`` subprocess; and, on a full disk, commands that fail during their work,
which must exit 2 with one line and lose no fit. Prints a table, the slowest and the largest
refusal, and writes JSON with the machine.

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
    from likeflow.fitting.run import fit
    from likeflow.data.samples import SampleSet, write_samples
    from likeflow.fitting.loop import TrainConfig
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


def mount_outputs(w: str) -> dict[str, str]:
    """A read-only folder and a full disk, as tmpfs mounts (root only; skipped elsewhere):
    outputs that cannot be written, refused before any work, and a disk that fills during
    the work, which must lose nothing."""
    mounts = {}
    for name, opts in {"ro": "ro,size=1m", "full": "size=2m"}.items():
        mnt = os.path.join(w, name)
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["umount", mnt], capture_output=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", mnt],
                          capture_output=True).returncode == 0:
            mounts[name] = mnt
    if "full" in mounts:   # 48 kB left, as in the issue
        st = os.statvfs(mounts["full"])
        with open(os.path.join(mounts["full"], "filler"), "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 48 * 1024))
    return mounts


def lost_fits(mounts: dict[str, str]) -> int | None:
    """The fit on the full disk must have left a surrogate that loads (its report failed)."""
    if "full" not in mounts:
        return None
    from likeflow import load
    left = sorted(set(os.listdir(mounts["full"])) - {"filler", "x.likeflow.h5"})
    if left:
        print(f"  half-written outputs left on the full disk: {left}")
    try:
        load(os.path.join(mounts["full"], "x.likeflow.h5"))
        return 0
    except Exception as e:  # noqa: BLE001 - any failure to load is a lost fit
        print(f"  the full disk's fit did not load: {e}")
        return 1


def unmount(mounts: dict[str, str]) -> None:
    for mnt in mounts.values():
        subprocess.run(["umount", mnt], capture_output=True)


def mount_commands(p: dict, mounts: dict[str, str], name: str) -> list[list[str]]:
    if name not in mounts:
        return []
    mnt = mounts[name]
    tiny = ["--epochs", "1", "--layers", "1", "--hidden", "8", "-q"]
    return [["fit", p["good"], "-o", os.path.join(mnt, "x.likeflow.h5"), *tiny],
            ["validate", p["sur"], p["good"], "--report", os.path.join(mnt, "rep")],
            ["sample", p["sur"], "-n", "200000", "-o", os.path.join(mnt, "s.h5")],
            ["eval", p["sur"], p["good"], "-o", os.path.join(mnt, "e.h5")]]


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
    mounts = mount_outputs(args.workdir)
    print("read-only folder and full disk: " + (", ".join(mounts) if mounts else
          "skipped (no tmpfs mount here: run as root)"))
    rows = []
    try:
        todo = [(c, "refusal") for c in commands(p, args.workdir) + mount_commands(p, mounts, "ro")]
        todo += [(c, "full disk") for c in mount_commands(p, mounts, "full")]
        for cmd, kind in todo:
            rows.append(dict(run(cmd), kind=kind))
            r = rows[-1]
            print(f"{r['exit']:>3} {r['seconds']:6.2f} s {r['peak_mb']:7.0f} MB  "
                  f"{r['command'][:60]:60}  {r['message'][:90]}", flush=True)
        lost = lost_fits(mounts)
    finally:
        unmount(mounts)
    bad = [r for r in rows if r["exit"] != 2 or r["lines"] != 1 or r["traceback"]]
    refusals = [r for r in rows if r["kind"] == "refusal"]
    slow = max(refusals, key=lambda r: r["seconds"])
    large = max(refusals, key=lambda r: r["peak_mb"])
    print(f"\n{len(rows)} commands; not 'exit 2 with one line': {len(bad)}")
    for r in bad:
        print(f"  exit {r['exit']}, {r['lines']} lines: {r['command']}: {r['message']}")
    print(f"fits lost on the full disk: {lost}")
    print(f"slowest refusal: {slow['seconds']:.2f} s  {slow['command']}")
    print(f"largest refusal: {large['peak_mb']:.0f} MB  {large['command']}")
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                   "mounts": sorted(mounts), "fits_lost": lost, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
