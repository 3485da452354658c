"""What a fit is asked from outside: a JSON config file of its options, and the names of the
files it writes when none are given (the CLI's ``fit`` shows and uses both; each rule is
written here once).

Example:
    >>> default_output("runs/toy.h5"), default_report("runs/toy.likeflow.h5")
    ('runs/toy.likeflow.h5', 'runs/toy.likeflow-report')
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from ..errors import LikeflowError
from ..flows.config import FlowOptions
from .loop import TrainConfig

#: a config file's aliases (the CLI's short option names)
ALIASES = {"lr": "learning_rate"}


def default_output(samples_path: str | os.PathLike) -> str:
    """samples.h5 -> samples.likeflow.h5 (beside the input)."""
    return os.path.splitext(os.fspath(samples_path))[0] + ".likeflow.h5"


def default_report(surrogate_path: str | os.PathLike) -> str:
    """samples.likeflow.h5 -> samples.likeflow-report (a folder beside the surrogate)."""
    path = os.fspath(surrogate_path)
    return (path[:-3] if path.endswith(".h5") else path) + "-report"


@dataclass
class FitSettings:
    """The options a config file gives: ``flow`` (:class:`FlowOptions` fields), ``train``
    (:class:`~likeflow.fitting.loop.TrainConfig` fields), ``seed`` (None: not given). Only
    what the file names is held, each value checked."""

    flow: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    seed: int | None = None


def read_config(path: str | os.PathLike) -> FitSettings:
    """A fit's options from a JSON object (keys as ``likeflow fit --help`` names them, with
    ``_`` for ``-``; ``lr`` for ``learning_rate``), checked as strictly as the options
    themselves: an unknown key, 2.5 epochs or ``"5"`` layers is an error naming the file and
    the key, never a silent conversion."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            conf = json.load(f)
    except (OSError, ValueError) as e:
        raise LikeflowError(f"{path}: not a JSON config ({e})") from None
    if not isinstance(conf, dict):
        raise LikeflowError(f"{path}: the config must be a JSON object")
    conf = {ALIASES.get(k, k): v for k, v in conf.items()}
    flow_keys = {f.name for f in dataclasses.fields(FlowOptions)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    known = flow_keys | train_keys | {"seed"} | set(ALIASES)
    unknown = sorted(set(conf) - known)
    if unknown:
        raise LikeflowError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    settings = FitSettings({k: v for k, v in conf.items() if k in flow_keys},
                           {k: v for k, v in conf.items() if k in train_keys}, conf.get("seed"))
    try:
        options = FlowOptions.coerce(settings.flow)
        settings.flow = {k: getattr(options, k) for k in settings.flow}   # "off" -> False, ...
        TrainConfig(**settings.train)
        if "seed" in conf and (isinstance(conf["seed"], bool) or
                               not isinstance(conf["seed"], int)):
            raise LikeflowError(f"'seed' must be an integer, not {conf['seed']!r:.40}")
    except LikeflowError as e:
        raise LikeflowError(f"{path}: {e}") from None
    return settings
