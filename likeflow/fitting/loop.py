"""The training loop: maximum likelihood with a compiled step, early stopping and a NaN guard.

One epoch is a seeded shuffle of the training rows cut into batches (rows in memory, or a file
read in shuffled blocks: :mod:`likeflow.fitting.rows`); each batch is one compiled Adam step on the
weighted negative log-likelihood with its gradient clipped by global norm. A step whose loss or
gradient is not finite is skipped inside the compiled step. After every epoch the loss on the
validation split decides:

- improvement (by more than ``min_delta``): the weights are copied as the best so far;
- schedule ``plateau``: no improvement for ``lr_patience`` epochs multiplies the learning rate
  by ``lr_factor``; schedule ``cosine``: the learning rate follows a cosine from
  ``learning_rate`` to ``min_learning_rate``, step by step, over ``cosine_steps`` optimizer
  steps (rounded to whole epochs, at most ``epochs``), and training ends when it is done;
- no improvement for ``patience`` epochs, or ``epochs`` reached: stop;
- a validation loss that is not finite: roll back to the last good weights, halve the learning
  rate and go on (up to ``max_rollbacks`` times).

At the end the best weights are assigned back (and the validation loss then equals the best
recorded one: the tests check it). Ctrl-C or SIGTERM ends training the same way, with
``stopped = "interrupted"``.

Example:
    >>> import numpy as np
    >>> from likeflow.flows.config import FlowConfig
    >>> from likeflow.flows.tf_flow import build_flow
    >>> x = np.random.default_rng(0).normal(size=(2000, 2))
    >>> flow = build_flow(FlowConfig.from_data(x, layers=2, hidden=(16,)))
    >>> result = train(flow, x[:1600], x[1600:], config=TrainConfig(epochs=3), progress=None)
    >>> len(result.history)
    3
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import LikeflowError
from ..interrupts import handled
from ..jsonutil import check_types
from .losses import ANCHORS_PER_BATCH, batch_loss
from .rows import ArrayRows, feed


#: the default batch is this many times smaller than the training rows ...
STEPS_PER_EPOCH = 64
#: ... a power of two within these bounds
BATCH_RANGE = (128, 1024)


def default_batch_size(n_train: int) -> int:
    """Rows per optimizer step when none are asked for: the largest power of two at most
    ``n_train / 64``, within [128, 1024].

    Large files (65,536 training rows and more) take batches of 1024. A small file takes
    smaller batches, so that an epoch is at least about 64 steps: on the 10,000 toy samples
    of the README (8,000 training rows, 95 dimensions) batches of 1024 overfit after 5-7
    epochs of 8 steps, with a log-density correlation of 0.987-0.989 over three seeds; batches
    of 128 reach 0.993-0.995 and a test log-likelihood 0.4-0.5 nats higher (measured in
    ``docs/benchmarks.md``, session 19).

    Example:
        >>> default_batch_size(8000), default_batch_size(40000), default_batch_size(10**6)
        (128, 512, 1024)
    """
    lo, hi = BATCH_RANGE
    rows = max(1, int(n_train) // STEPS_PER_EPOCH)
    return int(min(hi, max(lo, 2 ** int(math.floor(math.log2(rows))))))


@dataclass
class TrainConfig:
    """Hyperparameters of the training loop (documented defaults, all JSON-serialisable).

    Attributes:
        schedule: ``cosine`` (decay over ``cosine_steps``) or ``plateau`` (reduce on plateau).
        cosine_steps: length of the cosine decay in optimizer steps: about the same number of
            steps reaches the same quality whatever the data size (few epochs of a large file,
            many of a small one).
        epochs: the most epochs to run (early stopping usually ends sooner).
        batch_size: rows per optimizer step (None: :func:`default_batch_size` of the
            training rows: small files get small batches, see there).
        learning_rate: Adam's initial learning rate.
        min_learning_rate: the learning rate is never reduced below this.
        lr_patience: (plateau) epochs without improvement before the learning rate is reduced.
        lr_factor: (plateau) factor of each reduction.
        patience: epochs without improvement before training stops.
        min_delta: improvement of the validation loss (nats) that counts.
        clip_norm: gradients are clipped to this global norm.
        max_time: a budget in seconds (None: none): the cosine is re-planned from the
            measured step and validation times to anneal within it, and training stops when
            it is spent (checked every few steps, not only at the end of an epoch).
        max_rollbacks: NaN roll-backs allowed before giving up.
        jit_compile: compile the steps with XLA (None: yes; False: without XLA).
        density_weight: weight of the density term (:func:`batch_loss`), where the training
            rows carry the target's log density: the variance over each batch of the
            residual ``log q - log p``, which must be constant, and with anchors in the file
            (:mod:`likeflow.data.anchors`) the residual at the anchors held to the batch's. 0:
            maximum likelihood alone.

    The seed of the shuffles is not a training hyperparameter: it is the fit's one seed
    (:func:`likeflow.fitting.run.plan_seeds`), given to :func:`train`.
    """

    schedule: str = "cosine"
    cosine_steps: int = 1200
    epochs: int = 300
    batch_size: int | None = None
    learning_rate: float = 5e-3
    min_learning_rate: float = 1e-6
    lr_patience: int = 5
    lr_factor: float = 0.5
    patience: int = 6
    min_delta: float = 1e-4
    clip_norm: float = 10.0
    max_time: float | None = None
    max_rollbacks: int = 8
    jit_compile: bool | None = None
    density_weight: float = 1.0

    def __post_init__(self) -> None:
        check_types(self, {"schedule": "str", "cosine_steps": "int", "epochs": "int",
                           "batch_size": "int?", "learning_rate": "float",
                           "min_learning_rate": "float", "lr_patience": "int",
                           "lr_factor": "float", "patience": "int", "min_delta": "float",
                           "clip_norm": "float", "max_time": "float?", "max_rollbacks": "int",
                           "jit_compile": "bool?", "density_weight": "float"}, "training")
        if not self.density_weight >= 0:
            raise LikeflowError(f"training: density_weight must be >= 0, not "
                                f"{self.density_weight}")
        if self.max_time is not None and not self.max_time > 0:
            raise LikeflowError(f"training: max_time must be positive seconds (or null), not "
                                f"{self.max_time}")
        if not (self.clip_norm > 0 and self.min_learning_rate >= 0 and self.min_delta >= 0
                and self.max_rollbacks >= 0):
            raise LikeflowError("training: clip_norm must be > 0; min_learning_rate, min_delta "
                                "and max_rollbacks >= 0")
        if self.epochs < 1 or self.patience < 1 or self.lr_patience < 1 or (
                self.batch_size is not None and self.batch_size < 1):
            raise LikeflowError("training: epochs, batch size and patiences must be positive")
        if self.schedule not in ("cosine", "plateau"):
            raise LikeflowError(f"training: schedule must be cosine or plateau, not "
                                f"'{self.schedule}'")
        if self.cosine_steps < 1:
            raise LikeflowError("training: cosine_steps must be positive")
        if not (self.learning_rate > 0 and 0 < self.lr_factor < 1):
            raise LikeflowError("training: learning rate must be > 0 and lr_factor in (0, 1)")

    def rows_per_step(self, n_train: int) -> int:
        """The batch of a fit on ``n_train`` rows: ``batch_size`` (or its default), at most
        ``n_train``."""
        chosen = default_batch_size(n_train) if self.batch_size is None else self.batch_size
        return max(1, min(chosen, n_train))

    def for_rows(self, n_train: int) -> "TrainConfig":
        """This config with the batch size of a fit on ``n_train`` rows written in (what a
        surrogate file records, so that a resumed fit takes the same steps)."""
        if self.batch_size is not None:
            return self
        return dataclasses.replace(self, batch_size=default_batch_size(n_train))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d.setdefault("schedule", "plateau")  # files from before the schedule was recorded
        d.setdefault("density_weight", 0.0)  # ... and before the density term
        return cls(**d)


@dataclass
class TrainResult:
    """What training did: one record per epoch, the best epoch and why it stopped."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped: str = ""
    elapsed: float = 0.0
    rollbacks: int = 0
    learning_rate: float = 0.0
    planned_steps: int = 0      # the cosine's length in optimizer steps, as (re-)planned
    density_term: str = "off"   # "residual" or "residual and anchors" (likeflow.fitting.losses)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def snapshot(variables) -> list[np.ndarray]:
    """Copies of the variables' values (``Distribution.copy()`` would share the variables)."""
    return [v.numpy().copy() for v in variables]


