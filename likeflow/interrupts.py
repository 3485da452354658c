"""SIGTERM handled like Ctrl-C, for the whole of a command or a fit.

A batch system ends a job with SIGTERM; by default Python dies at once (exit 143) and whatever
was computed is lost. Inside :func:`sigterm_as_interrupt` SIGTERM raises ``KeyboardInterrupt``
instead, so a fit saves its best surrogate, temp files are removed and the command exits 130,
the same as after Ctrl-C.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt():
    """Inside, SIGTERM raises KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    try:
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
