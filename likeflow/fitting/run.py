"""Fitting: samples in, a validated surrogate (and its file) out. :func:`fit` and :func:`marginal`.

The orchestration lives here, apart from the artifact (:mod:`likeflow.surrogate.artifact`, its file
format) and the uses (:mod:`likeflow.infer.inference`, :mod:`likeflow.validation.report`), none of
which import
this module. :func:`fit` runs named steps:

1. :func:`~likeflow.data.samples.as_sample_set`: a path, an array or a ``SampleSet``;
2. :func:`plan_seeds`: the one ``seed`` fans out to the split, the subsample of the file, the
   flow's initialisation and permutations, the shuffles and the validation;
3. the split (never trained on: the test part), the flow (new, or the stored one with
   ``resume``), :func:`~likeflow.fitting.loop.train` with checkpoints and Ctrl-C / SIGTERM saves;
4. :func:`finish_training`: the support region and the test log-likelihood;
5. :func:`~likeflow.validation.report.validate_test` on the test part, the report folder;
6. one write of the surrogate file.

Example:
    >>> import numpy as np, likeflow
    >>> x = np.random.default_rng(0).normal(size=(2000, 2))
    >>> sur = likeflow.fit(x, bounds={"x0": (-10, None)}, seed=1, validate=False,
    ...                    flow_config={"layers": 2, "hidden": (16,)},
    ...                    train_config=likeflow.TrainConfig(epochs=2))
    >>> sur.dim, sur.names, sur.training["seed"]
    (2, ['x0', 'x1'], 1)
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import numpy as np

from .._version import __version__
from ..data.samples import ReadOptions, SampleSet, SplitSpec, as_sample_set, mcmc_record, split_of
from ..errors import LikeflowError, ReportError
from ..fileio import check_output_folder, check_outputs
from ..flows.config import FlowConfig, FlowOptions, whitening
from ..interrupts import held, sigterm_as_interrupt
from ..progress import duration
from ..surrogate.artifact import Surrogate
from ..surrogate.loading import load
from .loop import TrainConfig, TrainResult, restore, snapshot, train

#: flow of :func:`marginal` unless told otherwise: small, the marginal has few dimensions
MARGINAL_FLOW = FlowOptions(flow="maf", layers=4, hidden=(64, 64))


@dataclasses.dataclass(frozen=True)
class Seeds:
    """What the one ``seed`` of a fit seeds; :func:`plan_seeds` is the only place it fans out."""

    split: SplitSpec
    read: int       # the seeded subsample of a file (--max-samples)
    flow: int       # the weights' initialisation and random permutations
    shuffle: int    # the order of the training rows in every epoch
    validation: int


def plan_seeds(seed: int, split: SplitSpec | None = None) -> Seeds:
    """Fan ``seed`` out to every random choice of a fit (the same seed through the CLI and the
    API gives the same surrogate, bit for bit)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise LikeflowError(f"seed must be an integer, not {seed!r:.40}")
    seed = int(seed)
    split = dataclasses.replace(split or SplitSpec(), seed=seed)
    return Seeds(split=split, read=seed, flow=seed, shuffle=seed, validation=seed)


