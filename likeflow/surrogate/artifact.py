"""The trained artifact: :class:`Surrogate`, a flow with its records (training, validation,
provenance), evaluated on TensorFlow or numpy (:mod:`likeflow.flows.numpy_flow`).

A surrogate is one file (``*.likeflow.h5``), written by :meth:`Surrogate.save` and read by
:func:`likeflow.surrogate.loading.load` (``likeflow.load``); its layout, the records' schemas
and the checks on reading are :mod:`likeflow.surrogate.fileformat`'s. Loading rebuilds the flow
from the stored config and assigns the weights: nothing in the file is executed.

Example:
    >>> import likeflow                                        # doctest: +SKIP
    >>> s = likeflow.fit("samples.h5", out="samples.likeflow.h5")  # doctest: +SKIP
    >>> s = likeflow.load("samples.likeflow.h5")               # doctest: +SKIP
    >>> s.log_prob(points); s.sample(10**6, seed=1)            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from ..batching import batch_slices, map_batches, padded_size
from ..data.anchors import held_out_anchors
from ..data.samples import (ReadOptions, SampleSet, SplitSpec, file_rows, split_of,
                            write_sample_stream)
from ..errors import LikeflowError
from ..fileio import check_outputs
from ..flows.config import FlowConfig
from ..flows.numpy_flow import NumpyFlow
from ..flows.plan import BoundPlan
from ..jsonutil import strict_json
from . import fileformat, schema

# Points per compiled call of log_prob / sample: bounded memory for any n. Sampling batches
# are smaller: the MADE pass keeps per-batch state in cache (measured: 16384 is 5x faster per
# point than 65536 with XLA on a 2-core EPYC).
EVAL_BATCH = 16384
SAMPLE_BATCH = 16384
# The numpy backend evaluates batches of this many points on one thread per core (numpy releases
# the GIL in its loops and BLAS), BLAS held to one thread inside them (batching.map_batches);
# a call of fewer points is cut in one part per core, none smaller than NUMPY_MIN_BATCH. Each
# point's arithmetic does not depend on its batch: the same numbers, bit for bit. Measured
# (2-core EPYC, one process, sizes alternating): log_prob of 200,000 points of the default
# 95-dim MAF / C1300's 66-dim MAF in parts of 8192 rows 3.3-4.4 / 2.7-3.3 s, 4096 2.9-3.2 /
# 2.2-2.3 s, 2048 2.1-2.7 / 1.8-1.9 s; of 10^6 points of the 95-dim MAF 8192: 14.5-14.7 s,
# 4096: 13.2-13.8 s, 2048: 14.1-16.8 s.
NUMPY_BATCH = 4096
NUMPY_MIN_BATCH = 1024
# numpy sampling (the one-pass MADE: a matrix-vector product per hidden unit, each reading the
# batch's activations) goes 4096 rows at a time, on one thread: the activations then stay in
# cache. Measured on 32,768 draws (2-core EPYC, quiet), 66-dim / 95-dim MAF: parts of 16384
# rows 1.1-1.4 / 1.9-2.0 s, 8192 0.82 / 1.1-1.3 s, 4096 0.63-0.66 / 0.88-0.89 s, 2048 0.70 /
# 0.91-1.09 s. A part's size changes which BLAS kernel computes the products: the draws differ
# from 16384-row parts' in the last bits (1e-12 relative).
NUMPY_SAMPLE_BATCH = 4096
# A surrogate evaluates through plain graphs until it has seen this many points, then with XLA
# (see _Compiled: XLA compilations are never freed).
XLA_AFTER_POINTS = 100_000
# Rows per block when samples are streamed to a file (``sample_to_file``): a block and its
# copies (float32 draws, float64 values, log_prob's input) are what streaming holds besides
# TensorFlow; 16 batches made 'sample -n 10000000' of a 95-dim MAF peak at 1.61 GB.
SAMPLE_STREAM_BLOCK = 4 * SAMPLE_BATCH
# What Surrogate._start makes on first use (Surrogate.__getattr__)
_ENGINE = ("flow", "_log_prob", "_log_prob_grad", "_to_latent", "_from_latent", "_unfolded",
           "_from_latent_log_prob")


def base_draws(n: int, dim: int, seed) -> np.ndarray:
    """``n`` standard-normal draws (n, dim), float64, from numpy's generator seeded with
    ``seed`` (a sequence of integers): the base draws of :meth:`Surrogate.sample` on every
    backend, so that one seed gives the same samples with TensorFlow and without it."""
    return np.random.default_rng([int(s) for s in seed]).standard_normal((int(n), dim))


class Surrogate:
    """A trained flow with its config, training record and validation summary.

    Attributes:
        config: the :class:`FlowConfig`.
        training: the training record (JSON-able dict).
        validation: metrics stored at save time (dict, possibly empty).
    """

    def __init__(self, flow, training: dict | None = None, validation: dict | None = None):
        """``flow``: a built flow (TensorFlow or numpy), or a :class:`~likeflow.surrogate.loading.
        StoredFlow` that builds it on first use: the records, names and bounds of a loaded
        file are there at once, TensorFlow starts only when something is evaluated (a command
        checks its inputs first, in well under a second)."""
        self._source = flow
        self.config: FlowConfig = flow.config
        self.training = training or {}
        self.validation = validation or {}
        self.path: str | None = None  # the file it was loaded from
        # the full validation of a fresh fit (its summary is ``validation``); not stored
        self.validation_result = None
        # who wrote the file it was loaded from, when, with what (empty: a fresh fit, or a
        # file of format version 1)
        self.provenance: dict = {}
        self._bounds = self.config.bounds_array()
        self.backend = getattr(flow, "backend", "numpy" if isinstance(flow, NumpyFlow)
                               else "tensorflow")
        # numpy computes in float64 whatever the file's dtype
        self._dtype = np.dtype(np.float64 if self.backend == "numpy" else self.config.dtype)

    def __getattr__(self, name: str):
        # called only when an attribute is not there: the engine, made on first use
        if name in _ENGINE and "_source" in self.__dict__:
            self._start()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _start(self) -> None:
        """Build the flow (a stored one: now) and its batched, compiled evaluations."""
        flow = self._source
        if self.backend == "numpy":
            flow = flow.build() if hasattr(flow, "build") else flow
            self._log_prob = _Batched(flow.log_prob)
            # (n, 1 + D): the log density, then its gradient (one array, batched as one)
            self._log_prob_grad = _Batched(lambda x: np.column_stack(flow.log_prob_grad(x)))
            self._to_latent = _Batched(flow.to_latent)
            # sampling's one-pass MADE is many small products: threads only contend there
            # (measured: 10^5 samples 5.6 s on one thread, 9.8 s on two)
            self._from_latent = _Batched(flow.from_latent, NUMPY_SAMPLE_BATCH, threads=1)
            # (n, D + 1): the draws, then their log density (sample_with_log_prob)
            self._from_latent_log_prob = _Batched(
                lambda z: np.column_stack(flow.from_latent_log_prob(z)), NUMPY_SAMPLE_BATCH,
                threads=1)
            self._unfolded = _Batched(flow.unfolded_log_prob)
        else:
            from ..tfsetup import tf
            if hasattr(flow, "build"):
                # first use may come inside a trace (combine's joint density): build eagerly
                with tf.init_scope():
                    flow = flow.build()
            d, dtype = self.config.dim, flow.dtype
            self._log_prob = _Compiled(flow.log_prob, d, dtype, EVAL_BATCH)

            def log_prob_grad(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = flow.log_prob(x)
                return tf.concat([y[:, None], tape.gradient(y, x)], axis=1)

            self._log_prob_grad = _Compiled(log_prob_grad, d, dtype, EVAL_BATCH)
            self._to_latent = _Compiled(flow.to_latent, d, dtype, EVAL_BATCH)
            self._from_latent = _Compiled(flow.from_latent, d, dtype, SAMPLE_BATCH,
                                          xla=flow.sampling_compiles)
            self._unfolded = None  # compiled on first use (only folded surrogates need it)
        self.flow = flow
        del self._source

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
                f"poi={c.poi}, backend={self.backend})")

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
        out = self._log_prob(x.astype(self._dtype)).astype(np.float64)
        out[self._outside(x) | np.isnan(out)] = -np.inf
        return out

    def _outside(self, x: np.ndarray) -> np.ndarray:
        """The rows of ``x`` outside the bounds, where the density is 0."""
        return ~np.all((x >= self._bounds[:, 0]) & (x <= self._bounds[:, 1]), axis=1)

    def log_prob_grad(self, x) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`log_prob` and its gradient with respect to ``x`` (n, D): TensorFlow's
        automatic derivative, or the numpy reader's exact reverse pass
        (:meth:`likeflow.flows.numpy_flow.NumpyFlow.log_prob_grad`). The gradient is nan where the
        density is 0 (outside the bounds)."""
        x = self._as_points(x)
        out = self._log_prob_grad(x.astype(self._dtype)).astype(np.float64)
        lp, grad = out[:, 0], out[:, 1:]
        gone = self._outside(x) | np.isnan(lp) | (lp == -np.inf)
        lp[gone] = -np.inf
        grad[gone] = np.nan
        return lp, grad

    @property
    def kind(self) -> str:
        """``flow``: one flow (a :class:`~likeflow.surrogate.piecewise.PiecewiseSurrogate` is a
        ``piecewise`` flow or an ``ensemble``). What callers ask instead of the class."""
        return "flow"

    def numpy_twin(self) -> Surrogate:
        """This surrogate evaluated by the numpy reader in float64 (itself on the numpy backend).

        Inference uses it whatever the backend: its fits evaluate a few points at a time, where
        numpy's float64 beats TensorFlow's per-call cost, and a file then gives the same
        numbers on a machine with TensorFlow as on one without. Made afresh each call (a
        surrogate on TensorFlow may still be training)."""
        if self.backend == "numpy":
            return self
        names, weights = zip(*self.weight_arrays())
        twin = Surrogate(NumpyFlow(self.config, list(weights), list(names)), self.training,
                         self.validation)
        twin.path, twin.provenance = self.path, self.provenance
        return twin

    def to_latent(self, x) -> np.ndarray:
        """Physical points -> base space (standard normal for a perfect surrogate)."""
        x = self._as_points(x)
        return self._to_latent(x.astype(self._dtype)).astype(np.float64)

    def from_latent(self, z) -> np.ndarray:
        """Base-space points (n, D) -> physical points: the flow's sampling direction."""
        z = self._as_points(z)
        return self._from_latent(z.astype(self._dtype)).astype(np.float64)

    @functools.cached_property
    def _plan(self) -> BoundPlan:
        """The config's bound plan, made once (the mirror images are asked of it per call)."""
        return BoundPlan.of(self.config)

    def _images(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """``x`` and its mirror images across the reflected bounds, and for each image (rows)
        whether it carries density (:meth:`likeflow.flows.plan.BoundPlan.mirror_images`)."""
        return self._plan.mirror_images(x)

    def unfold(self, x, *, seed: int = 0) -> np.ndarray:
        """Physical points moved to one of their mirror images across the reflected bounds,
        drawn (seeded) in proportion to the flow's density there: samples of the unfolded flow
        when ``x`` are samples of the surrogate. The latent chi2 check maps these (a point of
        the fold has several preimages)."""
        x = self._as_points(x)
        if not self.config.reflect:
            return x.copy()
        images, ok = self._images(x)
        if self._unfolded is None:
            self._unfolded = _Compiled(self.flow.unfolded_log_prob, self.dim, self.flow.dtype,
                                       EVAL_BATCH)
        lp = np.array([self._unfolded(img.astype(self._dtype)) for img in images],
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

    def summary(self) -> dict:
        """What the file holds, as plain JSON: the flow, the parameters (names, POIs,
        bounds, the training data's range), the fit (data, split, epochs, losses, how it
        stopped, test log-likelihood), the validation verdict and the provenance."""
        c, t = self.config, self.training
        data, result = t.get("data", {}), t.get("result", {})
        sup = self.support
        parameters = [{"name": name, "poi": name in c.poi,
                       "bounds": [None if not np.isfinite(b) else float(b) for b in bounds],
                       "trained_on": None if sup is None else [sup["lo"][i], sup["hi"][i]]}
                      for i, (name, bounds) in enumerate(zip(c.names, self._bounds))]
        return {
            "kind": "surrogate",
            "flow": {"flow": c.flow, "dim": c.dim, "layers": c.layers, "hidden": list(c.hidden),
                     "bins": c.bins, "dtype": c.dtype, "bound_map": c.bound_map,
                     "marginal_spline": c.marginal_spline,
                     "reflected": [c.names[int(d)] for d, _ in c.reflect]},
            "parameters": parameters,
            "data": {k: data[k] for k in ("file", "n", "n_train", "n_validation", "n_test",
                                          "split_kind", "fingerprint") if k in data},
            "training": {k: result[k] for k in ("best_epoch", "best_val_loss", "stopped",
                                                "elapsed", "rollbacks") if k in result}
                        | {"epochs": len(result.get("history", [])),
                           "test_log_prob": t.get("test_log_prob"), "seed": t.get("seed")},
            "validation": {k: self.validation[k] for k in ("verdict", "verdict_reasons",
                                                            "flagged") if k in self.validation},
            "provenance": dict(self.provenance),
        }

    @property
    def support(self) -> dict | None:
        """The region the training data cover (``lo``, ``hi`` per parameter and the largest
        latent radius squared of a training point), or None for files written before it was
        recorded. Profiles and best fits stay inside it."""
        sup = self.training.get("support")
        return sup if isinstance(sup, dict) and "lo" in sup else None

    def sample(self, n: int, *, seed: int | None = None) -> np.ndarray:
        """``n`` samples (n, D): fresh draws on every call without ``seed``; with one, the same
        samples every time, also after load."""
        n = self._count(n)
        out = np.empty((n, self.dim))
        i = 0
        for x in self.sample_blocks(n, seed=seed):
            out[i:i + len(x)] = x
            i += len(x)
        return out

    def sample_with_log_prob(self, n: int, *, seed: int | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
        """The samples of :meth:`sample` (the same rows for the same seed) and their
        :meth:`log_prob`. On the numpy backend in one pass: the sampling direction carries
        its Jacobian (:meth:`likeflow.flows.numpy_flow.NumpyFlow.from_latent_log_prob`), the
        density equal to :meth:`log_prob`'s to rounding; on TensorFlow, sample then log_prob.
        """
        n = self._count(n)
        seed = fresh_seed() if seed is None else seed
        if self.backend != "numpy":
            x = self.sample(n, seed=seed)
            return x, self.log_prob(x)
        out = np.empty((n, self.dim + 1))
        for rows, z in self._base_batches(n, seed):
            out[rows] = self._from_latent_log_prob(z)
        x, lp = out[:, :-1], out[:, -1].copy()
        lp[self._outside(x) | np.isnan(lp)] = -np.inf
        return x, lp

    def _base_batches(self, n: int, seed: int):
        """The base draws of ``sample(n, seed=seed)``, batch by batch: ``(rows, z)`` with
        ``z`` in the flow's dtype (one rule for the draws of every sampling method)."""
        for k, rows in enumerate(batch_slices(n, SAMPLE_BATCH)):
            z = base_draws(rows.stop - rows.start, self.dim, (seed % (2 ** 31), k))
            yield rows, z.astype(self._dtype)

    def sample_blocks(self, n: int, *, seed: int | None = None, block: int = SAMPLE_BATCH):
        """The samples of :meth:`sample` as consecutive blocks of about ``block`` rows (a
        multiple of the batch), for streaming: memory stays bounded whatever ``n``."""
        n = self._count(n)
        seed = fresh_seed() if seed is None else seed
        per = max(1, block // SAMPLE_BATCH)
        self._from_latent.will_evaluate(n)
        out = []
        for _, z in self._base_batches(n, seed):
            out.append(self._from_latent(z))
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

    def sample_set(self, n: int, *, seed: int | None = None) -> SampleSet:
        """``n`` samples with their surrogate ``log_prob``, names, POIs and bounds."""
        x = self.sample(n, seed=seed)
        return SampleSet(x, names=self.names, poi=self.poi, bounds=self.bounds,
                         log_prob=self.log_prob(x))

    def sample_to_file(self, path: str | os.PathLike, n: int, *,
                       seed: int | None = None) -> None:
        """Write ``n`` samples with their ``log_prob`` to a sample file, streamed block by block
        (memory bounded for any ``n``; the same samples as :meth:`sample` with this seed)."""
        n = self._count(n)
        check_outputs([path], inputs=[self.path])
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
            test = samples.subset(split_of(samples, self.split_spec()).test)
            return dataclasses.replace(test, anchors=held_out_anchors(samples, self.training.get("seed", 0))), []
        used = self._training_rows_of(samples)
        if used is not None:
            keep = ~np.isin(samples.origin.rows, used)
            if not keep.any():
                raise LikeflowError(f"every row of {samples.origin.file} read this way was used to "
                                    "train the surrogate: nothing is left to validate on")
            test = dataclasses.replace(samples.subset(keep),
                                       anchors=held_out_anchors(samples, self.training.get("seed", 0)))
            return test, [
                f"the surrogate was trained on this file (read with other options): the "
                f"{int((~keep).sum())} rows it trained or early-stopped on are left out; "
                f"{int(keep.sum())} rows remain as test data"]
        return samples, ["these samples differ from the data the surrogate was trained on; all "
                         f"{samples.n} rows are used as test data (they must be independent of "
                         "the training data)"]

    def split_spec(self) -> SplitSpec:
        """The train/validation/test split the surrogate was fitted with."""
        return SplitSpec.from_record(self.training["data"]["split"], self.training.get("seed"))

    def read_options(self) -> ReadOptions:
        """How the training file was read (the seed of its subsample is the fit's)."""
        stored = dict(self.training.get("data", {}).get("read_options", {}))
        if "seed" in self.training:
            stored["seed"] = self.training["seed"]
        return ReadOptions.from_dict(stored)

    def columns_of(self, samples: SampleSet, path: str = "<samples>") -> SampleSet:
        """``samples`` with their columns in the surrogate's order, matched by name when the
        file names them (any order, extra columns ignored); unnamed columns (``x0``, ``x1``,
        ...) must be in the surrogate's order."""
        default = [f"x{i}" for i in range(samples.dim)]
        if samples.names == self.names:
            return samples
        if samples.names == default:
            if samples.dim != self.dim:
                raise LikeflowError(f"{path}: {samples.dim} columns but the surrogate has "
                                    f"{self.dim} parameters")
            cols = list(range(self.dim))
        else:
            missing = [n for n in self.names if n not in samples.names]
            if missing:
                raise LikeflowError(f"{path}: parameters {missing[:8]} of the surrogate are not "
                                    f"in the file (it has {samples.names[:8]}...)")
            cols = [samples.names.index(n) for n in self.names]
        a = samples.anchors
        return SampleSet(samples.values[:, cols], names=self.names, poi=self.poi,
                         bounds=self.bounds, log_prob=samples.log_prob, weights=samples.weights,
                         origin=samples.origin, anchors=None if a is None else dataclasses.replace(
                             a, values=a.values[:, cols]))

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
        split = self.split_spec().rows(len(read))
        return read[np.concatenate([split.train, split.validation])]

    # --- files ------------------------------------------------------------------------------
    def weight_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The flow's weights as (variable name, array) in file order
        (:func:`likeflow.flows.config.weight_roles` says what each is)."""
        stored = self.__dict__.get("_source")
        if hasattr(stored, "build"):  # not built yet: the file's arrays
            return list(zip(stored.names, stored.weights))
        if self.backend == "numpy":
            return list(zip(self.flow.names, self.flow.weights))
        return [(v.name, v.numpy()) for v in self.flow.stored_variables]

    def _records(self) -> dict:
        """The JSON records of the file (a piecewise surrogate adds its own)."""
        return {"config": self.config.to_dict(), "training": strict_json(self.training),
                "validation": strict_json(self.validation),
                "provenance": schema.provenance(self.backend)}

    def _other_flows(self) -> list[tuple[dict, list[tuple[str, np.ndarray]]]]:
        """The flows a file holds beyond this one's, as (config record, weights): a piecewise
        surrogate's other clusters; a plain surrogate has none."""
        return []

    def save(self, path: str | os.PathLike) -> None:
        """Write the surrogate file atomically (:func:`likeflow.surrogate.fileformat.write`:
        a temp file in the same folder, then renamed)."""
        fileformat.write(path, self._records(), self.weight_arrays(), self._other_flows())


def fresh_seed() -> int:
    """A seed from the operating system's entropy: fresh draws when no seed is given."""
    return int(np.random.default_rng().integers(2 ** 31))


class _Batched:
    """A numpy flow method on batches of bounded size (memory bounded for any n), evaluated on
    one thread per core; the interface of :class:`_Compiled`."""

    def __init__(self, fn, batch: int = NUMPY_BATCH, threads: int | None = None):
        self.fn, self.batch = fn, batch
        self.threads = threads or os.cpu_count() or 1

    def will_evaluate(self, n: int) -> None:
        pass

    def __call__(self, x: np.ndarray) -> np.ndarray:
        size = min(self.batch, max(NUMPY_MIN_BATCH, -(-len(x) // self.threads)))
        return map_batches(self.fn, x, size, threads=self.threads)


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

    def __init__(self, fn, dim: int, dtype, batch: int, *, xla: bool = True):
        from ..tfsetup import tf

        self._xla = tf.function(fn, jit_compile=True, autograph=False)
        self._plain = tf.function(fn, input_signature=[tf.TensorSpec([None, dim], dtype)],
                                  autograph=False)
        self.batch = batch
        self.use_xla = xla
        self.points = 0
        self._announced = 0

    def will_evaluate(self, n: int) -> None:
        """Announce ``n`` points about to come in several calls (sampling in batches): the
        choice of XLA sees the whole request, not its first batch."""
        self.points += n
        self._announced += n

    def __call__(self, x: np.ndarray) -> np.ndarray:
        counted = min(self._announced, len(x))
        self._announced -= counted
        self.points += len(x) - counted
        if not (self.use_xla and self.points >= XLA_AFTER_POINTS):
            return self._traced(self._plain, x)
        parts = []
        for rows in batch_slices(len(x), self.batch):
            xb = x[rows]
            m = len(xb)
            # the last part of a long call is padded to a whole batch: no new shape to compile
            size = self.batch if len(x) > self.batch else min(
                self.batch, padded_size(m, 64))
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
        out = map_batches(lambda b: fn(b).numpy(), x, self.batch)
        if fn.experimental_get_tracing_count() != before:
            from ..flows.tf_flow import release_trace_caches
            release_trace_caches()
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        from ..tfsetup import tf

        if self.use_xla and len(x):
            try:
                return self._traced(self._xla, x)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                    tf.errors.InternalError):
                self.use_xla = False
        return self._traced(self._plain, x)


