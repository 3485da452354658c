"""Training rows fed to the optimizer: an epoch's batches, a block of steps at a time.

Training (:mod:`likeflow.training`) does not care where its rows live. A *row source* has

- ``n``: the number of training rows, and ``dim``;
- ``blocks(seed, epoch, batch, steps, block, dtype)``: the epoch's batches, as
  ``(x, w)`` arrays of shape ``(block, batch, dim)`` and ``(block, batch)``, in order; the last
  block may hold fewer real batches (the rest repeats them: compiled steps see one shape).

- ``prefetch``: whether :func:`feed` should prepare the next block while the current one
  trains (worth it when a block is read from disk, not when it is gathered in memory).

Two sources: :class:`ArrayRows`, rows in memory (a seeded permutation per epoch, the same
batches whatever the block size), and :class:`likeflow.streaming.FileRows`, rows read from an
HDF5 file in shuffled blocks (for files larger than memory), fed through ``tf.data``.

Example:
    >>> rows = ArrayRows(np.arange(12.0).reshape(6, 2))
    >>> [x.shape for x, w in rows.blocks(seed=0, epoch=0, batch=2, steps=3, block=2)]
    [(2, 2, 2), (2, 2, 2)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass
class ArrayRows:
    """Training rows held in memory (``w``: their weights, None for equal weights)."""

    x: np.ndarray
    w: np.ndarray | None = None
    prefetch = False

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def blocks(self, *, seed: int, epoch: int, batch: int, steps: int, block: int,
               dtype=np.float32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Epoch ``epoch``: a permutation of the rows seeded by ``(seed, epoch)`` cut into
        ``steps`` batches of ``batch`` rows (the remainder is left out)."""
        order = np.random.default_rng([seed, epoch]).permutation(self.n)[:steps * batch]
        for start in range(0, steps, block):
            idx = pad_steps(order[start * batch:(start + block) * batch].reshape(-1, batch),
                            block)
            x = self.x[idx].astype(dtype, copy=False)
            w = np.ones(idx.shape, dtype) if self.w is None else self.w[idx].astype(dtype)
            yield x, w


def pad_steps(a: np.ndarray, block: int) -> np.ndarray:
    """``a`` (steps first) filled up to ``block`` steps by repeating its first steps."""
    if len(a) == block:
        return a
    return np.concatenate([a, np.resize(a, (block - len(a),) + a.shape[1:])])


def feed(source, *, seed: int, epoch: int, batch: int, steps: int, block: int, dtype):
    """``source``'s blocks of the epoch as tensors of ``dtype`` (a TensorFlow dtype); for a
    source that reads files, through a ``tf.data`` pipeline with one block prepared ahead
    (reading and shuffling overlap the training of the block before)."""
    from .tfsetup import tf

    np_dtype = np.dtype(dtype.as_numpy_dtype)
    kw = dict(seed=seed, epoch=epoch, batch=batch, steps=steps, block=block, dtype=np_dtype)
    if not source.prefetch:
        return ((tf.constant(x), tf.constant(w)) for x, w in source.blocks(**kw))
    spec = (tf.TensorSpec((block, batch, source.dim), dtype),
            tf.TensorSpec((block, batch), dtype))
    return iter(tf.data.Dataset.from_generator(lambda: source.blocks(**kw),
                                               output_signature=spec).prefetch(1))
