"""How the surrogate files in this folder were made: with likeflow at commit f262b4f (surrogate
file format version 1), by ``PYTHONPATH=<that checkout> python tests/data/v1/make.py files``;
the expected numbers then with the TensorFlow loader of the likeflow that added them (where
float64 MADEs compute their activations in float64), by ``python tests/data/v1/make.py
expected``.

One small trained surrogate per flow and dtype, of a 5-parameter density with every kind of
bound (piled at a lower bound: reflected; flat on [0, 1]: probit and reflected at 1; far from
its bounds: soft clip; one-sided; none), and ``expected.npz``: 10,000 points (random, on and
near the bounds, beyond the probit hold, outside the bounds) with TensorFlow's ``log_prob`` at
them for each file, fixed latent points with TensorFlow's ``from_latent``, and 1,000 TensorFlow
samples per file. The tests check the numpy reader and the current TensorFlow loader against
these numbers: files of this format must load and evaluate the same for years.
"""

import os

import numpy as np

import likeflow

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNDS = np.array([[0, 10], [0, 1], [-8, 8], [0, np.inf], [-np.inf, np.inf]], float)
FILES = [(flow, dtype) for flow in ("maf", "realnvp", "ansf", "cnsf")
         for dtype in ("float32", "float64")]


def data(n: int, rng) -> np.ndarray:
    x = np.empty((n, 5))
    x[:, 0] = np.abs(rng.normal(0, 1.5, n))             # piled at its lower bound 0
    x[:, 1] = rng.uniform(0, 1, n)                       # flat over its range
    x[:, 2] = rng.normal(0, 1, n) + 0.5 * x[:, 0]        # far from its bounds, correlated
    x[:, 3] = rng.gamma(3.0, 1.0, n)                     # one-sided
    x[:, 4] = rng.standard_t(5, n) + 0.3 * x[:, 2] ** 2  # unbounded, skewed
    return x


def points(rng) -> np.ndarray:
    n = 10_000
    lo = np.array([0, 0, -8, 0, -10.0])
    hi = np.array([10, 1, 8, 20, 10.0])
    p = lo + (hi - lo) * rng.random((n, 5))
    edge = rng.random((n, 5)) < 0.1
    at = np.where(rng.random((n, 5)) < 0.5, BOUNDS[:, 0], BOUNDS[:, 1])
    near = at + np.where(at == BOUNDS[:, 0], 1, -1) * rng.choice([0, 1e-9, 1e-4, 0.01], (n, 5))
    p = np.where(edge & np.isfinite(at), near, p)
    p[:50, 0] = -0.5                                     # outside the bounds
    return p


def files() -> None:
    x = data(4000, np.random.default_rng(20261126))
    for flow, dtype in FILES:
        likeflow.fit(x, bounds=BOUNDS, seed=1, validate=False,
                     out=os.path.join(HERE, f"{flow}_{dtype}.likeflow.h5"),
                     flow_config={"flow": flow, "layers": 3, "hidden": (8, 8), "bins": 6,
                                  "dtype": dtype, "permutation": "random"},
                     train_config=likeflow.TrainConfig(epochs=4, batch_size=256))


def expected() -> None:
    rng = np.random.default_rng(20261127)
    # stored as float32 (half the bytes); evaluated as the float64 numbers they are
    pts = points(rng).astype(np.float32).astype(np.float64)
    z = rng.standard_normal((200, 5))
    out = {"points": pts.astype(np.float32), "latent": z}
    for flow, dtype in FILES:
        name = f"{flow}_{dtype}"
        sur = likeflow.load(os.path.join(HERE, f"{name}.likeflow.h5"), backend="tensorflow")
        out[f"{name}/log_prob"] = sur.log_prob(pts)
        out[f"{name}/from_latent"] = sur.from_latent(z)
        out[f"{name}/samples"] = sur.sample(1000, seed=7).astype(np.float32)
        print(name, sur.config.reflect, sur.config.softclip, sur.config.marginal_spline)
    np.savez_compressed(os.path.join(HERE, "expected.npz"), **out)


if __name__ == "__main__":
    import sys
    {"files": files, "expected": expected}[sys.argv[1]]()
