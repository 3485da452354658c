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
from .data.samples import (LAYOUTS, ReadOptions, SampleSet, SplitSpec, as_sample_set, mcmc_record,
                           read_samples, split_indices, write_samples)
from .errors import LikeflowError, ReportError, SampleFileError, SurrogateFileError
from .fileio import check_output_folder, check_outputs, guard_reads
from .fitting.loop import TrainConfig
from .fitting.settings import FitSettings, default_output, default_report, read_config as read_fit_config
from .fitting.stream import HELD_OUT_ROWS as STREAM_HELD_OUT_ROWS
from .flows.bounds import as_bounds
from .flows.config import (ACTIVATIONS, DEFAULT_BINS, FLOW_HELP, FLOWS, HIDDEN_HELP, PERMUTATIONS,
                           FlowConfig, FlowOptions)
from .interrupts import sigterm_as_interrupt
from .progress import EpochProgress
from .targets.likelihoods import TARGETS, CorrelatedGaussian, GaussianMixture, LHCToy, make_target
from .targets.combination import COMBINE_MCMC
from .targets.mcmc import MCMCConfig

# name -> module for the parts that import TensorFlow or matplotlib (loaded on first access)
_LAZY = {
    "fit": "fitting.run",
    "fit_summary": "fitting.run",
    "marginal": "fitting.run",
    "refine": "fitting.run",
    "load": "surrogate.loading",
    "is_surrogate_file": "surrogate.fileformat",
    "Surrogate": "surrogate.artifact",
    "build_flow": "flows.tf_flow",
    "train": "fitting.loop",
    "validate": "validation.report",
    "ValidationResult": "validation.report",
    "validate_exact": "validation.exact_check",
    "ExactCheck": "validation.exact_check",
    "fit_workspace": "fitting.workspace",
    "WorkspaceFit": "fitting.workspace",
    "publish": "surrogate.publishing",
    "verify": "surrogate.publishing",
    "VerifyResult": "surrogate.publishing",
    "profile": "infer.profiling",
    "ProfileResult": "infer.profiling",
    "read_reference": "infer.profiling",
    "best_fit": "infer.inference",
    "upper_limit": "infer.inference",
    "cls_limits": "infer.cls",
    "hypotest": "infer.cls",
    "CLsTest": "infer.cls",
    "HypoTest": "infer.cls",
    "generate": "targets.generate",
    "combine": "targets.combination",
    "Combination": "targets.combination",
    "PyhfTarget": "targets.likelihoods.pyhf_target",
    "device": "tfsetup",
    "check_plot_format": "validation.plots",
    "export_onnx": "flows.onnx_export",
    "typicality": "infer.outliers",
    "evaluate": "infer.evaluation",
    "Evaluation": "infer.evaluation",
    "classify": "infer.classification",
    "DEFAULT_FPRS": "infer.classification",
    "ClassifyResult": "infer.classification",
    "marginal_stats": "infer.information",
    "MarginalStats": "infer.information",
    "nuisance_free_log_likelihood": "infer.information",
    "ensemble": "surrogate.ensembles",
    "scan": "fitting.fanout",
    "ScanResult": "fitting.fanout",
    "PiecewiseSurrogate": "surrogate.piecewise",
}

__all__ = [
    "__version__", "LikeflowError", "SampleFileError", "SurrogateFileError",
    "LAYOUTS", "ReadOptions", "SampleSet", "SplitSpec", "as_sample_set", "read_samples", "write_samples",
    "split_indices", "mcmc_record", "as_bounds", "check_outputs", "check_output_folder", "guard_reads",
    "sigterm_as_interrupt",
    "ReportError",
    "FlowConfig", "FlowOptions", "FitSettings", "read_fit_config", "default_output", "default_report",
    "FLOWS", "FLOW_HELP", "HIDDEN_HELP", "DEFAULT_BINS", "PERMUTATIONS", "ACTIVATIONS", "TrainConfig", "MCMCConfig", "COMBINE_MCMC", "EpochProgress",
    "STREAM_HELD_OUT_ROWS",
    "TARGETS", "make_target", "LHCToy", "CorrelatedGaussian", "GaussianMixture",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'likeflow' has no attribute '{name}'")
