"""Fuzzing the readers: seeded damage to sample and surrogate files (bits flipped, truncation,
datasets deleted, attributes and config values of wrong types or huge). Every case must end
in exit 0 with a correct result, or exit 2 with one line naming the file; never a traceback
or a crash, within seconds and without a large allocation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

CASES_PER_KIND = 60   # sample files and surrogate files: 120 cases in all
SECONDS = 5.0
MEMORY_MB = 1024
GUARD_SECONDS = 10.0  # likeflow's hang guard of a surrogate read


@pytest.mark.slow
def test_damaged_files_end_in_a_clear_error(tmp_path):
    """The driver runs every case in one process. A case where the HDF5 library itself stops
    returning ends that process through likeflow's hang guard (exit 2, one line naming the
    file, as 'likeflow' would end); the driver then goes on from the next case."""
    driver = os.path.join(os.path.dirname(__file__), "fuzz_cases.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done, first, base = [], 0, None
    while first < 2 * CASES_PER_KIND:
        r = subprocess.run([sys.executable, driver, str(tmp_path), "17", str(CASES_PER_KIND),
                            str(first)], capture_output=True, text=True, timeout=900, env=env)
        lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
        base = base or lines[0]["baseline_mb"]
        finished = [ln for ln in lines if "case" in ln]
        done += finished
        first += len(finished)
        if r.returncode == 0:
            break
        started = [ln["start"] for ln in lines if "start" in ln]
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("likeflow: error:")]
        assert r.returncode == 2 and len(err) == 1, (
            f"the driver died (exit {r.returncode}) in case {started[-1] if started else '?'}:"
            f" {r.stderr[-2000:]}")
        done.append({"case": started[-1], "file": err[0].split(": ")[2], "exit": 2,
                     "stderr": err[0], "stdout_has_traceback": False, "rows": None,
                     "seconds": GUARD_SECONDS, "peak_mb": base})
        first += 1
    assert len(done) == 2 * CASES_PER_KIND
    problems = []
    for c in done:
        name = os.path.basename(c["file"])
        err = c["stderr"].strip().splitlines()
        if c["exit"] == 0:
            if c["rows"] not in (None, 5):
                problems.append(f"{c['case']}: exit 0 but {c['rows']} good rows")
        elif c["exit"] != 2 or len(err) != 1 or name not in err[0]:
            problems.append(f"{c['case']}: exit {c['exit']}, {c['stderr'][:300]!r}")
        if "Traceback" in c["stderr"] or c["stdout_has_traceback"]:
            problems.append(f"{c['case']}: traceback")
        if c["seconds"] > max(SECONDS, GUARD_SECONDS):
            problems.append(f"{c['case']}: {c['seconds']:.1f} s")
        if c["peak_mb"] - base > MEMORY_MB:
            problems.append(f"{c['case']}: peak {c['peak_mb'] - base:.0f} MB above baseline")
    assert not problems, "\n".join(problems)
