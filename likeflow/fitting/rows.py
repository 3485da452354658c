"""Training rows fed to the optimizer: an epoch's batches, a block of steps at a time.

Training (:mod:`likeflow.fitting.loop`) does not care where its rows live. A *row source* has

- ``n``: the number of training rows, and ``dim``;
- ``blocks(seed, epoch, batch, steps, block, dtype)``: the epoch's batches, as
  ``(x, w)`` arrays of shape ``(block, batch, dim)`` and ``(block, batch)``, in order; the last
  block may hold fewer real batches (the rest repeats them: compiled steps see one shape).
  A source with ``has_log_prob`` adds the target's log density ``y`` and the anchor mask ``a``
  (``(x, w, y, a)``, anchors appended to each batch: :class:`ArrayRows`).

- ``prefetch``: whether :func:`feed` should prepare the next block while the current one
  trains (worth it when a block is read from disk, not when it is gathered in memory).

Two sources: :class:`ArrayRows`, rows in memory (a seeded permutation per epoch, the same
batches whatever the block size), and :class:`likeflow.fitting.stream.FileRows`, rows read from an
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
    """Training rows held in memory (``w``: their weights, None for equal weights).

    With ``y``, the target's log density at the rows, every block also carries it, and the
    density term of :func:`likeflow.fitting.loop.batch_loss` can run: blocks are then
    ``(x, w, y, a)``, each batch followed by ``anchors_per_batch`` anchors (points with a
    known log density that are not samples: weight 0, ``a`` = 1) drawn at random from
    ``anchors`` (``(values, log_prob)``)."""

    x: np.ndarray
    w: np.ndarray | None = None
    y: np.ndarray | None = None
    anchors: tuple[np.ndarray, np.ndarray] | None = None
    anchors_per_batch: int = 0
    prefetch = False

    @property
    def has_log_prob(self) -> bool:
        return self.y is not None

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
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(self.n)[:steps * batch]
        k = self.anchors_per_batch if self.anchors is not None and self.y is not None else 0
        for start in range(0, steps, block):
            idx = pad_steps(order[start * batch:(start + block) * batch].reshape(-1, batch),
                            block)
            x = self.x[idx].astype(dtype, copy=False)
            w = np.ones(idx.shape, dtype) if self.w is None else self.w[idx].astype(dtype)
            if self.y is None:
                yield x, w
                continue
            y = self.y[idx].astype(dtype)
            a = np.zeros(idx.shape, dtype)
            if k:  # anchors after each batch's rows: no weight in the likelihood
                pick = rng.integers(0, len(self.anchors[0]), size=(block, k))
                x = np.concatenate([x, self.anchors[0][pick].astype(dtype)], axis=1)
                y = np.concatenate([y, self.anchors[1][pick].astype(dtype)], axis=1)
                w = np.concatenate([w, np.zeros((block, k), dtype)], axis=1)
                a = np.concatenate([a, np.ones((block, k), dtype)], axis=1)
            yield x, w, y, a


def pad_steps(a: np.ndarray, block: int) -> np.ndarray:
    """``a`` (steps first) filled up to ``block`` steps by repeating its first steps."""
    if len(a) == block:
        return a
    return np.concatenate([a, np.resize(a, (block - len(a),) + a.shape[1:])])


def feed(source, *, seed: int, epoch: int, batch: int, steps: int, block: int, dtype):
    """``source``'s blocks of the epoch as tensors of ``dtype`` (a TensorFlow dtype); for a
    source that reads files, through a ``tf.data`` pipeline with one block prepared ahead
    (reading and shuffling overlap the training of the block before)."""
    from ..tfsetup import tf

    np_dtype = np.dtype(dtype.as_numpy_dtype)
    kw = dict(seed=seed, epoch=epoch, batch=batch, steps=steps, block=block, dtype=np_dtype)
    if not source.prefetch:
        return (tuple(tf.constant(v) for v in b) for b in source.blocks(**kw))
    spec = (tf.TensorSpec((block, batch, source.dim), dtype),
            tf.TensorSpec((block, batch), dtype))
    return iter(tf.data.Dataset.from_generator(lambda: source.blocks(**kw),
                                               output_signature=spec).prefetch(1))
