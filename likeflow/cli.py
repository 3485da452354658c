"""The ``likeflow`` command line: a thin layer over the Python API.

Each command parses its options, calls the API and prints. Bad input (a
:class:`~likeflow.errors.LikeflowError`) prints one line and exits with code 2; an unexpected
fault prints one line and exits with code 1 (``likeflow --debug ...`` shows the traceback).
Output cut short by its reader (``likeflow info f.h5 | head``) ends quietly with code 141.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
import traceback

import click

import likeflow

from .errors import LikeflowError


class _Group(click.Group):
    """A click group that turns exceptions into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context):
        try:
            with likeflow.sigterm_as_interrupt():  # a killed command ends like Ctrl-C: exit 130
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
        except BrokenPipeError:
            # the reader of the output went away (`likeflow info f.h5 | head`): stop quietly,
            # with stdout pointed at nothing so that the exit's flush cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except Exception as e:  # noqa: BLE001 - the last line of defence, by design
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            if likeflow.interrupts.received():
                # SIGTERM arrived inside Python code called back from C, which turned the
                # interrupt into another exception (a SystemError): it is still the interrupt
                click.echo("likeflow: interrupted", err=True)
                ctx.exit(130)
            if ctx.obj and ctx.obj.get("debug"):
                ctx.exit(1)
            msg = (str(e).strip().splitlines() or [""])[0]
            click.echo(f"likeflow: unexpected error: {type(e).__name__}: {msg} "
                       "(run 'likeflow --debug ...' for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(likeflow.__version__, "--version", "-V", prog_name="likeflow")
@click.option("--debug", is_flag=True, help="Show the full traceback of any error.")
@click.option("--backend", type=click.Choice(["tensorflow", "numpy"]), default=None,
              help="What evaluates surrogate files: numpy needs no TensorFlow (same numbers, "
                   "slower on large batches; training needs TensorFlow) [default: tensorflow "
                   "where installed, else numpy; or $LIKEFLOW_BACKEND].")
@click.pass_context
def cli(ctx: click.Context, debug: bool, backend: str | None) -> None:
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
    if debug:  # TensorFlow's own start-up and log lines too
        os.environ.setdefault("LIKEFLOW_TF_LOGS", "1")
    if backend:  # read by likeflow.load (likeflow.surrogate.loading.BACKEND_ENV)
        os.environ["LIKEFLOW_BACKEND"] = backend


def read_options(func):
    """The options that say how to read a sample file, gathered into ``read_opts``."""

    @click.option("--dataset", default=None, metavar="NAME",
                  help="Read this 2-D dataset as the samples (e.g. data/X), or the chain of an "
                       "emcee backend.")
    @click.option("--log-prob-dataset", default=None, metavar="NAME",
                  help="Dataset of the target log density at each sample (e.g. data/Y).")
    @click.option("--layout", type=click.Choice(likeflow.LAYOUTS), default="auto",
                  show_default=True,
                  help="File layout; 'auto' recognises likeflow, DNNLikelihood and emcee files "
                       "(HDF5). Weighted text chains: polychord (weight, -2 log L, parameters; "
                       "PolyChord and MultiNest) or getdist (weight, -log L, parameters), with "
                       "GetDist's .paramnames and .ranges beside them.")
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
        kwargs["read_opts"] = likeflow.ReadOptions(layout=layout, dataset=dataset,
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
def info(file: str, read_opts, as_json: bool) -> None:
    """What is in a sample FILE: N, D, names, POIs, bounds and per-parameter statistics; or
    in a surrogate FILE: the flow, the parameters and the range it was trained on, the fit,
    the validation verdict and who wrote it.

    A sample file is checked as 'fit' would check it (NaN rows, constant columns, bounds,
    ...), so a clean 'info' means the file is ready to fit.

    \b
    Examples:
      likeflow info samples.h5
      likeflow info samples.likeflow.h5 --json
    """
    if likeflow.is_surrogate_file(file):
        _surrogate_info(file, as_json)
        return
    s = likeflow.read_samples(file, read_opts)
    _echo_dropped(s)
    summary = dict(s.summary(), file=file, mcmc=likeflow.mcmc_record(file))
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(f"{file}: {summary['n']} samples of {summary['dim']} parameters")
    click.echo(f"POI: {', '.join(summary['poi']) or '(none)'}")
    click.echo(f"datasets: samples{''.join(', ' + d for d in summary['datasets'])}")
    if summary["mcmc"] is not None:
        click.echo(_mcmc_line(summary["mcmc"]))
    _parameter_table(summary["parameters"])


def _surrogate_info(file: str, as_json: bool) -> None:
    # the numpy reader: no TensorFlow start-up to read a few records
    summary = dict(likeflow.load(file, backend="numpy").summary(), file=file)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    fl, tr, data = summary["flow"], summary["training"], summary["data"]
    comps = summary.get("components")
    what = f"{summary['kind']} of {comps['flows']} x " if comps else ""
    click.echo(f"{file}: likeflow surrogate ({what}{fl['flow']}, {fl['layers']} layers of "
               f"{fl['hidden']}, {fl['bins']} bins, {fl['dtype']}) of {fl['dim']} parameters")
    if data:
        click.echo(f"trained on: {data.get('file', '?')} ({data.get('n', '?')} rows: "
                   f"{data.get('n_train', '?')} train, {data.get('n_validation', '?')} "
                   f"validation, {data.get('n_test', '?')} test; {data.get('split_kind', '?')})")
    if tr.get("epochs"):
        test = tr.get("test_log_prob")
        best = tr.get("best_epoch")
        click.echo(f"fit: {tr['epochs']} epochs, best epoch "
                   f"{'?' if best is None else best + 1} (validation loss "
                   f"{tr.get('best_val_loss', float('nan')):.4f}), stopped: "
                   f"{tr.get('stopped', '?')}"
                   + (f"; test log-likelihood per sample {test:.4f}" if test is not None else ""))
    val = summary["validation"]
    if val.get("verdict"):
        reasons = "; ".join(val.get("verdict_reasons") or [])
        click.echo(f"verdict: {val['verdict']}" + (f" ({reasons})" if reasons else ""))
    prov = summary["provenance"]
    if prov:
        click.echo(f"written: {prov.get('created', '?')} by likeflow "
                   f"{prov.get('likeflow_version', '?')} ({prov.get('backend', '?')})")
    _parameter_table(summary["parameters"], f"{'trained on':>25}", _trained_on_column)


def _trained_on_column(p: dict) -> str:
    seen = p["trained_on"]
    return f"{f'[{seen[0]:.4g}, {seen[1]:.4g}]' if seen else '-':>25}"


def _sample_columns(p: dict) -> str:
    return f"{p['mean']:11.4g} {p['std']:11.4g} {p['min']:11.4g} {p['max']:11.4g}"


def _parameter_table(parameters: list[dict],
                     header: str = f"{'mean':>11} {'std':>11} {'min':>11} {'max':>11}",
                     columns=_sample_columns) -> None:
    """One row per parameter: its name (a star for a POI), ``columns(p)``, its bounds."""
    width = max(9, max(len(p["name"]) for p in parameters))
    click.echo(f"{'parameter':<{width}}  {header}  bounds")
    for p in parameters:
        star = "*" if p["poi"] else " "
        lo, hi = p["bounds"]
        click.echo(f"{p['name']:<{width}}{star} {columns(p)}  [{_fmt_bound(lo)}, {_fmt_bound(hi)}]")



# --- defaults: read from the API, never written twice -------------------------------------------

def _default(func, name: str):
    """The default of ``func``'s keyword ``name``: the CLI shows and uses the API's."""
    return inspect.signature(func).parameters[name].default


_FLOW = likeflow.FlowOptions()
_TRAIN = likeflow.TrainConfig()
_MCMC = likeflow.MCMCConfig()
_COMBINE = likeflow.COMBINE_MCMC

#: fit's options that are FlowOptions and TrainConfig fields (the others only a --config
#: file sets)
FLOW_OPTIONS = ("flow", "layers", "hidden", "bins", "spline_range", "permutation", "activation",
                "dtype", "reflect", "whiten")
TRAIN_OPTIONS = ("schedule", "cosine_steps", "epochs", "batch_size", "learning_rate", "patience",
                 "max_time", "density_weight")


def _warn(message: str) -> None:
    click.echo(f"likeflow: {message}", err=True)


def _parse_hidden(ctx, param, value):
    if value is None or isinstance(value, tuple) or value == "auto":
        return value
    try:
        units = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give units per hidden layer, e.g. 128,128, or auto") from None
    if not units or min(units) < 1:
        raise click.BadParameter("give positive units per hidden layer, e.g. 128,128")
    return units


@cli.command()
@click.argument("samples", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Surrogate file to write [default: SAMPLES with .likeflow.h5].")
@click.option("--flow", type=click.Choice(likeflow.FLOWS), default=_FLOW.flow,
              show_default=True,
              help="; ".join(f"{k}: {v}" for k, v in likeflow.FLOW_HELP.items()) + ".")
@click.option("--layers", type=click.IntRange(min=1), default=_FLOW.layers, show_default=True,
              help="Number of flow layers.")
@click.option("--hidden", callback=_parse_hidden, default=_FLOW.hidden, show_default=True,
              help="Hidden units per layer of each conditioner network, e.g. 128,128; "
                   + likeflow.HIDDEN_HELP + ".")
@click.option("--bins", type=click.IntRange(min=2), default=None,
              help="Spline bins of ansf and cnsf, and of the affine flows' marginal spline "
                   "[default: " + ", ".join(f"{f} {k}" for f, k in
                                            likeflow.DEFAULT_BINS.items()) + "].")
@click.option("--spline-range", type=click.FloatRange(min=0, min_open=True),
              default=_FLOW.spline_range, show_default=True,
              help="The splines act on [-B, B] (standardised units).")
@click.option("--permutation", type=click.Choice(likeflow.PERMUTATIONS),
              default=_FLOW.permutation, show_default=True,
              help="Permutation between layers.")
@click.option("--activation", type=click.Choice(likeflow.ACTIVATIONS),
              default=_FLOW.activation, show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=_FLOW.dtype,
              show_default=True)
@click.option("--reflect", type=click.Choice(["auto", "none"]),
              default=_FLOW.reflect, show_default=True,
              help="Parameters whose samples pile up at a bound (a signal strength with its "
                   "best fit at 0): auto models them mirrored across the bound and folds back, "
                   "so the density at the bound is finite and right; none maps every bound "
                   "with a sigmoid/softplus.")
@click.option("--whiten", type=click.Choice(["auto", "on", "off"]),
              default=_FLOW.whiten, show_default=True,
              help="Start the flow as the samples' best Gaussian (a fixed linear map by the "
                   "Cholesky factor of their correlation before the layers), so that training "
                   "learns only the departures from it. auto: where the training rows pin the "
                   "correlation down (at least about 2.5 D^2 rows).")
@click.option("--asimov-partner", type=click.Path(dir_okay=False), default=None,
              help="Record this surrogate of the background-only Asimov likelihood as the "
                   "partner of the one being fitted: 'likeflow profile' then adds CLs limits.")
@click.option("--patch", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With a pyhf workspace as SAMPLES: its signal patch.")
@click.option("-n", "n_samples", type=click.IntRange(min=1000),
              default=_default(likeflow.fit_workspace, "n"), show_default=True,
              help="With a pyhf workspace as SAMPLES: samples of the observed likelihood and "
                   "of its Asimov partner each.")
@click.option("--clusters", callback=lambda ctx, p, v: _clusters(v), default=None,
              metavar="K|auto",
              help="A piecewise flow: cluster the training data (k-means) and fit one flow per "
                   "cluster, the density their weighted sum (separated modes without bridges "
                   "between them). auto: one flow unless two clusters are clearly separated "
                   "(silhouette along their centres >= 0.7), then K by the held-out likelihood "
                   "of a Gaussian per cluster.")
@click.option("--schedule", type=click.Choice(["cosine", "plateau"]), default=_TRAIN.schedule,
              show_default=True,
              help="Learning rate: a cosine decay over --cosine-steps optimizer steps, or "
                   "halving whenever the validation loss stalls (plateau, until --patience).")
@click.option("--cosine-steps", type=click.IntRange(min=1), default=_TRAIN.cosine_steps,
              show_default=True,
              help="Length of the cosine decay in optimizer steps (rounded to whole "
                   "epochs): 3 epochs of 400k samples at batch 1024, 19 of 8k at batch 128.")
@click.option("--epochs", type=click.IntRange(min=1), default=_TRAIN.epochs, show_default=True,
              help="Most epochs; the schedule or early stopping usually ends sooner.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_TRAIN.batch_size,
              help="Rows per optimizer step [default: the training rows / 64 rounded down to "
                   "a power of two, within 128..1024: 1024 from 65,536 training rows, 128 "
                   "for 8,000; small batches overfit small files less].")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=_TRAIN.learning_rate, show_default=True,
              help="Initial (peak) learning rate (Adam).")
@click.option("--patience", type=click.IntRange(min=1), default=_TRAIN.patience,
              show_default=True, help="Epochs without validation improvement before stopping.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=_TRAIN.max_time,
              help="A time budget for training in seconds: the cosine schedule is shortened "
                   "(from the measured step time) so that it anneals within it; the limit is "
                   "checked between blocks of steps. Validation comes after.")
@click.option("--density-weight", type=click.FloatRange(min=0), default=_TRAIN.density_weight,
              show_default=True,
              help="Weight of the density term where the file has log_prob: the residual "
                   "log q - log p held constant over each batch, and at the file's anchors "
                   "('generate --anchors'), where profiles are decided. 0: maximum likelihood "
                   "alone.")
@click.option("--stream/--no-stream", default=None,
              help="Train from the file without reading its training rows into memory: "
                   "shuffled blocks are read as training goes (likeflow and array layouts); "
                   f"up to {likeflow.STREAM_HELD_OUT_ROWS:,} validation and test rows are held in memory. "
                   "[default: only for files larger than a quarter of the available memory]")
@click.option("--devices", default=None, metavar="N|all",
              help="Train data-parallel on N devices (all: every GPU) with "
                   "tf.distribute.MirroredStrategy; --batch-size is the global batch, shared "
                   "equally. Without GPUs, N logical devices split from the CPU (no faster: "
                   "for checking a multi-device fit). [default: one device]")
@click.option("--seed", type=int, default=_default(likeflow.fit, "seed"), show_default=True,
              help="Seeds the split, the weights and the shuffling: same seed, same surrogate.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON file of any of the options above (keys as in --help, "
                                 "with _ for -); options given on the command line win.")
@click.option("--resume", is_flag=True,
              help="Continue the fit saved in OUTPUT (after Ctrl-C, SIGTERM or --max-time).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Append every epoch's record as a JSON line to this file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--validate/--no-validate", "run_validation",
              default=_default(likeflow.fit, "validate"), show_default=True,
              help="Validate on the test split at the end; the summary goes into the surrogate "
                   "file and the full report into --report.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the validation report [default: OUTPUT with -report].")
@read_options
@click.pass_context
def fit(ctx, samples, output, config_file, resume, log_path, quiet, run_validation,
        report_dir, asimov_partner, patch, n_samples, read_opts, **opts):
    """Train a normalizing-flow surrogate of the SAMPLES file, or of a pyhf workspace.

    The samples are split (seeded) into 80% training, 10% validation (early stopping) and 10%
    test data that training never sees. The surrogate file records the split, so 'likeflow
    validate' checks it on the test rows. Ctrl-C or SIGTERM stops training and saves the best
    surrogate so far; '--resume' continues it.

    \b
    Examples:
      likeflow fit samples.h5
      likeflow fit samples.h5 --flow ansf --layers 6 --hidden 256,256 -o ansf.likeflow.h5
      likeflow fit chain.h5 --layout emcee --burn 1000 --thin 10 --max-samples 500000
      likeflow fit huge.h5 --stream --devices all
      likeflow fit BkgOnly.json --patch patch.sbottom_900_850_60.json

    SAMPLES ending in .json is a pyhf workspace: the observed likelihood and its
    background-only Asimov partner are sampled (NUTS, -n each), both are fitted (the
    partner recorded), and the pair is held to the exact likelihood ('validate --exact'):
    its verdict joins the file's. Files go beside OUTPUT (default: the workspace's name with
    the patch's); an interrupted run resumes, reusing the samples and fits already written.
    """
    settings = likeflow.read_fit_config(config_file) if config_file else None
    if samples.endswith(".json") or patch is not None:
        implied = resume or asimov_partner or report_dir or not run_validation
        return _fit_workspace(ctx, samples, patch, n_samples, output, log_path, quiet, opts,
                              settings, implied)
    out = output or likeflow.default_output(samples)
    likeflow.check_outputs([out, log_path], inputs=[samples, config_file, asimov_partner])
    report = (report_dir or likeflow.default_report(out)) if run_validation else None
    # a resumed fit keeps its flow: only options given again are held against it
    flow, train, seed = _chosen(ctx, opts, settings, all_flow_options=not resume)
    with likeflow.EpochProgress(log=log_path, quiet=quiet, max_time=train.max_time) as bar:
        try:
            sur = likeflow.fit(
                samples, out=out, seed=seed, flow_config=flow, train_config=train,
                read_options=read_opts, validate=run_validation, report=report,
                resume=resume, asimov_partner=asimov_partner, clusters=opts["clusters"],
                stream=opts["stream"], devices=opts["devices"], progress=bar,
                messages=lambda m: click.echo(m, err=True))
        except KeyboardInterrupt:
            if os.path.exists(out):
                _warn(f"interrupted after training: the trained surrogate is saved in {out} "
                      "(not validated: run 'likeflow validate')")
            raise
        except likeflow.ReportError as e:
            if e.surrogate is not None:  # validated and saved: say so before the error
                _print_fit(e.surrogate, out, None)
            raise
    _print_fit(sur, out, report)


def _fit_workspace(ctx, workspace, patch, n, output, log_path, quiet, opts, settings,
                   implied: bool) -> None:
    """``fit WS.json``: the whole path from a workspace (:func:`likeflow.fit_workspace`);
    ``implied``: an option was given that the path decides itself."""
    if not workspace.endswith(".json"):
        raise click.UsageError("--patch is for a pyhf workspace (.json) as SAMPLES")
    if implied:
        raise click.UsageError("with a workspace, --resume and --asimov-partner are implied "
                               "(an interrupted run resumes; the partner is fitted too), "
                               "validation always runs and the report goes beside the "
                               "surrogate: leave out --resume, --asimov-partner, --report and "
                               "--no-validate")
    flow, train, seed = _chosen(ctx, opts, settings, all_flow_options=False)
    with likeflow.EpochProgress(log=log_path, quiet=quiet, max_time=train.max_time) as bar:
        run = likeflow.fit_workspace(
            workspace, patch=patch, out=output, n=n, seed=seed, flow_config=flow,
            train_config=train,
            progress=bar, messages=lambda m: click.echo(m, err=True))
    click.echo(run.check.table())
    click.echo("stages (s): " + ", ".join(f"{k} {v:.0f}" for k, v in run.stages.items())
               + (f"; reused: {', '.join(run.reused)}" if run.reused else ""))
    for key in ("surrogate", "partner", "report"):
        click.echo(f"{key}: {run.files[key]}")
    verdict = run.surrogate.validation.get("verdict")
    click.echo(f"verdict: {verdict}")
    if verdict != "PASS":
        _warn(f"the surrogate did not PASS ({verdict}): read the exact check above and the "
              "report before publishing it")


def _clusters(value):
    if value is None or value == "auto":
        return value
    try:
        k = int(value)
    except ValueError:
        raise click.BadParameter("give a number of clusters or 'auto'") from None
    if k < 1:
        raise click.BadParameter("the number of clusters must be at least 1")
    return k


def _print_fit(sur, out: str, report: str | None) -> None:
    result = sur.validation_result
    if result is not None:
        click.echo(result.table())
        if report is not None:
            click.echo(f"report: {os.path.join(report, 'index.html')}")
    lines, warnings = likeflow.fit_summary(sur)
    click.echo("\n".join(lines[:2] + [f"wrote {out}"] + lines[2:]))
    for w in warnings:
        _warn(w)
    if sur.training["result"]["stopped"] == "interrupted":
        sys.exit(130)


def _on_command_line(ctx, name: str) -> bool:
    from click.core import ParameterSource
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def _chosen(ctx, opts, settings, *, all_flow_options: bool):
    """The flow options (a dict), the TrainConfig and the seed of a fit: the command line's,
    then a --config file's (:func:`likeflow.read_fit_config`) where the command line gave
    none; the flow options not given anywhere only with ``all_flow_options``."""
    settings = settings or likeflow.FitSettings()
    flow = {k: opts[k] for k in FLOW_OPTIONS if all_flow_options or _on_command_line(ctx, k)}
    train = {k: opts[k] for k in TRAIN_OPTIONS}
    for chosen, from_file in ((flow, settings.flow), (train, settings.train)):
        chosen.update({k: v for k, v in from_file.items()
                       if k not in opts or not _on_command_line(ctx, k)})
    seed = opts["seed"] if settings.seed is None or _on_command_line(ctx, "seed") \
        else settings.seed
    return flow, likeflow.TrainConfig(**train), seed


@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Sample file to write (likeflow layout, with the surrogate's log_prob).")
@click.option("--seed", type=int, default=None,
              help="Same seed, same samples (on the same machine) [default: fresh draws].")
def sample(surrogate, n, output, seed):
    """Draw N fresh samples from a SURROGATE into a sample file.

    \b
    Example:
      likeflow sample toy.likeflow.h5 -n 1000000 -o fresh.h5
    """
    sur = likeflow.load(surrogate)
    t0 = time.perf_counter()
    sur.sample_to_file(output, n, seed=seed)
    click.echo(f"wrote {n} samples of {sur.dim} parameters to {output} "
               f"({time.perf_counter() - t0:.1f} s)")


def _fprs(ctx, param, value):
    try:
        out = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("give rates like 0.001,0.01,0.1") from None
    if not all(0 < f < 1 for f in out):
        raise click.BadParameter("false-positive rates lie in (0, 1)")
    return out


@cli.command()
@click.argument("signal", type=click.Path(dir_okay=False))
@click.argument("background", type=click.Path(dir_okay=False))
@click.argument("points", type=click.Path(dir_okay=False))
@click.option("--prior-ratio", type=float, default=1.0, show_default=True,
              help="P(signal)/P(background), added to the log density ratio (the Bayes "
                   "threshold is log ratio 0).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the points with their log ratio (and labels) as a sample file.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="With labels: write the ROC curve here (PNG or PDF).")
@click.option("--fpr", "fprs", callback=_fprs,
              default=",".join(f"{f:g}" for f in likeflow.DEFAULT_FPRS), show_default=True,
              help="False-positive rates at which to report the true-positive rate.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write AUC, TPRs and accuracy as JSON.")
@read_options
def classify(signal, background, points, prior_ratio, output, plot_path, fprs, json_path,
             read_opts):
    """Classify POINTS by the density ratio of a SIGNAL and a BACKGROUND surrogate.

    Each point's score is log p_S(x) - log p_B(x) + log(prior ratio). If POINTS has a 'labels'
    dataset (1 signal, 0 background), also the ROC curve, its AUC, the true-positive rate at
    the --fpr rates and the accuracy at the Bayes threshold (score 0).

    \b
    Example:
      likeflow fit rrlyrae.h5 -o sig.likeflow.h5 --flow ansf
      likeflow fit background.h5 -o bkg.likeflow.h5 --flow ansf
      likeflow classify sig.likeflow.h5 bkg.likeflow.h5 test.h5 --prior-ratio 0.0056 \\
          --plot roc.png -o scored.h5
    """
    likeflow.check_outputs([output, plot_path, json_path],
                           inputs=[signal, background, points])
    if plot_path:
        likeflow.check_plot_format(plot_path)
    result = likeflow.classify(signal, background, points, prior_ratio=prior_ratio, fprs=fprs,
                               read_options=read_opts)
    click.echo(result.table())
    if plot_path:
        result.plot(plot_path)
        click.echo(f"plot: {plot_path}")
    if json_path:
        result.write_json(json_path)
    if output:
        result.write(output, likeflow.read_samples(points, read_opts, check=False))
        click.echo(f"wrote {len(result.log_ratio)} scores to {output}")


@cli.command()
@click.argument("surrogates", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The ensemble surrogate file to write.")
def ensemble(surrogates, output):
    """Several SURROGATES of the same data (other seeds or configurations) as one ensemble.

    Its density is the mean of theirs and it samples from their mixture; 'eval --spread' gives
    the spread of the members' log densities at each point (the surrogate's own uncertainty:
    small on the data, large where it extrapolates) and 'profile' the spread of the members'
    upper limits.

    \b
    Example:
      for s in 0 1 2 3; do likeflow fit toy.h5 --seed $s -o toy$s.likeflow.h5; done
      likeflow ensemble toy0.likeflow.h5 toy1.likeflow.h5 toy2.likeflow.h5 toy3.likeflow.h5 \\
          -o toy_ens.likeflow.h5
    """
    sur = likeflow.ensemble(list(surrogates), out=output)
    click.echo(f"wrote {output}: an ensemble of {len(sur.components)} surrogates")


@cli.command()
@click.argument("grid", type=click.Path(exists=True, dir_okay=False))
@click.argument("samples", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="scan",
              show_default=True, help="Folder of the scan: surrogates, records, leaderboard.")
@click.option("--workers", type=click.IntRange(min=1), default=_default(likeflow.scan, "workers"),
              show_default=True, help="Worker processes of the local Dask cluster.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a running Dask cluster instead (e.g. tcp://host:8786, one started "
                   "with dask-jobqueue on Slurm, PBS or HTCondor).")
@click.option("--validate/--no-validate", "run_validation", default=True, show_default=True,
              help="Validate every fit (its verdict enters the leaderboard).")
def scan(grid, samples, out_dir, workers, scheduler, run_validation):
    """Fit every configuration of GRID (a JSON file) to SAMPLES, as tasks on Dask.

    \b
    GRID lists values to combine, e.g.
      {"flow_config": {"flow": ["maf", "cnsf"], "layers": [3, 5]},
       "train_config": {"epochs": [200]}, "seeds": [0, 1, 2]}
    Each fit writes OUTPUT/<task>.likeflow.h5; the leaderboard (validation loss, verdict, time,
    config) is printed and written to OUTPUT/leaderboard.json, the best surrogate copied to
    OUTPUT/best.likeflow.h5. Failed fits are listed, not fatal; run the scan again and the
    finished fits are skipped.
    """
    likeflow.check_output_folder(out_dir)
    res = likeflow.scan(grid, samples, out_dir=out_dir, workers=workers, scheduler=scheduler,
                        validate=run_validation,
                        progress=lambda r: click.echo(
                            f"{r['id']}: {r['status']} ({r['time']:.1f} s)", err=True))
    click.echo(res.table())


@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="The bundle's folder (new or empty).")
@click.option("--asimov", "asimov_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="The Asimov partner [default: the partner the file names].")
def publish(surrogate, out_dir, asimov_path):
    """A bundle for publication: the SURROGATE and its Asimov partner, their ONNX graphs,
    card.json, a README with working snippets, the report and SHA-256 checksums.

    card.json (JSON Schema likeflow/schemas/card/1.0.0.json) holds the parameters with
    names, bounds and training range, the POIs, the flow, the data's provenance (with the
    workspace's SHA-256 where 'validate --exact' or 'fit WS.json' checked it), the verdict
    and metrics, the exact-vs-surrogate table and the limits, computed from the bundle's
    files with the numpy reader. 'likeflow verify DIR' checks all of it.

    \b
    Examples:
      likeflow fit BkgOnly.json --patch patch.json -o sbottom.likeflow.h5
      likeflow publish sbottom.likeflow.h5 -o sbottom-bundle
      likeflow verify sbottom-bundle
    """
    likeflow.check_output_folder(out_dir)
    card = likeflow.publish(surrogate, out_dir, partner=asimov_path,
                            progress=lambda m: click.echo(m, err=True))
    lim = card["limits"]
    click.echo(f"wrote {out_dir}: " + ", ".join(v for v in card["files"].values() if v)
               + ", card.json, README.md, SHA256SUMS")
    click.echo(f"limits on {lim['poi']} ({lim['cl']:.0%}): profile {lim['profile']}"
               + (f", CLs observed {lim['cls_observed']}" if "cls_observed" in lim else ""))


@cli.command()
@click.argument("bundle", type=click.Path(file_okay=False, exists=True))
@click.option("--no-limits", is_flag=True, help="Check the files and the card only.")
def verify(bundle, no_limits):
    """Check a BUNDLE written by 'likeflow publish': every file against SHA256SUMS (a
    changed, missing or unlisted file is named), card.json against its schema, and the
    card's limits recomputed from the files (numpy reader, to 1e-6 relative). Exit 0 when
    all hold, 2 with one line naming every problem otherwise. Needs no TensorFlow.

    \b
    Example:
      likeflow verify sbottom-bundle
    """
    res = likeflow.verify(bundle, limits=not no_limits)
    if not res.ok:
        raise LikeflowError(f"{bundle}: " + "; ".join(res.problems))
    click.echo(f"{bundle}: every file matches SHA256SUMS, card.json follows its schema"
               + ("" if no_limits else ", and the card's limits reproduce: "
                  + json.dumps({k: v for k, v in res.limits.items()
                                if k not in ("seed", "backend")})))


@cli.command("export")
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The ONNX model to write (.onnx).")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True, help="Of the graph's inputs, outputs and arithmetic.")
def export(surrogate, output, dtype):
    """Write a SURROGATE as an ONNX model, for any ONNX runtime (no likeflow needed).

    \b
    Inputs and outputs:
      x (n, D) -> log_prob (n,)    the log density (every flow)
      z (n, D) -> x_of_z (n, D)    samples from standard-normal z (realnvp, cnsf only:
                                   maf and ansf sample in D sequential steps)
    The parameter names, POIs and bounds are in the model's metadata.

    \b
    Example:
      likeflow export toy.likeflow.h5 -o toy.onnx
      python -c "import onnxruntime as o; s = o.InferenceSession('toy.onnx'); ..."
    """
    info = likeflow.export_onnx(likeflow.load(surrogate), output, dtype=dtype)
    click.echo(f"wrote {info['path']}: {', '.join(info['outputs'])} ({info['dtype']}, "
               f"{info['nodes']} nodes)")


@cli.command("eval")
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.argument("points", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the points with the surrogate's log_prob as a sample file; without it "
                   "the values are printed, one per line.")
@click.option("--typicality", is_flag=True,
              help="Also outlier scores: the latent radius and its two-sided p-value under "
                   "chi(D), and the log density's percentile among surrogate samples (columns "
                   "latent_radius, radius_pvalue, log_prob_percentile).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --typicality: seeds the surrogate samples of the percentiles.")
@click.option("--spread", is_flag=True,
              help="An ensemble: also the spread (standard deviation) of its members' log "
                   "densities at each point (column log_prob_spread).")
@read_options
def eval_(surrogate, points, output, typicality, seed, spread, read_opts):
    """The SURROGATE's log density at the points of the sample file POINTS.

    Columns are matched to the surrogate's parameters by name when the file names them (any
    order); otherwise they must be in the surrogate's order. Points outside the bounds get -inf.

    \b
    Examples:
      likeflow eval toy.likeflow.h5 points.h5
      likeflow eval toy.likeflow.h5 events.h5 --typicality -o scored.h5
    """
    ev = likeflow.evaluate(surrogate, points, typicality=typicality, spread=spread, seed=seed,
                           read_options=read_opts, out=output)
    rows = ev.undefined
    if len(rows):
        _warn(f"note: {len(rows)} point{'s' * (len(rows) > 1)} of {points} hold NaN or inf "
              f"(row {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''}): "
              "log_prob nan")
    if output:
        click.echo(f"wrote {len(ev.log_prob)} log-densities"
                   f"{' and outlier scores' if ev.scores else ''} to {output}")
    elif ev.scores:
        click.echo("  ".join(ev.columns()))
        click.echo("\n".join("  ".join(f"{v:.10g}" for v in row) for row in ev.rows()))
    else:
        click.echo("\n".join(f"{v:.10g}" for v in ev.log_prob))


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


@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.argument("samples", type=click.Path(dir_okay=False), required=False)
@click.option("-n", "n", type=click.IntRange(min=40), default=None,
              help="Use at most N test points (two halves of N/2; the surrogate draws N/2).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write metrics.json, plots and index.html into this folder (with --exact "
                   "also exact.json and exact_profile.png).")
@click.option("--json", "as_json", is_flag=True, help="Print every metric as JSON.")
@click.option("--no-plots", is_flag=True, help="With --report: metrics.json and index.html only.")
@click.option("--exact", "workspace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The pyhf workspace the surrogate's samples came from: compare profiles, "
                   "limits and importance weights with the exact likelihood.")
@click.option("--patch", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --exact: the workspace's signal patch.")
@click.option("--asimov", "asimov_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="With --exact: the Asimov partner surrogate, for the CLs "
              "limits [default: the partner the file names].")
@click.option("--poi", default=None, help="With --exact: the parameter [default: the first POI].")
@click.option("--range", "value_range", callback=_parse_range,
              default=None, help="With --exact: START:STOP of the profile grid [default: "
              "the surrogate's best fit -2/+4 marginal std].")
@click.option("--points", type=click.IntRange(min=5),
              default=_default(likeflow.validate_exact, "points"), show_default=True,
              help="With --exact: profile grid points.")
@click.option("--importance-samples", type=click.IntRange(min=1000),
              default=_default(likeflow.validate_exact, "importance_samples"),
              show_default=True, help="With --exact: surrogate samples weighted by p/q.")
@click.option("--seed", type=int, default=_default(likeflow.validate, "seed"), show_default=True)
@read_options
def validate(surrogate, samples, n, report_dir, as_json, no_plots, workspace, patch,
             asimov_path, poi, value_range, points, importance_samples, seed, read_opts):
    """How close a SURROGATE is to held-out SAMPLES, next to the noise floor; with --exact,
    to the pyhf likelihood it replaces.

    With the file the surrogate was trained on, only its test split is used (recorded in the
    surrogate: never training data); any other file is used whole, and the report says so.
    Every metric is also computed between two disjoint halves of the test data: the noise
    floor, what a perfect surrogate scores at this sample size.

    --exact WS.json (with --patch) holds the surrogate to the exact likelihood where limits
    are set: its profile and the exact one on one grid (largest difference where the exact
    q < 6), the q~ and CLs limits with the expected band side by side (with the Asimov
    partner), and importance sampling of the exact likelihood with the surrogate as proposal
    (the weights' effective-sample-size fraction, the credible limit corrected by them; with
    SAMPLES, also the exact samples' own). Its verdict is separate; thresholds in
    docs/validation.md.

    \b
    Examples:
      likeflow validate toy.likeflow.h5 toy.h5 --report toy-report
      likeflow validate toy.likeflow.h5 fresh_mcmc.h5 -n 100000 --json > metrics.json
      likeflow validate obs.likeflow.h5 --exact BkgOnly.json --patch patch.json --report rep
    """
    if samples is None and workspace is None:
        raise click.UsageError("give SAMPLES, or --exact WS.json for the exact check")
    if workspace is None and (patch or asimov_path or poi or value_range):
        raise click.UsageError("--patch, --asimov, --poi and --range belong to --exact")
    out = {}
    if samples is not None:
        given = None if read_opts == likeflow.ReadOptions() else read_opts
        out["samples"] = likeflow.validate(surrogate, samples, n=n, seed=seed,
                                           read_options=given, report=report_dir,
                                           plots=not no_plots)
        _echo_result(out["samples"], as_json)
    if workspace is not None:
        out["exact"] = likeflow.validate_exact(
            surrogate, workspace, patch=patch, asimov=asimov_path, poi=poi, points=points,
            value_range=value_range, importance_samples=importance_samples, seed=seed,
            samples=samples, progress=lambda m: click.echo(m, err=True))
        if report_dir:
            out["exact"].write(report_dir, plots=not no_plots)
        _echo_result(out["exact"], as_json)
    if as_json:
        click.echo(out["samples"].to_json() if set(out) == {"samples"} else
                   json.dumps({k: json.loads(v.to_json()) for k, v in out.items()}))
    if report_dir:
        click.echo(f"report: {os.path.join(report_dir, 'index.html' if samples else 'exact.json')}",
                   err=as_json)


def _echo_result(result, as_json: bool) -> None:
    """A validation's table and time (JSON is printed once, at the end)."""
    if not as_json:
        click.echo(result.table())
        click.echo(f"({result.elapsed:.1f} s)")


# --- profile ----------------------------------------------------------------------------------

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
@click.option("--points", type=click.IntRange(min=3),
              default=_default(likeflow.profile, "points"), show_default=True)
@click.option("--cl", type=click.FloatRange(0.5, 0.9999),
              default=_default(likeflow.profile, "cl"), show_default=True,
              help="Confidence / credibility level of the upper limits.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write the profile plot here (PNG or PDF).")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A reference profile to print and plot beside this one: likeflow's --json "
                   "output or a plain JSON {\"grid\": [...], \"q\": [...]}.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the profile and limits as JSON.")
@click.option("--samples", "n_samples", type=click.IntRange(min=1000),
              default=_default(likeflow.profile, "bayesian_samples"), show_default=True,
              help="Surrogate samples behind the Bayesian limit.")
@click.option("--seed", type=int, default=_default(likeflow.profile, "seed"), show_default=True)
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

    \b
    Examples:
      likeflow profile toy.likeflow.h5 --poi mu --range -0.5:2 --plot mu.png \\
          --compare data/lhc_toy_95d_reference.json
      likeflow profile BkgOnly.json --patch patch.json --json exact.json
      likeflow profile obs.likeflow.h5 --asimov asimov.likeflow.h5 --compare exact.json
    """
    ref = likeflow.read_reference(compare) if compare else None
    likeflow.check_outputs([json_path, plot_path], inputs=[surrogate, patch, asimov_path,
                                                            compare])
    if plot_path:
        likeflow.check_plot_format(plot_path)
    result = likeflow.profile(surrogate, poi, points=points, value_range=value_range, cl=cl,
                              asimov=asimov_path, patch=patch, bayesian_samples=n_samples,
                              seed=seed)
    click.echo(result.table(ref))
    if json_path:
        result.write_json(json_path)
    if plot_path:
        result.plot(plot_path, ref)
        click.echo(f"plot: {plot_path}")


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
@click.option("--chains", type=click.IntRange(min=2), default=_COMBINE.chains, show_default=True)
@click.option("--warmup", type=click.IntRange(min=100), default=_COMBINE.warmup,
              show_default=True)
@click.option("--kernel", type=click.Choice(["nuts", "hmc"]), default=_COMBINE.kernel,
              show_default=True)
@click.option("--seed", type=int, default=_COMBINE.seed, show_default=True)
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
    config = likeflow.MCMCConfig(chains=chains, warmup=warmup, seed=seed, kernel=kernel)
    s, diag = likeflow.combine(surrogates, n, out=output, normal_prior=normal_prior,
                               config=config, progress=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {s.n} samples of {s.dim} parameters to {output}; R-hat max "
               f"{diag['rhat_max']:.4f}")
    if not diag["converged"] and not allow_unconverged:
        _warn("warning: MCMC NOT CONVERGED (R-hat >= 1.01)")
        sys.exit(3)


@cli.command()
@click.argument("surrogate", type=click.Path(dir_okay=False))
@click.option("--params", callback=_names_list, required=True, metavar="NAMES",
              help="Comma-separated parameters to keep, e.g. mu or mu,delta_jes.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Surrogate file of the marginal.")
@click.option("-n", "n", type=click.IntRange(min=1000),
              default=_default(likeflow.marginal, "n"), show_default=True,
              help="Surrogate samples the marginal flow is fitted to.")
@click.option("--seed", type=int, default=_default(likeflow.marginal, "seed"), show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def marginal(surrogate, params, output, n, seed, quiet):
    """A surrogate of the marginal density of some parameters (nuisances integrated out).

    Fits a small flow to surrogate samples of --params: the nuisance-free likelihood, itself a
    surrogate file that 'profile', 'sample' and 'eval' take.
    """
    with likeflow.EpochProgress(quiet=quiet) as bar:
        m = likeflow.marginal(likeflow.load(surrogate), params, n=n, seed=seed, out=output,
                              progress=bar)
    click.echo(f"wrote the marginal of {', '.join(params)} to {output} (test log-likelihood "
               f"{m.training['test_log_prob']:.4f})")


def _prior_bounds(ctx, param, value):
    out = {}
    for item in value:
        try:
            name, rng = item.split("=", 1)
            lo, hi = (float(v) for v in rng.split(":"))
        except ValueError:
            raise click.BadParameter(f"'{item}': give NAME=LO:HI, e.g. mu=0:10") from None
        out[name.strip()] = (lo, hi)
    return out


@cli.command("marginal-stats")
@click.argument("marginal", type=click.Path(dir_okay=False))
@click.option("--prior", "prior_path", type=click.Path(dir_okay=False), default=None,
              help="A surrogate of the prior (same parameters) [default: uniform].")
@click.option("--bounds", "prior_bounds", multiple=True, callback=_prior_bounds,
              metavar="NAME=LO:HI", help="Uniform prior range of a parameter (repeat it); "
              "the others keep the surrogate's bounds.")
@click.option("-n", "n", type=click.IntRange(min=100),
              default=_default(likeflow.marginal_stats, "n"), show_default=True,
              help="Samples of the marginal posterior behind the averages.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the statistics as JSON.")
def marginal_stats(marginal, prior_path, prior_bounds, n, seed, json_path):
    """Marginal KL divergence and Bayesian model dimensionality of a MARGINAL surrogate.

    MARGINAL is a surrogate of the marginal posterior of some parameters (make one with
    'likeflow marginal'). Against a uniform prior (the surrogate's bounds, or --bounds) or a
    prior surrogate (--prior): the information the data gave on those parameters (KL, nats)
    and how many of them the data constrain (BMD), with Monte-Carlo errors.

    \b
    Example:
      likeflow marginal toy.likeflow.h5 --params mu -o mu.likeflow.h5
      likeflow marginal-stats mu.likeflow.h5 --bounds mu=-2:5
    """
    if prior_path and prior_bounds:
        raise LikeflowError("give a prior surrogate (--prior) or uniform bounds (--bounds), "
                            "not both")
    likeflow.check_outputs([json_path], inputs=[marginal, prior_path])
    res = likeflow.marginal_stats(marginal, prior_path or prior_bounds or None, n=n, seed=seed)
    click.echo(res.table())
    if json_path:
        res.write_json(json_path)


# --- generate ---------------------------------------------------------------------------------

@cli.command()
@click.argument("target", type=click.Choice(likeflow.TARGETS))
@click.argument("workspace", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Sample file to write.")
@click.option("--dim", type=click.IntRange(min=1), default=_default(likeflow.generate, "dim"),
              show_default=True, help="gaussian, mixture: number of dimensions.")
@click.option("--components", type=click.IntRange(min=1),
              default=_default(likeflow.generate, "components"), show_default=True,
              help="mixture: number of Gaussian components.")
@click.option("--patch", type=click.Path(exists=True, dir_okay=False), default=None,
              help="pyhf: a JSON patch applied to the WORKSPACE (e.g. a signal hypothesis).")
@click.option("--seed", type=int, default=_default(likeflow.generate, "seed"), show_default=True,
              help="Seeds the target's random construction (gaussian, mixture) and the sampler.")
@click.option("--mcmc/--exact", "use_mcmc", default=None,
              help="gaussian, mixture: sample by MCMC instead of exactly (exact is the default "
                   "where it exists).")
@click.option("--chains", type=click.IntRange(min=2), default=_MCMC.chains,
              help="MCMC: parallel chains [default: from -n, 4 to 32; long chains beat many].")
@click.option("--warmup", type=click.IntRange(min=100), default=_MCMC.warmup, show_default=True,
              help="MCMC: adaptation steps per chain, discarded.")
@click.option("--thin", type=click.IntRange(min=1), default=_MCMC.thin,
              help="MCMC: keep every THIN-th draw [default: so that every chain draws at least "
                   "1000 times].")
@click.option("--kernel", type=click.Choice(["nuts", "hmc", "rwm"]), default=_MCMC.kernel,
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
@click.option("--anchors/--no-anchors", "anchors", default=None,
              help="Add anchors along the exact profile of the POI: the target's conditional "
                   "modes out to q = 9 and points between them and the samples, with their "
                   "exact log densities. Profiles and limits are decided there and no sample "
                   "goes there; 'fit' trains on them and 'validate' measures the profile's "
                   "error at held-out ones [default: for targets with a POI].")
def generate(target, workspace, n, output, dim, components, patch, seed, use_mcmc, chains,
             warmup, thin, kernel, poi, asimov, allow_unconverged, xla, as_float32, anchors):
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
    mcmc = likeflow.MCMCConfig(chains=chains, warmup=warmup, thin=thin, kernel=kernel,
                               jit_compile=xla)
    method = {None: "auto", True: "mcmc", False: "exact"}[use_mcmc]
    g = likeflow.generate(target, n, out=output, seed=seed, method=method, mcmc=mcmc,
                          float32=as_float32, dim=dim, components=components,
                          workspace=workspace, patch=patch, poi=poi, asimov=asimov,
                          anchors=anchors, progress=lambda m: click.echo(m, err=True))
    if g.diagnostics:
        click.echo(g.summary(), err=True)
    click.echo(f"wrote {g.samples.n} samples of {g.samples.dim} parameters to {output} "
               f"({g.elapsed:.0f} s)")
    if not g.converged:
        _warn(f"warning: MCMC NOT CONVERGED: R-hat {g.diagnostics['rhat_max']:.4f} >= "
              f"{mcmc.rhat_max}; run longer (-n), with more --warmup or --thin")
        if not allow_unconverged:
            sys.exit(3)


def main() -> None:
    """Console-script entry point."""
    likeflow.guard_reads()  # a damaged HDF5 file that hangs its reader ends in one line, exit 2
    # outside a command's work (start-up, and the interpreter's shutdown after the files are
    # complete) SIGTERM ends the process at once with 130, as inside it (there via
    # KeyboardInterrupt, so that the work cleans up)
    likeflow.interrupts.exit_on_sigterm(130)
    cli(prog_name="likeflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
