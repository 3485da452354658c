"""Loading a surrogate file: :func:`load` reads and checks the records and weights, and builds
the flows on the chosen backend (TensorFlow, or numpy without it), a
:class:`~likeflow.surrogate.artifact.Surrogate` or, for a piecewise file, a
:class:`~likeflow.surrogate.piecewise.PiecewiseSurrogate`.

Two backends evaluate a loaded file: ``tensorflow`` (training, resume, the compiled fast paths;
the default where TensorFlow is installed) and ``numpy`` (:mod:`likeflow.flows.numpy_flow`: no
TensorFlow needed, the same numbers to rounding; the default without it, or with
``LIKEFLOW_BACKEND=numpy``).
"""

from __future__ import annotations

import os

from ..errors import LikeflowError, SurrogateFileError
from ..flows.config import FlowConfig, expected_variable_count
from ..flows.numpy_flow import NumpyFlow
from . import fileformat
from .artifact import Surrogate
from .piecewise import PiecewiseSurrogate


BACKENDS = ("tensorflow", "numpy")
#: environment variable choosing the backend of :func:`load` when none is given
BACKEND_ENV = "LIKEFLOW_BACKEND"


def default_backend() -> str:
    """``LIKEFLOW_BACKEND`` if set, else ``tensorflow`` where TensorFlow, TFP and tf_keras are
    installed (found without importing them), else ``numpy``."""
    import importlib.util

    chosen = os.environ.get(BACKEND_ENV, "").strip().lower()
    if chosen:
        if chosen not in BACKENDS:
            raise LikeflowError(f"{BACKEND_ENV}={chosen!r}: choose {' or '.join(BACKENDS)}")
        return chosen
    try:
        have_tf = all(importlib.util.find_spec(m) is not None
                      for m in ("tensorflow", "tensorflow_probability", "tf_keras"))
    except (ImportError, ValueError):  # a broken or hidden install
        have_tf = False
    return "tensorflow" if have_tf else "numpy"


def load(path: str | os.PathLike, *, backend: str | None = None) -> Surrogate:
    """Load a surrogate file: rebuild the flow from its config and assign the stored weights.

    ``backend``: ``"tensorflow"`` (training, resume, compiled evaluation), ``"numpy"`` (no
    TensorFlow needed; the same numbers to rounding, slower for large batches), or None for
    :func:`default_backend`. Raises :class:`SurrogateFileError` for a missing, foreign,
    damaged or newer-format file (:func:`likeflow.surrogate.fileformat.read` checks it).
    """
    path = os.fspath(path)
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise LikeflowError(f"unknown backend {backend!r}: choose {' or '.join(BACKENDS)}")
    contents = fileformat.read(path)
    records = contents.records
    flows = [StoredFlow(path, backend, p.config, p.weights, p.names) for p in contents.parts]
    if "piecewise" in records:
        sur = PiecewiseSurrogate([Surrogate(fl) for fl in flows], records["piecewise"],
                                 records["training"], records["validation"])
    else:
        sur = Surrogate(flows[0], records["training"], records["validation"])
    sur.path, sur.provenance = path, records.get("provenance", {})
    return sur


class StoredFlow:
    """A flow as read from a file, checked, not built yet: :class:`~likeflow.surrogate.artifact.
    Surrogate` builds it on first use (TensorFlow starts then, not when a file is opened)."""

    def __init__(self, path: str, backend: str, config: FlowConfig, weights, names):
        self.path, self.backend, self.config = path, backend, config
        self.weights, self.names = weights, names
        self._flow = None

    def build(self):
        """The flow with the file's weights (built once)."""
        if self._flow is None:
            self._flow = _build(self.path, self.backend, self.config, self.weights, self.names)
        return self._flow


def _build(path: str, backend: str, config: FlowConfig, weights, names):
    """The flow of ``config`` with the file's weights, on ``backend``."""
    if backend == "numpy":
        return NumpyFlow(config, weights, names)
    from ..flows.tf_flow import build_flow
    flow = build_flow(config)
    variables = flow.stored_variables
    if len(weights) != len(variables) or len(variables) != expected_variable_count(config):
        raise SurrogateFileError(path, f"damaged: {len(weights)} weight arrays for a flow with "
                                 f"{len(variables)} variables")
    for v, w in zip(variables, weights):
        if tuple(v.shape) != w.shape:
            raise SurrogateFileError(path, f"damaged: weight of shape {w.shape} for variable "
                                     f"{v.name} of shape {tuple(v.shape)}")
        v.assign(w)
    return flow