def fit(samples, *, out: str | os.PathLike | None = None, seed: int = 0,
        flow_config: FlowOptions | dict | None = None, train_config: TrainConfig | None = None,
        names=None, poi=(), bounds=None, weights=None,
        read_options: ReadOptions | None = None, split: SplitSpec | None = None,
        validate: bool = True, report: str | os.PathLike | None = None,
        resume: bool = False, asimov_partner: str | os.PathLike | None = None,
        clusters: int | str | None = None, stream: bool | None = None, devices=None,
        progress: Callable[[dict], None] | None = None,
        messages: Callable[[str], None] | None = None,
        checkpoint_every: float = 30.0) -> Surrogate:
    """Train a surrogate of ``samples``, validate it on held-out rows and write it once.

    Args:
        samples: a sample file's path, a :class:`SampleSet`, or an ``(N, D)`` array.
        out: the surrogate file to write (none: the surrogate is only returned). During
            training the best weights so far are checkpointed there at most every
            ``checkpoint_every`` seconds; Ctrl-C / SIGTERM leaves the best surrogate on disk.
        seed: seeds everything (:func:`plan_seeds`): same seed, same surrogate.
        flow_config: the new flow's :class:`~likeflow.flows.config.FlowOptions` (``flow``,
            ``layers``, ``hidden``, ``bins``, ``reflect``, ``whiten``, ...), or a dict of some
            of them; None: the defaults. A resumed fit keeps its stored flow (an option given
            with another value is refused).
        train_config: a :class:`~likeflow.fitting.loop.TrainConfig` (default: its defaults).
        names, poi, bounds, weights: with an array: the parameter names, the parameters of
            interest, bounds as ``{"mu": (0, None)}`` or a (D, 2) array (None for no bound),
            and per-row weights.
        read_options: how to read a sample file (:class:`ReadOptions`; its seed is ``seed``).
        split: validation and test fractions (:class:`SplitSpec`; its seed is ``seed``).
        validate: validate on the test part; the summary goes into the file.
        report: a folder for the full validation report (metrics.json, plots, index.html).
        resume: continue the surrogate at ``out`` (same data, same split).
        asimov_partner: a surrogate of the background-only Asimov likelihood, recorded as this
            one's partner (``profile`` then adds CLs limits).
        clusters: a piecewise flow (:mod:`likeflow.surrogate.piecewise`): the training data
        clustered
            into this many k-means clusters (or ``"auto"``: by silhouette), one flow each.
        stream: train from the file without reading its training rows into memory
            (:mod:`likeflow.fitting.stream`; None: only when the file would take more than a
            quarter of the available memory).
        devices: train data-parallel on several devices (:mod:`likeflow.fitting.devices`: an
            integer or ``"all"``; None: one device); the batch is shared between them.
        progress: called with every epoch's record (a dict).
        messages: called with lines worth telling a user (warnings, what is being fitted).

    Returns:
        The :class:`Surrogate`; ``sur.validation_result`` holds the
        :class:`~likeflow.validation.report.ValidationResult` when validated.
    """
    say = messages or (lambda m: None)
    from .devices import parse
    devices = parse(devices)    # a bad value is refused before the data are read
    path = os.fspath(samples) if isinstance(samples, (str, os.PathLike)) else None
    old = _stored_fit(out) if resume else None
    if old is not None:  # a resumed fit keeps its own seed: the same split, the same shuffles
        seed = old.training.get("seed", old.config.seed)
    seeds = plan_seeds(seed, split)
    options = FlowOptions.coerce(flow_config)  # checked before the data are read
    check_outputs([out], inputs=[path, asimov_partner])
    if validate and report is not None:
        check_output_folder(report)
    read_options = dataclasses.replace(read_options or ReadOptions(), seed=seeds.read)
    streamed = _streamed(path, stream, read_options, seeds.split, clusters)
    if streamed is not None:
        s, parts = streamed.parts[0], streamed.parts
        data = dict(_data_record(s, path, read_options, seeds.split, parts), **streamed.record)
        say(f"{path}: {streamed.n} rows, streamed (the {streamed.rows.n} training rows are read "
            f"in shuffled blocks; {parts[1].n} validation and {parts[2].n} test rows held in "
            "memory)")
    else:
        s = as_sample_set(samples, names=names, poi=poi, bounds=bounds, weights=weights,
                          read_options=read_options)
        parts = _split(s, seeds.split, path)
        data = _data_record(s, path, read_options, seeds.split, parts)
    _say_about_input(s, path, say)
    # the batch follows the training rows unless asked for; written in, so the file says it
    tcfg = (train_config or TrainConfig()).for_rows(data["n_train"])
    from .devices import describe, strategy as make_strategy
    strategy = make_strategy(devices)
    if clusters not in (None, 1):
        if old is not None:
            raise LikeflowError("--resume does not continue piecewise fits (--clusters)")
        from ..surrogate.piecewise import clusters as find_clusters
        rec = find_clusters(parts[0].values, clusters, seed=seeds.flow)
        say(f"clusters: {rec['components']} ({rec['criterion']})")
        if rec["components"] > 1:
            sur = _fit_piecewise(s, parts, rec, seeds, options, tcfg,
                                 _training_record(seeds, tcfg, data), progress, say, strategy)
            _save_and_validate(sur, parts[2], seeds, out, validate, report)
            return sur
    if old is not None:
        _check_same_flow(old, flow_config if isinstance(flow_config, dict) else
                         options.given())
        flow, previous, tcfg = _resumed(old, out, data, tcfg, strategy)
    else:
        config = FlowConfig.from_data(parts[0].values, options, names=s.names, poi=s.poi,
                                      bounds=s.bounds, weights=parts[0].weights, seed=seeds.flow,
                                      best_fit=None if s.anchors is None else s.anchors.best_fit)
        _seed_everything(seeds.flow)
        flow, previous = _new_flow(config, parts[0], strategy), None
    c = flow.config
    used = describe(strategy, tcfg.rows_per_step(data["n_train"]))
    where = (", ".join(used["devices"]) + f", batches of {used['global_batch']}"
             if used["replicas"] == 1 else
             f"{used['replicas']} devices ({', '.join(used['devices'])}), batch "
             f"{used['global_batch']} = {used['replicas']} x {used['per_replica_batch']}")
    say(f"{path or '<samples>'}: {data['n']} samples of {s.dim} parameters; fitting {c.flow} "
        f"({c.layers} layers, hidden {list(c.hidden)}) on {where}")
    record = dict(_training_record(seeds, tcfg, data), devices=used)
    if asimov_partner is not None:
        record["asimov_partner"] = _relative_to(asimov_partner, out)
    with sigterm_as_interrupt():
        result = _train(flow, parts, tcfg, seeds, record, out, previous, progress,
                        checkpoint_every, strategy,
                        rows=streamed.rows if streamed is not None else None)
        try:
            sur = finish_training(flow, dict(record, result=result.to_dict()), parts)
        except KeyboardInterrupt:
            # interrupted after training: keep the trained flow (without what was not done;
            # '--resume' or 'validate' completes it)
            if out is not None:
                result.stopped = "interrupted"
                with held():
                    Surrogate(flow, dict(record, result=result.to_dict())).save(out)
            raise
        _save_and_validate(sur, parts[2], seeds, out, validate, report)
    return sur


