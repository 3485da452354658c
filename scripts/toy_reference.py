"""Exact answers for the 95-dim LHC toy: the profile of mu, its upper limits. Writes JSON.

    python scripts/toy_reference.py -o data/lhc_toy_95d_reference.json [--samples toy500k.h5]

The profile is the exact log posterior (log L + Gaussian constraints; mu's prior is flat)
maximised over the 94 nuisance parameters at each mu with L-BFGS; the asymptotic one-sided 95%
CL upper limit comes from it. With --samples (MCMC samples of the toy, e.g. from
`likeflow generate lhc-toy`), the Bayesian 95% credible upper limit of mu is added.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import likeflow
from likeflow.infer.inference import credible_upper_limit, scan, upper_limit
from likeflow.targets.likelihoods import LHCToy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--samples", default=None)
    ap.add_argument("--grid", default="-0.6:2.4:31", help="start:stop:points of mu")
    args = ap.parse_args()
    a, b, k = args.grid.split(":")
    grid = np.linspace(float(a), float(b), int(k))
    t0 = time.perf_counter()
    toy = LHCToy()
    prof = scan(toy, "mu", grid)
    ul = upper_limit(toy, "mu", prof=prof)
    out = {"target": "lhc_toy_95d", "profile": prof.to_dict(), "upper_limit": ul.to_dict()}
    if args.samples:
        s = likeflow.read_samples(args.samples)
        out["bayesian_upper_limit"] = credible_upper_limit(s.values[:, 0]).to_dict()
        out["bayesian_upper_limit"]["n_samples"] = s.n
    out["elapsed_s"] = time.perf_counter() - t0
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
    print(f"best fit mu = {prof.best.x[0]:.5f}, log posterior {prof.best.log_prob:.4f}")
    print(f"{'mu':>8} {'-2 dlogL':>10}")
    for v, q in zip(prof.values, prof.q):
        print(f"{v:8.3f} {q:10.4f}")
    print(f"upper limit: {ul.value:.4f} ({ul.method})")
    if "bayesian_upper_limit" in out:
        print(f"Bayesian upper limit: {out['bayesian_upper_limit']['value']:.4f}")


if __name__ == "__main__":
    main()
