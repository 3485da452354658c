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

import json
import os

import h5py
import numpy as np

from .._version import __version__
from ..errors import LikeflowError, SurrogateFileError
from ..fileio import COMPLETE_ATTR, check_stored, open_h5
from ..flows.config import FlowConfig, expected_variable_count, expected_weight_shapes
from ..flows.numpy_flow import NumpyFlow
from . import schema
from .artifact import FORMAT, Surrogate, _checksum, _text
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


def is_surrogate_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file marked as a likeflow surrogate (False for anything
    else, a missing or unreadable file included: its reader then says what is wrong)."""
    try:
        with h5py.File(os.fspath(path), "r") as f:
            return f.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def load(path: str | os.PathLike, *, backend: str | None = None) -> Surrogate:
    """Load a surrogate file: rebuild the flow from its config and assign the stored weights.

    ``backend``: ``"tensorflow"`` (training, resume, compiled evaluation), ``"numpy"`` (no
    TensorFlow needed; the same numbers to rounding, slower for large batches), or None for
    :func:`default_backend`. Raises :class:`SurrogateFileError` for a missing, foreign,
    damaged or newer-format file.
    """
    path = os.fspath(path)
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise LikeflowError(f"unknown backend {backend!r}: choose {' or '.join(BACKENDS)}")
    try:
        with open_h5(path, SurrogateFileError) as f:
            if f.attrs.get("format") != FORMAT:
                what = "a likeflow sample file" if "samples" in f else "an HDF5 file"
                raise SurrogateFileError(path, f"is {what}, not a likeflow surrogate "
                                         "(no format='likeflow-surrogate' attribute)")
            version = int(f.attrs.get("format_version", -1))
            if version > schema.FORMAT_VERSION:
                raise SurrogateFileError(path, f"format version {version} is newer than this "
                                         f"likeflow ({__version__}) reads; upgrade likeflow")
            if version not in schema.SCHEMAS_OF_FORMAT:
                raise SurrogateFileError(path, f"damaged: unknown format version {version}")
            if f.attrs.get(COMPLETE_ATTR, 1) != 1:
                raise SurrogateFileError(path, "incomplete: the file is still being written "
                                         "(or its writer died)")
            for key in (*schema.RECORDS[version], "weights"):
                if key not in f:
                    raise SurrogateFileError(path, f"damaged: '{key}' is missing")
            used = schema.version_of(version, _text(f.attrs.get("schema_version", "")))
            records = {name: _record(path, f, name, used) for name in schema.RECORDS[version]}
            records = schema.upgrade(records, version)
            config = FlowConfig.from_dict(records["config"])
            training, validation = records["training"], records["validation"]
            weights, names = _read_weights(path, f["weights"], config)
            # a piecewise surrogate: one flow per cluster, the first at the root
            piecewise = _record(path, f, "piecewise", used) \
                if "piecewise" in f else None
            parts = [(config, weights, names)]
            for k in range(1, piecewise["components"] if piecewise else 1):
                where = f"components/{k}"
                if where not in f or "config" not in f[where] or "weights" not in f[where]:
                    raise SurrogateFileError(path, f"damaged: '{where}' is missing")
                c = FlowConfig.from_dict(_record(path, f[where], "config", used))
                parts.append((c, *_read_weights(path, f[where]["weights"], c)))
    except SurrogateFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SurrogateFileError(path, f"damaged surrogate file ({msg})") from None
    except LikeflowError as e:
        raise SurrogateFileError(path, f"damaged surrogate file ({e})") from None
    flows = [StoredFlow(path, backend, *part) for part in parts]
    if piecewise is not None:
        sur = PiecewiseSurrogate([Surrogate(fl) for fl in flows], piecewise, training,
                                 validation)
    else:
        sur = Surrogate(flows[0], training, validation)
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


def _record(path: str, f, name: str, version: str) -> dict:
    """A JSON record of the file, checked against its schema: one line naming the record
    and the field where it is not."""
    ds = f[name]
    if not isinstance(ds, h5py.Dataset) or ds.shape != () or ds.dtype.kind not in "OSU":
        raise SurrogateFileError(path, f"damaged: '{name}' is not a JSON text")
    try:
        value = json.loads(_text(ds[()]))
    except (ValueError, UnicodeDecodeError) as e:
        raise SurrogateFileError(path, f"damaged: '{name}' is not valid JSON ({e})") from None
    try:
        schema.check(name, value, version)
    except LikeflowError as e:
        raise SurrogateFileError(path, f"damaged: {e}") from None
    return value


def _read_weights(path: str, g, config: FlowConfig) -> tuple[list[np.ndarray], list[str]]:
    """The weight arrays of a file, checked before anything is built: their shapes against
    the config's (read from the headers, so a hostile config or dataset allocates nothing),
    their checksums (files since checksums were written) and their values (finite)."""
    if not isinstance(g, h5py.Group):
        raise SurrogateFileError(path, "damaged: 'weights' is not a group")
    keys = sorted(g)
    if any(not isinstance(g[k], h5py.Dataset) for k in keys):
        raise SurrogateFileError(path, "damaged: 'weights' holds something other than arrays")
    got = [tuple(g[k].shape or ()) for k in keys]
    want = expected_weight_shapes(config)
    if got != want:
        raise SurrogateFileError(path, f"damaged: the weights ({len(got)} arrays, "
                                 f"{sum(int(np.prod(s)) for s in got)} numbers) do not match "
                                 f"the config ({len(want)} arrays, "
                                 f"{sum(int(np.prod(s)) for s in want)} numbers)")
    out, names = [], []
    for k in keys:
        ds = g[k]
        if ds.dtype.kind != "f":
            raise SurrogateFileError(path, f"damaged: weight {k} is not floating point")
        check_stored(path, ds, SurrogateFileError)
        w = ds[()]
        digest = ds.attrs.get("sha256")
        if digest is not None and _text(digest) != _checksum(w):
            raise SurrogateFileError(path, f"damaged: weight {k} ({_text(ds.attrs.get('name', k))}) "
                                     "fails its checksum: the file was altered or corrupted")
        if not np.isfinite(w).all():
            raise SurrogateFileError(path, f"damaged: weight {k} holds NaN or inf")
        out.append(w)
        names.append(_text(ds.attrs.get("name", k)))
    if config.whiten:  # the last array (weight_roles): u = L v needs L invertible
        m = out[-1]
        if np.any(np.triu(m, 1) != 0) or not np.all(np.diag(m) > 0):
            raise SurrogateFileError(path, "damaged: the whitening matrix is not lower "
                                     "triangular with a positive diagonal")
    return out, names