def _training_record(seeds: Seeds, tcfg: TrainConfig, data: dict) -> dict:
    """The training record a fit starts with (the result and the region are added later)."""
    return {"seed": seeds.flow, "config": tcfg.to_dict(), "data": data,
            "likeflow_version": __version__}


def _say_about_input(s: SampleSet, path: str | None, say) -> None:
    if s.dropped_nonfinite:
        say(f"dropped {s.dropped_nonfinite} rows holding NaN or inf")
    rec = mcmc_record(path) if path else None
    if rec is not None and rec.get("converged") is False:
        say("WARNING: these samples come from MCMC chains that did NOT converge (R-hat "
            f"{rec.get('rhat_max', float('nan')):.4f}); the surrogate can only be as good as "
            "its samples")


def _split(s: SampleSet, spec: SplitSpec, path: str | None):
    """(train, validation, test) parts of ``s``; each must carry weight."""
    rows = split_of(s, spec)
    parts = (s.subset(rows.train), s.subset(rows.validation), s.subset(rows.test))
    if s.anchors is not None:  # anchors held out whole with their mode, as validation sees
        trained, held = s.anchors.split(spec.seed)
        parts = (dataclasses.replace(parts[0], anchors=trained),
                 dataclasses.replace(parts[1], anchors=None),
                 dataclasses.replace(parts[2], anchors=held))
    for part, name in zip(parts, ("training", "validation", "test")):
        if part.weights is not None and not part.weights.sum() > 0:
            raise LikeflowError(f"{path or '<samples>'}: the weights of the {part.n} {name} "
                                "rows are all zero: the weight is on too few rows to split")
    return parts


def _data_record(s: SampleSet, path: str | None, read_options: ReadOptions, spec: SplitSpec,
                 parts) -> dict:
    """What the surrogate file records of its data: enough to rebuild the test rows."""
    opts = read_options.to_dict()
    opts.pop("seed")  # stored once, as the fit's seed
    data = {"file": os.path.abspath(path) if path else None, "fingerprint": s.fingerprint(),
            "n": s.n, "read_options": opts, "split": spec.record(),
            "split_kind": "chain blocks" if s.chain is not None else "random rows",
            "n_train": parts[0].n, "n_validation": parts[1].n, "n_test": parts[2].n}
    if parts[0].anchors is not None:
        data["anchors"] = {"n_train": parts[0].anchors.n, "n_test": parts[2].anchors.n}
    if s.origin is not None and s.origin.file:
        data.update(file_realpath=s.origin.file, origin_n=s.origin.n,
                    origin_options=s.origin.options)
    return data


def _stored_fit(out) -> Surrogate:
    """The surrogate a ``resume`` continues."""
    if out is None or not os.path.exists(out):
        raise LikeflowError(f"--resume: no surrogate at {out} to continue")
    return load(out, backend="tensorflow")  # training continues in TensorFlow


def _check_same_flow(old: Surrogate, given: dict) -> None:
    """A resumed fit continues the stored flow: options ``given`` again with their stored
    values are fine, another value is refused."""
    stored = old.config
    changed = [k for k, v in given.items()
               if k != "reflect" and v is not None and v != "auto" and hasattr(stored, k)
               and tuple(np.atleast_1d(v)) != tuple(np.atleast_1d(getattr(stored, k)))]
    if changed:
        raise LikeflowError(
            "--resume continues the stored fit with its own flow ("
            + ", ".join(f"{k} {getattr(stored, k)}" for k in changed) + "); "
            + ", ".join("--" + k.replace("_", "-") for k in changed)
            + " cannot change it (start a new fit instead)")


def _streamed(path: str | None, stream: bool | None, read_options: ReadOptions,
              spec: SplitSpec, clusters):
    """The file opened for streaming (:func:`likeflow.fitting.stream.open_stream`) if asked for,
    or if ``stream`` is None and the file is too large to read; else None."""
    from .stream import open_stream, should_stream
    if stream is None:
        stream = path is not None and clusters in (None, 1) and should_stream(path, read_options)
    if not stream:
        return None
    if path is None:
        raise LikeflowError("stream: give the samples as a file to stream from")
    if clusters not in (None, 1):
        raise LikeflowError("--stream does not fit piecewise flows (--clusters): they cluster "
                            "the training rows in memory")
    return open_stream(path, read_options, spec)


def _built(config: FlowConfig, strategy):
    """A new flow of ``config``, its variables made under ``strategy`` (mirrored on every
    device) when there is one."""
    from ..flows.tf_flow import build_flow
    if strategy is None:
        return build_flow(config)
    with strategy.scope():
        return build_flow(config)


