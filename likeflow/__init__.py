"""likeflow: normalizing-flow surrogates of high-dimensional likelihoods known only as samples.

The public API is this namespace; the command line is a thin layer over it. A session:

    >>> import numpy as np, likeflow
    >>> x = np.random.default_rng(0).normal(size=(3000, 2))
    >>> sur = likeflow.fit(x, bounds={"x0": (-8, 8)}, seed=0,
    ...                    flow_config={"layers": 2, "hidden": (16,)},
    ...                    train_config=likeflow.TrainConfig(epochs=3))
    >>> sur.log_prob([[0.0, 0.0]]).shape
    (1,)
    >>> sur.sample(5, seed=1).shape
    (5, 2)
    >>> result = likeflow.validate(sur, x[:400])
    >>> result.verdict()[0] in ("PASS", "WARN", "FAIL")
    True

Sample files, configs and metrics need only numpy and h5py; everything that touches a flow
imports TensorFlow on first use (quietly: set ``LIKEFLOW_TF_LOGS=1`` to see its logs), so
``likeflow info`` stays fast and ``import likeflow`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .bounds import as_bounds
from .errors import LikeflowError, ReportError, SampleFileError, SurrogateFileError
from .fileio import check_output_folder, check_outputs, guard_reads
from .interrupts import sigterm_as_interrupt
from .flows import ACTIVATIONS, DEFAULT_BINS, FLOWS, PERMUTATIONS, FlowConfig
from .likelihoods import TARGETS, CorrelatedGaussian, GaussianMixture, LHCToy, make_target
from .mcmc import MCMCConfig
from .progress import EpochProgress
from .samples import (LAYOUTS, ReadOptions, SampleSet, SplitSpec, as_sample_set, mcmc_record,
                      read_samples, split_indices, write_samples)
from .streaming import HELD_OUT_ROWS as STREAM_HELD_OUT_ROWS
from .training import TrainConfig

# name -> module for the parts that import TensorFlow or matplotlib (loaded on first access)
_LAZY = {
    "fit": "fitting",
    "fit_summary": "fitting",
    "marginal": "fitting",
    "refine": "fitting",
    "load": "loading",
    "is_surrogate_file": "loading",
    "Surrogate": "surrogate",
    "build_flow": "tf_flows",
    "train": "training",
    "validate": "report",
    "ValidationResult": "report",
    "validate_exact": "exact_check",
    "ExactCheck": "exact_check",
    "fit_workspace": "from_workspace",
    "WorkspaceFit": "from_workspace",
    "publish": "publishing",
    "verify": "publishing",
    "VerifyResult": "publishing",
    "profile": "profiling",
    "ProfileResult": "profiling",
    "read_reference": "profiling",
    "best_fit": "inference",
    "upper_limit": "inference",
    "cls_limits": "cls_test",
    "hypotest": "cls_test",
    "CLsTest": "cls_test",
    "HypoTest": "cls_test",
    "generate": "generating",
    "combine": "combination",
    "Combination": "combination",
    "PyhfTarget": "likelihoods.pyhf_target",
    "device": "tfsetup",
    "check_plot_format": "plots",
    "export_onnx": "onnx_export",
    "typicality": "outliers",
    "classify": "classification",
    "ClassifyResult": "classification",
    "marginal_stats": "information",
    "MarginalStats": "information",
    "nuisance_free_log_likelihood": "information",
    "ensemble": "ensembles",
    "scan": "scanning",
    "ScanResult": "scanning",
    "PiecewiseSurrogate": "piecewise",
}

__all__ = [
    "__version__", "LikeflowError", "SampleFileError", "SurrogateFileError",
    "LAYOUTS", "ReadOptions", "SampleSet", "SplitSpec", "as_sample_set", "read_samples", "write_samples",
    "split_indices", "mcmc_record", "as_bounds", "check_outputs", "check_output_folder", "guard_reads",
    "sigterm_as_interrupt",
    "ReportError",
    "FlowConfig", "FLOWS", "DEFAULT_BINS", "PERMUTATIONS", "ACTIVATIONS", "TrainConfig", "MCMCConfig", "EpochProgress",
    "STREAM_HELD_OUT_ROWS",
    "TARGETS", "make_target", "LHCToy", "CorrelatedGaussian", "GaussianMixture",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'likeflow' has no attribute '{name}'")