def restore(variables, values: list[np.ndarray]) -> None:
    for v, x in zip(variables, values):
        v.assign(x)


def train(flow, train_x, val_x: np.ndarray, *, train_w: np.ndarray | None = None,
          val_w: np.ndarray | None = None, train_y: np.ndarray | None = None,
          val_y: np.ndarray | None = None, anchors=None,
          config: TrainConfig | None = None, seed: int = 0,
          progress: Callable[[dict], None] | None = None,
          on_best: Callable[[TrainResult], None] | None = None,
          previous: TrainResult | None = None, strategy=None,
          keep_best: bool = True) -> TrainResult:
    """Fit ``flow`` by maximum likelihood on ``train_x``, early-stopping on ``val_x``.

    Args:
        flow: a :class:`likeflow.flows.config.Flow`.
        train_x, val_x: (N, D) physical training and validation points (disjoint);
            ``train_x`` may also be a row source of :mod:`likeflow.fitting.rows` (rows streamed
            from a file).
        train_w, val_w: optional non-negative weights of the points (a row source carries
            its own).
        train_y, val_y: the target's log density at the points (up to a constant), if known:
            the density term of :func:`likeflow.fitting.losses.batch_loss` (``density_weight``).
        anchors: an :class:`~likeflow.data.anchors.Anchors` (points with a known log density that
            are not samples), added to every batch for the density term.
        config: a :class:`TrainConfig`.
        seed: seeds the shuffle of every epoch.
        progress: called with each epoch's record (a dict) after the epoch; within an epoch
            longer than :data:`PARTIAL_EVERY` seconds (a streamed file) also with a partial
            record every so often (``"partial": True``, the steps done, no validation loss).
        on_best: called after each new best epoch, the best weights in place (checkpointing).
        previous: the result of an earlier run to continue (``--resume``): its history, best
            loss and learning rate carry on.
        strategy: a ``tf.distribute`` strategy (:func:`likeflow.fitting.devices.strategy`) whose
        scope
            built ``flow``: data-parallel training, the batch shared by its replicas.
        keep_best: end with the best epoch's weights by the validation loss; False: with the
            last epoch's (a refinement judged by its own measure, which the validation
            samples do not see: :func:`likeflow.fitting.run.refine`).

    Returns:
        A :class:`TrainResult`; the flow holds the best epoch's weights.
    """
    from ..tfsetup import tf_keras

    cfg = config or TrainConfig()
    variables = list(flow.trainable_variables)
    if not variables:
        raise LikeflowError("the flow has no trainable variables (untracked layers?)")
    # relative weights: scaled to a largest weight of 1 (1e39 is inf in float32)
    train_w = None if train_w is None else train_w / np.max(train_w)
    val_w = None if val_w is None else val_w / np.max(val_w)
    density = (cfg.density_weight > 0 and train_y is not None and val_y is not None
               and strategy is None and not hasattr(train_x, "blocks"))
    if density:
        # the log densities' constant is free: centred, so that float32 keeps their digits
        shift = float(np.median(train_y))
        train_y, val_y = train_y - shift, val_y - shift
        anchors = None if anchors is None or anchors.n == 0 else (
            anchors.values, anchors.log_prob - shift)
    rows = train_x if hasattr(train_x, "blocks") else ArrayRows(
        train_x, train_w, train_y if density else None, anchors if density else None,
        max(1, round(cfg.rows_per_step(len(train_x)) * ANCHORS_PER_BATCH)))
    result = previous if previous is not None else TrainResult(learning_rate=cfg.learning_rate)
    result.density_term = ("off" if not density else "residual" if anchors is None
                           else "residual and anchors")
    with (strategy.scope() if strategy is not None else contextlib.nullcontext()):
        optimizer = tf_keras.optimizers.Adam(
            learning_rate=result.learning_rate or cfg.learning_rate)
        optimizer.build(variables)
    steps = _Steps(flow, variables, optimizer, cfg, strategy,
                   density_weight=cfg.density_weight if density else 0.0)
    val_loss = make_mean_loss(flow, val_x, val_w, y=val_y if density else None,
                              density_weight=cfg.density_weight)
    loop = _Loop(variables, snapshot(variables))
    if previous is None or not math.isfinite(result.best_val_loss):
        result.best_val_loss = val_loss()
        result.best_epoch = len(result.history) - 1
    loop.since_best = _epochs_since_best(result)
    plan = _plan(cfg, rows.n, replicas=1 if strategy is None else strategy.num_replicas_in_sync)
    loop.lr_scale = _resumed_lr_scale(cfg, result, plan, resumed=previous is not None)
    result.stopped = "schedule_done" if plan.cosine else "max_epochs"
    clock = _Clock(start=time.perf_counter() - result.elapsed, max_time=cfg.max_time)
    try:
        epoch = len(result.history)
        while epoch < plan.last_epoch:
            partial = None if progress is None else (
                lambda r: progress(dict(r, epochs=plan.last_epoch, elapsed=clock.elapsed())))
            record = _run_epoch(steps, rows, plan, loop, epoch, seed, val_loss, clock, partial)
            if _judge(record, result, loop, plan, optimizer, cfg) == "diverged":
                break
            result.elapsed = clock.elapsed()
            result.learning_rate = float(optimizer.learning_rate.numpy())
            result.planned_steps = plan.total_steps
            if progress is not None:
                progress(dict(record, best_epoch=result.best_epoch,
                              best_val_loss=result.best_val_loss, epochs=plan.last_epoch,
                              elapsed=result.elapsed))
            if on_best is not None and result.best_epoch == epoch:
                on_best(result)
            if loop.since_best >= cfg.patience:
                result.stopped = "early_stopping"
                break
            epoch += 1
            if record.get("time_limit") or (clock.over() and epoch < plan.last_epoch):
                result.stopped = "time_limit"
                break
    except KeyboardInterrupt:
        result.stopped = "interrupted"
        handled()  # training ends here, as asked; what follows (save, validate) still runs
    while keep_best:  # the best weights go back even if a signal arrives meanwhile
        try:
            restore(variables, loop.best)
            break
        except KeyboardInterrupt:
            result.stopped = "interrupted"
    result.elapsed = clock.elapsed()
    return result