def _new_flow(config: FlowConfig, train: SampleSet, strategy):
    """A flow of ``config`` to train on ``train``: built, and its whitening matrix (if any)
    set from the same rows its standardisation came from."""
    flow = _built(config, strategy)
    if config.whiten:
        flow.whiten.assign(whitening(train.values, config, train.weights).astype(config.dtype))
    return flow


def _resumed(old: Surrogate, out, data: dict, tcfg: TrainConfig, strategy=None):
    """The stored flow, its training so far and its training config (``epochs`` from
    ``tcfg``) of the fit a ``resume`` continues (rebuilt under ``strategy``, if any)."""
    if old.training.get("data", {}).get("fingerprint") != data["fingerprint"]:
        raise LikeflowError(f"--resume: {out} was trained on other data (or read another "
                            "way); start a new fit instead")
    known = {f.name for f in dataclasses.fields(TrainResult)}
    previous = TrainResult(**{k: v for k, v in old.training.get("result", {}).items()
                              if k in known})
    stored = TrainConfig.from_dict(old.training.get("config", {}))
    flow = old.flow
    if strategy is not None:
        flow = _built(old.config, strategy)
        restore(flow.stored_variables, snapshot(old.flow.stored_variables))
    return flow, previous, dataclasses.replace(stored, epochs=tcfg.epochs)


def _train(flow, parts, tcfg: TrainConfig, seeds: Seeds, record: dict, out, previous,
           progress, checkpoint_every: float, strategy=None, rows=None) -> TrainResult:
    """:func:`train` on the training part (or ``rows``, a streamed file's training rows),
    early-stopping on the validation part, with the best weights checkpointed to ``out``
    every so often."""
    last_save = [time.monotonic()]

    def checkpoint(result: TrainResult) -> None:
        if out is not None and time.monotonic() - last_save[0] > checkpoint_every:
            # the flow holds the current weights; they are the best so far (on_best)
            Surrogate(flow, dict(record, result=result.to_dict())).save(out)
            last_save[0] = time.monotonic()

    tr, va, _ = parts
    return train(flow, tr.values if rows is None else rows, va.values,
                 train_w=tr.weights if rows is None else None, val_w=va.weights,
                 train_y=tr.log_prob, val_y=va.log_prob, anchors=tr.anchors,
                 config=tcfg, seed=seeds.shuffle, progress=progress, on_best=checkpoint,
                 previous=previous, strategy=strategy)


def _fit_piecewise(s: SampleSet, parts, rec: dict, seeds: Seeds, options: FlowOptions, tcfg,
                   record: dict, progress, say, strategy=None) -> Surrogate:
    """One flow per cluster of the training rows (validation rows go to their nearest
    centre), weighted by the clusters' shares of the training weight."""
    from .devices import describe
    from ..surrogate.piecewise import PiecewiseSurrogate, assign
    tr, va, _ = parts
    k_tr, k_va = assign(tr.values, rec), assign(va.values, rec)
    for k in range(rec["components"]):  # every cluster checked before any is trained
        n_tr, n_va = int(np.sum(k_tr == k)), int(np.sum(k_va == k))
        if n_tr < 50 or n_va < 5:
            raise LikeflowError(f"cluster {k + 1} of {rec['components']} holds {n_tr} "
                                f"training and {n_va} validation rows: too few for a flow; "
                                "ask for fewer clusters")
    flows, results, weights = [], [], []
    for k in range(rec["components"]):
        tr_k, va_k = tr.subset(k_tr == k), va.subset(k_va == k)
        config = FlowConfig.from_data(tr_k.values, options, names=s.names, poi=s.poi,
                                      bounds=s.bounds, weights=tr_k.weights, seed=seeds.flow + k)
        _seed_everything(seeds.flow + k)
        flow = _new_flow(config, tr_k, strategy)
        say(f"cluster {k + 1}/{rec['components']}: {tr_k.n} training rows")
        # the density term per cluster (the anchors lie between clusters: none)
        results.append(train(flow, tr_k.values, va_k.values, train_w=tr_k.weights,
                             val_w=va_k.weights, train_y=tr_k.log_prob, val_y=va_k.log_prob,
                             config=tcfg, seed=seeds.shuffle + k,
                             progress=progress, strategy=strategy).to_dict())
        flows.append(flow)
        weights.append(float(tr_k.n if tr_k.weights is None else tr_k.weights.sum()))
    rec = dict(rec, weights=[w / sum(weights) for w in weights])
    training = dict(record, result=results[0], component_results=results,
                    devices=describe(strategy, tcfg.rows_per_step(tr.n)))
    sur = PiecewiseSurrogate([Surrogate(f) for f in flows], rec, training)
    _record_fit(sur, parts)
    return sur


def finish_training(flow, training: dict, parts, support: dict | None = None) -> Surrogate:
    """The trained surrogate with its support region (``support``, default
    :func:`support_of` its training rows and anchors) and test log-likelihood recorded."""
    sur = Surrogate(flow, training)
    _record_fit(sur, parts, support)
    return sur


