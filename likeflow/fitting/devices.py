"""The devices a fit trains on: one (today's path), or several with
``tf.distribute.MirroredStrategy`` (data-parallel: each device computes the loss and gradient
of its share of every batch, the gradients are summed and one update is applied everywhere).

``devices`` is given as ``None`` or ``1`` (one device), an integer N, or ``"all"``:

- with GPUs, N of them (``all``: every one);
- without GPUs, N logical devices split from the CPU. They share the same cores, so this is no
  faster than one device: it exists to check a data-parallel fit where there is no GPU (the
  tests do). The CPU can only be split before TensorFlow has started computing.

Example:
    >>> describe(None, 1024)["replicas"]
    1
"""

from __future__ import annotations

import functools

from ..errors import LikeflowError


def parse(devices) -> int | str | None:
    """``devices`` as given by a user: None, a positive integer, or ``"all"``."""
    if devices is None or devices == "all":
        return devices
    try:
        n = int(devices)
    except (TypeError, ValueError):
        n = 0
    if isinstance(devices, bool) or n < 1 or str(devices).strip() not in (str(n), f"{n}.0"):
        raise LikeflowError(f"devices must be a positive integer or 'all', not {devices!r}")
    return n


def strategy(devices):
    """A ``MirroredStrategy`` over the devices asked for, or None for one device."""
    devices = parse(devices)
    if devices is None or devices == 1:
        return None
    from ..tfsetup import tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        n = len(gpus) if devices == "all" else devices
        if n > len(gpus):
            raise LikeflowError(f"{n} devices asked for; this machine has {len(gpus)} GPUs")
        if n == 1:
            return None
        names = [f"/gpu:{i}" for i in range(n)]
    else:
        if devices == "all":
            return None     # one CPU: splitting it would not be faster
        names = _split_cpu(devices)
    return _mirrored(tuple(names))


@functools.cache
def _mirrored(names: tuple[str, ...]):
    """One strategy per set of devices in a process: strategies made anew would number their
    collective operations from the same start, and a second model's all-reduce would meet the
    first one's shapes ("Shape mismatch in the collective instance")."""
    from ..tfsetup import tf

    return tf.distribute.MirroredStrategy(list(names))


def _split_cpu(n: int) -> list[str]:
    """Names of ``n`` logical CPU devices (splitting the CPU if it is not split yet)."""
    from ..tfsetup import tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:   # TensorFlow has started: the split it has is the one there is
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise LikeflowError(
                f"{n} devices asked for on a machine without GPUs: the CPU is split into "
                f"logical devices, which must happen before TensorFlow starts computing (it "
                f"has {have} now); ask for the devices in a new process before anything else"
                ) from None
    return [f"/cpu:{i}" for i in range(n)]


def describe(strategy, global_batch: int) -> dict:
    """The training record's ``devices``: replicas, their names, global and per-device batch."""
    if strategy is None:
        from ..tfsetup import device
        return {"replicas": 1, "devices": [device()], "global_batch": global_batch,
                "per_replica_batch": global_batch}
    n = strategy.num_replicas_in_sync
    return {"replicas": n, "devices": [d.split("device:")[-1] for d in
                                        strategy.extended.worker_devices],
            "global_batch": global_batch, "per_replica_batch": global_batch // n}