# optimizer steps per compiled call: the time limit is checked, and the budget re-planned,
# between calls (a fraction of a second to a few seconds), the host is idle within one
_BLOCK = 16
#: seconds between partial progress records within a long epoch
PARTIAL_EVERY = 30.0


class _Steps:
    """The optimizer steps, a block of them in one compiled call, with the epoch's running
    sums (kept on the device, so that steps never wait for the host).

    One call runs the first ``stop`` steps of a block of batches in a compiled loop: loss,
    gradient, clipping, the finite check and the Adam update, with no return to Python
    between steps (on a CPU the dispatch of a step's few hundred small ops costs as much as
    the step). On one device the whole loop is XLA-compiled, with the density term of
    :func:`likeflow.fitting.losses.batch_loss` where the rows carry it; under a
    ``tf.distribute.MirroredStrategy`` (maximum likelihood only: the batch's variance of the
    residual does not split into replicas' shares) each replica computes its share of the batch (the
    loss and gradient XLA-compiled), the gradients are summed across replicas, and the one
    clipped update is applied to every replica's copy of the weights."""

    def __init__(self, flow, variables, optimizer, cfg: TrainConfig, strategy=None,
                 density_weight: float = 0.0):
        from ..tfsetup import tf

        dtype = flow.dtype
        self.optimizer = optimizer
        self.cfg = cfg
        self.density_weight = density_weight
        self.loss_sum = tf.Variable(0.0, dtype=dtype, trainable=False)
        self.bad_steps = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.compiled = False
        # XLA fuses the flows' many small elementwise ops (bound maps, affine transforms, the
        # splines of likeflow.flows.splines, written for it) on CPU and GPU: 4x faster spline
        # training on a 2-core CPU, 1.3x for the MAF (docs/benchmarks.md)
        jit = cfg.jit_compile is not False
        if strategy is None:
            self._run = self._single(flow, variables, jit)
        else:
            self._run = self._mirrored(flow, variables, jit, strategy)

    def _apply(self, grads, variables, loss, lr):
        """The clipped update if loss and gradient are finite; else the step is counted bad."""
        from ..tfsetup import tf

        grads, _ = tf.clip_by_global_norm(grads, self.cfg.clip_norm)

        def update():
            self.optimizer.learning_rate.assign(lr)
            self.optimizer.apply_gradients(zip(grads, variables))
            self.loss_sum.assign_add(loss)
            return tf.constant(0)

        def skip():
            self.bad_steps.assign_add(1)
            return tf.constant(0)

        tf.cond(_finite(loss, grads), update, skip)

    def _single(self, flow, variables, jit: bool):
        from ..tfsetup import tf

        weight = self.density_weight

        def one_step(batch, lr):
            x, w, *ya = batch
            with tf.GradientTape() as tape:
                loss = batch_loss(flow.train_log_prob(x), w, *ya, density_weight=weight)
            self._apply(tape.gradient(loss, variables), variables, loss, lr)

        @tf.function(jit_compile=jit)
        def run(block, lrs, stop):
            def body(k):
                one_step(tuple(b[k] for b in block), lrs[k])
                return (k + 1,)
            tf.while_loop(lambda k: k < stop, body, (tf.constant(0),))

        return run

    def _mirrored(self, flow, variables, jit: bool, strategy):
        from ..tfsetup import tf

        replicas = strategy.num_replicas_in_sync
        optimizer, clip_norm = self.optimizer, self.cfg.clip_norm

        @tf.function(jit_compile=jit)
        def share(x, w, total_w):
            """This replica's part of the batch loss (the batch's mean) and its gradient."""
            with tf.GradientTape() as tape:
                loss = -tf.reduce_sum(w * flow.train_log_prob(x)) / total_w
            return loss, tape.gradient(loss, variables)

        def replica(x, w):
            ctx = tf.distribute.get_replica_context()
            per = x.shape[0] // replicas
            r = ctx.replica_id_in_sync_group
            rows = tf.range(r * per, (r + 1) * per)
            loss, grads = share(tf.gather(x, rows), tf.gather(w, rows), tf.reduce_sum(w))
            # summed over replicas: the whole batch's loss and gradient, the same on each
            loss, grads = ctx.all_reduce("SUM", [loss, grads])
            grads, _ = tf.clip_by_global_norm(grads, clip_norm)
            return grads, loss, _finite(loss, grads)

        def apply(grads, lr):
            optimizer.learning_rate.assign(lr)
            optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)

        def one_step(x, w, lr):
            grads, loss, finite = strategy.run(replica, args=(x, w))
            first = strategy.experimental_local_results

            # the update is decided outside the replicas: a synchronising call (the update of
            # mirrored weights) is not allowed inside a replica's conditional
            def update():
                strategy.run(apply, args=(grads, lr))
                self.loss_sum.assign_add(first(loss)[0])
                return tf.constant(0)

            def skip():
                self.bad_steps.assign_add(1)
                return tf.constant(0)

            tf.cond(first(finite)[0], update, skip)

        @tf.function
        def run(block, lrs, stop):
            xs, ws = block[:2]  # maximum likelihood only (see _Steps)
            for k in tf.range(stop):
                one_step(xs[k], ws[k], lrs[k])

        return run

    def mean_loss(self, done: int) -> float:
        """The epoch's mean training loss over its ``done`` steps, skipped steps left out."""
        return float(self.loss_sum.numpy()) / max(1, done - int(self.bad_steps.numpy()))

    def run(self, block: tuple, lrs, stop: int) -> None:
        """The first ``stop`` steps of ``block``, ``(x, w)`` or ``(x, w, y, a)`` (steps first:
        x of shape (steps, rows, dim)), at rates ``lrs``, waiting until they are done."""
        from ..tfsetup import tf

        self._run(tuple(block), lrs, tf.constant(stop))
        self.loss_sum.numpy()   # wait for the device: the clock must see the real time
        self.compiled = True