def _record_fit(sur: Surrogate, parts, support: dict | None = None) -> None:
    """The training region and the test log-likelihood, into ``sur.training``."""
    tr, _, te = parts
    training = sur.training
    training["support"] = support if support is not None else support_of(
        sur, tr.values, None if tr.anchors is None else tr.anchors.values)
    training["test_log_prob"] = float(np.average(sur.log_prob(te.values), weights=te.weights))
    if te.log_prob is not None:
        training["test_log_prob_target"] = float(np.average(te.log_prob, weights=te.weights))


def _save_and_validate(sur: Surrogate, test: SampleSet, seeds: Seeds, out, validate: bool,
                       report) -> None:
    """Save the trained surrogate before anything else can fail, then validate it, save it
    again with its validation record (an atomic replace), and write the report last.

    An interrupt or an error in validation leaves the trained surrogate in ``out``; a report
    that cannot be written (a full disk) is a :class:`~likeflow.errors.ReportError` that
    carries the validated surrogate, saved. A signal during the first save is raised after
    it (a SIGTERM that landed there lost the fit: seen in CI)."""
    if out is not None:
        with held():
            sur.save(out)
    if not validate:
        return
    from ..validation.report import validate_test
    result = validate_test(sur, test, seed=seeds.validation)
    sur.validation = result.summary()
    sur.validation_result = result
    if out is not None:
        sur.save(out)
    if report is not None:
        try:
            result.write(report, training=sur.training)
        except ReportError as e:
            saved = f"; the surrogate is saved in {out}" if out is not None else ""
            raise ReportError(e.path, e.problem + saved, surrogate=sur) from None


def support_of(surrogate: Surrogate, train_x: np.ndarray,
               anchors: np.ndarray | None = None) -> dict:
    """The region the training points cover: their range per parameter and the largest squared
    latent radius among them (points further out in the base space are extrapolation).

    ``anchors``: the points the flow was trained at with their exact log densities (the exact
    conditional modes along a POI, and a refinement's, out to its q): part of the training
    data. A background-only Asimov likelihood's +2 sigma expected limit is set where its q is
    about 13.4, past its samples when the signal is strong (RegionC 1300_205_60 x40: samples of
    mu_SIG up to 4.45, the limit at 4.71), but not past a refinement's anchors."""
    rows = len(train_x)
    if anchors is not None and len(anchors):
        train_x = np.concatenate([train_x, anchors])
    z = surrogate.to_latent(surrogate.unfold(train_x, seed=0))
    r2 = np.sum(z ** 2, axis=1)
    r2 = r2[np.isfinite(r2)]
    lo, hi = train_x.min(axis=0), train_x.max(axis=0)
    # a bound the data reach (within a thousandth of the data's spread) is in the region: the
    # density there is held or folded, not extrapolated
    b = surrogate.bounds
    near = 1e-3 * (hi - lo)
    lo = np.where(np.isfinite(b[:, 0]) & (lo - b[:, 0] <= near), b[:, 0], lo)
    hi = np.where(np.isfinite(b[:, 1]) & (b[:, 1] - hi <= near), b[:, 1], hi)
    return {"lo": lo.tolist(), "hi": hi.tolist(),
            "latent_r2_max": float(r2.max()) if len(r2) else None,
            "n": int(rows)}


def fit_summary(sur: Surrogate) -> tuple[list[str], list[str]]:
    """What a finished fit has to say: lines of results, and lines of warnings (a verdict
    other than PASS, an overfitting hint, an interrupted fit)."""
    res = sur.training["result"]
    out = [f"stopped: {res['stopped']} after {len(res['history'])} epochs "
           f"({duration(res['elapsed'])}); best epoch {res['best_epoch'] + 1}, validation loss "
           f"{res['best_val_loss']:.4f}"]
    if "test_log_prob" in sur.training:
        line = f"test log-likelihood per sample: surrogate {sur.training['test_log_prob']:.4f}"
        if "test_log_prob_target" in sur.training:
            line += (f" (target density, unnormalised: "
                     f"{sur.training['test_log_prob_target']:.4f})")
        out.append(line)
    warn = []
    result = sur.validation_result
    if result is not None:
        verdict, _ = result.verdict()
        out.append(result.verdict_line())
        if verdict != "PASS":
            warn.append(f"the surrogate did not PASS validation ({verdict}): read the reasons "
                        "above and the report before using it")
            hint = overfitting_hint(sur.training)
            if hint:
                warn.append(hint)
    if res["stopped"] == "interrupted":
        warn.append("interrupted: the best surrogate so far is saved; continue with --resume")
    return out, warn


