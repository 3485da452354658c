"""SIGTERM handled like Ctrl-C, for the whole of a command or a fit.

A batch system ends a job with SIGTERM; by default Python dies at once (exit 143) and whatever
was computed is lost. Inside :func:`sigterm_as_interrupt` SIGTERM raises ``KeyboardInterrupt``
instead, so a fit saves its best surrogate, temp files are removed and the command exits 130,
the same as after Ctrl-C.

Python runs a signal handler between two bytecodes of the main thread, wherever that is. When
it is inside a weakref callback or a finaliser, the ``KeyboardInterrupt`` it raises is
"ignored" (printed, then dropped), and inside Python code called back from C it can come out
as another exception (a ``SystemError``). So the arrival of the signal is also recorded:
:func:`check` raises it again at the next checkpoint of long work (validation calls it
between its steps), the context raises it on the way out if the work went on regardless,
:func:`received` lets the command line call an exception that follows a signal an interrupt,
and the dropped copies are not printed.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager

#: SIGTERM seen inside the context that is (or was last) active; reset on entering one
_state = {"received": False, "depth": 0, "held": 0}


def received() -> bool:
    """Whether SIGTERM (or Ctrl-C, where :func:`check` saw it) arrived in the current work."""
    return _state["received"]


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal arrived and was swallowed on its way (call it
    between the steps of long work)."""
    if _state["received"]:
        raise KeyboardInterrupt


def handled() -> None:
    """The interrupt was handled where it landed (training stops there and keeps its best
    weights, then the work goes on to save and validate): forget it."""
    _state["received"] = False


def _raise_interrupt(signum, frame):
    _state["received"] = True
    if _state["held"]:      # inside held(): raised when the held work is done
        return
    raise KeyboardInterrupt


@contextmanager
def held():
    """Work that must not be cut (a fit's surrogate being written): SIGTERM and Ctrl-C that
    arrive inside are recorded, and raised as ``KeyboardInterrupt`` once it is done.

    Blocking the signal would not do: the kernel hands it to another thread (TensorFlow's),
    and Python runs the handler in the main thread regardless."""
    try:
        old_int = signal.signal(signal.SIGINT, _raise_interrupt)
    except ValueError:  # not the main thread: signals are not raised here anyway
        yield
        return
    _state["held"] += 1
    try:
        yield
    finally:
        _state["held"] -= 1
        signal.signal(signal.SIGINT, old_int)
    if not _state["held"]:
        check()


def _quiet_unraisable(old):
    """An unraisable hook that drops the copies of our interrupt that Python could not raise
    (``Exception ignored in: ...`` / ``KeyboardInterrupt``, or the ``SystemError`` it turns
    into inside Python code called back from C, as TensorFlow's ``nest`` does during a lazy
    import) and passes on the rest."""
    def hook(unraisable):
        if _state["received"] and issubclass(unraisable.exc_type,
                                             (KeyboardInterrupt, SystemError)):
            return
        old(unraisable)
    return hook


@contextmanager
def sigterm_as_interrupt():
    """Inside, SIGTERM raises KeyboardInterrupt (main thread only; elsewhere a no-op).

    Contexts nest (a fit inside a command): the outer one owns the handler. A signal that
    arrived inside and was swallowed on its way is raised again when the context ends.
    """
    try:
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    outer = _state["depth"] == 0
    if outer:
        _state["received"] = False
    _state["depth"] += 1
    old_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(old_hook)
    try:
        yield
        check()
    finally:
        _state["depth"] -= 1
        sys.unraisablehook = old_hook
        signal.signal(signal.SIGTERM, old)


def exit_on_sigterm(code: int = 130) -> None:
    """From now on SIGTERM ends the process with ``code`` at once (its work is done and its
    files are complete: what is left is the interpreter's shutdown)."""
    import os

    def _exit(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream must not hold up the exit
                pass
        os._exit(code)

    try:
        signal.signal(signal.SIGTERM, _exit)
    except ValueError:  # not the main thread
        pass
