"""Numbers unchanged by a refactoring: every backend's numbers recorded on one checkout, then
compared with another's on the same machine (issue 29's check).

    PYTHONPATH=/tmp/before python scripts/same_numbers.py record before.npz
    python scripts/same_numbers.py record after.npz
    python scripts/same_numbers.py compare before.npz after.npz [--json out.json]

Recorded, each under its own key:

- the surrogate files of ``tests/data`` (format versions 1 and 2, every flow, float32 and
  float64): numpy and TensorFlow ``log_prob``, the numpy gradient, the ONNX float64 graph's
  ``log_prob`` (with onnxruntime), seeded numpy samples and ``to_latent``;
- synthetic flows: the four flows x (float32 probit, float64 probit whitened, float64
  sigmoid), six parameters of every kind (reflected at 0, two bounds the data reach, a soft
  clip, none, an upper and a lower bound), random weights far from the identity, 500 points
  on and near the bounds: the same quantities;
- two seeded fits on one device (maf probit whitened with a reflection; cnsf sigmoid): their
  weights.

``compare`` prints per key "bit-identical" or the largest relative difference, and a summary
per kind.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))   # flow_helpers (random weights)


def _points(sur, rng, n: int = 500) -> np.ndarray:
    """Surrogate samples, half of them pushed onto or next to a bound."""
    x = sur.sample(n, seed=7)
    b = sur.bounds
    for j in range(sur.dim):
        lo, hi = b[j]
        rows = rng.choice(n, n // 10, replace=False)
        if np.isfinite(lo):
            x[rows[: len(rows) // 2], j] = lo + np.abs(rng.normal(scale=1e-6, size=len(rows) // 2))
        if np.isfinite(hi):
            x[rows[len(rows) // 2:], j] = hi - np.abs(rng.normal(scale=1e-6,
                                                                 size=len(rows) - len(rows) // 2))
    return x


def _evaluate(tag: str, path: str, out: dict) -> None:
    import likeflow
    rng = np.random.default_rng(0)
    num = likeflow.load(path, backend="numpy")
    x = _points(num, rng)
    out[f"{tag}/points"] = x
    out[f"{tag}/numpy/log_prob"] = num.log_prob(x)
    lp, grad = num.log_prob_grad(x)
    out[f"{tag}/numpy/grad"] = grad
    out[f"{tag}/numpy/samples"] = num.sample(300, seed=1)
    if num.kind == "flow":
        out[f"{tag}/numpy/to_latent"] = num.to_latent(x)
    try:
        tfs = likeflow.load(path, backend="tensorflow")
        out[f"{tag}/tensorflow/log_prob"] = tfs.log_prob(x)
        out[f"{tag}/tensorflow/samples"] = tfs.sample(300, seed=1)
    except likeflow.LikeflowError:
        pass
    if num.kind == "flow":
        try:
            import onnxruntime
        except ImportError:
            return
        with tempfile.TemporaryDirectory() as tmp:
            model = os.path.join(tmp, "m.onnx")
            likeflow.export_onnx(num, model, dtype="float64")
            sess = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
            feed = {"x": x}
            names = [o.name for o in sess.get_outputs()]
            if "x_of_z" in names:   # the coupling flows' sampling map
                feed["z"] = np.random.default_rng(3).normal(size=(300, num.dim))
            for name, value in zip(names, sess.run(names, feed)):
                out[f"{tag}/onnx/{name}"] = value


def _synthetic(folder: str) -> list[tuple[str, str]]:
    """Surrogate files of random flows with every kind of column (see the module docstring)."""
    import likeflow
    from flow_helpers import random_weights
    from likeflow.flows.config import FlowConfig
    from likeflow.flows.numpy_flow import NumpyFlow
    rng = np.random.default_rng(1)
    n = 4000
    x = np.column_stack([np.abs(rng.normal(size=n)),                 # piled up at 0: reflected
                         rng.uniform(0, 1, size=n),                  # reaches both bounds
                         rng.normal(size=n),                         # bounds +-5: soft clip
                         rng.normal(size=n),                         # no bound
                         -np.abs(rng.normal(size=n)) + 2.5,          # an upper bound
                         np.abs(rng.normal(size=n)) + 0.3])          # a lower bound
    bounds = np.array([[0, 10], [0, 1], [-5, 5], [-np.inf, np.inf], [-np.inf, 3.0],
                       [0.0, np.inf]], dtype=float)
    files = []
    for flow in likeflow.FLOWS:
        for kind, opts in (("f32_probit", {"dtype": "float32"}),
                           ("f64_probit_whiten", {"dtype": "float64", "whiten": True}),
                           ("f64_sigmoid", {"dtype": "float64", "bound_map": "sigmoid"})):
            cfg = FlowConfig.from_data(x, bounds=bounds, flow=flow, layers=2, hidden=(16, 16),
                                       **opts)
            nf = NumpyFlow(cfg, [w.astype(cfg.dtype) for w in random_weights(cfg, rng)])
            path = os.path.join(folder, f"{flow}_{kind}.likeflow.h5")
            likeflow.Surrogate(nf).save(path)
            files.append((f"synthetic/{flow}_{kind}", path))
    return files


def _fits(out: dict) -> None:
    import likeflow
    rng = np.random.default_rng(2)
    x = np.column_stack([np.abs(rng.normal(size=3000)), rng.normal(size=3000),
                         rng.uniform(-1, 1, size=3000)])
    bounds = {"x0": (0, 8), "x2": (-1, 1)}
    for name, opts in (("maf_probit_whiten", {"flow": "maf", "whiten": True}),
                       ("cnsf_sigmoid", {"flow": "cnsf", "bound_map": "sigmoid"})):
        sur = likeflow.fit(x, bounds=bounds, seed=3, validate=False,
                           flow_config=dict(opts, layers=2, hidden=(16, 16)),
                           train_config=likeflow.TrainConfig(epochs=2))
        for role, w in sur.weight_arrays():
            out[f"fit/{name}/{role}"] = np.asarray(w)


def record(path: str) -> None:
    import likeflow
    out: dict[str, np.ndarray] = {}
    files = [(f"file/{os.path.relpath(p, os.path.join(ROOT, 'tests', 'data'))}", p)
             for p in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "**",
                                                    "*.likeflow.h5"), recursive=True))]
    with tempfile.TemporaryDirectory() as tmp:
        for tag, p in files + _synthetic(tmp):
            _evaluate(tag, p, out)
            print(f"recorded {tag}", file=sys.stderr)
    _fits(out)
    np.savez_compressed(path, **out)
    print(f"{path}: {len(out)} arrays (likeflow {likeflow.__version__} from "
          f"{os.path.dirname(likeflow.__file__)}, {platform.node()})")


def compare(a_path: str, b_path: str, json_path: str | None) -> int:
    a, b = np.load(a_path), np.load(b_path)
    rows, worst = [], {}
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            rows.append((key, "only in " + (a_path if key in a else b_path)))
            continue
        x, y = a[key], b[key]
        if x.shape != y.shape:
            rows.append((key, f"shapes {x.shape} vs {y.shape}"))
            continue
        if np.array_equal(x, y, equal_nan=True):
            rel = 0.0
        else:
            same_fin = np.array_equal(np.isfinite(x), np.isfinite(y))
            fin = np.isfinite(x) & np.isfinite(y)
            rel = float(np.max(np.abs(x[fin] - y[fin]) / np.maximum(np.abs(x[fin]), 1e-300),
                               initial=0.0)) if same_fin else float("inf")
        kind = "/".join(p for p in key.split("/") if p in ("numpy", "tensorflow", "onnx")) \
            or key.split("/")[0]
        kind = f"{key.split('/')[0]}:{kind}:{key.rsplit('/', 1)[1]}"
        worst[kind] = max(worst.get(kind, 0.0), rel)
        rows.append((key, "bit-identical" if rel == 0 else f"{rel:.2e}"))
    changed = [r for r in rows if r[1] != "bit-identical"]
    for key, what in changed:
        print(f"{key:70s} {what}")
    print(f"\n{len(rows)} arrays, {len(rows) - len(changed)} bit-identical\n")
    print(f"{'kind':50s} largest relative difference")
    for kind, rel in sorted(worst.items()):
        print(f"{kind:50s} {'bit-identical' if rel == 0 else f'{rel:.2e}'}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"arrays": len(rows), "changed": dict(changed), "worst": worst,
                       "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                                   "python": platform.python_version()}}, f, indent=1)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    c.add_argument("--json", default=None)
    args = p.parse_args()
    if args.cmd == "record":
        record(args.out)
        return 0
    return compare(args.before, args.after, args.json)


if __name__ == "__main__":
    sys.exit(main())
