"""How the surrogate files in this folder were made: with likeflow at commit 338675a (format
version 1, before the config had ``bound_map``, ``softclip`` and ``marginal_spline``: every
two-sided bound was a sigmoid, no soft clip, no marginal spline), by
``PYTHONPATH=<that checkout> python tests/data/v1_early/make.py``, which also stores that
build's own ``log_prob`` at 2,000 points in ``expected.npz``. The points and data are those of
``tests/data/v1/make.py``. Files of this shape were written by likeflow for a day and must load
and evaluate the same as the build that wrote them.
"""

import importlib.util
import os

import numpy as np

import likeflow
from likeflow.data.samples import SampleSet
from likeflow.fitting.loop import TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("v1make", os.path.join(HERE, "..", "v1", "make.py"))
v1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(v1)
FILES = [("maf", "float32"), ("cnsf", "float64")]

if __name__ == "__main__":
    x = v1.data(4000, np.random.default_rng(20261126))
    s = SampleSet(x, bounds=v1.BOUNDS)
    pts = v1.points(np.random.default_rng(20261127))[:2000].astype(np.float32).astype(np.float64)
    out = {"points": pts.astype(np.float32)}
    for flow, dtype in FILES:
        path = os.path.join(HERE, f"{flow}_{dtype}.likeflow.h5")
        likeflow.fit(s, out=path, train_config=TrainConfig(epochs=4, batch_size=256),
                     flow_config={"flow": flow, "layers": 3, "hidden": (8, 8), "bins": 6,
                                  "dtype": dtype, "permutation": "random", "seed": 1})
        out[f"{flow}_{dtype}/log_prob"] = likeflow.load(path).log_prob(pts)
    np.savez_compressed(os.path.join(HERE, "expected.npz"), **out)
