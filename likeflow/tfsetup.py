"""TensorFlow, imported once and quietly, and the device it computes on.

TensorFlow prints about ten lines when it starts (CPU features, CUDA probing, on a machine
without a GPU ``failed call to cuInit ... UNKNOWN ERROR (303)``), some of them from C++ straight
to file descriptor 2 before any Python logging exists. likeflow is quiet by default, from the
command line and from Python alike: the start-up runs with descriptor 2 pointed at /dev/null and
TensorFlow's C++ and Python logs set to errors only. ``LIKEFLOW_TF_LOGS=1`` in the environment
(or ``likeflow --debug``) leaves TensorFlow's output alone.

Modules use ``from .tfsetup import tf`` (also ``tfp``, ``tf_keras``) inside functions: the first
use imports TensorFlow through :func:`import_tf`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from .errors import LikeflowError

#: set to 1 to see TensorFlow's start-up and log lines
LOGS_ENV = "LIKEFLOW_TF_LOGS"


def verbose() -> bool:
    """Whether TensorFlow's own output is wanted (``LIKEFLOW_TF_LOGS=1``)."""
    return os.environ.get(LOGS_ENV, "").strip() not in ("", "0")


@functools.cache
def import_tf():
    """``(tensorflow, tensorflow_probability, tf_keras)``, imported once, quietly (see the
    module docstring); a missing install is a :class:`LikeflowError` naming the extra."""
    quiet = not verbose()
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_silenced(quiet):
        try:
            import tensorflow as tf
            import tensorflow_probability as tfp
            import tf_keras
        except ImportError as e:  # pragma: no cover - depends on the install
            raise LikeflowError("flows need TensorFlow: pip install 'likeflow[tf]' "
                                f"({e})") from None
        tf.config.list_physical_devices("GPU")  # CUDA probing happens here: keep it quiet too
    if quiet:
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return tf, tfp, tf_keras


def device() -> str:
    """Where TensorFlow computes: ``"CPU"`` or ``"GPU (names)"``."""
    tf = import_tf()[0]
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"


class _stderr_silenced:
    """File descriptor 2 pointed at /dev/null for the duration (no-op when ``active`` is
    False): the only way to hide what TensorFlow's C++ start-up writes there."""

    def __init__(self, active: bool):
        self.active = active
        self.saved: int | None = None

    def __enter__(self):
        if self.active:
            try:
                sys.stderr.flush()
                self.saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:  # no descriptor 2 (some embedded interpreters): nothing to hide
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


def __getattr__(name: str):
    """``from likeflow.tfsetup import tf`` (or ``tfp``, ``tf_keras``): import on first use."""
    if name in ("tf", "tfp", "tf_keras"):
        return import_tf()[("tf", "tfp", "tf_keras").index(name)]
    raise AttributeError(name)