def overfitting_hint(training: dict) -> str | None:
    """A line of advice when the validation loss stopped improving in the first half of
    training while the training loss kept falling (measured on RegionB: best epoch 3 of 8 at
    the default learning rate, WARN; with --lr 1e-3 the best epoch was the last, PASS)."""
    result = training.get("result", {})
    hist, best = result.get("history", []), result.get("best_epoch", -1)
    if len(hist) < 4 or best < 0 or best + 1 > len(hist) // 2:
        return None
    if not hist[-1]["train_loss"] < hist[best]["train_loss"] - 0.02:
        return None
    return (f"the validation loss stopped improving at epoch {best + 1} of {len(hist)} while "
            "the training loss kept falling (overfitting): a refit with a lower learning rate "
            "(--lr 1e-3) or with more samples may PASS")


def marginal(surrogate: Surrogate, names, *, n: int = 200_000, seed: int = 0,
             flow_config: FlowOptions | dict | None = None,
             train_config: TrainConfig | None = None, out: str | os.PathLike | None = None,
             progress: Callable[[dict], None] | None = None) -> Surrogate:
    """A surrogate of the marginal density of ``names``: a small flow fitted to samples of them.

    The nuisance-free likelihood of the margarine papers: draw ``n`` samples of the full
    surrogate, keep the columns ``names``, and fit a new flow (default :data:`MARGINAL_FLOW`)
    with the same bounds. The result is a :class:`Surrogate` of its own (written to ``out``
    when given), saved and loaded like any other.
    """
    names = list(names)
    if not names:
        raise LikeflowError("marginal: name at least one parameter")
    dup = sorted({p for p in names if names.count(p) > 1})
    if dup:
        raise LikeflowError(f"marginal: {', '.join(dup)} named twice")
    unknown = [p for p in names if p not in surrogate.names]
    if unknown:
        raise LikeflowError(f"marginal: unknown parameters {unknown}; the parameters are "
                            f"{', '.join(surrogate.names[:10])}...")
    check_outputs([out], inputs=[surrogate.path])
    cols = [surrogate.names.index(p) for p in names]
    x = surrogate.sample(n, seed=seed)[:, cols]
    s = SampleSet(x, names=names, poi=[p for p in surrogate.poi if p in names],
                  bounds=surrogate.bounds[cols])
    options = flow_config if isinstance(flow_config, FlowOptions) else \
        FlowOptions.coerce({**MARGINAL_FLOW.given(), **(flow_config or {})})
    sur = fit(s, flow_config=options, seed=seed,
              train_config=train_config, validate=False, progress=progress)
    sur.training["marginal_of"] = {"parameters": names, "n_samples": n,
                                   "source": surrogate.path}
    if out is not None:
        sur.save(out)
    return sur


def _relative_to(partner, out) -> str:
    """The partner's path as recorded: relative to the surrogate's folder (files move
    together), absolute when there is no output file."""
    partner = os.path.abspath(partner)
    return os.path.relpath(partner, os.path.dirname(os.path.abspath(out))) if out else partner


def _seed_everything(seed: int) -> None:
    from ..tfsetup import tf_keras
    tf_keras.utils.set_random_seed(seed)


#: refinement (:func:`refine`): rounds of profile, exact evaluation and training
REFINE_ROUNDS = 2
#: epochs per refinement round, and their learning rate (a tenth of a fit's: the flow is near
#: its optimum)
REFINE_EPOCHS = 2
REFINE_LEARNING_RATE = 5e-4


#: how a refinement round is scored against the exact likelihood (:func:`refine`)
REFINE_SCORES = {
    # the largest |q - q_exact| on the grid: the profile check's own figure, where an observed
    # surrogate's q~ and CLs observed limits are set (q about 2.7 to 4)
    "profile": "the profile off by up to {:.3f} in q",
    # the largest relative error of a limit set where the exact q reaches that level on the
    # grid, |dq| / 2 max(q, 1) (sqrt(q) is about linear in the POI, so a limit at q moves by
    # dq / 2q): an Asimov partner's expected band is set from q 1.1 (-2 sigma) to 13.4 (+2
    # sigma), and an error of 0.06 in q moves the first by 3% as much as 0.8 moves the last
    "limits": "a limit set on the profile off by up to {:.1%}",
    # the expected CLs band itself (an Asimov partner's, :func:`likeflow.infer.cls.band_error`):
    # what the partner is for, measured where the band's limits are, not on the grid
    "band": "the expected band off by up to {:.1%}",
}


