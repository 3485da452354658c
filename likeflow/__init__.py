"""likeflow: normalizing-flow surrogates of high-dimensional likelihoods known only as samples.

    >>> import likeflow
    >>> s = likeflow.load("samples.likeflow.h5")       # doctest: +SKIP
    >>> s.log_prob(x); s.sample(10**6)                  # doctest: +SKIP

The sample-file functions need only numpy and h5py; everything that touches a flow imports
TensorFlow on first use, so ``likeflow info`` and the metrics stay fast and work without the
``[tf]`` extra.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import LikeflowError, SampleFileError, SurrogateFileError
from .samples import ReadOptions, SampleSet, read_samples, split_indices, write_samples

# name -> module for the parts that import TensorFlow (loaded on first access)
_LAZY = {
    "FlowConfig": "flows",
    "build_flow": "flows",
    "TrainConfig": "training",
    "train": "training",
    "Surrogate": "surrogate",
    "load": "surrogate",
    "fit": "surrogate",
    "validate": "report",
    "ValidationResult": "report",
    "best_fit": "inference",
    "profile": "inference",
    "upper_limit": "inference",
}

__all__ = [
    "__version__",
    "LikeflowError",
    "SampleFileError",
    "SurrogateFileError",
    "ReadOptions",
    "SampleSet",
    "read_samples",
    "write_samples",
    "split_indices",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'likeflow' has no attribute '{name}'")
