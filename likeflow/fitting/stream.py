"""Training from a sample file larger than memory (``likeflow fit --stream``).

The training rows are never all in memory. What is:

- the part of every row (one byte each: :func:`likeflow.data.samples.split_labels`, the same
  seeded split a fit in memory makes, so the test rows are the same and ``validate`` finds
  them again);
- the held-out rows early stopping and validation use, at most :data:`HELD_OUT_ROWS` of each
  part (a seeded random subset, checked like any sample file);
- :data:`CONFIG_ROWS` training rows, from which the flow's preprocessing (standardisation,
  bound maps, reflections) and the recorded training region (the range profiles trust) are
  computed: the region is the subsample's, a little narrower than all rows' (safe: profiles
  trust less, not more);
- while training, a buffer of :data:`BUFFER_BLOCKS` blocks of :data:`BLOCK_ROWS` rows.

An epoch reads the file's blocks in a seeded random order, keeps the training rows of each,
shuffles a buffer of several blocks at a time and cuts it into batches (the remainder joins
the next buffer): every training row is used once per epoch, in an order that is random
between blocks and within the buffer, as ``tf.data``'s shuffle buffer would be. Rows are
checked as they are read (NaN or inf, outside the bounds: an error naming the row, or dropped
with ``--drop-nonfinite``).

Streaming reads the ``likeflow`` and ``array`` layouts (one 2-D dataset of rows, optional
weights; rows of MCMC chains, with a ``chain`` column, are split in whole blocks of each chain
as in memory); emcee files and ``--max-samples`` are not streamed (a subsample fits in memory
anyway).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..data.samples import (ReadOptions, SampleSet, SplitSpec, checked_dataset, read_samples,
                            rows_dataset, split_labels)
from ..errors import LikeflowError, SampleFileError
from ..fileio import available_memory, open_h5
from .rows import pad_steps

#: held-out rows kept in memory per part (validation for early stopping, test for validation:
#: as many as a fit of a million rows in memory has)
HELD_OUT_ROWS = 100_000
#: training rows the preprocessing (standardisation, bound maps) is computed from
CONFIG_ROWS = 100_000
#: rows per read, and blocks shuffled together
BLOCK_ROWS = 1 << 15
BUFFER_BLOCKS = 8
#: a file whose rows (as float64) would take more than this share of the available memory
#: is streamed without being asked
AUTO_SHARE = 0.25


@dataclass
class FileRows:
    """The training rows of an HDF5 sample file, read in shuffled blocks (a row source of
    :mod:`likeflow.fitting.rows`)."""

    path: str
    dataset: str
    weights: str | None
    part: np.ndarray            # one byte per file row: 0 training, 1 validation, 2 test
    bounds: np.ndarray
    drop_nonfinite: bool = False
    block_rows: int = BLOCK_ROWS
    buffer_blocks: int = BUFFER_BLOCKS
    weight_scale: float = 1.0   # 1 / the largest weight (1e39 would be inf in float32)
    prefetch = True

    def __post_init__(self) -> None:
        self.n = int(np.count_nonzero(self.part == 0))
        self.dim = int(self.bounds.shape[0])

    def blocks(self, *, seed: int, epoch: int, batch: int, steps: int, block: int,
               dtype=np.float32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's ``steps`` batches, ``block`` at a time (see the module docstring)."""
        xs: list[np.ndarray] = []
        ws: list[np.ndarray] = []
        for k, (x, w) in enumerate(self._batches(seed, epoch, batch, dtype)):
            xs.append(x)
            ws.append(w)
            if len(xs) == block or k + 1 == steps:
                yield pad_steps(np.stack(xs), block), pad_steps(np.stack(ws), block)
                xs, ws = [], []
            if k + 1 == steps:
                return

    def _batches(self, seed: int, epoch: int, batch: int, dtype):
        """Batches of rows (and weights) of the blocks in a seeded order, a buffer of
        ``buffer_blocks`` shuffled in place at a time (the remainder carried to the next)."""
        rng = np.random.default_rng([seed, epoch])
        starts = rng.permutation(np.arange(0, len(self.part), self.block_rows))
        # one buffer for the epoch: the rows with their weight as a last column
        buf = np.empty(((self.buffer_blocks + 1) * self.block_rows, self.dim + 1), dtype)
        filled = 0
        with open_h5(self.path, SampleFileError) as f:
            ds = f[self.dataset]
            wds = f[self.weights] if self.weights else None
            for i in range(0, len(starts), self.buffer_blocks):
                for start in starts[i:i + self.buffer_blocks]:
                    x, w = self._read(ds, wds, start)
                    buf[filled:filled + len(x), :-1] = x
                    buf[filled:filled + len(x), -1] = w * self.weight_scale
                    filled += len(x)
                rng.shuffle(buf[:filled])
                whole = filled // batch * batch
                for j in range(0, whole, batch):   # copies: the buffer is refilled
                    yield buf[j:j + batch, :-1].copy(), buf[j:j + batch, -1].copy()
                buf[:filled - whole] = buf[whole:filled]
                filled -= whole

    def _read(self, ds, wds, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The training rows of the block at ``start`` and their weights, checked."""
        stop = min(start + self.block_rows, len(self.part))
        rows = start + np.flatnonzero(self.part[start:stop] == 0)
        # in the file's own type (float32 files stay float32 until the batch is cast)
        x = np.asarray(ds[start:stop]).reshape(stop - start, -1)[rows - start]
        w = np.ones(len(x)) if wds is None else np.asarray(wds[start:stop], float)[rows - start]
        nonfinite = ~np.isfinite(x).all(axis=1) | ~np.isfinite(w)
        if nonfinite.any() and self.drop_nonfinite:
            x, w, rows, nonfinite = x[~nonfinite], w[~nonfinite], rows[~nonfinite], \
                nonfinite[~nonfinite]
        problems = (
            (nonfinite, "holds NaN or inf (--drop-nonfinite drops such rows)"),
            (((x < self.bounds[:, 0]) | (x > self.bounds[:, 1])).any(axis=1),
             "lies outside the declared bounds"),
            (w < 0, "has a negative weight"))
        for bad, why in problems:
            if bad.any():
                raise SampleFileError(self.path, f"row {int(rows[np.argmax(bad)])} {why} "
                                      "(found while streaming)", self.dataset)
        return x, w


@dataclass
class Stream:
    """A file opened for streaming: its training rows, the in-memory parts and the record."""

    rows: FileRows
    parts: tuple[SampleSet, SampleSet, SampleSet]   # training subsample, validation, test
    record: dict

    @property
    def n(self) -> int:
        """Rows in the file."""
        return len(self.rows.part)


def should_stream(path: str, options: ReadOptions) -> bool:
    """Whether reading ``path`` whole would take more than :data:`AUTO_SHARE` of the
    available memory (fit then streams without being asked)."""
    if options.max_samples is not None or options.layout not in ("auto", "likeflow", "array"):
        return False
    try:
        with open_h5(path, SampleFileError) as f:
            name = rows_dataset(path, f, options)[1]
            ds = _rows(path, f, name)    # a dataset the reader refuses: refused there
            if ds.ndim != 2:   # emcee's chains are 3-D: not streamed
                return False
            return 8.0 * ds.shape[0] * ds.shape[1] > AUTO_SHARE * available_memory()
    except (SampleFileError, KeyError, OSError, RuntimeError, ValueError):
        # the reader, which fit calls next, names what is wrong as every command does
        return False


def _rows(path: str, f, name: str):
    """The dataset of rows, with the reader's checks (:func:`~likeflow.data.samples.
    checked_dataset`); a link that does not open is the file's fault, named as the reader
    names it."""
    try:
        return checked_dataset(path, f, name, (2, 3))
    except (KeyError, OSError, RuntimeError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SampleFileError(path, f"damaged or unreadable ({msg})") from None


def open_stream(path: str | os.PathLike, options: ReadOptions, spec: SplitSpec) -> Stream:
    """The training rows of ``path`` as a :class:`FileRows`, with the held-out parts and a
    training subsample read into memory (seeded by ``spec.seed``)."""
    path = os.fspath(path)
    if options.max_samples is not None:
        raise LikeflowError("--stream trains on every row of the file; --max-samples reads a "
                            "subsample into memory instead: give one or the other")
    if options.layout not in ("auto", "likeflow", "array"):
        raise LikeflowError(f"--stream reads HDF5 sample files of the likeflow or array "
                            f"layout, not '{options.layout}'")
    with open_h5(path, SampleFileError) as f:
        layout, name = rows_dataset(path, f, options)
        if layout == "emcee":
            raise LikeflowError(f"--stream reads HDF5 sample files of the likeflow or array "
                                f"layout; {path} holds emcee chains")
        if _rows(path, f, name).ndim != 2:
            raise SampleFileError(path, "--stream needs a 2-D dataset of rows", name)
        n = int(f[name].shape[0])
        weights = "weights" if layout == "likeflow" and "weights" in f else None
        # MCMC rows are split in whole blocks of each chain, as in memory (8 bytes a row)
        chain = f["chain"][:] if layout == "likeflow" and "chain" in f else None
    if chain is None:
        part = split_labels(n, seed=spec.seed, validation=spec.validation, test=spec.test)
    else:
        split = spec.rows(n, chain)
        del chain
        part = np.zeros(n, dtype=np.int8)
        part[split.validation], part[split.test] = 1, 2
    rng = np.random.default_rng([spec.seed, 1])

    def some(label: int, k: int) -> np.ndarray:
        rows = np.flatnonzero(part == label)
        return rows if len(rows) <= k else np.sort(rng.choice(rows, size=k, replace=False))

    parts = tuple(read_samples(path, options, rows=some(label, k))
                  for label, k in ((0, CONFIG_ROWS), (1, HELD_OUT_ROWS), (2, HELD_OUT_ROWS)))
    rows = FileRows(path, name, weights, part, parts[0].bounds,
                    drop_nonfinite=options.drop_nonfinite,
                    weight_scale=1.0 / _largest_weight(path, weights, part) if weights else 1.0)
    h = hashlib.sha256(f"{n} rows of {name}".encode())
    for p in parts:
        h.update(p.fingerprint().encode())
    record = {"fingerprint": "stream:" + h.hexdigest(), "n": n,
              "n_train": rows.n, "n_validation": int(np.count_nonzero(part == 1)),
              "n_test": int(np.count_nonzero(part == 2)),
              "file_realpath": os.path.realpath(path), "origin_n": n,
              "origin_options": dataclasses.replace(options, layout=layout).to_dict(),
              "stream": {"config_rows": parts[0].n, "validation_rows": parts[1].n,
                         "test_rows": parts[2].n, "block_rows": BLOCK_ROWS,
                         "buffer_blocks": BUFFER_BLOCKS}}
    return Stream(rows, parts, record)


def _largest_weight(path: str, name: str, part: np.ndarray) -> float:
    """The largest finite weight of the training rows (read in blocks: 8 bytes a row)."""
    top = 0.0
    with open_h5(path, SampleFileError) as f:
        ds = f[name]
        for start in range(0, len(part), 1 << 20):
            w = np.asarray(ds[start:start + (1 << 20)], float)[part[start:start + (1 << 20)] == 0]
            w = w[np.isfinite(w)]
            top = max(top, float(w.max()) if len(w) else 0.0)
    if not top > 0:
        raise SampleFileError(path, "the training rows' weights are all zero", name)
    return top
