"""Progress of long work on a terminal (a tqdm bar) or in a log (one plain line per step).

A bar where a person watches (stderr is a terminal), plain lines where a file or a CI log
records them: a bar's carriage returns make a log unreadable. ``LIKEFLOW_PROGRESS=lines`` forces
lines, ``=bar`` a bar.
"""

from __future__ import annotations

import json
import os
import sys


def duration(seconds: float) -> str:
    """``seconds`` as a person reads them: 42s, 3m07s, 2h05m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def use_bar(stream=None) -> bool:
    """Whether to draw a bar on ``stream`` (stderr by default)."""
    choice = os.environ.get("LIKEFLOW_PROGRESS", "").strip().lower()
    if choice in ("bar", "lines"):
        return choice == "bar"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class EpochProgress:
    """A ``progress`` callback for :func:`likeflow.fit`: each epoch's record as a bar update
    or a line on stderr (losses, learning rate, time per epoch and an estimate of the time
    left, bounded by ``max_time``), and optionally as a JSON line appended to ``log``.

    Use as a context manager (or call :meth:`close`) so the log file and the bar are closed.
    """

    def __init__(self, *, log: str | os.PathLike | None = None, quiet: bool = False,
                 max_time: float | None = None, stream=None):
        from .fileio import check_outputs
        check_outputs([log], inputs=[])
        self.stream = stream or sys.stderr
        self.log = open(log, "a") if log else None
        self.quiet = quiet
        self.max_time = max_time
        self.bar = None
        self._bar = use_bar(self.stream) and not quiet

    def __call__(self, r: dict) -> None:
        if r.get("partial"):
            self._within_epoch(r)
            return
        if self.log:
            self.log.write(json.dumps(r) + "\n")
            self.log.flush()
        if self.quiet:
            return
        done = r["epoch"] + 1
        left = r["elapsed"] / max(1, done) * (r["epochs"] - done)
        if self.max_time is not None:
            left = min(left, max(0.0, self.max_time - r["elapsed"]))
        mark = "*" if r["best_epoch"] == r["epoch"] else " "
        if self._bar:
            self._update_bar(r, done, mark)
            return
        print(f"epoch {done:4d}/{r['epochs']}  train {r['train_loss']:10.4f}  "
              f"val {r['val_loss']:10.4f}{mark} lr {r['lr']:.1e}  {r['time']:5.1f} s  "
              f"<= {duration(left)} left", file=self.stream, flush=True)

    def _within_epoch(self, r: dict) -> None:
        """A long epoch's partial record (a streamed file): the steps done and the time left
        in the epoch (not logged: the log holds whole epochs)."""
        if self.quiet:
            return
        left = r["time"] / max(1, r["step"]) * (r["steps"] - r["step"])
        text = (f"step {r['step']}/{r['steps']}  train {r['train_loss']:.4f}  "
                f"~{duration(left)} left in the epoch")
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        else:   # lines, or a bar not drawn yet (the first epoch)
            print(f"epoch {r['epoch'] + 1:4d}/{r['epochs']}  {text}", file=self.stream,
                  flush=True)

    def _update_bar(self, r: dict, done: int, mark: str) -> None:
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=r["epochs"], initial=done - 1, unit="epoch",
                            file=self.stream, dynamic_ncols=True)
        self.bar.total = r["epochs"]
        self.bar.set_postfix_str(f"train {r['train_loss']:.4f} val {r['val_loss']:.4f}{mark} "
                                 f"lr {r['lr']:.1e}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.log:
            self.log.close()
            self.log = None

    def __enter__(self) -> "EpochProgress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