def refine(path, samples, target, *, rounds: int = REFINE_ROUNDS, epochs: int = REFINE_EPOCHS,
           learning_rate: float = REFINE_LEARNING_RATE, q_max: float | None = None,
           score: str = "profile", exact_band=None, density_weight: float | None = None,
           report=None,
           messages: Callable[[str], None] | None = None):
    """Refine the surrogate at ``path`` (fitted to ``samples``, a sample file with anchors)
    against ``target``, the exact likelihood it replaces; the file is rewritten with the best
    round's weights, validated again on its test rows as a fit is (its report into ``report``
    when given), and returned.

    A profile is decided at the surrogate's conditional maxima along the POI, and a flow fitted to
    samples (even with the file's anchors at the *exact* modes) has maxima of its own a few tenths
    of a nat too high: on RegionC 1300_1295_60 the observed surrogate's profile was off by 0.17 in
    q. Anchors at the exact modes cannot know where the next fit's maxima will be; a refit from
    scratch with anchors at one fit's maxima grew new ones elsewhere (docs/benchmarks.md, session
    15). With the exact likelihood at hand (``likeflow fit WS.json``), :func:`refine` instead
    continues the fitted flow from its own weights, a few rounds of:

    1. profile the surrogate on the POI values of its training anchors' modes (out to the exact
       q of :data:`likeflow.data.anchors.ANCHOR_Q_MAX`), continued with the same spacing out to
       the exact q ``q_max`` where that is farther: its own conditional maxima;
    2. evaluate the exact log density there and half-way to the exact mode of the same POI value,
       and add these points to the training anchors;
    3. train :data:`REFINE_EPOCHS` epochs at a small learning rate (the density term holds ``log q -
       log p`` at every anchor to the batch's mean).

    Each round is scored by the largest difference of the surrogate's profile from the exact one
    on that grid (``score``: ``"profile"``, in q; ``"limits"``, as the relative error of a limit
    set there) or by its expected CLs band against the exact one (``"band"``, for an Asimov
    partner; :data:`REFINE_SCORES`), and the best round is kept, the fit as it came among
    them: by its score, a refinement never leaves the surrogate worse than it found it. The rounds and their
    scores go into the training record (``refinement``).

    Example:
        >>> from likeflow.targets.likelihoods.pyhf_target import PyhfTarget             # doctest: +SKIP
        >>> sur = refine("obs.likeflow.h5", "obs.samples.h5",                    # doctest: +SKIP
        ...              PyhfTarget("ws.json", patch="patch.json"))
        >>> sur.training["refinement"]["scores"]                                 # doctest: +SKIP
        [0.142, 0.130, 0.130]

    ``density_weight`` is the density term's weight in the rounds (default a fit's,
    :class:`~likeflow.fitting.loop.TrainConfig`'s): the term is quadratic in the residual, so
    at a fit's weight it barely moves errors of a few hundredths of a nat, which still move an
    expected limit set at q ~ 1 by 3-5% (an Asimov partner's -2 sigma;
    :data:`likeflow.fitting.workspace.REFINE_DENSITY_WEIGHT`).

    ``exact_band`` is the target's expected CLs band (``cls_limits(target, target,
    poi).expected``) for ``score="band"`` when the caller has it: computed here otherwise.

    ``q_max`` (default the anchors' own :data:`~likeflow.data.anchors.ANCHOR_Q_MAX`) reaches past
    the anchors without new samples: an Asimov partner's +2 sigma expected CLs limit is set where
    its q is about 13.4, where anchors fitted from scratch could not be held (RegionB
    900_850_60 out to q 16: FAIL) but a refinement of the fitted flow can
    (:data:`likeflow.fitting.workspace.PARTNER_Q_MAX`).

    Raises:
        LikeflowError: the sample file is not the one the surrogate was fitted to, or has no
            anchors, or the surrogate names no POI.
    """
    from ..data.anchors import ANCHOR_Q_MAX, SEGMENT, Anchors
    from ..infer.cls import band_error, cls_limits
    from ..infer.inference import as_density, scan

    if score not in REFINE_SCORES:
        raise LikeflowError(f"refine: score must be one of {', '.join(REFINE_SCORES)}, not "
                            f"{score!r}")
    say = messages or (lambda m: None)
    sur = load(path, backend="tensorflow")
    if not sur.poi:
        raise LikeflowError(f"{path}: refining against the exact likelihood needs a POI")
    seeds = plan_seeds(sur.training.get("seed", 0))
    s = as_sample_set(samples, read_options=ReadOptions(seed=seeds.read))
    if s.fingerprint() != sur.training.get("data", {}).get("fingerprint"):
        raise LikeflowError(f"{path} was not fitted to {samples}: cannot refine it there")
    parts = _split(s, seeds.split, samples)
    tr, va, _ = parts
    if tr.anchors is None or not tr.anchors.modes().n:
        raise LikeflowError(f"{samples} has no anchors: nothing says where the exact modes are")
    i = sur.names.index(sur.poi[0])
    modes = tr.anchors.modes()
    grid = np.unique(modes.values[:, i])
    q_max = ANCHOR_Q_MAX if q_max is None else float(q_max)
    if q_max > ANCHOR_Q_MAX:
        grid = _beyond_anchors(grid, sur.bounds[i], q_max,
                               lambda v: scan(target, sur.poi[0], values=v).q)
    exact = scan(target, sur.poi[0], values=grid)
    inside = exact.q < q_max + 1
    grid, q_exact, exact_modes = grid[inside], exact.q[inside], exact.nuisances[inside]

    if score == "band" and exact_band is None:
        exact_band = cls_limits(target, target, sur.poi[0]).expected

    def scored(s_, anchors) -> tuple[float, np.ndarray, dict]:
        # the support the file keeps if this round is kept (the training rows, the anchors
        # trained at so far, the grid's ends along the POI: the rounds train out there), for
        # the round's weights: a score is what the saved surrogate gives
        sup = support_of(s_, tr.values, anchors.values)
        sup["lo"][i] = float(min(sup["lo"][i], grid[0]))
        sup["hi"][i] = float(max(sup["hi"][i], grid[-1]))
        s_.training["support"] = sup
        # one set of candidate draws for the profile and the band, drawn with the fit's seed
        # as the partner choice's band_error draws them: the kept round's score is its band
        dens = as_density(s_, seed=seeds.flow)
        prof = scan(dens, s_.poi[0], values=grid)
        if score == "band":
            return band_error(dens, exact_band, s_.poi[0]), prof.nuisances, sup
        dq = np.abs(prof.q - q_exact)
        if score == "limits":
            dq = dq / (2 * np.maximum(q_exact, 1.0))
        return float(np.max(dq)), prof.nuisances, sup

    fit_defaults = TrainConfig()
    anchors, steps = tr.anchors, tr.n // fit_defaults.rows_per_step(tr.n)
    cfg_weight = fit_defaults.density_weight if density_weight is None else float(density_weight)
    first, own, sup = scored(sur, anchors)
    scores, best = [first], (first, snapshot(sur.flow.trainable_variables), 0, sup)
    say(f"refining against the exact likelihood on {len(grid)} POI values: "
        + REFINE_SCORES[score].format(first))
    for r in range(1, rounds + 1):
        pts = np.concatenate([own, 0.5 * (own + exact_modes)])
        lp = target.evaluate(pts)["log_prob"]
        ok = np.isfinite(lp)
        anchors = Anchors(np.concatenate([anchors.values, pts[ok]]),
                          np.concatenate([anchors.log_prob, lp[ok]]),
                          np.concatenate([anchors.kind, np.full(int(ok.sum()), SEGMENT)]))
        cfg = TrainConfig(learning_rate=learning_rate, cosine_steps=epochs * steps,
                          epochs=epochs, patience=epochs + 1, density_weight=cfg_weight)
        # the last epoch's weights: the validation samples do not see the anchors, the score
        # below judges the round
        train(sur.flow, tr.values, va.values, train_w=tr.weights, val_w=va.weights,
              train_y=tr.log_prob, val_y=va.log_prob, anchors=anchors, config=cfg,
              seed=seeds.shuffle + r, keep_best=False)
        value, own, sup = scored(sur, anchors)
        scores.append(value)
        say(f"refinement round {r}/{rounds}: " + REFINE_SCORES[score].format(value))
        if value < best[0]:
            best = (value, snapshot(sur.flow.trainable_variables), r, sup)
    restore(sur.flow.trainable_variables, best[1])
    training = dict(sur.training, refinement={
        "rounds": rounds, "epochs": epochs, "learning_rate": learning_rate,
        "density_weight": cfg_weight,
        "poi_values": len(grid), "q_max": q_max, "score": score,
        "scores": [v if np.isfinite(v) else None for v in scores], "kept": best[2],
        "anchors_added": int(anchors.n - tr.anchors.n)})
    out = finish_training(sur.flow, training, parts, support=best[3])
    say(f"refinement: round {best[2]} kept: {REFINE_SCORES[score].format(best[0])} (as fitted "
        f"{first:.3g})")
    _save_and_validate(out, parts[2], seeds, path, True, report)
    return out