def _finite(loss, grads):
    """Whether a step's loss and every gradient are finite (a tensor)."""
    from ..tfsetup import tf

    return tf.math.is_finite(loss) & tf.reduce_all(
        tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))


@dataclass
class _Plan:
    """The shape of a run: batch, steps per epoch, the schedule and its length in steps."""

    batch: int
    n_steps: int
    total_steps: int            # the cosine's length (re-planned within a time budget)
    cosine: bool
    max_epochs: int

    @property
    def last_epoch(self) -> int:
        if not self.cosine:
            return self.max_epochs
        return min(self.max_epochs, -(-self.total_steps // self.n_steps))

    def steps_in(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` (the cosine's last epoch may be a part of one)."""
        if not self.cosine:
            return self.n_steps
        return max(0, min(self.n_steps, self.total_steps - epoch * self.n_steps))


@dataclass
class _Clock:
    """Wall time against ``max_time``: the measured cost of an optimizer step and of a
    validation pass, from which a cosine schedule is re-planned to anneal within the budget
    (the steps it cannot afford are cut from its length, not from its end)."""

    start: float
    max_time: float | None
    step_time: float | None = None
    epoch_overhead: float = 0.0     # an epoch's time outside its steps (validation, copies)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over(self) -> bool:
        return self.max_time is not None and self.elapsed() >= self.max_time

    def measured(self, seconds: float, n_steps: int) -> None:
        rate = seconds / max(1, n_steps)
        # smoothed, so that one slow block on a shared machine does not cut the plan short
        self.step_time = rate if self.step_time is None else 0.7 * self.step_time + 0.3 * rate

    def affordable_steps(self, plan: _Plan) -> int | None:
        """Steps that still fit in the budget, each with its share of an epoch's overhead
        (None: no budget, or not measured yet). 2% of the budget is kept in reserve."""
        if self.max_time is None or self.step_time is None:
            return None
        left = 0.98 * self.max_time - self.elapsed() - self.epoch_overhead
        return max(0, int(left / (self.step_time + self.epoch_overhead / plan.n_steps)))


@dataclass
class _Loop:
    """What the loop carries from epoch to epoch."""

    variables: list
    best: list                  # the best weights so far
    last_good: list | None = None
    since_best: int = 0
    since_lr: int = 0
    lr_scale: float = 1.0       # rollbacks halve it; with the cosine it scales the rest

    def __post_init__(self) -> None:
        self.last_good = self.best


def _plan(cfg: TrainConfig, n_train: int, replicas: int = 1) -> _Plan:
    """Batches of at most ``n_train`` rows (shared equally by ``replicas``); the cosine ends
    after about ``cosine_steps`` (rounded to whole epochs)."""
    batch = cfg.rows_per_step(n_train)
    if batch % replicas:
        raise LikeflowError(f"a batch of {batch} rows cannot be shared equally by {replicas} "
                            f"devices: choose a batch size that is a multiple of {replicas}")
    n_steps = n_train // batch
    cosine = cfg.schedule == "cosine"
    epochs = min(cfg.epochs, max(1, round(cfg.cosine_steps / n_steps))) if cosine else cfg.epochs
    return _Plan(batch, n_steps, epochs * n_steps, cosine, cfg.epochs)


def _resumed_lr_scale(cfg: TrainConfig, result: TrainResult, plan: _Plan, *,
                      resumed: bool) -> float:
    """A resumed cosine run continues from the rate it stopped at (rollbacks included)."""
    if not plan.cosine or not resumed:
        return 1.0
    start = len(result.history)
    return min(1.0, result.learning_rate / max(
        _cosine(cfg, start * plan.n_steps, plan.total_steps), cfg.min_learning_rate))


def _block_rates(steps: _Steps, plan: _Plan, loop: _Loop, epoch: int, first: int):
    """The learning rate of the ``_BLOCK`` steps of ``epoch`` from step ``first`` on (the
    cosine's, or the current one)."""
    from ..tfsetup import tf

    cfg, optimizer, n = steps.cfg, steps.optimizer, plan.n_steps
    if plan.cosine:
        lrs = [max(loop.lr_scale * _cosine(cfg, epoch * n + k, plan.total_steps),
                   cfg.min_learning_rate) for k in range(first, first + _BLOCK)]
    else:
        lrs = [float(optimizer.learning_rate.numpy())] * _BLOCK
    return tf.constant(lrs, dtype=optimizer.learning_rate.dtype)


def _run_epoch(steps: _Steps, rows, plan: _Plan, loop: _Loop, epoch: int, seed: int,
               val_loss: Callable[[], float], clock: _Clock,
               partial: Callable[[dict], None] | None = None) -> dict:
    """One seeded pass over the training rows, in blocks of compiled steps; the epoch's
    record. Between blocks: the time limit, the budget's re-plan of the cosine, and every
    :data:`PARTIAL_EVERY` seconds a partial record to ``partial``."""
    t0 = last_said = time.perf_counter()
    optimizer = steps.optimizer
    steps.loss_sum.assign(0.0)
    steps.bad_steps.assign(0)
    blocks = feed(rows, seed=seed, epoch=epoch, batch=plan.batch, steps=plan.steps_in(epoch),
                  block=_BLOCK, dtype=steps.loss_sum.dtype)
    done, time_limit, in_steps = 0, False, 0.0
    while done < plan.steps_in(epoch):
        block = next(blocks)
        stop = min(done + _BLOCK, plan.steps_in(epoch))
        measured = steps.compiled   # the first call compiles: not a step's cost
        t_block = time.perf_counter()
        steps.run(block, _block_rates(steps, plan, loop, epoch, done), stop - done)
        in_steps += time.perf_counter() - t_block
        if measured:
            clock.measured(time.perf_counter() - t_block, stop - done)
        done = stop
        affordable = clock.affordable_steps(plan)
        if affordable is not None and plan.cosine and \
                epoch * plan.n_steps + done + affordable < plan.total_steps:
            plan.total_steps = max(epoch * plan.n_steps + done + 1,
                                   epoch * plan.n_steps + done + affordable)
        if clock.over():
            time_limit = True
            break
        if partial is not None and time.perf_counter() - last_said > PARTIAL_EVERY:
            last_said = time.perf_counter()
            partial({"epoch": epoch, "partial": True, "step": done,
                     "steps": plan.steps_in(epoch), "time": last_said - t0,
                     "train_loss": steps.mean_loss(done),
                     "lr": float(optimizer.learning_rate.numpy())})
    loss = val_loss()
    bad = int(steps.bad_steps.numpy())
    record = {"epoch": epoch, "train_loss": steps.mean_loss(done),
              "val_loss": loss, "lr": float(optimizer.learning_rate.numpy()),
              "bad_steps": bad, "steps": done, "time": time.perf_counter() - t0}
    if "val_residual_std" in getattr(val_loss, "parts", {}):
        record.update(val_loss.parts)
    if time_limit:
        record["time_limit"] = True
    # the validation was traced before training; the first block's compile is in in_steps
    clock.epoch_overhead = max(0.0, record["time"] - in_steps)
    return record


def _judge(record: dict, result: TrainResult, loop: _Loop, plan: _Plan, optimizer,
           cfg: TrainConfig) -> str:
    """After an epoch: roll back (a loss that is not finite), keep a new best, or count an
    epoch without improvement (and, with the plateau schedule, lower the rate). Appends the
    record; returns ``"diverged"`` when the roll-backs are used up."""
    val_loss, lr, epoch = record["val_loss"], record["lr"], record["epoch"]
    if not math.isfinite(val_loss) or record["bad_steps"] > record["steps"] // 2:
        # the weights went somewhere the loss is not finite: back to safety, slower
        result.rollbacks += 1
        restore(loop.variables, loop.last_good)
        loop.lr_scale *= 0.5
        optimizer.learning_rate.assign(max(lr * 0.5, cfg.min_learning_rate))
        record["rolled_back"] = True
        result.history.append(record)
        if result.rollbacks > cfg.max_rollbacks:
            result.stopped = "diverged"
            return "diverged"
        return "rolled_back"
    loop.last_good = snapshot(loop.variables)
    if val_loss < result.best_val_loss - cfg.min_delta:
        result.best_val_loss, result.best_epoch = val_loss, epoch
        loop.best = loop.last_good
        loop.since_best = loop.since_lr = 0
    else:
        loop.since_best += 1
        loop.since_lr += 1
        if not plan.cosine and loop.since_lr >= cfg.lr_patience and lr > cfg.min_learning_rate:
            optimizer.learning_rate.assign(max(lr * cfg.lr_factor, cfg.min_learning_rate))
            loop.since_lr = 0
    result.history.append(record)
    return "improved" if result.best_epoch == epoch else "no_improvement"


def _cosine(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate of the cosine schedule at ``step`` of ``total``."""
    t = min(step / max(total, 1), 1.0)
    return cfg.min_learning_rate + (cfg.learning_rate - cfg.min_learning_rate) * 0.5 * (
        1 + math.cos(math.pi * t))


def _epochs_since_best(result: TrainResult) -> int:
    return len(result.history) - 1 - result.best_epoch if result.history else 0


def make_mean_loss(flow, x: np.ndarray, w: np.ndarray | None, batch: int = 8192, *,
                   y: np.ndarray | None = None, density_weight: float = 0.0):
    """A function returning the weighted mean negative log-likelihood of ``flow`` on ``x``
    (with ``y``, the target's log density at ``x``, and ``density_weight`` > 0: plus that
    weight times the variance of the residual ``log q - y``, as in training).

    Compiled and batched; each call evaluates afresh (no TFP bijector cache across weight
    updates, which eager calls on the same tensor would hit). The function's ``parts`` holds
    the last call's ``val_nll`` and, with ``y``, ``val_residual_std`` (nats).
    """
    from ..tfsetup import tf

    dtype = flow.dtype
    from ..batching import batch_slices
    w = np.ones(len(x)) if w is None else w
    slices = list(batch_slices(len(x), batch))
    xs = [tf.constant(x[rows], dtype=dtype) for rows in slices]
    ws = [tf.constant(w[rows], dtype=dtype) for rows in slices]
    ys = None if y is None else [tf.constant(y[rows], dtype=dtype) for rows in slices]
    total_w = float(sum(float(tf.reduce_sum(wb)) for wb in ws))

    @tf.function(reduce_retracing=True)
    def weighted_sum(xb, wb):
        return -tf.reduce_sum(wb * flow.train_log_prob(xb))

    @tf.function(reduce_retracing=True)
    def weighted_sums(xb, wb, yb):
        lq = flow.train_log_prob(xb)
        r = tf.cast(lq - yb, tf.float64)
        wd = tf.cast(wb, tf.float64)
        return (-tf.reduce_sum(wd * tf.cast(lq, tf.float64)), tf.reduce_sum(wd * r),
                tf.reduce_sum(wd * r * r))

    def mean_loss() -> float:
        if ys is None:
            value = float(sum(float(weighted_sum(xb, wb)) for xb, wb in zip(xs, ws))) / total_w
            mean_loss.parts = {"val_nll": value}
            return value
        sums = np.sum([[float(v) for v in weighted_sums(xb, wb, yb)]
                       for xb, wb, yb in zip(xs, ws, ys)], axis=0) / total_w
        value, mean_r, mean_r2 = sums
        var = max(0.0, mean_r2 - mean_r ** 2)
        mean_loss.parts = {"val_nll": float(value), "val_residual_std": float(np.sqrt(var))}
        return float(value + density_weight * var)

    mean_loss.parts = {}
    return mean_loss
