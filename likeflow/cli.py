"""The ``likeflow`` command line: a thin layer over the Python API.

Each command parses its options, calls the API and prints. Bad input (a
:class:`~likeflow.errors.LikeflowError`) prints one line and exits with code 2; an unexpected
fault prints one line and exits with code 1 (``likeflow --debug ...`` shows the traceback).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
import traceback

import click
import numpy as np

from ._version import __version__
from .errors import LikeflowError
from .fileio import check_output_folder, check_outputs, write_text
from .interrupts import sigterm_as_interrupt
from .samples import ReadOptions, SampleSet, mcmc_record, read_samples


class _Group(click.Group):
    """A click group that turns exceptions into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context):
        try:
            with sigterm_as_interrupt():  # a killed command ends like Ctrl-C: exit 130
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except LikeflowError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"likeflow: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("likeflow: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - the last line of defence, by design
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
                ctx.exit(1)
            msg = (str(e).strip().splitlines() or [""])[0]
            click.echo(f"likeflow: unexpected error: {type(e).__name__}: {msg} "
                       "(run 'likeflow --debug ...' for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="likeflow")
@click.option("--debug", is_flag=True, help="Show the full traceback of any error.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Normalizing-flow surrogates of likelihoods known only as samples.

    \b
    A typical session:
      likeflow info samples.h5                       what is in a sample file
      likeflow fit samples.h5                        train, write samples.likeflow.h5 + report
      likeflow validate samples.likeflow.h5 samples.h5
      likeflow sample samples.likeflow.h5 -n 1000000 -o fresh.h5
      likeflow profile samples.likeflow.h5 --poi mu  profile likelihood, upper limit

    Sample files are HDF5: a 'samples' (N, D) dataset with optional 'log_prob', names, POIs and
    bounds as attributes; DNNLikelihood-style files (--dataset data/X) and emcee backends
    (mcmc/chain) are read too. Run 'likeflow COMMAND --help' for each command.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def read_options(func):
    """The options that say how to read a sample file, gathered into ``read_opts``."""

    @click.option("--dataset", default=None, metavar="NAME",
                  help="Read this 2-D dataset as the samples (e.g. data/X), or the chain of an "
                       "emcee backend.")
    @click.option("--log-prob-dataset", default=None, metavar="NAME",
                  help="Dataset of the target log density at each sample (e.g. data/Y).")
    @click.option("--layout", type=click.Choice(["auto", "likeflow", "array", "emcee"]),
                  default="auto", show_default=True,
                  help="File layout; 'auto' recognises likeflow, DNNLikelihood and emcee files.")
    @click.option("--burn", type=click.IntRange(min=0), default=0, show_default=True,
                  help="emcee: steps discarded at the start of every walker.")
    @click.option("--thin", type=click.IntRange(min=1), default=1, show_default=True,
                  help="emcee: keep every THIN-th step.")
    @click.option("--max-samples", type=click.IntRange(min=1), default=None,
                  help="Read a seeded random subsample of at most this many rows (streams the "
                       "file: it need not fit in memory).")
    @click.option("--drop-nonfinite", is_flag=True,
                  help="Drop rows holding NaN or inf instead of refusing the file.")
    @functools.wraps(func)
    def wrapper(*args, dataset, log_prob_dataset, layout, burn, thin, max_samples,
                drop_nonfinite, **kwargs):
        kwargs["read_opts"] = ReadOptions(layout=layout, dataset=dataset,
                                          log_prob_dataset=log_prob_dataset, burn=burn,
                                          thin=thin, max_samples=max_samples,
                                          drop_nonfinite=drop_nonfinite)
        return func(*args, **kwargs)

    return wrapper


def _echo_dropped(s) -> None:
    if s.dropped_nonfinite:
        click.echo(f"dropped {s.dropped_nonfinite} rows holding NaN or inf", err=True)


def _mcmc_line(rec: dict) -> str:
    """One line on how a sample file was sampled and whether the chains converged."""
    ok = rec.get("converged")
    state = "converged" if ok else "NOT CONVERGED" if ok is False else "convergence unknown"
    parts = [f"MCMC: {state}", f"kernel {rec.get('kernel', '?')}"]
    if "chains" in rec:
        parts.append(f"{rec['chains']} chains x {rec.get('draws_per_chain', '?')} draws "
                     f"(thin {rec.get('thin', 1)}, warm-up {rec.get('warmup', '?')})")
    if "rhat_max" in rec:
        parts.append(f"R-hat max {rec['rhat_max']:.4f} ({rec.get('rhat_worst_parameter', '')})")
    if "ess_min" in rec:
        parts.append(f"ESS min {rec['ess_min']:.0f} ({rec.get('ess_min_parameter', '')})")
    if "accept_rate" in rec:
        parts.append(f"acceptance {rec['accept_rate']:.2f}")
    if "step_size" in rec:
        parts.append(f"step size {rec['step_size']:.3g}")
    return ", ".join(parts)


def _fmt_bound(b) -> str:
    return "-" if b is None else f"{b:.4g}"


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@read_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(file: str, read_opts: ReadOptions, as_json: bool) -> None:
    """What is in a sample FILE: N, D, names, POIs, bounds and per-parameter statistics.

    The file is checked as 'fit' would check it (NaN rows, constant columns, bounds, ...), so a
    clean 'info' means the file is ready to fit.
    """
    s = read_samples(file, read_opts)
    _echo_dropped(s)
    summary = s.summary()
    summary["file"] = file
    if as_json:
        summary["mcmc"] = mcmc_record(file)
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(f"{file}: {summary['n']} samples of {summary['dim']} parameters")
    click.echo(f"POI: {', '.join(summary['poi']) or '(none)'}")
    click.echo(f"datasets: samples{''.join(', ' + d for d in summary['datasets'])}")
    rec = mcmc_record(file)
    if rec is not None:
        click.echo(_mcmc_line(rec))
    width = max(9, max(len(p["name"]) for p in summary["parameters"]))
    click.echo(f"{'parameter':<{width}}  {'mean':>11} {'std':>11} {'min':>11} {'max':>11}  bounds")
    for p in summary["parameters"]:
        star = "*" if p["poi"] else " "
        lo, hi = p["bounds"]
        click.echo(f"{p['name']:<{width}}{star} {p['mean']:11.4g} {p['std']:11.4g} "
                   f"{p['min']:11.4g} {p['max']:11.4g}  [{_fmt_bound(lo)}, {_fmt_bound(hi)}]")



# --- fit, sample, eval ------------------------------------------------------------------------

FLOW_OPTIONS = ("flow", "layers", "hidden", "bins", "spline_range", "permutation", "activation",
                "dtype", "reflect")
TRAIN_OPTIONS = ("schedule", "cosine_steps", "epochs", "batch_size", "learning_rate", "patience",
                 "max_time")


def default_output(samples_path: str) -> str:
    """samples.h5 -> samples.likeflow.h5 (beside the input)."""
    root, ext = os.path.splitext(samples_path)
    return root + ".likeflow.h5"


def default_report(surrogate_path: str) -> str:
    """samples.likeflow.h5 -> samples.likeflow-report/ (beside the surrogate)."""
    root = surrogate_path[:-3] if surrogate_path.endswith(".h5") else surrogate_path
    return root + "-report"


class EpochPrinter:
    """One line per epoch on stderr, with the time per epoch and an estimate of the time left."""

    def __init__(self, log_path: str | None, quiet: bool):
        self.log = open(log_path, "a") if log_path else None
        self.quiet = quiet

    def __call__(self, r: dict) -> None:
        if self.log:
            self.log.write(json.dumps(r) + "\n")
            self.log.flush()
        if self.quiet:
            return
        done = r["epoch"] + 1
        per_epoch = r["elapsed"] / max(1, done)
        left = per_epoch * (r["epochs"] - done)
        mark = "*" if r["best_epoch"] == r["epoch"] else " "
        click.echo(f"epoch {done:4d}/{r['epochs']}  train {r['train_loss']:10.4f}  "
                   f"val {r['val_loss']:10.4f}{mark} lr {r['lr']:.1e}  {r['time']:5.1f} s  "
                   f"<= {_duration(left)} left", err=True)

    def close(self) -> None:
        if self.log:
            self.log.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _parse_hidden(ctx, param, value):
    if value is None:
        return None
    try:
        units = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give units per hidden layer, e.g. 128,128") from None
    if not units or min(units) < 1:
        raise click.BadParameter("give positive units per hidden layer, e.g. 128,128")
    return units


@cli.command()
@click.argument("samples", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Surrogate file to write [default: SAMPLES with .likeflow.h5].")
@click.option("--flow", type=click.Choice(["maf", "realnvp", "ansf", "cnsf"]), default="maf",
              show_default=True,
              help="maf: masked autoregressive (fast density); realnvp: affine coupling (fast "
                   "sampling); ansf/cnsf: autoregressive/coupling neural splines (most flexible).")
@click.option("--layers", type=click.IntRange(min=1), default=5, show_default=True,
              help="Number of flow layers.")
@click.option("--hidden", callback=_parse_hidden, default="64,64", show_default=True,
              help="Hidden units per layer of each conditioner network.")
@click.option("--bins", type=click.IntRange(min=2), default=8, show_default=True,
              help="Spline bins (ansf, cnsf).")
@click.option("--spline-range", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="The splines act on [-B, B] (standardised units).")
@click.option("--permutation", type=click.Choice(["reverse", "random", "rotate"]),
              default="reverse", show_default=True, help="Permutation between layers.")
@click.option("--activation", type=click.Choice(["relu", "tanh", "elu", "gelu", "silu"]),
              default="relu", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True)
@click.option("--reflect", type=click.Choice(["auto", "none"]), default="auto",
              show_default=True,
              help="Parameters whose samples pile up at a bound (a signal strength with its "
                   "best fit at 0): auto models them mirrored across the bound and folds back, "
                   "so the density at the bound is finite and right; none maps every bound "
                   "with a sigmoid/softplus.")
@click.option("--asimov-partner", type=click.Path(dir_okay=False), default=None,
              help="Record this surrogate of the background-only Asimov likelihood as the "
                   "partner of the one being fitted: 'likeflow profile' then adds CLs limits.")
@click.option("--schedule", type=click.Choice(["cosine", "plateau"]), default="cosine",
              show_default=True,
              help="Learning rate: a cosine decay over --cosine-steps optimizer steps, or "
                   "halving whenever the validation loss stalls (plateau, until --patience).")
@click.option("--cosine-steps", type=click.IntRange(min=1), default=1200, show_default=True,
              help="Length of the cosine decay in optimizer steps (rounded to whole "
                   "epochs): 3 epochs of 400k samples at batch 1024, 172 of 8k.")
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True,
              help="Most epochs; the schedule or early stopping usually ends sooner.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=5e-3, show_default=True, help="Initial (peak) learning rate (Adam).")
@click.option("--patience", type=click.IntRange(min=1), default=6, show_default=True,
              help="Epochs without validation improvement before stopping.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop training after this many seconds.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the split, the weights and the shuffling: same seed, same surrogate.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON file of any of the options above (keys as in --help, "
                                 "with _ for -); options given on the command line win.")
@click.option("--resume", is_flag=True,
              help="Continue the fit saved in OUTPUT (after Ctrl-C, SIGTERM or --max-time).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Append every epoch's record as a JSON line to this file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--validate/--no-validate", "run_validation", default=True, show_default=True,
              help="Validate on the test split at the end; the summary goes into the surrogate "
                   "file and the full report into --report.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the validation report [default: OUTPUT with -report].")
@read_options
@click.pass_context
def fit(ctx, samples, output, config_file, resume, log_path, quiet, seed, run_validation,
        report_dir, asimov_partner, read_opts, **opts):
    """Train a normalizing-flow surrogate of the SAMPLES file.

    The samples are split (seeded) into 80% training, 10% validation (early stopping) and 10%
    test data that training never sees. The surrogate file records the split, so 'likeflow
    validate' checks it on the test rows. Ctrl-C or SIGTERM stops training and saves the best
    surrogate so far; '--resume' continues it.

    \b
    Examples:
      likeflow fit samples.h5
      likeflow fit samples.h5 --flow ansf --layers 6 --hidden 256,256 -o ansf.likeflow.h5
      likeflow fit chain.h5 --layout emcee --burn 1000 --thin 10 --max-samples 500000
    """
    from .surrogate import SplitSpec, fit as fit_api
    from .training import TrainConfig

    if config_file:
        opts, seed = _merge_config_file(ctx, config_file, opts, seed)
    flow_cfg = {k: opts[k] for k in FLOW_OPTIONS}
    train_cfg = TrainConfig(**{k: opts[k] for k in TRAIN_OPTIONS}, seed=seed)
    out = output or default_output(samples)
    folder = report_dir or default_report(out)
    check_outputs([out, log_path], inputs=[samples, config_file, asimov_partner])
    if run_validation:
        check_output_folder(folder)
    if resume:
        from click.core import ParameterSource
        stored = _stored_flow(out)
        # options given again with their stored values are fine; another value is refused
        changed = [k for k in FLOW_OPTIONS
                   if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE
                   and k in stored and tuple(np.atleast_1d(opts[k])) !=
                   tuple(np.atleast_1d(stored[k]))]
        if changed:
            raise click.UsageError(
                "--resume continues the stored fit with its own flow ("
                + ", ".join(f"{k} {stored[k]}" for k in changed) + "); "
                + ", ".join("--" + k.replace("_", "-") for k in changed)
                + " cannot change it (start a new fit instead)")
        flow_cfg = stored
    device = tf_devices()
    s = read_samples(samples, dataclasses.replace(read_opts, seed=seed))
    _echo_dropped(s)
    rec = mcmc_record(samples)
    if rec is not None and rec.get("converged") is False:
        click.echo("likeflow: WARNING: these samples come from MCMC chains that did NOT converge "
                   f"({_mcmc_line(rec)}); the surrogate can only be as good as its samples",
                   err=True)
    click.echo(f"{samples}: {s.n} samples of {s.dim} parameters; fitting {flow_cfg['flow']} "
               f"({flow_cfg['layers']} layers, hidden {list(flow_cfg['hidden'])}) on {device}", err=True)
    printer = EpochPrinter(log_path, quiet)
    try:
        sur = fit_api(s, flow_config=None if resume else flow_cfg, train_config=train_cfg,
                      split=SplitSpec(seed=seed), read_options=dataclasses.replace(read_opts,
                                                                                  seed=seed),
                      out=out, resume=resume, progress=printer)
    except KeyboardInterrupt:
        if os.path.exists(out):
            click.echo(f"interrupted after training: the trained surrogate is saved in {out} "
                       "(not validated: run 'likeflow validate')", err=True)
        raise
    finally:
        printer.close()
    sur.training["data"]["file"] = os.path.abspath(samples)
    if asimov_partner:
        sur.training["asimov_partner"] = os.path.relpath(
            os.path.abspath(asimov_partner), os.path.dirname(os.path.abspath(out)))
    result = None
    if run_validation:
        from .report import validate as validate_api
        try:
            test, _ = sur.held_out(s)
            result = validate_api(sur, test, seed=seed)
            sur.validation = result.summary()
            result.write(folder, training=sur.training)
        except KeyboardInterrupt:
            sur.save(out)
            click.echo(f"interrupted during validation: the trained surrogate is saved in {out}"
                       " without its validation (run 'likeflow validate')", err=True)
            raise
        click.echo(result.table())
        click.echo(f"report: {os.path.join(folder, 'index.html')}")
    sur.save(out)
    res = sur.training["result"]
    click.echo(f"stopped: {res['stopped']} after {len(res['history'])} epochs "
               f"({_duration(res['elapsed'])}); best epoch {res['best_epoch'] + 1}, "
               f"validation loss {res['best_val_loss']:.4f}")
    line = f"test log-likelihood per sample: surrogate {sur.training['test_log_prob']:.4f}"
    if "test_log_prob_target" in sur.training:
        line += f" (target density, unnormalised: {sur.training['test_log_prob_target']:.4f})"
    click.echo(line)
    click.echo(f"wrote {out}")
    if result is not None:
        verdict, _ = result.verdict()
        click.echo(result.verdict_line())
        if verdict != "PASS":
            click.echo(f"likeflow: the surrogate did not PASS validation ({verdict}): read the "
                       f"reasons above and the report before using it", err=True)
            hint = overfitting_hint(res)
            if hint:
                click.echo(f"likeflow: {hint}", err=True)
    if res["stopped"] == "interrupted":
        click.echo("interrupted: the best surrogate so far is saved; continue with --resume",
                   err=True)
        sys.exit(130)


def overfitting_hint(result: dict) -> str | None:
    """A line of advice when the validation loss stopped improving in the first half of
    training while the training loss kept falling (measured on RegionB: best epoch 3 of 8 at
    the default learning rate, WARN; with --lr 1e-3 the best epoch was the last, PASS)."""
    hist, best = result.get("history", []), result.get("best_epoch", -1)
    if len(hist) < 4 or best < 0 or best + 1 > len(hist) // 2:
        return None
    if not hist[-1]["train_loss"] < hist[best]["train_loss"] - 0.02:
        return None
    return (f"the validation loss stopped improving at epoch {best + 1} of {len(hist)} while "
            "the training loss kept falling (overfitting): a refit with a lower learning rate "
            "(--lr 1e-3) or with more samples may PASS")


def _merge_config_file(ctx, path, opts, seed):
    try:
        with open(path) as f:
            conf = json.load(f)
    except (OSError, ValueError) as e:
        raise LikeflowError(f"{path}: not a JSON config ({e})") from None
    if not isinstance(conf, dict):
        raise LikeflowError(f"{path}: the config must be a JSON object")
    known = set(FLOW_OPTIONS) | set(TRAIN_OPTIONS) | {"seed", "lr"}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise LikeflowError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    from click.core import ParameterSource
    opts = dict(opts)
    for key, value in conf.items():
        key = "learning_rate" if key == "lr" else key
        given = ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE
        if given:
            continue
        if key == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise LikeflowError(f"{path}: 'seed' must be an integer, not {value!r:.40}")
            seed = value
        elif key == "hidden":
            items = value if isinstance(value, list) else str(value).split(",")
            if not all(isinstance(v, int) and not isinstance(v, bool) or
                       isinstance(v, str) and v.strip().isdigit() for v in items):
                raise LikeflowError(f"{path}: 'hidden' must be a list of integers (or "
                                    f"\"64,64\"), not {value!r:.40}")
            opts[key] = tuple(int(v) for v in items)
        else:
            opts[key] = _config_value(ctx, path, key, value)
    return opts, seed


def _config_value(ctx, path: str, key: str, value):
    """A --config value checked as strictly as the option itself (no 2.5 for an integer)."""
    param = next(p for p in ctx.command.params if p.name == key)
    kind = param.type
    if value is None and param.default is None:
        return None
    ok = (isinstance(value, int) if isinstance(kind, click.types.IntParamType) else
          isinstance(value, (int, float)) if isinstance(kind, click.types.FloatParamType) else
          isinstance(value, str))
    if not ok or isinstance(value, bool):
        raise LikeflowError(f"{path}: '{key}' must be {kind.name}, not {value!r:.40}")
    try:
        return kind.convert(value, param, ctx)
    except click.BadParameter as e:
        raise LikeflowError(f"{path}: '{key}': {e.message}") from None


def _stored_flow(out: str) -> dict:
    """The flow options of the surrogate a --resume continues (for the opening line)."""
    from .surrogate import load
    if not os.path.exists(out):
        raise LikeflowError(f"--resume: no surrogate at {out} to continue")
    tf_devices()
    c = load(out).config
    return {k: getattr(c, k) for k in FLOW_OPTIONS if k != "reflect"}


def _load_surrogate(path: str):
    tf_devices()
    from .surrogate import load
    return load(path)


def tf_devices() -> str:
    """Import TensorFlow with its C++ start-up lines hidden; say which device computes.

    TensorFlow writes CUDA probing messages to file descriptor 2 before its logging is set up,
    where no environment variable reaches them; a terminal user gets one clear line instead.
    With --debug they are left alone.
    """
    ctx = click.get_current_context(silent=True)
    debug = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("debug"))
    saved = None
    if not debug:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"


@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Sample file to write (likeflow layout, with the surrogate's log_prob).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Same seed, same samples (on the same machine).")
def sample(surrogate, n, output, seed):
    """Draw N fresh samples from a SURROGATE into a sample file.

    \b
    Example:
      likeflow sample toy.likeflow.h5 -n 1000000 -o fresh.h5
    """
    check_outputs([output], inputs=[surrogate])
    sur = _load_surrogate(surrogate)
    t0 = time.perf_counter()
    sur.sample_to_file(output, n, seed=seed)
    click.echo(f"wrote {n} samples of {sur.dim} parameters to {output} "
               f"({time.perf_counter() - t0:.1f} s)")


@cli.command("eval")
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.argument("points", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the points with the surrogate's log_prob as a sample file; without it "
                   "the values are printed, one per line.")
@read_options
def eval_(surrogate, points, output, read_opts):
    """The SURROGATE's log density at the points of the sample file POINTS.

    Columns are matched to the surrogate's parameters by name when the file names them (any
    order); otherwise they must be in the surrogate's order. Points outside the bounds get -inf.
    """
    from .samples import write_samples
    check_outputs([output], inputs=[surrogate, points])
    sur = _load_surrogate(surrogate)
    s = read_samples(points, read_opts, check=False)
    x = _columns_for(sur, s, points)
    lp = sur.log_prob(x)
    if output:
        write_samples(output, SampleSet(x, names=sur.names, poi=sur.poi, log_prob=lp))
        click.echo(f"wrote {len(lp)} log-densities to {output}")
    else:
        click.echo("\n".join(f"{v:.10g}" for v in lp))


def _columns_for(sur, s: SampleSet, path: str) -> np.ndarray:
    default = [f"x{i}" for i in range(s.dim)]
    if s.names == default:
        if s.dim != sur.dim:
            raise LikeflowError(f"{path}: {s.dim} columns but the surrogate has {sur.dim} "
                                "parameters")
        return s.values
    missing = [n for n in sur.names if n not in s.names]
    if missing:
        raise LikeflowError(f"{path}: parameters {missing[:8]} of the surrogate are not in the "
                            f"file (it has {s.names[:8]}...)")
    return s.values[:, [s.names.index(n) for n in sur.names]]



@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.argument("samples", type=click.Path(dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=40), default=None,
              help="Use at most N test points (two halves of N/2; the surrogate draws N/2).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write metrics.json, plots and index.html into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print every metric as JSON.")
@click.option("--no-plots", is_flag=True, help="With --report: metrics.json and index.html only.")
@click.option("--seed", type=int, default=0, show_default=True)
@read_options
def validate(surrogate, samples, n, report_dir, as_json, no_plots, seed, read_opts):
    """How close a SURROGATE is to held-out SAMPLES, next to the noise floor.

    With the file the surrogate was trained on, only its test split is used (recorded in the
    surrogate: never training data); any other file is used whole, and the report says so.
    Every metric is also computed between two disjoint halves of the test data: the noise
    floor, what a perfect surrogate scores at this sample size.

    \b
    Examples:
      likeflow validate toy.likeflow.h5 toy.h5 --report toy-report
      likeflow validate toy.likeflow.h5 fresh_mcmc.h5 -n 100000 --json > metrics.json
    """
    from .report import validate as validate_api

    check_output_folder(report_dir)
    sur = _load_surrogate(surrogate)
    if read_opts == ReadOptions():
        stored = sur.training.get("data", {}).get("read_options", {})
        try:
            read_opts = ReadOptions.from_dict(stored)
            s = read_samples(samples, read_opts)
        except (LikeflowError, TypeError, ValueError) as e:
            if isinstance(e, LikeflowError) and "--burn" not in str(e):
                raise
            raise LikeflowError(f"{surrogate}: the read options stored with the surrogate "
                                f"({stored}) cannot be used ({e}); give the read options "
                                "(--layout, --dataset, --burn, --thin) yourself") from None
    else:
        s = read_samples(samples, read_opts)
    _echo_dropped(s)
    x = _columns_for(sur, s, samples)
    if x is not s.values:
        s = SampleSet(x, names=sur.names, poi=sur.poi, bounds=sur.bounds, log_prob=s.log_prob,
                      weights=s.weights, origin=s.origin)
    test, notes = sur.held_out(s)
    result = validate_api(sur, test, n=n, seed=seed, notes=notes)
    if as_json:
        from .jsonutil import strict_json
        click.echo(json.dumps(strict_json(result.to_dict())))
    else:
        click.echo(result.table())
        click.echo(f"({result.elapsed:.1f} s)")
    if report_dir:
        result.write(report_dir, training=sur.training, plots=not no_plots)
        click.echo(f"report: {os.path.join(report_dir, 'index.html')}", err=as_json)


# --- profile ----------------------------------------------------------------------------------

def _parse_range(ctx, param, value):
    if value is None:
        return None
    try:
        a, b = (float(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter("give the range as START:STOP, e.g. -0.5:2") from None
    if not b > a:
        raise click.BadParameter("STOP must be above START")
    return a, b


def _read_compare(path: str) -> dict:
    """A reference profile for --compare: likeflow's --json output or a plain
    ``{"grid": [...], "q": [...]}`` (optionally ``upper_limit``, ``cls``), checked up front."""
    try:
        with open(path) as f:
            ref = json.load(f)
    except (OSError, ValueError) as e:
        raise LikeflowError(f"{path}: cannot read the --compare file "
                            f"({str(e).splitlines()[0]})") from None
    if not isinstance(ref, dict):
        raise LikeflowError(f"{path}: --compare needs a JSON object")
    prof = ref.get("profile", ref)
    xs = prof.get("values", prof.get("grid")) if isinstance(prof, dict) else None
    qs = prof.get("q") if isinstance(prof, dict) else None
    try:
        xs, qs = np.asarray(xs, dtype=float), np.asarray(qs, dtype=float)
    except (TypeError, ValueError):
        xs = qs = None
    if xs is None or qs is None or xs.ndim != 1 or xs.shape != qs.shape or len(xs) < 2:
        raise LikeflowError(f"{path}: --compare needs 'grid' (or 'values') and 'q': two lists "
                            "of numbers of the same length (at least 2)")
    order = np.argsort(xs)
    out = {"values": xs[order], "q": qs[order]}
    lim = ref.get("upper_limit")
    if isinstance(lim, dict):
        lim = lim.get("value")
    if isinstance(lim, (int, float)):
        out["upper_limit"] = float(lim)
    bay = ref.get("bayesian_upper_limit")
    if isinstance(bay, dict):
        bay = bay.get("value")
    if isinstance(bay, (int, float)):
        out["bayesian_upper_limit"] = float(bay)
    cls = ref.get("cls")
    if isinstance(cls, dict) and isinstance(cls.get("observed"), (int, float)):
        out["cls"] = cls
    return out


def _profile_target(path: str, patch: str | None, asimov: str | None):
    """(density, Asimov partner or None, kind) for a surrogate file or a pyhf workspace."""
    if path.endswith(".json"):
        from .likelihoods.pyhf_target import PyhfTarget
        obs = PyhfTarget(path, patch=patch)
        return obs, PyhfTarget(path, patch=patch, asimov=True), "exact (pyhf)"
    if patch:
        raise click.UsageError("--patch is for pyhf workspaces (.json)")
    sur = _load_surrogate(path)
    partner = asimov or sur.training.get("asimov_partner")
    if partner and not asimov and not os.path.isabs(partner):
        partner = os.path.join(os.path.dirname(os.path.abspath(path)), partner)
    part = _load_surrogate(partner) if partner else None
    if part is not None and (part.names != sur.names):
        raise LikeflowError(f"{partner}: the Asimov partner has other parameters than {path} "
                            f"({part.dim} vs {sur.dim}, or other names)")
    return sur, part, "surrogate"


@cli.command("profile")
@click.argument("surrogate", type=click.Path(dir_okay=False, exists=True))
@click.option("--poi", default=None, help="Parameter to profile [default: the file's first POI].")
@click.option("--patch", type=click.Path(exists=True, dir_okay=False), default=None,
              help="pyhf: a JSON patch for the workspace (e.g. a signal hypothesis).")
@click.option("--asimov", "asimov_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="The Asimov partner surrogate (a fit to 'generate pyhf "
              "--asimov' samples): adds CLs limits [default: the partner the file names].")
@click.option("--range", "value_range", callback=_parse_range, default=None,
              help="START:STOP of the grid [default: best fit -2/+4 marginal std, in bounds].")
@click.option("--points", type=click.IntRange(min=3), default=25, show_default=True)
@click.option("--cl", type=click.FloatRange(0.5, 0.9999), default=0.95, show_default=True,
              help="Confidence / credibility level of the upper limits.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write the profile plot here (PNG or PDF).")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A reference profile to print and plot beside this one: likeflow's --json "
                   "output or a plain JSON {\"grid\": [...], \"q\": [...]}.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the profile and limits as JSON.")
@click.option("--samples", "n_samples", type=click.IntRange(min=1000), default=200_000,
              show_default=True, help="Surrogate samples behind the Bayesian limit.")
@click.option("--seed", type=int, default=0, show_default=True)
def profile_cmd(surrogate, poi, patch, asimov_path, value_range, points, cl, plot_path, compare,
                json_path, n_samples, seed):
    """Profile likelihood of a parameter, its best fit and upper limits.

    SURROGATE is a surrogate file, or a pyhf workspace (.json, with --patch) for the exact
    answers computed by the same code. At each grid value the log density is maximised over
    all other parameters (L-BFGS). Reported, each with its method: the asymptotic one-sided
    profile-likelihood limit (q~), the CLs limit with its expected band (pyhf workspaces, or a
    surrogate with its Asimov partner) and, for surrogates, the Bayesian credible limit.
    A surrogate is optimised only inside its training range; points where the optimum lies
    outside it are marked "untrusted" in the table, the JSON and the plot.

    
    Examples:
      likeflow profile toy.likeflow.h5 --poi mu --range -0.5:2 --plot mu.png \\
          --compare data/lhc_toy_95d_reference.json
      likeflow profile BkgOnly.json --patch patch.json --json exact.json
      likeflow profile obs.likeflow.h5 --asimov asimov.likeflow.h5 --compare exact.json
    """
    from .inference import (as_density, bayesian_upper_limit, best_fit, cls_limits, profile,
                            upper_limit)

    ref = _read_compare(compare) if compare else None
    check_outputs([json_path, plot_path], inputs=[surrogate, patch, asimov_path, compare])
    if plot_path:
        check_plot_format(plot_path)
    target, partner, kind = _profile_target(surrogate, patch, asimov_path)
    poi = poi or (target.poi[0] if target.poi else None)
    if poi is None:
        raise LikeflowError(f"{surrogate}: no POI recorded; name one with --poi")
    dens = as_density(target, seed=seed)
    i = dens.index(poi)
    if value_range is not None:  # before any optimisation: a range outside the bounds is moot
        lo, hi = dens.bounds[i]
        if not (np.isfinite(value_range).all() and lo <= value_range[0]
                and value_range[1] <= hi):
            raise LikeflowError(f"--range {value_range[0]:g}:{value_range[1]:g}: {poi} must "
                                f"stay finite and inside its bounds [{lo:g}, {hi:g}]")
    t0 = time.perf_counter()
    best = best_fit(dens, seed=seed)
    grid = np.linspace(*value_range, points) if value_range else None
    prof = profile(dens, poi, grid, seed=seed, best=best, points=points)
    best = prof.best
    limit = upper_limit(dens, poi, cl=cl, prof=prof, seed=seed)
    bayes = (bayesian_upper_limit(dens, poi, cl=cl, n=n_samples, seed=seed)
             if dens.sampler is not None else None)
    cls = (cls_limits(dens, partner, poi, cl=cl, seed=seed, best=best)
           if partner is not None else None)
    ref_q = (np.interp(prof.values, ref["values"], ref["q"], left=np.nan, right=np.nan)
             if ref else None)
    click.echo(f"{kind}; best fit: {poi} = {best.x[i]:.5g} (log density {best.log_prob:.4f})"
               + ("" if best.trusted else f"  UNTRUSTED: {best.note}"))
    click.echo(f"{poi:>10} {'-2 dlogL':>10}" + (f" {'compare':>10} {'diff':>8}" if ref else ""))
    for j, (v, q) in enumerate(zip(prof.values, prof.q)):
        line = f"{v:10.4f} {q:10.4f}"
        if ref:
            line += f" {ref_q[j]:10.4f} {q - ref_q[j]:8.4f}"
        if not prof.trusted[j]:
            line += f"  (untrusted: {prof.notes[j]})"
        elif not prof.converged[j]:
            line += "  (not converged)"
        click.echo(line)
    for lim in (limit, bayes):
        if lim is not None:
            val = "none" if lim.value is None else f"{lim.value:.4f}"
            click.echo(f"{cl:.0%} upper limit on {poi}: {val}  [{lim.method}]"
                       + ("" if lim.trusted else f"  UNTRUSTED: {lim.note}"))
    if cls is not None:
        fmt = lambda v: "none" if v is None else f"{v:.4f}"  # noqa: E731
        click.echo(f"{cl:.0%} CLs upper limit on {poi}: observed {fmt(cls.observed)}, expected "
                   f"{fmt(cls.expected[2])} (-2..+2 sigma: "
                   f"{', '.join(fmt(v) for v in cls.expected)})  [{cls.method}]")
    if ref and "upper_limit" in ref:
        click.echo(f"compare: upper limit {ref['upper_limit']:.4f}"
                   + (f", Bayesian {ref['bayesian_upper_limit']:.4f}"
                      if "bayesian_upper_limit" in ref else "")
                   + (f", CLs observed {ref['cls']['observed']:.4f}" if "cls" in ref else ""))
    click.echo(f"({time.perf_counter() - t0:.1f} s)")
    if json_path:
        from .jsonutil import strict_json
        write_text(json_path, json.dumps(strict_json({
            "profile": prof.to_dict(), "upper_limit": limit.to_dict(),
            "bayesian_upper_limit": bayes.to_dict() if bayes else None,
            "cls": cls.to_dict() if cls else None, "source": surrogate, "kind": kind}),
            indent=1))
    if plot_path:
        from .plots import profile_plot
        curves = [(kind, prof.values, prof.q, prof.trusted)]
        if ref:
            curves.insert(0, (f"reference ({os.path.basename(compare)})", ref["values"],
                              ref["q"], None))
        limits = [(f"{cl:.0%} CL limit (asymptotic)", limit.value)]
        if bayes is not None:
            limits.append((f"{cl:.0%} credible limit", bayes.value))
        if cls is not None:
            limits.append((f"{cl:.0%} CLs limit (observed)", cls.observed))
        from scipy import stats as _stats
        profile_plot(curves, plot_path, poi=poi,
                     limits=[(n, v) for n, v in limits if v is not None],
                     q_limit=float(_stats.norm.ppf(cl) ** 2))
        click.echo(f"plot: {plot_path}")


def check_plot_format(path: str) -> None:
    """A plot's file type must be one matplotlib writes (checked before any work)."""
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase
    known = FigureCanvasBase.get_supported_filetypes()
    if ext not in known:
        raise LikeflowError(f"{path}: cannot write a plot of type '{ext or '(none)'}'; use one "
                            f"of {', '.join(sorted(known))}")


# --- combine, marginal -------------------------------------------------------------------------

def _names_list(ctx, param, value):
    if value is None:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


@cli.command()
@click.argument("surrogates", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=100), required=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Sample file to write (fittable again with 'likeflow fit').")
@click.option("--normal-prior", callback=_names_list, default=None, metavar="NAMES",
              help="Shared parameters whose prior is a unit Gaussian (e.g. nuisances): it is "
                   "counted once, not once per surrogate. Others are taken as flat.")
@click.option("--chains", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--warmup", type=click.IntRange(min=100), default=600, show_default=True)
@click.option("--kernel", type=click.Choice(["nuts", "hmc"]), default="nuts", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-unconverged", is_flag=True, help="Exit 0 even if R-hat fails.")
def combine(surrogates, n, output, normal_prior, chains, warmup, kernel, seed,
            allow_unconverged):
    """Sample the joint density of several SURROGATES that share parameters by name.

    The joint log density is the sum of the surrogates' log densities with each shared
    parameter's prior counted once: flat priors need nothing (a constant), unit-Gaussian
    priors named with --normal-prior are subtracted once per extra surrogate holding them.
    It is sampled with MCMC (TFP's NUTS) and written as a sample file.

    \b
    Example:
      likeflow combine atlas.likeflow.h5 cms.likeflow.h5 -n 200000 -o joint.h5
    """
    from .combine import Combination
    from .mcmc import MCMCConfig
    from .samples import write_samples

    check_outputs([output], inputs=surrogates)
    surs = [_load_surrogate(p) for p in surrogates]
    joint = Combination(surs, shared_priors={k: "normal" for k in normal_prior})
    click.echo(f"joint density of {len(surs)} surrogates: {len(joint.names)} parameters, "
               f"shared: {', '.join(joint.shared) or '(none)'}", err=True)
    s, diag = joint.sample_set(n, config=MCMCConfig(chains=chains, warmup=warmup, seed=seed,
                                                    kernel=kernel),
                               progress=lambda m: click.echo(m, err=True))
    write_samples(output, s, attrs={"target": json.dumps(joint.describe()),
                                    "mcmc": json.dumps(diag),
                                    "sources": json.dumps(list(surrogates))})
    click.echo(f"wrote {s.n} samples of {s.dim} parameters to {output}; R-hat max "
               f"{diag['rhat_max']:.4f}")
    if not diag["converged"] and not allow_unconverged:
        click.echo("likeflow: warning: MCMC NOT CONVERGED (R-hat >= 1.01)", err=True)
        sys.exit(3)


@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.option("--params", callback=_names_list, required=True, metavar="NAMES",
              help="Comma-separated parameters to keep, e.g. mu or mu,delta_jes.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Surrogate file of the marginal.")
@click.option("-n", "n", type=click.IntRange(min=1000), default=200_000, show_default=True,
              help="Surrogate samples the marginal flow is fitted to.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def marginal(surrogate, params, output, n, seed, quiet):
    """A surrogate of the marginal density of some parameters (nuisances integrated out).

    Fits a small flow to surrogate samples of --params: the nuisance-free likelihood, itself a
    surrogate file that 'profile', 'sample' and 'eval' take.
    """
    from .inference import marginal as marginal_api

    dup = sorted({p for p in params if params.count(p) > 1})
    if dup:
        raise click.BadParameter(f"{', '.join(dup)} named twice", param_hint="--params")
    check_outputs([output], inputs=[surrogate])
    sur = _load_surrogate(surrogate)
    printer = EpochPrinter(None, quiet)
    m = marginal_api(sur, params, n=n, seed=seed, progress=printer)
    m.save(output)
    click.echo(f"wrote the marginal of {', '.join(params)} to {output} (test log-likelihood "
               f"{m.training['test_log_prob']:.4f})")


# --- generate ---------------------------------------------------------------------------------

@cli.command()
@click.argument("target", type=click.Choice(["lhc-toy", "gaussian", "mixture", "pyhf"]))
@click.argument("workspace", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Sample file to write.")
@click.option("--dim", type=click.IntRange(min=1), default=10, show_default=True,
              help="gaussian, mixture: number of dimensions.")
@click.option("--components", type=click.IntRange(min=1), default=3, show_default=True,
              help="mixture: number of Gaussian components.")
@click.option("--patch", type=click.Path(exists=True, dir_okay=False), default=None,
              help="pyhf: a JSON patch applied to the WORKSPACE (e.g. a signal hypothesis).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the target's random construction (gaussian, mixture) and the sampler.")
@click.option("--mcmc/--exact", "use_mcmc", default=None,
              help="gaussian, mixture: sample by MCMC instead of exactly (exact is the default "
                   "where it exists).")
@click.option("--chains", type=click.IntRange(min=2), default=None,
              help="MCMC: parallel chains [default: from -n, 4 to 32; long chains beat many].")
@click.option("--warmup", type=click.IntRange(min=100), default=1000, show_default=True,
              help="MCMC: adaptation steps per chain, discarded.")
@click.option("--thin", type=click.IntRange(min=1), default=None,
              help="MCMC: keep every THIN-th draw [default: so that every chain draws at least "
                   "1000 times].")
@click.option("--kernel", type=click.Choice(["nuts", "hmc", "rwm"]), default="nuts",
              show_default=True, help="MCMC kernel (rwm: random-walk Metropolis, no gradients).")
@click.option("--poi", default=None, help="pyhf: the parameter of interest [default: the "
              "measurement's].")
@click.option("--asimov", is_flag=True,
              help="pyhf: sample the background-only Asimov likelihood (POI fixed at 0 in the "
                   "fit that sets the nuisances): the partner of CLs limits of a surrogate.")
@click.option("--allow-unconverged", is_flag=True,
              help="Write the file and exit 0 even if R-hat fails (the file says so).")
@click.option("--xla", is_flag=True,
              help="MCMC: XLA-compile the chains (slow to compile, faster per step: for long "
                   "runs).")
@click.option("--float32", "as_float32", is_flag=True,
              help="Store the samples rounded to float32 (half the size; the log densities are "
                   "evaluated at the rounded points, so they stay exact).")
def generate(target, workspace, n, output, dim, components, patch, seed, use_mcmc, chains,
             warmup, thin, kernel, poi, asimov, allow_unconverged, xla, as_float32):
    """Sample a benchmark TARGET into a sample file with exact log densities.

    \b
    Targets:
      lhc-toy    the 95-dim LHC-like toy search (1 signal strength + 94 nuisances), by MCMC
      gaussian   a correlated Gaussian in --dim dimensions, exact samples
      mixture    a correlated mixture of --components Gaussians, exact samples
      pyhf       any pyhf WORKSPACE (JSON, optional --patch), by MCMC with pyhf's own
                 TensorFlow gradients; flat prior inside pyhf's suggested bounds
    MCMC runs chains of TFP's NUTS in an unbounded space, with the step size and a dense
    metric adapted in warm-up; chains, draws and thinning follow from -n. Split R-hat < 1.01
    and the effective sample size of every parameter are checked and stored in the file with
    the kernel, acceptance and step size ('likeflow info' shows them); a run that fails says
    so and exits 3 unless --allow-unconverged. Rows are written chain by chain with a 'chain'
    column, so 'fit' keeps whole blocks of each chain apart when it splits.

    \b
    Examples:
      likeflow generate lhc-toy -n 500000 -o toy.h5
      likeflow generate gaussian --dim 100 -n 200000 -o gauss100.h5
      likeflow generate pyhf BkgOnly.json --patch patch.sbottom_1300_205_60.json \\
          -n 200000 -o regionC.h5
      likeflow generate pyhf BkgOnly.json --patch patch.json --asimov -n 200000 -o asimov.h5
    """
    check_outputs([output], inputs=[workspace, patch])
    tf_devices()
    from .likelihoods import make_target
    from .mcmc import MCMCConfig, run_mcmc
    from .samples import write_samples

    if target == "pyhf" and workspace is None:
        raise click.UsageError("pyhf needs a WORKSPACE file")
    if target != "pyhf" and workspace is not None:
        raise click.UsageError(f"{target} takes no WORKSPACE argument")
    if target != "pyhf" and (asimov or poi or patch):
        raise click.UsageError("--patch, --poi and --asimov are for pyhf targets")
    t = make_target(target, dim=dim, components=components, seed=seed, workspace=workspace,
                    patch=patch, poi=poi, asimov=asimov)
    t0 = time.perf_counter()
    attrs = {"target": json.dumps(t.describe())}
    exact = None if use_mcmc else t.sample(n, seed=seed)
    result = None
    chain = None
    if exact is None:
        cfg = MCMCConfig(chains=chains, warmup=warmup, thin=thin, kernel=kernel, seed=seed,
                         jit_compile=xla)
        result = run_mcmc(t, n, cfg, progress=lambda m: click.echo(m, err=True))
        x, chain = result.samples, result.chain
        diag = result.diagnostics()
        attrs["mcmc"] = json.dumps(diag)
        click.echo(f"R-hat max {diag['rhat_max']:.4f} ({diag['rhat_worst_parameter']}), ESS min "
                   f"{diag['ess_min']:.0f} ({diag['ess_min_parameter']}), median "
                   f"{diag['ess_median']:.0f}; {diag['kernel']}, acceptance "
                   f"{diag['accept_rate']:.2f}, step size {diag['step_size']:.3g}", err=True)
    else:
        x = exact
        attrs["sampler"] = "exact"
    if as_float32 or result is None:
        if as_float32:
            x = x.astype(np.float32).astype(np.float64)
        ev = t.evaluate(x)
    else:  # the chain's own log densities: no second pass over the target
        prior = t.evaluate_prior(x)
        ev = {"log_prob": result.log_prob, "log_prior": prior,
              "log_likelihood": result.log_prob - prior}
    s = SampleSet(x, names=t.names, poi=t.poi, bounds=t.bounds, log_prob=ev["log_prob"],
                  log_likelihood=ev["log_likelihood"], log_prior=ev["log_prior"], chain=chain)
    write_samples(output, s, attrs=attrs)
    click.echo(f"wrote {s.n} samples of {s.dim} parameters to {output} "
               f"({_duration(time.perf_counter() - t0)})")
    if result is not None and not result.converged:
        msg = (f"MCMC NOT CONVERGED: R-hat {result.rhat.max():.4f} >= "
               f"{result.config.rhat_max} for {int((result.rhat >= result.config.rhat_max).sum())}"
               " parameters; run longer (-n), with more --warmup or --thin")
        click.echo(f"likeflow: warning: {msg}", err=True)
        if not allow_unconverged:
            sys.exit(3)


def main() -> None:
    """Console-script entry point."""
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) and its Python warnings
    # (retracing, AutoGraph) are noise on a terminal; errors still show
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from .fileio import guard_reads
    guard_reads()  # a damaged HDF5 file that hangs its reader ends in one line, exit 2
    cli(prog_name="likeflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