def _beyond_anchors(grid: np.ndarray, bounds, q_max: float, exact_q) -> np.ndarray:
    """The anchors' POI values ``grid``, continued with their spacing on each open side out to
    where the exact q (``exact_q(values) -> q``) reaches ``q_max``: sqrt(q) grows about
    linearly in the POI, so the end is extrapolated from the last two values and the exact q
    of the added values decides which are kept (one exact scan)."""
    if len(grid) < 3:
        return grid
    ends = exact_q(grid[[0, 1, -2, -1]])
    lo, hi = bounds
    added = []
    for (a, b), (qa, qb) in (((grid[-2], grid[-1]), ends[2:]), ((grid[1], grid[0]), ends[1::-1])):
        slope = (np.sqrt(max(qb, 0.0)) - np.sqrt(max(qa, 0.0))) / abs(b - a)
        if qb >= q_max or slope <= 0 or not np.isfinite(slope):
            continue  # this side is anchored far enough, or at its bound, or flat
        reach = (np.sqrt(q_max) - np.sqrt(max(qb, 0.0))) / slope * 1.2   # 20% to spare
        more = b + (b - a) * np.arange(1, min(int(np.ceil(reach / abs(b - a))), 24) + 1)
        more = more[(more > lo) & (more < hi)]
        if len(more):
            q = exact_q(more)
            # out to the first value past q_max (a value just past it still shapes the limit)
            past = np.flatnonzero(q >= q_max)
            added.append(more[: past[0] + 1] if len(past) else more)
    return np.unique(np.concatenate([grid, *added])) if added else grid
