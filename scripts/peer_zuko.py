"""The peer beside likeflow's speed figures: zuko's MAF and NSF (PyTorch) of the same sizes.

Run by ``scripts/bench.py`` with ``--peer-python`` (an interpreter that has torch and zuko;
likeflow's environment need not), it prints one JSON object:

    python scripts/peer_zuko.py --dim 95 --layers 5 --hidden 64 64 --batch 512 --flows maf nsf

Per flow: training samples/s of Adam steps (after 5 warm-up steps, as likeflow's figure),
seconds to draw ``--sample-n`` samples and to evaluate their log density.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import zuko


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=95)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--sample-n", type=int, default=10_000)
    ap.add_argument("--flows", nargs="+", default=["maf", "nsf"])
    args = ap.parse_args()
    torch.manual_seed(0)
    d, batch = args.dim, args.batch
    x = torch.tensor(np.random.default_rng(0).normal(size=(batch * args.steps, d)),
                     dtype=torch.float32)
    out = {"torch": torch.__version__, "zuko": zuko.__version__,
           "threads": torch.get_num_threads()}
    for name in args.flows:
        kw = dict(features=d, transforms=args.layers, hidden_features=tuple(args.hidden))
        flow = (zuko.flows.MAF(**kw) if name == "maf" else zuko.flows.NSF(bins=args.bins, **kw))
        opt = torch.optim.Adam(flow.parameters(), 1e-3)

        def step(xb):
            loss = -flow().log_prob(xb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        for k in range(5):
            step(x[k * batch:(k + 1) * batch])
        t0 = time.perf_counter()
        for k in range(5, args.steps):
            step(x[k * batch:(k + 1) * batch])
        train = (args.steps - 5) * batch / (time.perf_counter() - t0)
        with torch.no_grad():
            t0 = time.perf_counter()
            s = flow().sample((args.sample_n,))
            t_sample = time.perf_counter() - t0
            t0 = time.perf_counter()
            flow().log_prob(s)
            t_lp = time.perf_counter() - t0
        out[name] = {"train_per_s": train, "sample_n": args.sample_n, "sample_s": t_sample,
                     "log_prob_s": t_lp}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
