"""The trained artifact: :class:`Surrogate`, its single-file HDF5 format, and :func:`fit`.

A surrogate file (``*.likeflow.h5``) holds

- root attributes ``format = "likeflow-surrogate"``, ``format_version``, ``likeflow_version``,
  ``tensorflow_version``;
- ``config``: the :class:`~likeflow.flows.FlowConfig` as JSON (architecture, hyperparameters,
  names, POIs, bounds, preprocessing constants, dtype, seed, permutations);
- ``weights/NNNN``: one dataset per trainable variable, in the flow's variable order, each with
  its variable name as an attribute;
- ``training``: JSON (history per epoch, best epoch, time, the training config, and ``data``:
  the sample file, how it was read, its fingerprint and the split seed and fractions);
- ``validation``: JSON metrics at save time (when validated).

Loading rebuilds the flow from ``config`` and assigns the weights: nothing in the file is
executed. Writing goes to a temp file in the same folder and is renamed into place, so a file on
disk is always whole.

Example:
    >>> import likeflow                                        # doctest: +SKIP
    >>> s = likeflow.fit("samples.h5", out="samples.likeflow.h5")  # doctest: +SKIP
    >>> s = likeflow.load("samples.likeflow.h5")               # doctest: +SKIP
    >>> s.log_prob(points); s.sample(10**6, seed=1)            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Callable

import h5py
import numpy as np

from ._version import __version__
from .errors import LikeflowError, SurrogateFileError
from .fileio import COMPLETE_ATTR, atomic_h5, check_stored, open_h5
from .flows import (FlowConfig, build_flow, expected_variable_count, expected_weight_shapes,
                    release_trace_caches)
from .interrupts import sigterm_as_interrupt
from .jsonutil import strict_json
from .samples import (ReadOptions, SampleSet, file_rows, read_samples, split_indices,
                      write_sample_stream)
from .training import TrainConfig, TrainResult, train

FORMAT = "likeflow-surrogate"
FORMAT_VERSION = 1

# Points per compiled call of log_prob / sample: bounded memory for any n. Sampling batches
# are smaller: the MADE pass keeps per-batch state in cache (measured: 16384 is 5x faster per
# point than 65536 with XLA on a 2-core EPYC).
EVAL_BATCH = 16384
SAMPLE_BATCH = 16384
# A surrogate evaluates through plain graphs until it has seen this many points, then with XLA
# (see _Compiled: XLA compilations are never freed).
XLA_AFTER_POINTS = 100_000
# Rows per block when samples are streamed to a file (``sample_to_file``).
SAMPLE_STREAM_BLOCK = 16 * SAMPLE_BATCH


class Surrogate:
    """A trained flow with its config, training record and validation summary.

    Attributes:
        config: the :class:`FlowConfig`.
        training: the training record (JSON-able dict).
        validation: metrics stored at save time (dict, possibly empty).
    """

    def __init__(self, flow, training: dict | None = None, validation: dict | None = None):
        import tensorflow as tf

        self.flow = flow
        self.config: FlowConfig = flow.config
        self.training = training or {}
        self.validation = validation or {}
        self.path: str | None = None  # the file it was loaded from
        d, dtype = self.config.dim, flow.dtype
        self._bounds = self.config.bounds_array()
        self._log_prob = _Compiled(flow.log_prob, d, dtype, EVAL_BATCH)
        self._to_latent = _Compiled(flow.to_latent, d, dtype, EVAL_BATCH)
        self._from_latent = _Compiled(flow.from_latent, d, dtype, SAMPLE_BATCH)
        self._base_sample = tf.function(flow.base.sample, input_signature=[
            tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32)])

    # --- identity ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def names(self) -> list[str]:
        return list(self.config.names)

    @property
    def poi(self) -> list[str]:
        return list(self.config.poi)

    @property
    def bounds(self) -> np.ndarray:
        return self._bounds.copy()

    def __repr__(self) -> str:
        c = self.config
        return (f"Surrogate({c.flow}, dim={c.dim}, layers={c.layers}, hidden={list(c.hidden)}, "
                f"poi={c.poi})")

    # --- evaluation -------------------------------------------------------------------------
    def _as_points(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise LikeflowError(f"points must have shape (n, {self.dim}), got {x.shape}")
        return x

    def log_prob(self, x) -> np.ndarray:
        """Log density at physical points ``x`` (n, D) (or one point (D,)); -inf outside bounds.

        Normalised over the parameter space, in the coordinates of the sample file. Runs
        compiled, in batches of bounded size.
        """
        x = self._as_points(x)
        out = self._log_prob(x.astype(self.flow.dtype.as_numpy_dtype)).astype(np.float64)
        inside = np.all((x >= self._bounds[:, 0]) & (x <= self._bounds[:, 1]), axis=1)
        out[~inside] = -np.inf
        out[np.isnan(out)] = -np.inf
        return out

    def to_latent(self, x) -> np.ndarray:
        """Physical points -> base space (standard normal for a perfect surrogate)."""
        x = self._as_points(x)
        return self._to_latent(x.astype(self.flow.dtype.as_numpy_dtype)).astype(np.float64)

    def from_latent(self, z) -> np.ndarray:
        """Base-space points (n, D) -> physical points: the flow's sampling direction."""
        z = self._as_points(z)
        return self._from_latent(z.astype(self.flow.dtype.as_numpy_dtype)).astype(np.float64)

    def _images(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """``x`` and its mirror images across the reflected bounds, and for each image (rows)
        whether it lies inside the flow's extended range."""
        images = [x]
        for i, point in self.config.reflect:
            for img in list(images):
                m = img.copy()
                m[:, i] = 2 * point - m[:, i]
                images.append(m)
        fb = self.config.flow_bounds_array()
        ok = np.array([np.all((img >= fb[:, 0]) & (img <= fb[:, 1]), axis=1) for img in images])
        ok[0] = True  # the point itself (its bounds are checked where it is evaluated)
        return images, ok

    def unfold(self, x, *, seed: int = 0) -> np.ndarray:
        """Physical points moved to one of their mirror images across the reflected bounds,
        drawn (seeded) in proportion to the flow's density there: samples of the unfolded flow
        when ``x`` are samples of the surrogate. The latent chi2 check maps these (a point of
        the fold has several preimages)."""
        x = self._as_points(x)
        if not self.config.reflect:
            return x.copy()
        images, ok = self._images(x)
        fn = self.__dict__.get("_unfolded")
        if fn is None:
            fn = self._unfolded = _Compiled(self.flow.unfolded_log_prob, self.dim,
                                            self.flow.dtype, EVAL_BATCH)
        lp = np.array([fn(img.astype(self.flow.dtype.as_numpy_dtype)) for img in images],
                      dtype=np.float64)
        lp = np.where(ok & np.isfinite(lp), lp, -np.inf)
        w = np.exp(lp - lp.max(axis=0))
        cum = np.cumsum(w / w.sum(axis=0), axis=0)
        pick = (np.random.default_rng(seed).random(len(x)) > cum).sum(axis=0)
        pick = np.minimum(pick, len(images) - 1)
        return np.stack(images)[pick, np.arange(len(x))]

    def latent_r2(self, x) -> np.ndarray:
        """Squared latent radius of physical points (the smallest over the mirror images of a
        folded surrogate inside its range): beyond ``support["latent_r2_max"]`` the flow
        extrapolates."""
        x = self._as_points(x)
        images, ok = self._images(x)
        best = np.full(len(x), np.inf)
        for img, inside in zip(images, ok):
            z = self.to_latent(img)
            r2 = np.where(np.isfinite(z).all(axis=1) & inside, np.sum(z ** 2, axis=1), np.inf)
            best = np.minimum(best, r2)
        return best

    @property
    def support(self) -> dict | None:
        """The region the training data cover (``lo``, ``hi`` per parameter and the largest
        latent radius squared of a training point), or None for files written before it was
        recorded. Profiles and best fits stay inside it."""
        sup = self.training.get("support")
        return sup if isinstance(sup, dict) and "lo" in sup else None

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` fresh samples (n, D); the same ``seed`` gives the same samples, also after load."""
        n = self._count(n)
        out = np.empty((n, self.dim))
        i = 0
        for x in self.sample_blocks(n, seed=seed):
            out[i:i + len(x)] = x
            i += len(x)
        return out

    def sample_blocks(self, n: int, *, seed: int = 0, block: int = SAMPLE_BATCH):
        """The samples of :meth:`sample` as consecutive blocks of about ``block`` rows (a
        multiple of the batch), for streaming: memory stays bounded whatever ``n``."""
        n = self._count(n)
        per = max(1, block // SAMPLE_BATCH)
        out = []
        for k, i in enumerate(range(0, n, SAMPLE_BATCH)):
            m = min(SAMPLE_BATCH, n - i)
            s = np.array([seed % (2 ** 31), k], dtype=np.int32)
            out.append(self._from_latent(self._base_sample(np.int32(m), s).numpy()))
            if len(out) == per:
                yield np.concatenate(out).astype(np.float64)
                out = []
        if out:
            yield np.concatenate(out).astype(np.float64)

    @staticmethod
    def _count(n) -> int:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise LikeflowError(f"cannot draw {n!r} samples: give a non-negative integer")
        return int(n)

    def sample_set(self, n: int, *, seed: int = 0) -> SampleSet:
        """``n`` samples with their surrogate ``log_prob``, names, POIs and bounds."""
        x = self.sample(n, seed=seed)
        return SampleSet(x, names=self.names, poi=self.poi, bounds=self.bounds,
                         log_prob=self.log_prob(x))

    def sample_to_file(self, path: str | os.PathLike, n: int, *, seed: int = 0) -> None:
        """Write ``n`` samples with their ``log_prob`` to a sample file, streamed block by block
        (memory bounded for any ``n``; the same samples as :meth:`sample` with this seed)."""
        n = self._count(n)
        def checked(x):
            if not np.isfinite(x).all():
                raise LikeflowError(f"{self.path or 'the surrogate'}: draws NaN or inf "
                                    "samples: the file is damaged or its training diverged")
            return x, self.log_prob(x)

        blocks = (checked(x) for x in self.sample_blocks(n, seed=seed,
                                                         block=SAMPLE_STREAM_BLOCK))
        write_sample_stream(path, blocks, n=n, names=self.names, poi=self.poi,
                            bounds=self.bounds)

    def held_out(self, samples: SampleSet) -> tuple[SampleSet, list[str]]:
        """The rows of ``samples`` that training never saw, and notes on how they were chosen.

        If ``samples`` are the data the surrogate was trained on (same fingerprint), its recorded
        seeded split gives the test rows. Otherwise every row is independent of training as far
        as likeflow can tell, and all are used, with a note saying so.
        """
        data = self.training.get("data", {})
        if data.get("fingerprint") == samples.fingerprint():
            return samples.subset(split_of(samples, SplitSpec(**data["split"])).test), []
        used = self._training_rows_of(samples)
        if used is not None:
            keep = ~np.isin(samples.origin.rows, used)
            if not keep.any():
                raise LikeflowError(f"every row of {samples.origin.file} read this way was used to "
                                    "train the surrogate: nothing is left to validate on")
            return samples.subset(keep), [
                f"the surrogate was trained on this file (read with other options): the "
                f"{int((~keep).sum())} rows it trained or early-stopped on are left out; "
                f"{int(keep.sum())} rows remain as test data"]
        return samples, ["these samples differ from the data the surrogate was trained on; all "
                         f"{samples.n} rows are used as test data (they must be independent of "
                         "the training data)"]

    def _training_rows_of(self, samples: SampleSet) -> np.ndarray | None:
        """File rows the surrogate trained or early-stopped on, if ``samples`` come from the
        surrogate's training file (same path, row count and layout); None otherwise."""
        data = self.training.get("data", {})
        origin = samples.origin
        if origin is None or not origin.file or "origin_n" not in data:
            return None  # surrogates written before likeflow recorded the file rows
        same_read = ("layout", "dataset", "log_prob_dataset", "burn", "thin")
        trained = data.get("origin_options", {})
        if (data.get("file_realpath") != origin.file or data["origin_n"] != origin.n
                or any(origin.options.get(k) != trained.get(k) for k in same_read)):
            return None
        trained_opts = ReadOptions.from_dict(trained)
        read = file_rows(origin.n, trained_opts)
        if len(read) != data.get("n"):
            return read  # rows were dropped on reading: leave out everything training read
        if data.get("split_kind") == "chain blocks":
            return read  # the blocks need the chains of the rows read: leave out all of them
        split = SplitSpec(**data["split"]).rows(len(read))
        return read[np.concatenate([split.train, split.validation])]

    # --- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the surrogate file atomically (temp file in the same folder, then rename)."""
        import tensorflow as tf

        with atomic_h5(path) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["likeflow_version"] = __version__
            f.attrs["tensorflow_version"] = tf.__version__
            f.create_dataset("config", data=self.config.to_json())
            f.create_dataset("training", data=json.dumps(strict_json(self.training)))
            f.create_dataset("validation", data=json.dumps(strict_json(self.validation)))
            g = f.create_group("weights")
            for i, v in enumerate(self.flow.trainable_variables):
                w = v.numpy()
                if not np.isfinite(w).all():
                    raise LikeflowError(f"{path}: not written: weight {v.name} holds NaN or "
                                        "inf (a diverged fit)")
                ds = g.create_dataset(f"{i:04d}", data=w)
                ds.attrs["name"] = v.name
                ds.attrs["sha256"] = _checksum(w)


def load(path: str | os.PathLike) -> Surrogate:
    """Load a surrogate file: rebuild the flow from its config and assign the stored weights.

    Raises :class:`SurrogateFileError` for a missing, foreign, damaged or newer-format file.
    """
    path = os.fspath(path)
    try:
        with open_h5(path, SurrogateFileError) as f:
            if f.attrs.get("format") != FORMAT:
                what = "a likeflow sample file" if "samples" in f else "an HDF5 file"
                raise SurrogateFileError(path, f"is {what}, not a likeflow surrogate "
                                         "(no format='likeflow-surrogate' attribute)")
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise SurrogateFileError(path, f"format version {version} is newer than this "
                                         f"likeflow ({__version__}) reads; upgrade likeflow")
            if f.attrs.get(COMPLETE_ATTR, 1) != 1:
                raise SurrogateFileError(path, "incomplete: the file is still being written "
                                         "(or its writer died)")
            for key in ("config", "training", "validation", "weights"):
                if key not in f:
                    raise SurrogateFileError(path, f"damaged: '{key}' is missing")
            config = FlowConfig.from_json(_text(f["config"][()]))
            training = json.loads(_text(f["training"][()]))
            validation = json.loads(_text(f["validation"][()]))
            if not isinstance(training, dict) or not isinstance(validation, dict):
                raise SurrogateFileError(path, "damaged: 'training' and 'validation' must be "
                                         "JSON objects")
            weights = _read_weights(path, f["weights"], config)
    except SurrogateFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SurrogateFileError(path, f"damaged surrogate file ({msg})") from None
    except LikeflowError as e:
        raise SurrogateFileError(path, f"damaged surrogate file ({e})") from None
    flow = build_flow(config)
    variables = flow.trainable_variables
    if len(weights) != len(variables) or len(variables) != expected_variable_count(config):
        raise SurrogateFileError(path, f"damaged: {len(weights)} weight arrays for a flow with "
                                 f"{len(variables)} variables")
    for v, w in zip(variables, weights):
        if tuple(v.shape) != w.shape:
            raise SurrogateFileError(path, f"damaged: weight of shape {w.shape} for variable "
                                     f"{v.name} of shape {tuple(v.shape)}")
        v.assign(w)
    sur = Surrogate(flow, training, validation)
    sur.path = path
    return sur


def _checksum(w: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest()


def _read_weights(path: str, g, config: FlowConfig) -> list[np.ndarray]:
    """The weight arrays of a file, checked before anything is built: their shapes against
    the config's (read from the headers, so a hostile config or dataset allocates nothing),
    their checksums (files since checksums were written) and their values (finite)."""
    if not isinstance(g, h5py.Group):
        raise SurrogateFileError(path, "damaged: 'weights' is not a group")
    keys = sorted(g)
    if any(not isinstance(g[k], h5py.Dataset) for k in keys):
        raise SurrogateFileError(path, "damaged: 'weights' holds something other than arrays")
    got = sorted(tuple(g[k].shape or ()) for k in keys)
    want = sorted(expected_weight_shapes(config))
    if got != want:
        raise SurrogateFileError(path, f"damaged: the weights ({len(got)} arrays, "
                                 f"{sum(int(np.prod(s)) for s in got)} numbers) do not match "
                                 f"the config ({len(want)} arrays, "
                                 f"{sum(int(np.prod(s)) for s in want)} numbers)")
    out = []
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
    return out


def is_surrogate_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file marked as a likeflow surrogate."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


# --- fitting -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How a sample set is split; stored in the surrogate so validation can rebuild the test rows.

    Samples with a ``chain`` column (MCMC) are split in whole blocks of each chain
    (``blocks_per_chain`` per chain), others row by row at random.
    """

    seed: int = 0
    validation: float = 0.1
    test: float = 0.1
    blocks_per_chain: int = 20

    def rows(self, n: int, chain: np.ndarray | None = None):
        """The train/validation/test rows of ``n`` samples (of these chains) under this spec."""
        return split_indices(n, seed=self.seed, validation=self.validation, test=self.test,
                             chain=chain, blocks_per_chain=self.blocks_per_chain)


def split_of(samples: SampleSet, spec: SplitSpec):
    """The train/validation/test rows of ``samples`` under ``spec``."""
    return spec.rows(samples.n, samples.chain)


def fit(samples: SampleSet | str | os.PathLike, *, flow_config: dict | None = None,
        train_config: TrainConfig | None = None, split: SplitSpec = SplitSpec(),
        read_options: ReadOptions | None = None, out: str | os.PathLike | None = None,
        resume: bool = False, progress: Callable[[dict], None] | None = None,
        checkpoint_every: float = 30.0) -> Surrogate:
    """Train a surrogate of ``samples`` (a :class:`SampleSet` or a sample file path).

    Args:
        samples: the samples, or the path of a sample file (read with ``read_options``).
        flow_config: :class:`FlowConfig` fields (``flow``, ``layers``, ``hidden``, ``bins``, ...)
            other than the data-derived ones.
        train_config: a :class:`TrainConfig`.
        split: the seeded train/validation/test split (the test part is never trained on).
        out: where to write the surrogate; with it, the best weights so far are checkpointed
            there at most every ``checkpoint_every`` seconds, and Ctrl-C / SIGTERM leaves the
            best surrogate so far on disk.
        resume: continue the surrogate at ``out`` (same data, same split) instead of starting anew.
        progress: called with every epoch's record.

    Returns:
        The :class:`Surrogate` (its ``training`` record includes the mean test log-likelihood).
    """
    path = None
    if not isinstance(samples, SampleSet):
        path = os.fspath(samples)
        samples = read_samples(path, read_options or ReadOptions())
    read_options = read_options or ReadOptions()
    tcfg = train_config or TrainConfig()
    parts = split_of(samples, split)
    tr, va, te = (samples.subset(parts.train), samples.subset(parts.validation),
                  samples.subset(parts.test))
    for part, name in ((tr, "training"), (va, "validation"), (te, "test")):
        if part.weights is not None and not part.weights.sum() > 0:
            raise LikeflowError(f"{path or '<samples>'}: the weights of the {part.n} {name} "
                                "rows are all zero: the weight is on too few rows to split")
    data = {"file": path, "fingerprint": samples.fingerprint(), "n": samples.n,
            "read_options": read_options.to_dict(), "split": dataclasses.asdict(split),
            "split_kind": "chain blocks" if samples.chain is not None else "random rows",
            "n_train": tr.n, "n_validation": va.n, "n_test": te.n}
    if samples.origin is not None and samples.origin.file:
        data.update(file_realpath=samples.origin.file, origin_n=samples.origin.n,
                    origin_options=samples.origin.options)

    previous = None
    if resume:
        if out is None or not os.path.exists(out):
            raise LikeflowError(f"--resume: no surrogate at {out} to continue")
        old = load(out)
        if old.training.get("data", {}).get("fingerprint") != data["fingerprint"]:
            raise LikeflowError(f"--resume: {out} was trained on other data (or read another "
                                "way); start a new fit instead")
        flow = old.flow
        previous = TrainResult(**{k: v for k, v in old.training.get("result", {}).items()
                                  if k in {f.name for f in dataclasses.fields(TrainResult)}})
        tcfg = dataclasses.replace(TrainConfig.from_dict(old.training.get("config", {})),
                                   epochs=tcfg.epochs)
    else:
        hyper = dict(flow_config or {})
        hyper.setdefault("seed", tcfg.seed)
        config = FlowConfig.from_data(tr.values, names=samples.names, poi=samples.poi,
                                      bounds=samples.bounds, weights=tr.weights, **hyper)
        _seed_everything(config.seed)
        flow = build_flow(config)

    def record(result: TrainResult) -> dict:
        return {"config": tcfg.to_dict(), "result": result.to_dict(), "data": data,
                "likeflow_version": __version__}

    last_save = [time.monotonic()]

    def checkpoint(result: TrainResult) -> None:
        if out is not None and time.monotonic() - last_save[0] > checkpoint_every:
            # the flow holds the current weights; they are the best so far (on_best)
            Surrogate(flow, record(result)).save(out)
            last_save[0] = time.monotonic()

    with sigterm_as_interrupt():
        result = train(flow, tr.values, va.values, train_w=tr.weights, val_w=va.weights,
                       config=tcfg, progress=progress, on_best=checkpoint, previous=previous)
        try:
            training = record(result)
            surrogate = Surrogate(flow, training)
            training["support"] = support_of(surrogate, tr.values)
            training["test_log_prob"] = float(_weighted_mean(surrogate.log_prob(te.values),
                                                             te.weights))
            if te.log_prob is not None:
                training["test_log_prob_target"] = float(_weighted_mean(te.log_prob, te.weights))
        except KeyboardInterrupt:
            # interrupted after training: keep the trained flow (without its support region
            # and test figures; '--resume' or 'validate' completes them)
            if out is not None:
                result.stopped = "interrupted"
                Surrogate(flow, record(result)).save(out)
            raise
        if out is not None:
            surrogate.save(out)
    return surrogate


def support_of(surrogate: Surrogate, train_x: np.ndarray) -> dict:
    """The region the training points cover: their range per parameter and the largest squared
    latent radius among them (points further out in the base space are extrapolation)."""
    z = surrogate.to_latent(surrogate.unfold(train_x, seed=0))
    r2 = np.sum(z ** 2, axis=1)
    r2 = r2[np.isfinite(r2)]
    lo, hi = train_x.min(axis=0), train_x.max(axis=0)
    # a bound the data reach (within a thousandth of the data's spread) is in the region: the
    # density there is held or folded, not extrapolated
    b = surrogate.bounds
    near = 1e-3 * (hi - lo)
    lo = np.where(np.isfinite(b[:, 0]) & (lo - b[:, 0] <= near), b[:, 0], lo)
    hi = np.where(np.isfinite(b[:, 1]) & (b[:, 1] - hi <= near), b[:, 1], hi)
    return {"lo": lo.tolist(), "hi": hi.tolist(),
            "latent_r2_max": float(r2.max()) if len(r2) else None,
            "n": int(len(train_x))}


def _weighted_mean(x: np.ndarray, w: np.ndarray | None) -> float:
    return float(np.average(x, weights=w))


class _Compiled:
    """A flow method on numpy batches: a plain graph at first, XLA-compiled once the surrogate
    has evaluated enough points for it to pay.

    XLA fuses the many small operations of a flow (4-5x faster sampling, 1.5x faster log_prob
    on the CPU here) but compiles once per input shape, so batches are padded up to a power of
    two (at least 64, at most ``batch``), and TensorFlow keeps every XLA compilation for the
    life of the process (about 20 MB per surrogate): a loop over hundreds of surrogates that
    each evaluate a few points would grow without bound. So XLA starts after
    :data:`XLA_AFTER_POINTS` points. If XLA cannot compile on a platform, the plain graph gives
    the same numbers more slowly.
    """

    def __init__(self, fn, dim: int, dtype, batch: int):
        import tensorflow as tf

        self._xla = tf.function(fn, jit_compile=True, autograph=False)
        self._plain = tf.function(fn, input_signature=[tf.TensorSpec([None, dim], dtype)],
                                  autograph=False)
        self.batch = batch
        self.use_xla = True
        self.points = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.points += len(x)
        if not (self.use_xla and self.points >= XLA_AFTER_POINTS):
            return self._traced(self._plain, x)
        parts = []
        for i in range(0, len(x), self.batch):
            xb = x[i:i + self.batch]
            m = len(xb)
            size = min(self.batch, max(64, 1 << (m - 1).bit_length()))
            if size > m:
                xb = np.concatenate([xb, np.repeat(xb[:1], size - m, axis=0)])
            parts.append(self._run(xb)[:m])
        if not parts:
            return self._traced(self._plain, x)
        return np.concatenate(parts)

    def _traced(self, fn, x: np.ndarray) -> np.ndarray:
        """``fn`` on ``x`` in batches; TFP's bijector caches are emptied after a new trace
        (they would keep every traced graph alive)."""
        before = fn.experimental_get_tracing_count()
        parts = [fn(x[i:i + self.batch]).numpy() for i in range(0, len(x), self.batch)]
        if fn.experimental_get_tracing_count() != before:
            release_trace_caches()
        if not parts:
            return fn(x).numpy()
        return np.concatenate(parts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self.use_xla and len(x):
            try:
                return self._traced(self._xla, x)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                    tf.errors.InternalError):
                self.use_xla = False
        return self._traced(self._plain, x)


def _seed_everything(seed: int) -> None:
    import tf_keras
    tf_keras.utils.set_random_seed(seed)


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)
