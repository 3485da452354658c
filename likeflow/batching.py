"""One way to cut work into batches of bounded size (memory stays flat for any n).

Example:
    >>> import numpy as np
    >>> [(s.start, s.stop) for s in batch_slices(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    >>> map_batches(lambda b: b * 2, np.arange(5.0), 2).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
    >>> [padded_size(n, 32) for n in (1, 32, 33, 100)]
    [32, 32, 64, 128]
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


def batch_slices(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` rows covering ``range(n)``."""
    for i in range(0, n, max(1, int(size))):
        yield slice(i, min(i + size, n))


def map_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int,
                empty: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """``fn`` applied to ``x`` batch by batch, the results concatenated; for an empty ``x``,
    ``empty()`` (default: ``fn(x)``, so shapes and dtypes stay the function's)."""
    parts = [fn(x[s]) for s in batch_slices(len(x), size)]
    if not parts:
        return empty() if empty is not None else fn(x)
    return np.concatenate(parts)


def padded_size(n: int, minimum: int) -> int:
    """The batch size ``n`` rows are padded to: ``minimum``, then powers of two. XLA compiles
    once per shape, so compiled calls see a few sizes, not every ``n``."""
    return max(minimum, 1 << (n - 1).bit_length())
