"""How far does refining an Asimov partner against the exact Asimov likelihood bring its
expected CLs band? (issue 28: the experiments behind ``fit WS.json``'s partner refinement,
whose defaults are ``--q-max 16 --score band --density-weight 20``)

Takes the folder of a ``likeflow fit WS.json --patch P.json -o DIR/NAME.likeflow.h5`` whose
partners are as fitted (``likeflow fit DIR/NAME.asimov.samples.h5 -o
DIR/NAME.asimov.likeflow.h5`` writes the reflected one again), refines copies of them with
:func:`likeflow.refine` against the exact Asimov likelihood, and prints the expected band
of each, before and after, against pyhf's:

    python scripts/refine_partner.py BkgOnly.json patch.json /tmp/c1300/c1300 --json out.json
    python scripts/refine_partner.py BkgOnly.json patch.json DIR/NAME --q-max 16 \
        --score limits --rounds 4 --only asimov

The copies are written beside the originals as ``*.refined.likeflow.h5``; the originals are
not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time

import likeflow
from likeflow.fitting.run import REFINE_SCORES
from likeflow.infer.cls import cls_limits
from likeflow.targets.likelihoods.pyhf_target import PyhfTarget


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace")
    p.add_argument("patch")
    p.add_argument("stem", help="DIR/NAME of the fit (NAME.asimov.likeflow.h5 and so on)")
    p.add_argument("--q-max", type=float, default=None,
                   help="refine out to this exact q (default: the anchors' own, 9)")
    p.add_argument("--score", default="profile", choices=list(REFINE_SCORES),
                   help="how the rounds are scored (likeflow.fitting.run.REFINE_SCORES)")
    p.add_argument("--rounds", type=int, default=None, help="default refine's own")
    p.add_argument("--only", default=None, help="refine only this partner (asimov or "
                   "asimov-rejected)")
    p.add_argument("--suffix", default="refined", help="the copies' name: NAME.asimov.SUFFIX...")
    p.add_argument("--density-weight", type=float, default=None,
                   help="the density term's weight in the refinement rounds (default refine's "
                        "own, a fit's weight; the one command's partner: 20)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    target = PyhfTarget(args.workspace, patch=args.patch, asimov=True)
    poi = target.poi[0]
    exact = cls_limits(target, target, poi, seed=0).expected
    samples = f"{args.stem}.asimov.samples.h5"
    rows = {}
    for name in ("asimov", "asimov-rejected"):
        src = f"{args.stem}.{name}.likeflow.h5"
        if not os.path.exists(src) or args.only not in (None, name):
            continue
        dst = f"{args.stem}.{name}.{args.suffix}.likeflow.h5"
        shutil.copy(src, dst)
        fitted = likeflow.load(src)
        before = cls_limits(fitted, fitted, poi, seed=0).expected   # one likelihood: one set of fits
        t0 = time.perf_counter()
        more = {} if args.rounds is None else {"rounds": args.rounds}
        if args.density_weight is not None:
            more["density_weight"] = args.density_weight
        sur = likeflow.refine(dst, samples, target, q_max=args.q_max, score=args.score,
                              exact_band=exact, messages=print, **more)
        seconds = time.perf_counter() - t0
        after = cls_limits(sur, sur, poi, seed=0).expected

        def rel(band):
            return [round(100 * (b / e - 1), 2) for b, e in zip(band, exact)]

        rows[name] = {"before_pct": rel(before), "after_pct": rel(after),
                      "refine_s": round(seconds, 1),
                      "profile_scores": sur.training["refinement"]["scores"]}
    print(f"refined out to q {args.q_max or 'of the anchors'}")
    print(f"exact expected band (-2..+2 sigma): {', '.join(f'{e:.4f}' for e in exact)}")
    print(f"{'partner':18s} {'before (%)':34s} {'after refining (%)':34s} refine")
    for name, r in rows.items():
        print(f"{name:18s} {', '.join(f'{v:+.1f}' for v in r['before_pct']):34s} "
              f"{', '.join(f'{v:+.1f}' for v in r['after_pct']):34s} {r['refine_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"exact": list(map(float, exact)), "partners": rows,
                       "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                                   "python": platform.python_version()}}, f, indent=1)


if __name__ == "__main__":
    main()
