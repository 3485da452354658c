"""likeflow benchmarks: speed, memory and accuracy, printed as tables and written as JSON.

    python scripts/bench.py throughput sampling        # pick sub-benchmarks
    python scripts/bench.py all --toy toy500k.h5 --out bench.json

Sub-benchmarks:
  throughput  training samples/s of optimizer steps (after warm-up) per architecture at D=95,
              batch 512, next to a plain TFP MAF in a minimal tf.function loop and (with
              --peer-python) zuko's MAF and NSF of the same sizes, with the ratios
  sampling    sampling and log_prob points/s of a 95-dim surrogate per architecture, peak RSS
  quality     'likeflow fit' with defaults on the toy file (--toy): wall time, epochs, the
              validation summary next to the noise floor (--fit-args: e.g. --flow cnsf
              --max-time 180 for time to quality, --flow ansf --max-time 300 for the budget)
  small       few samples (issue 28): 'likeflow fit' with defaults (and with each
              --small-batches, e.g. 1024, the batch of every file before session 19) on the
              README's example and on --small-sets disjoint blocks of --small-n rows of --toy:
              verdict, log-density correlation, test log-likelihood, the q~ and credible limits
              of mu against data/lhc_toy_95d_reference.json; the spread over the blocks is what
              the sample size allows
  profile     'likeflow profile --points 31' of --profile-surrogates: wall time after TF
              start-up, accuracy against --profile-compare references
  scaling     time per epoch and held-out quality for correlated Gaussians, D = 10 .. 1000
  memory      peak RSS of 'likeflow fit --max-samples' on a large file (--big, made if missing)
  streamfit   'likeflow fit --stream' for one epoch over the whole large file (--big): peak RSS,
              rows trained on; run it alone (the peak is the largest child's)
  devices     the same fit on one device and mirrored on two logical CPU devices (each in a
              fresh process): samples/s and validation loss of both
  stream      peak RSS of 'likeflow sample -n 10000000' of a 95-dim default MAF (streamed to disk)
  bounded     a pyhf likelihood whose POI sits at its lower bound: mass outside the bounds and
              every dimension's W1 against the noise floor
  reader      the numpy reader beside TensorFlow (issue 14): import + load in a fresh
              process with and without TensorFlow, log_prob of --points points, 10^5 samples,
              and onnxruntime on the exported graph
  piecewise   four separated Gaussians in 10 dims: a single flow against fit --clusters auto
              (mass between the modes, validation, held-out log-likelihood)
  workspace   'likeflow fit WS.json --patch P.json' with defaults on --real-cases (issue 30):
              wall time per stage, the exact check in the file, then publish and verify
  real        real ATLAS likelihoods (the sbottom search's pyhf workspaces, read from --atlas):
              'likeflow generate pyhf' (observed and Asimov) and 'likeflow fit' with defaults,
              then the surrogate's profile, profile limit, credible limit and CLs limits next
              to the exact ones (the same code on the pyhf workspace), and pyhf's own CLs

Every figure is measured on the machine it runs on, which the output names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLOWS = ("maf", "realnvp", "ansf", "cnsf")


def machine() -> dict:
    import tensorflow as tf
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    gpus = [g.name for g in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__,
            "python": platform.python_version(), "gpu": gpus or None}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(f"{_fmt(v):>{w}}" for v, w in zip(r, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def toy_like(n: int, d: int = 95, seed: int = 0) -> np.ndarray:
    """Gaussian stand-in with the toy's shape when no toy file is given (speed only)."""
    return np.random.default_rng(seed).normal(size=(n, d))


# --- 1. training throughput --------------------------------------------------------------------

def peer(args, **kw) -> dict | None:
    """zuko's figures from ``scripts/peer_zuko.py`` run by ``--peer-python`` (None: no peer)."""
    if not args.peer_python:
        return None
    cmd = [args.peer_python, os.path.join(os.path.dirname(__file__), "peer_zuko.py")]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", *(str(x) for x in (v if isinstance(v, (list, tuple))
                                                                   else [v]))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"peer failed: {proc.stderr[-500:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_throughput(args) -> dict:
    """Training samples/s at D=95, batch 512, 5 x [64, 64]: likeflow's flows through
    ``train`` (its compiled blocks of steps, validation included), the MAF also without its
    marginal spline (zuko's MAF has none), a plain TFP MAF in a minimal tf.function loop, and
    zuko's MAF and NSF, all in this one run; ratios to the peers."""
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras

    from likeflow.flows.config import FlowConfig
    from likeflow.flows.tf_flow import build_flow
    from likeflow.fitting.loop import TrainConfig, train

    d, batch = 95, 512
    x = toy_like(batch * 60, d).astype(np.float32)
    out = {}
    cases = [(f, {}) for f in args.flows]
    if "maf" in args.flows:
        cases.insert(1, ("maf", {"marginal_spline": False}))
    # the spline flows also with other bin counts (--spline-bins), to measure the default
    cases += [(f, {"bins": k}) for f in args.flows if f in ("ansf", "cnsf")
              for k in args.spline_bins]
    for flow, extra in cases:
        f = build_flow(FlowConfig.from_data(x, flow=flow, **extra))
        # one call of 5 epochs of 50 steps: the first epoch compiles, the median of the other
        # four is the steady state; each epoch's time includes its validation pass
        n = batch * 50
        res = train(f, x[:n], x[n:n + batch], config=TrainConfig(
            epochs=5, batch_size=batch, patience=100, schedule="plateau"))
        name = flow + (" (no marginal spline)" if "marginal_spline" in extra
                       else f" (K={extra['bins']})" if "bins" in extra else "")
        out[name] = n / float(np.median([h["time"] for h in res.history[1:]]))
    # baseline: a plain TFP MAF (same size as likeflow's default) in a minimal loop
    default = FlowConfig.from_data(x[:100])
    layers = []
    for i in range(default.layers):
        made = tfp.bijectors.AutoregressiveNetwork(params=2, event_shape=[d],
                                                   hidden_units=list(default.hidden),
                                                   activation=default.activation)
        layers += [tfp.bijectors.MaskedAutoregressiveFlow(made)]
        if i < default.layers - 1:
            layers.append(tfp.bijectors.Permute(list(range(d - 1, -1, -1))))
    dist = tfp.distributions.TransformedDistribution(
        tfp.distributions.MultivariateNormalDiag(loc=tf.zeros(d)), tfp.bijectors.Chain(layers))
    dist.log_prob(x[:2])
    opt = tf_keras.optimizers.Adam(1e-3)
    variables = dist.trainable_variables

    @tf.function
    def step(xb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(xb))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    xs = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(50)]
    for xb in xs[:5]:
        step(xb)
    t0 = time.perf_counter()
    for _ in range(4):
        for xb in xs:
            step(xb)
    float(step(xs[0]))
    out["plain TFP MAF loop"] = batch * 50 * 4 / (time.perf_counter() - t0)
    z = peer(args, dim=d, layers=default.layers, hidden=list(default.hidden), batch=batch,
             bins=default.bins, flows=["maf", "nsf"], sample_n=1000)
    if z:
        out["zuko MAF"] = z["maf"]["train_per_s"]
        out["zuko NSF"] = z["nsf"]["train_per_s"]
        out["peer"] = {k: z[k] for k in ("torch", "zuko", "threads")}
    ratios = {}
    for name, v in out.items():
        if not isinstance(v, float):
            continue
        ratios[name] = {"vs_tfp": v / out["plain TFP MAF loop"],
                        "vs_zuko_maf": v / out["zuko MAF"] if "zuko MAF" in out else None,
                        "vs_zuko_nsf": v / out["zuko NSF"] if "zuko NSF" in out else None,
                        "vs_our_maf": v / out["maf"] if "maf" in out else None}
    out["ratios"] = ratios
    table("training throughput, D=95, batch 512, 5 x [64, 64] (samples/s, one run)",
          ["flow", "samples/s", "/ plain TFP", "/ zuko MAF", "/ zuko NSF", "/ our MAF"],
          [[k, out[k], r["vs_tfp"], r["vs_zuko_maf"] or "-", r["vs_zuko_nsf"] or "-",
            r["vs_our_maf"] or "-"] for k, r in ratios.items()])
    return out


# --- 2. sampling and log_prob throughput -------------------------------------------------------

def bench_sampling(args) -> dict:
    """Sampling and log_prob of ``--points`` points of a 95-dim surrogate of the default
    sizes per architecture: the first call (XLA compiles inside it, as a user's first call
    does) and a second one; zuko's MAF and NSF of the same sizes beside (10^4 points: its
    NSF sampling inverts the network once per dimension and runs out of memory at 10^5)."""
    from likeflow.flows.config import FlowConfig
    from likeflow.flows.tf_flow import build_flow
    from likeflow.surrogate.artifact import Surrogate

    n = args.points
    x = toy_like(20000).astype(np.float32)
    out = {}
    for flow in args.flows:
        sur = Surrogate(build_flow(FlowConfig.from_data(x, flow=flow)))
        rss0 = peak_rss_mb()
        rec = {"n": n}
        for call in ("first", "second"):
            t0 = time.perf_counter()
            s = sur.sample(n, seed=1)
            rec[f"sample_{call}_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            sur.log_prob(s)
            rec[f"log_prob_{call}_s"] = time.perf_counter() - t0
        rec.update(peak_rss_mb=peak_rss_mb(), rss_growth_mb=peak_rss_mb() - rss0)
        out[flow] = rec
    z = peer(args, dim=95, layers=5, hidden=[64, 64], flows=["maf", "nsf"], sample_n=10_000,
             steps=6)
    rows = [[k, v["sample_first_s"], v["sample_second_s"], v["n"] / v["sample_second_s"],
             v["log_prob_first_s"], v["log_prob_second_s"], v["n"] / v["log_prob_second_s"],
             v["peak_rss_mb"]] for k, v in out.items()]
    if z:
        out["zuko"] = z
        for k in ("maf", "nsf"):
            m = z[k]["sample_n"]
            rows.append([f"zuko {k} ({m} pts)", z[k]["sample_s"], "-", m / z[k]["sample_s"],
                         z[k]["log_prob_s"], "-", m / z[k]["log_prob_s"], "-"])
    table(f"sampling and log_prob of {n} points, D=95 (default sizes)",
          ["flow", "sample s (1st)", "(2nd)", "points/s", "log_prob s (1st)", "(2nd)",
           "points/s", "peak RSS MB"], rows)
    return out


# --- 3. time to quality ------------------------------------------------------------------------

def bench_quality(args) -> dict:
    if not args.toy:
        print("quality: give --toy FILE (e.g. from 'likeflow generate lhc-toy -n 500000')")
        return {}
    out_path = os.path.join(args.workdir, "bench_quality.likeflow.h5")
    cmd = [sys.executable, "-m", "likeflow", "fit", args.toy, "-o", out_path, "-q",
           *args.fit_args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr)
        return {"error": proc.stderr[-2000:]}
    import likeflow
    sur = likeflow.load(out_path)
    res = sur.training["result"]
    rows = {r["metric"]: r for r in sur.validation.get("rows", [])}
    cfg = sur.training.get("config", {})
    out = {"wall_s": wall, "training_s": res["elapsed"], "epochs": len(res["history"]),
           "best_epoch": res["best_epoch"] + 1, "fit_args": args.fit_args,
           "stopped": res["stopped"], "final_lr": res["learning_rate"],
           "annealed": res["learning_rate"] <= 10 * cfg.get("min_learning_rate", 1e-6),
           "validation": sur.validation}
    table("time to quality on the toy ('likeflow fit' defaults"
          + (f" + {' '.join(args.fit_args)}" if args.fit_args else "") + ")",
          ["metric", "surrogate", "noise floor"],
          [[k, r["surrogate"], r["noise_floor"] if r["noise_floor"] is not None else "-"]
           for k, r in rows.items()])
    print(f"wall {wall:.0f} s, training {res['elapsed']:.0f} s, {len(res['history'])} epochs "
          f"(best {res['best_epoch'] + 1}), stopped: {res['stopped']}, final learning rate "
          f"{res['learning_rate']:.2g}{' (annealed)' if out['annealed'] else ''}; "
          f"{sur.validation.get('verdict', '')}")
    return out


# --- 3a. few samples ------------------------------------------------------------------------------

def bench_small(args) -> dict:
    import likeflow
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
    ref = likeflow.read_reference(os.path.join(here, "lhc_toy_95d_reference.json"))
    files = [("README example", os.path.join(here, "lhc_toy_95d_example.h5"))]
    if args.toy:
        s = likeflow.read_samples(args.toy)
        for k in range(min(args.small_sets, s.n // args.small_n)):
            path = os.path.join(args.workdir, f"bench_small_block{k}.h5")
            if not os.path.exists(path):   # whole chains: the file is written chain by chain
                likeflow.write_samples(path, s.subset(np.arange(k * args.small_n,
                                                                (k + 1) * args.small_n)))
            files.append((f"block {k} of {os.path.basename(args.toy)}", path))
    settings = [("default", [])] + [(f"batch {b}", ["--batch-size", str(b)])
                                    for b in args.small_batches]
    settings += [(opts, opts.split()) for opts in args.small_settings]
    out, rows = {"reference": {"q_limit": ref["upper_limit"],
                               "credible": ref["bayesian_upper_limit"]}}, []
    for label, path in files:
        for setting, extra in settings:
            sur_path = os.path.join(args.workdir, "bench_small.likeflow.h5")
            js = os.path.join(args.workdir, "bench_small_profile.json")
            wall, _ = _cli(["fit", path, "-o", sur_path, "-q", *extra],
                           os.path.join(args.workdir, "bench_small_fit.log"))
            _cli(["profile", sur_path, "--poi", "mu", "--range", "-0.6:2.4", "--points", "31",
                  "--json", js], os.path.join(args.workdir, "bench_small_profile.log"))
            sur = likeflow.load(sur_path)
            with open(js) as f:
                prof = json.load(f)
            metrics = {r["metric"]: r["surrogate"] for r in sur.validation.get("rows", [])}
            rec = {"file": label, "setting": setting, "wall_s": wall,
                   "batch": sur.training["config"]["batch_size"],
                   "verdict": sur.validation.get("verdict"),
                   "pearson": metrics.get("log-prob Pearson"),
                   "test_log_prob": sur.training.get("test_log_prob"),
                   "q_limit": prof["upper_limit"]["value"],
                   "credible": prof["bayesian_upper_limit"]["value"]}
            rec["q_limit_rel"] = rec["q_limit"] / ref["upper_limit"] - 1
            rec["credible_rel"] = rec["credible"] / ref["bayesian_upper_limit"] - 1
            out.setdefault("fits", []).append(rec)
            rows.append([label, setting, rec["batch"], rec["verdict"], rec["pearson"],
                         rec["test_log_prob"], f"{100 * rec['q_limit_rel']:+.1f}%",
                         f"{100 * rec['credible_rel']:+.1f}%", wall])
    table(f"few samples: 'likeflow fit' then 'profile' (exact q~ limit {ref['upper_limit']:.4f}"
          f", credible {ref['bayesian_upper_limit']:.4f})",
          ["file", "setting", "batch", "verdict", "log-prob Pearson", "test log L",
           "q~ limit", "credible", "fit s"], rows)
    for setting, _ in settings:
        q = [r["q_limit_rel"] for r in out["fits"] if r["setting"] == setting]
        c = [r["credible_rel"] for r in out["fits"] if r["setting"] == setting]
        out[setting] = {"q_limit_rel_mean": float(np.mean(q)), "q_limit_rel_std":
                        float(np.std(q)), "credible_rel_mean": float(np.mean(c)),
                        "credible_rel_std": float(np.std(c))}
        print(f"{setting}: q~ limit {100 * np.mean(q):+.1f} +- {100 * np.std(q):.1f}%, "
              f"credible {100 * np.mean(c):+.1f} +- {100 * np.std(c):.1f}% over {len(q)} fits")
    return out


# --- 3b. profiles --------------------------------------------------------------------------------

def bench_profile(args) -> dict:
    """'likeflow profile SURROGATE --points 31' as a user runs it, per surrogate of
    ``--profile-surrogates`` (with its Asimov partner, if the file names one: CLs too): the
    command's wall time, TensorFlow's start-up (measured alone) and the difference; with
    ``--profile-compare`` (one reference per surrogate, or '-') the largest |q - q_ref| where
    q_ref < 4 and the limits beside the reference's."""
    tf_start = _cli_wall([sys.executable, "-c",
                          "from likeflow.tfsetup import import_tf; import_tf()"])
    out = {"tf_startup_s": tf_start}
    refs = args.profile_compare or ["-"] * len(args.profile_surrogates)
    rows = []
    for path, ref in zip(args.profile_surrogates, refs):
        js = os.path.join(args.workdir, "bench_profile.json")
        cmd = ["profile", path, "--points", "31", "--json", js]
        if ref != "-":
            cmd += ["--compare", ref]
        if args.profile_range:
            cmd += ["--range", args.profile_range]
        try:
            wall, _ = _cli(cmd, os.path.join(args.workdir, "bench_profile.log"))
        except RuntimeError as e:
            print(e)
            out[path] = {"error": str(e)}
            continue
        with open(js) as f:
            res = json.load(f)
        rec = {"wall_s": wall, "after_tf_startup_s": wall - tf_start,
               "upper_limit": (res["upper_limit"] or {}).get("value"),
               "bayesian_upper_limit": (res["bayesian_upper_limit"] or {}).get("value"),
               "cls_observed": (res["cls"] or {}).get("observed")}
        if ref != "-":
            import likeflow
            r = likeflow.read_reference(ref)
            q_ref = np.interp(res["profile"]["values"], r["values"], r["q"], left=np.nan,
                              right=np.nan)
            near = np.isfinite(q_ref) & (q_ref < 4) & np.array(res["profile"]["trusted"])
            rec["max_abs_dq_q_lt_4"] = float(np.max(np.abs(
                np.array(res["profile"]["q"])[near] - q_ref[near]))) if near.any() else None
            rec["reference"] = {k: r.get(k) for k in ("upper_limit", "bayesian_upper_limit")}
        out[path] = rec
        rows.append([os.path.basename(path), wall, wall - tf_start,
                     rec.get("max_abs_dq_q_lt_4", "-"), rec["upper_limit"] or "none",
                     (rec.get("reference") or {}).get("upper_limit") or "-",
                     rec["bayesian_upper_limit"] or "-",
                     (rec.get("reference") or {}).get("bayesian_upper_limit") or "-"])
    table(f"likeflow profile --points 31 (TF start-up alone {tf_start:.1f} s)",
          ["surrogate", "wall s", "after TF start-up s", "max|dq| (q<4)", "limit",
           "reference", "credible", "reference"], rows)
    return out


def _cli_wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0


# --- 4. scaling with dimension -----------------------------------------------------------------

def bench_scaling(args) -> dict:
    from likeflow.targets.likelihoods import CorrelatedGaussian
    from likeflow.data.samples import SampleSet
    from likeflow.fitting.run import fit
    from likeflow.fitting.loop import TrainConfig

    out = {}
    for d in args.dims:
        t = CorrelatedGaussian(d, seed=0)
        n = args.scaling_n
        x = t.sample(n, seed=1)
        s = SampleSet(x, log_prob=t.evaluate(x)["log_prob"])
        t0 = time.perf_counter()
        sur = fit(s, validate=False, train_config=TrainConfig(epochs=args.scaling_epochs))
        wall = time.perf_counter() - t0
        hist = sur.training["result"]["history"]
        gap = (sur.training["test_log_prob_target"] - sur.training["test_log_prob"]) / d
        out[d] = {"n": n, "epochs": len(hist),
                  "s_per_epoch": float(np.median([h["time"] for h in hist])),
                  "wall_s": wall, "test_gap_nats_per_dim": gap}
    table("scaling: correlated Gaussians, MAF defaults", ["D", "n", "epochs", "s/epoch",
                                                          "wall s", "nats/dim below truth"],
          [[d, v["n"], v["epochs"], v["s_per_epoch"], v["wall_s"], v["test_gap_nats_per_dim"]]
           for d, v in out.items()])
    return out


# --- 5. memory of a fit on a large file --------------------------------------------------------

def big_file(args) -> str:
    """The large sample file of the memory benchmarks (``--big``, written if missing):
    ``--big-rows`` x 95 float32 standard-normal rows."""
    import h5py
    path, rows = args.big, args.big_rows
    if not os.path.exists(path):
        print(f"writing {rows} x 95 rows to {path} ...", flush=True)
        rng = np.random.default_rng(0)
        with h5py.File(path, "w") as f:
            # float32, as MCMC output is often stored: 7.6 GB for 20M rows
            ds = f.create_dataset("samples", shape=(rows, 95), dtype="f4", chunks=(8192, 95))
            for i in range(0, rows, 500_000):
                m = min(500_000, rows - i)
                ds[i:i + m] = rng.standard_normal(size=(m, 95), dtype=np.float32)
    return path


def bench_memory(args) -> dict:
    path, rows = big_file(args), args.big_rows
    out_path = os.path.join(args.workdir, "bench_memory.likeflow.h5")
    cmd = [sys.executable, "-m", "likeflow", "fit", path, "-o", out_path, "-q",
           "--max-samples", str(args.memory_max_samples), "--epochs", "2", "--no-validate"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {"rows": rows, "file_gb": os.path.getsize(path) / 1e9, "max_samples":
           args.memory_max_samples, "peak_rss_mb": peak, "wall_s": wall,
           "returncode": proc.returncode}
    table("memory: fit on a large file", ["rows", "file GB", "max samples", "peak RSS MB",
                                          "wall s"],
          [[rows, out["file_gb"], args.memory_max_samples, peak, wall]])
    return out


def bench_streamfit(args) -> dict:
    """'likeflow fit --stream' of the whole large file (``--big``) for one epoch: peak RSS of
    the fit's process, wall time, and the rows trained on (steps x batch) against the
    training rows of the file. Run it alone: the peak is that of the largest child."""
    path, rows = big_file(args), args.big_rows
    out_path = os.path.join(args.workdir, "bench_streamfit.likeflow.h5")
    cmd = [sys.executable, "-m", "likeflow", "fit", path, "-o", out_path, "--stream",
           "--epochs", "1", "--no-validate", "-q"] + list(args.fit_args)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {"rows": rows, "file_gb": os.path.getsize(path) / 1e9, "peak_rss_mb": peak,
           "wall_s": wall, "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    if proc.returncode == 0:
        import likeflow
        training = likeflow.load(out_path, backend="numpy").training
        epoch = training["result"]["history"][0]
        batch = training["devices"]["global_batch"]
        out.update(n_train=training["data"]["n_train"], steps=epoch["steps"], batch=batch,
                   rows_trained=epoch["steps"] * batch, epoch_s=epoch["time"],
                   val_loss=epoch["val_loss"], stream=training["data"]["stream"])
    table("fit --stream: one epoch over a large file", ["rows", "file GB", "training rows",
                                                         "rows trained", "epoch s",
                                                         "peak RSS MB", "wall s"],
          [[rows, out["file_gb"], out.get("n_train"), out.get("rows_trained"),
            out.get("epoch_s"), peak, wall]])
    return out


DEVICES_CHILD = """
import json, sys
import numpy as np
import likeflow
n = int(sys.argv[1])
x = np.random.default_rng(0).normal(size=(512 * 75, 95))
sur = likeflow.fit(x, seed=0, devices=n, validate=False, train_config=likeflow.TrainConfig(
    epochs=5, batch_size=512, patience=100, schedule="plateau"))
h = sur.training["result"]["history"]
rows = h[1]["steps"] * 512
print("RESULT " + json.dumps({"samples_per_s": rows / float(np.median([e["time"] for e in h[1:]])),
                             "val_loss": sur.training["result"]["best_val_loss"],
                             "devices": sur.training["devices"]}))
"""


def _child_result(code: str, *argv) -> tuple[dict | None, subprocess.CompletedProcess]:
    """Run ``code`` in a fresh Python process with ``argv``: the JSON of its ``RESULT`` line
    (None if it printed none) and the finished process (for its stderr)."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)],
                          capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return (json.loads(line[-1][7:]) if line else None), proc


def bench_devices(args) -> dict:
    """The default MAF at D=95, batch 512, trained by 'likeflow.fit' on one device and
    mirrored on two logical CPU devices (tf.distribute.MirroredStrategy), each in a fresh
    process, same seed and global batch: samples/s (median epoch after the first, validation
    included) and the best validation loss."""
    out = {}
    for n in (1, 2):
        res, proc = _child_result(DEVICES_CHILD, n)
        out[n] = res if res is not None else {"error": proc.stderr[-2000:]}
    rows = [[n, r.get("samples_per_s"), r.get("val_loss"),
             r.get("samples_per_s", 0) / out[1].get("samples_per_s", 1)] for n, r in out.items()]
    table("devices: one device against two mirrored logical CPU devices (D=95, batch 512)",
          ["devices", "samples/s", "best val loss", "/ one device"], rows)
    return out


def bench_stream(args) -> dict:
    """'likeflow sample -n N' of a default MAF of ``--stream-dim`` dimensions: peak RSS and
    whether the file holds N rows (the samples are streamed to the file, not held in memory)."""
    import h5py

    from likeflow.data.samples import SampleSet
    from likeflow.fitting.run import fit
    from likeflow.fitting.loop import TrainConfig

    sur_path = os.path.join(args.workdir, "bench_stream.likeflow.h5")
    x = np.random.default_rng(0).normal(size=(20_000, args.stream_dim))
    fit(SampleSet(x), validate=False, train_config=TrainConfig(epochs=3), out=sur_path)
    out_path = os.path.join(args.workdir, "bench_stream_samples.h5")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "likeflow", "sample", sur_path, "-n",
                           str(args.stream_n), "-o", out_path], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with h5py.File(out_path, "r") as f:
        rows = int(f["samples"].shape[0])
        finite = bool(np.isfinite(f["samples"][-1000:]).all() and
                      np.isfinite(f["log_prob"][-1000:]).all())
    size = os.path.getsize(out_path) / 1e9
    os.remove(out_path)
    out = {"n": args.stream_n, "rows_in_file": rows, "last_rows_finite": finite,
           "peak_rss_mb": peak, "wall_s": wall, "file_gb": size, "returncode": proc.returncode}
    table(f"stream: likeflow sample -n N, {args.stream_dim}-dim MAF (default sizes)",
          ["N", "rows in file", "file GB", "peak RSS MB", "wall s"],
          [[args.stream_n, rows, size, peak, wall]])
    return out


# --- 6. a POI at its bound (pyhf) ---------------------------------------------------------------

def bounded_workspace(bins: int = 20) -> dict:
    """One channel of ``bins`` bins (per-bin staterror, two normsys, mu in [0, 10]) whose data
    fall short of the background where the signal would be: the best fit of mu is at 0."""
    x = np.arange(bins)
    bkg = (120 * np.exp(-x / 8) + 4).round(1)
    sig = (10 * np.exp(-0.5 * ((x - 8) / 2.5) ** 2)).round(2)
    obs = np.floor(bkg - 0.8 * np.sqrt(bkg) * (np.abs(x - 8) < 4))  # a deficit under the signal
    samples = [
        {"name": "signal", "data": sig.tolist(), "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "lumi", "type": "normsys", "data": {"hi": 1.02, "lo": 0.98}}]},
        {"name": "background", "data": bkg.tolist(), "modifiers": [
            {"name": "staterror_sr", "type": "staterror", "data": (0.06 * bkg).tolist()},
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
    ]
    return {"channels": [{"name": "sr", "samples": samples}],
            "observations": [{"name": "sr", "data": obs.tolist()}],
            "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0.0, 10.0]]}]}}],
            "version": "1.0.0"}


def bench_bounded(args) -> dict:
    """Samples of the bounded workspace (random-walk Metropolis on pyhf), the default fit, and
    per-dimension W1 against a noise floor averaged over several half-splits of the test set."""
    from likeflow.validation import metrics
    from likeflow.targets.likelihoods.pyhf_target import PyhfTarget
    from likeflow.targets.mcmc import MCMCConfig, run_mcmc
    from likeflow.validation.report import validate
    from likeflow.data.samples import SampleSet, write_samples
    from likeflow.fitting.run import fit
    from likeflow.fitting.loop import TrainConfig

    t = PyhfTarget(bounded_workspace())
    t0 = time.perf_counter()
    res = run_mcmc(t, args.bounded_n, MCMCConfig(seed=1))
    t_mcmc = time.perf_counter() - t0
    ev = t.evaluate(res.samples)
    s = SampleSet(res.samples, names=t.names, poi=t.poi, bounds=t.bounds,
                  log_prob=ev["log_prob"])
    t0 = time.perf_counter()
    write_samples(os.path.join(args.workdir, "bounded.h5"), s)
    sur = fit(s, validate=False, train_config=TrainConfig(**json.loads(args.bounded_train)),
              out=os.path.join(args.workdir, "bounded.likeflow.h5"))
    t_fit = time.perf_counter() - t0
    test, _ = sur.held_out(s)
    v = validate(sur, test, seed=0)
    # W1 at n = 10k is itself noisy (~20% per dimension), for the surrogate as for the floor:
    # both are averaged over 8 random half-splits A/B of the test set (surrogate: fresh samples
    # against A, floor: B against A), so that the ratio measures the surrogate, not the noise
    rng = np.random.default_rng(0)
    m = test.n // 2
    model_w1, floor_w1 = [], []
    for k in range(8):
        rows = rng.permutation(test.n)
        a, b = test.values[rows[:m]], test.values[rows[m:2 * m]]
        model_w1.append(metrics.wasserstein_per_dim(sur.sample(m, seed=100 + k), a)[1])
        floor_w1.append(metrics.wasserstein_per_dim(b, a)[1])
    ratio = np.mean(model_w1, axis=0) / np.mean(floor_w1, axis=0)
    draws = sur.sample(200_000, seed=3)
    b = t.bounds
    outside = int(np.sum(np.any((draws < b[:, 0]) | (draws > b[:, 1]), axis=1)))
    i_mu = t.names.index("mu")
    near = 0.02  # mass piled up at the bound mu = 0
    out = {"parameters": t.dim, "samples": s.n, "mcmc_s": t_mcmc, "train": args.bounded_train,
           "rhat_max": float(res.rhat.max()), "ess_min": float(res.ess.min()),
           "fit_s": t_fit, "epochs": len(sur.training["result"]["history"]),
           "test_points": test.n, "w1_ratio_max": float(ratio.max()),
           "w1_ratio_median": float(np.median(ratio)),
           "worst_dimension": t.names[int(np.argmax(ratio))],
           "dims_within_1p2": int(np.sum(ratio <= 1.2)),
           "mu_fraction_below_0p02": {"data": float(np.mean(test.values[:, i_mu] < near)),
                                      "surrogate": float(np.mean(draws[:, i_mu] < near))},
           "samples_outside_bounds": outside, "flagged": v.flagged,
           "summary": v.summary()}
    table(f"POI at its bound: pyhf, {t.dim} parameters, {s.n} samples", ["figure", "value"],
          [[k, v] for k, v in out.items() if k not in ("summary", "mu_fraction_below_0p02")]
          + [["P(mu < 0.02) data / surrogate",
              f"{out['mu_fraction_below_0p02']['data']:.4f} / "
              f"{out['mu_fraction_below_0p02']['surrogate']:.4f}"]])
    return out


# case: (region, patch, signal scale). B, C: the insensitive patch 1300_205_60 (q < 0.1 on
# [0, 10]); C40 is RegionC with that signal (yields, histosys, staterror) scaled by 40: real
# backgrounds and systematics, a hypothetical stronger signal, best fit at the bound 0. B900,
# B1000, C1300, C1200: the sensitive patches of the README in --atlas (a limit inside [0, 10]).
REAL_CASES = {"B": ("RegionB", "1300_205_60", 1.0), "C": ("RegionC", "1300_205_60", 1.0),
              "C40": ("RegionC", "1300_205_60", 40.0),
              "B900": ("RegionB", "900_850_60", 1.0), "B1000": ("RegionB", "1000_950_60", 1.0),
              "C1300": ("RegionC", "1300_1295_60", 1.0),
              "C1200": ("RegionC", "1200_1195_60", 1.0)}


def real_workspace(args, region: str, patch_name: str, scale: float) -> tuple[str, str | None]:
    """(workspace, patch) of a case; a scaled signal is written, patched, into --workdir."""
    d = os.path.join(args.atlas, region)
    ws, patch = os.path.join(d, "BkgOnly.json"), os.path.join(d, f"patch.sbottom_{patch_name}.json")
    if scale == 1.0:
        return ws, patch
    import jsonpatch
    with open(ws) as f, open(patch) as g:
        spec = jsonpatch.apply_patch(json.load(f), json.load(g))
    for ch in spec["channels"]:
        for smp in ch["samples"]:
            if smp["name"] != f"sbottom_{patch_name}":
                continue
            smp["data"] = [v * scale for v in smp["data"]]
            for m in smp["modifiers"]:
                if m["type"] == "histosys":
                    m["data"] = {k: [v * scale for v in m["data"][k]] for k in m["data"]}
                elif m["type"] == "staterror":
                    m["data"] = [v * scale for v in m["data"]]
    out = os.path.join(args.workdir, f"{region}_{patch_name}_signal_x{scale:g}.json")
    with open(out, "w") as f:
        json.dump(spec, f)
    return out, None


def _cli(cmd: list[str], log: str) -> tuple[float, str]:
    """Run a likeflow command (as a user would), its output to ``log``; wall time and output."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "likeflow", *cmd], capture_output=True,
                         text=True)
    with open(log, "w") as f:
        f.write(out.stdout + out.stderr)
    if out.returncode not in (0, 3):
        raise RuntimeError(f"likeflow {' '.join(cmd)} failed ({out.returncode}); see {log}")
    return time.perf_counter() - t0, out.stdout + out.stderr


def _pyhf_cls_numpy(ws: str, patch: str | None, hi: float) -> dict:
    """pyhf's own CLs limits (numpy backend, in a process of its own)."""
    code = ("import json, sys, jsonpatch, pyhf; pyhf.set_backend('numpy');"
            "spec = json.load(open(sys.argv[1]));"
            "spec = jsonpatch.apply_patch(spec, json.load(open(sys.argv[2]))) "
            "if sys.argv[2] != '-' else spec;"
            "ws = pyhf.Workspace(spec); m = ws.model();"
            "o, e = pyhf.infer.intervals.upper_limits.toms748_scan(ws.data(m), m, 0.0, "
            "float(sys.argv[3]), rtol=1e-5); print(json.dumps([float(o), [float(x) for x in e]]))")
    out = subprocess.run([sys.executable, "-c", code, ws, patch or "-", str(hi)],
                         capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1]}
    o, e = json.loads(out.stdout.strip().splitlines()[-1])
    return {"observed": o, "expected": sorted(e)}


def bench_real(args) -> dict:
    """Real likelihoods end to end, surrogate against exact, one case after the other."""
    import likeflow
    from likeflow.infer.cls import cls_limits
    from likeflow.infer.inference import bayesian_upper_limit, scan, upper_limit
    from likeflow.targets.likelihoods.pyhf_target import PyhfTarget
    from likeflow.data.samples import mcmc_record, read_samples

    results = {}
    for case in args.real_cases:
        region, patch_name, scale = REAL_CASES[case]
        ws, patch = real_workspace(args, region, patch_name, scale)
        pre = os.path.join(args.workdir, f"real_{case}")
        res = {"region": region, "signal_scale": scale, "patch": patch_name}
        for kind, extra in (("obs", []), ("asimov", ["--asimov"])):
            h5 = f"{pre}_{kind}.h5"
            if not (args.reuse and os.path.exists(h5)):
                cmd = ["generate", "pyhf", ws, "-n", str(args.real_n), "-o", h5, *extra]
                res[f"generate_{kind}_s"], _ = _cli(cmd + (["--patch", patch] if patch else []),
                                                     f"{pre}_{kind}_generate.log")
            rec = mcmc_record(h5)
            res[f"mcmc_{kind}"] = {k: rec[k] for k in ("rhat_max", "ess_min", "chains",
                                                       "draws_per_chain", "converged")}
        for kind in ("asimov", "obs"):
            partner = ["--asimov-partner", f"{pre}_asimov.likeflow.h5"] if kind == "obs" else []
            log = f"{pre}_{kind}_fit.log"
            if args.reuse_fits and os.path.exists(f"{pre}_{kind}.likeflow.h5"):
                with open(log) as f:
                    res[f"verdict_{kind}"] = [ln for ln in f.read().splitlines()
                                              if ln.startswith("verdict:")][-1]
                res[f"fit_{kind}_s"] = float("nan")
                continue
            res[f"fit_{kind}_s"], text = _cli(
                ["fit", f"{pre}_{kind}.h5", "-o", f"{pre}_{kind}.likeflow.h5", "-q", *partner,
                 *args.real_fit_args], f"{pre}_{kind}_fit.log")
            res[f"verdict_{kind}"] = [ln for ln in text.splitlines()
                                      if ln.startswith("verdict:")][-1]
        sur = likeflow.load(f"{pre}_obs.likeflow.h5")
        sur_a = likeflow.load(f"{pre}_asimov.likeflow.h5")
        exact = PyhfTarget(ws, patch=patch)
        exact_a = PyhfTarget(ws, patch=patch, asimov=True)
        poi = exact.poi[0]
        i = exact.names.index(poi)
        hi = float(exact.bounds[i, 1])
        grid = np.linspace(0.0, hi, args.real_points)
        t0 = time.perf_counter()
        prof_e = scan(exact, poi, grid)
        lim_e = upper_limit(exact, poi, prof=prof_e)
        cls_e = cls_limits(exact, exact_a, poi, best=prof_e.best)
        res["exact_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prof_s = scan(sur, poi, grid)
        lim_s = upper_limit(sur, poi, prof=prof_s)
        res["profile_s"] = time.perf_counter() - t0
        cred_s = bayesian_upper_limit(sur, poi)
        t0 = time.perf_counter()
        try:
            cls_s = cls_limits(sur, sur_a, poi, best=prof_s.best)
        except Exception as e:  # noqa: BLE001 - a benchmark reports the failure and goes on
            print(f"CLs of the surrogate failed: {type(e).__name__}: {e}")
            cls_s = None
        res["cls_s"] = time.perf_counter() - t0
        data = read_samples(f"{pre}_obs.h5")
        cred_e = float(np.quantile(data.values[:, i], 0.95))
        keep = prof_e.q < 4
        diff = np.abs(prof_s.q - prof_e.q)[keep]
        res.update({
            "grid": grid.tolist(), "q_exact": prof_e.q.tolist(), "q_surrogate": prof_s.q.tolist(),
            "trusted": prof_s.trusted.tolist(),
            "profile_max_diff_where_exact_q_below_4": float(diff.max()),
            "untrusted_points": int((~prof_s.trusted).sum()),
            "best_fit": {"exact": float(prof_e.best.x[i]), "surrogate": float(prof_s.best.x[i])},
            "profile_limit": {"exact": lim_e.value, "surrogate": lim_s.value},
            "credible_limit": {"exact_samples": cred_e, "surrogate": cred_s.value},
            "cls": {"exact": cls_e.to_dict(), "surrogate": cls_s.to_dict() if cls_s else None,
                    "pyhf": _pyhf_cls_numpy(ws, patch, hi)},
        })
        for part in ("exact", "surrogate"):
            if res["cls"][part]:
                res["cls"][part].pop("scan")

        def rel(a, b):
            return None if a is None or b is None else a / b - 1

        rows = [["R-hat max obs / asimov", f"{res['mcmc_obs']['rhat_max']:.4f} / "
                 f"{res['mcmc_asimov']['rhat_max']:.4f}"],
                ["ESS min obs / asimov", f"{res['mcmc_obs']['ess_min']:.0f} / "
                 f"{res['mcmc_asimov']['ess_min']:.0f}"],
                ["generate obs / asimov (s)", f"{res.get('generate_obs_s', float('nan')):.0f} / "
                 f"{res.get('generate_asimov_s', float('nan')):.0f}"],
                ["fit obs / asimov (s)", f"{res['fit_obs_s']:.0f} / {res['fit_asimov_s']:.0f}"],
                ["verdict obs", res["verdict_obs"]], ["verdict asimov", res["verdict_asimov"]],
                ["best fit exact / surrogate", f"{prof_e.best.x[i]:.4f} / {prof_s.best.x[i]:.4f}"],
                ["profile: max |dq| where exact q < 4", f"{diff.max():.3f}"],
                ["untrusted profile points", res["untrusted_points"]],
                ["profile limit exact / surrogate (rel)", f"{lim_e.value} / {lim_s.value} "
                 f"({rel(lim_s.value, lim_e.value)})"],
                ["credible 95% exact samples / surrogate (rel)",
                 f"{cred_e:.4f} / {cred_s.value:.4f} ({cred_s.value / cred_e - 1:+.4f})"],
                ["CLs observed exact / surrogate / pyhf", f"{cls_e.observed} / "
                 f"{cls_s.observed if cls_s else 'failed'} / "
                 f"{res['cls']['pyhf'].get('observed')}"],
                ["CLs expected exact", cls_e.expected],
                ["CLs expected surrogate", cls_s.expected if cls_s else "failed"],
                ["CLs expected pyhf", res["cls"]["pyhf"].get("expected")],
                ["exact / surrogate profile+limit / CLs (s)",
                 f"{res['exact_s']:.0f} / {res['profile_s']:.0f} / {res['cls_s']:.0f}"]]
        table(f"real likelihood {case}: {region}, patch {patch_name}, signal x{scale:g}, "
              f"{exact.dim} parameters", ["figure", "value"], rows)
        results[case] = res
    return results


# --- 11. piecewise flows (issue 18) ---------------------------------------------------------------

def bench_piecewise(args) -> dict:
    """Four separated Gaussians in 10 dimensions (modes at (+-5, +-5, 0, ..., 0), unit
    covariance), ``--piecewise-n`` samples: a single default MAF against ``fit --clusters auto``
    (default MAFs per cluster): time, validation against the noise floor, held-out
    log-likelihood next to the exact one, and the mass each puts between the modes (beyond the
    radius that holds all but 6.3e-5 of a mode's mass, 4 sigma two-sided, from every mode; the
    exact mixture's share there is 6.3e-5)."""
    import likeflow
    from scipy import stats

    d = 10
    centres = np.zeros((4, d))
    centres[:, :2] = [[5, 5], [5, -5], [-5, 5], [-5, -5]]
    rng = np.random.default_rng(0)
    x = centres[rng.integers(0, 4, args.piecewise_n)] + rng.normal(size=(args.piecewise_n, d))
    def log_p(v):
        return np.log(np.mean([stats.multivariate_normal(c, np.eye(d)).pdf(v)
                               for c in centres], 0))
    data = likeflow.SampleSet(x, log_prob=log_p(x))
    r_between = float(np.sqrt(stats.chi2(d).isf(6.3e-5)))
    out, rows = {}, []
    for label, clusters in (("single MAF", None), ("piecewise (auto)", "auto")):
        t0 = time.perf_counter()
        sur = likeflow.fit(data, seed=0, clusters=clusters, messages=print)
        wall = time.perf_counter() - t0
        s = sur.sample(200_000, seed=1)
        dist = np.linalg.norm(s[:, None, :] - centres[None], axis=2).min(1)
        val = sur.validation_result
        summ = {r[0]: (r[1], r[2]) for r in val.summary_rows()}
        rec = {"wall_s": wall, "components": len(getattr(sur, "components", [sur])),
               "between_mass": float(np.mean(dist > r_between)),
               "test_log_prob": sur.training["test_log_prob"],
               "test_log_prob_exact": sur.training["test_log_prob_target"],
               "verdict": val.verdict()[0], "flagged": val.flagged,
               "ks_mean_p": summ["KS mean p-value (batched)"],
               "w1_median": summ["W1 / std, median over dims"],
               "w1_max": summ["W1 / std, max over dims"],
               "sliced_w1": summ["sliced W1 (standardised)"]}
        out[label] = rec
        rows.append([label, rec["components"], rec["wall_s"], rec["between_mass"],
                     rec["test_log_prob"], rec["test_log_prob_exact"],
                     f"{rec['ks_mean_p'][0]:.3f} ({rec['ks_mean_p'][1]:.3f})",
                     f"{rec['w1_median'][0]:.4f} ({rec['w1_median'][1]:.4f})",
                     f"{rec['sliced_w1'][0]:.4f} ({rec['sliced_w1'][1]:.4f})", rec["verdict"]])
    table(f"4 Gaussians in 10 dims, {args.piecewise_n} samples (exact mass between modes 6.3e-5)",
          ["fit", "flows", "wall s", "mass between", "held-out LL", "exact LL",
           "KS mean p (floor)", "W1/std med (floor)", "sliced W1 (floor)", "verdict"], rows)
    return out


# --- 10. the numpy reader and ONNX (issue 14) ----------------------------------------------------

_HIDE_TF = ("import sys, importlib.abc\n"
            "class _NoTF(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('tensorflow', 'tensorflow_probability', 'tf_keras'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, _NoTF())\n")


def _import_and_load(path: str, backend: str, hide_tf: bool) -> dict:
    """``import likeflow; likeflow.load(path)`` in a fresh process: seconds, and whether
    TensorFlow was imported."""
    code = ((_HIDE_TF if hide_tf else "") +
            "import time, sys\nt0 = time.perf_counter()\nimport likeflow\nt1 = time.perf_counter()\n"
            f"s = likeflow.load({path!r}, backend={backend!r})\nt2 = time.perf_counter()\n"
            "s.log_prob(s.sample(10, seed=0))\nt3 = time.perf_counter()\n"
            "print(t1 - t0, t2 - t1, t3 - t2, 'tensorflow' in sys.modules)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    imp, load, first, tf_loaded = out.stdout.split()[-4:]
    return {"import_s": float(imp), "load_s": float(load), "first_eval_s": float(first),
            "process_wall_s": wall, "tensorflow_imported": tf_loaded == "True"}


def bench_reader(args) -> dict:
    """The numpy reader beside TensorFlow on the default 95-dim MAF (``--reader-surrogate``, or
    a fresh one of the default sizes): ``import likeflow; load`` in a fresh process with and
    without TensorFlow, log_prob of ``--points`` points and sampling of 10^5, and onnxruntime's
    log_prob of the exported graph (float64 and float32) when onnxruntime is installed."""
    import tempfile

    import likeflow
    from likeflow.flows.config import FlowConfig
    from likeflow.surrogate.artifact import Surrogate
    from likeflow.flows.tf_flow import build_flow

    path = args.reader_surrogate
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "maf95.likeflow.h5")
        Surrogate(build_flow(FlowConfig.from_data(toy_like(20000)))).save(path)
    out = {"surrogate": path, "n": args.points, "start": {}}
    for label, backend, hide in (("numpy, TensorFlow hidden", "numpy", True),
                                 ("numpy, TensorFlow installed", "numpy", False),
                                 ("tensorflow", "tensorflow", False)):
        out["start"][label] = _import_and_load(path, backend, hide)
    x = likeflow.load(path, backend="tensorflow").sample(args.points, seed=1)
    rows = []
    for backend in ("numpy", "tensorflow"):
        sur = likeflow.load(path, backend=backend)
        rec = {}
        for call in ("first", "second"):
            t0 = time.perf_counter()
            lp = sur.log_prob(x)
            rec[f"log_prob_{call}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sur.sample(100_000, seed=2)
        rec["sample_1e5_s"] = time.perf_counter() - t0
        rec["log_prob"] = lp
        out[backend] = rec
    rel = np.abs(out["numpy"].pop("log_prob") - out["tensorflow"]["log_prob"])
    out["max_rel_diff"] = float(np.max(rel / np.maximum(1, np.abs(out["tensorflow"].pop(
        "log_prob")))))
    for backend in ("numpy", "tensorflow"):
        r = out[backend]
        rows.append([backend, r["log_prob_first_s"], r["log_prob_second_s"],
                     args.points / r["log_prob_second_s"], r["sample_1e5_s"]])
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        sur = likeflow.load(path, backend="numpy")
        for dtype in ("float64", "float32"):
            onnx_path = path.replace(".likeflow.h5", f".{dtype}.onnx")
            likeflow.export_onnx(sur, onnx_path, dtype=dtype)
            sess = ort.InferenceSession(onnx_path)
            xs = x.astype(dtype)
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                for rows_ in range(0, len(xs), 65536):
                    sess.run(["log_prob"], {"x": xs[rows_:rows_ + 65536]})
                times.append(time.perf_counter() - t0)
            out[f"onnxruntime_{dtype}"] = {"log_prob_first_s": times[0],
                                           "log_prob_second_s": times[1]}
            rows.append([f"onnxruntime {dtype}", times[0], times[1], args.points / times[1], "-"])
    table(f"log_prob of {args.points} points and 10^5 samples, default 95-dim MAF "
          f"(numpy vs TF max rel. diff {out['max_rel_diff']:.1e})",
          ["backend", "log_prob s (1st)", "(2nd)", "points/s", "sample 1e5 s"], rows)
    table("import likeflow + load (+ 10 samples and their log_prob), fresh process",
          ["backend", "import s", "load s", "first eval s", "process wall s", "TF imported"],
          [[k, v["import_s"], v["load_s"], v["first_eval_s"], v["process_wall_s"],
            v["tensorflow_imported"]] for k, v in out["start"].items()])
    return out


def bench_cls(args) -> dict:
    """Reinterpretation speed (issue 31): on a surrogate pair of a real workspace (``--cls-pair
    NAME OBS ASIMOV WORKSPACE PATCH``, repeatable), per backend, the first and next CLs
    hypothesis tests through spey's ``exclusion_confidence_level`` (a new mu each call),
    spey's ``poi_upper_limit`` warm, a 31-point profile, and beside them pyhf's own
    ``hypotest`` (numpy backend) on the workspace, in the same run; the CLs values and limits
    are kept to compare runs ("the numbers do not move")."""
    import jsonpatch
    import pyhf
    import spey

    import likeflow
    from likeflow.infer.cls import cls_limits
    from likeflow.infer.inference import scan

    out = {}
    for name, obs, asimov, ws, patch in args.cls_pair:
        rec = {"observed": obs, "asimov": asimov}
        with open(ws) as f, open(patch) as g:
            spec = jsonpatch.apply_patch(json.load(f), json.load(g))
        pyhf.set_backend("numpy")
        w = pyhf.Workspace(spec)
        model, data = w.model(), None
        data = w.data(model)
        times, cls_exact = [], []
        for mu in (1.0, 1.1, 1.2):
            t0 = time.perf_counter()
            cls_exact.append(float(pyhf.infer.hypotest(mu, data, model, test_stat="qtilde")))
            times.append(time.perf_counter() - t0)
        rec["pyhf"] = {"hypotest_first_s": times[0], "hypotest_next_s": float(np.mean(times[1:])),
                       "cls": cls_exact}
        rows = [["pyhf hypotest (numpy)", "-", times[0], np.mean(times[1:]), "-", "-", "-"]]
        modes = [(b, False) for b in args.cls_backends]
        modes += [(b, True) for b in args.cls_backends if args.cls_fast]
        for backend, fast in modes:
            key = _mode_key(backend, fast)
            t0 = time.perf_counter()
            sur = likeflow.load(obs, backend=backend)
            sur_a = likeflow.load(asimov, backend=backend)
            stat = spey.get_backend("likeflow")(surrogate=sur, asimov=sur_a, analysis=name,
                                                xsection=1.0, fast=fast)
            load_s = time.perf_counter() - t0
            times, cls = [], []
            for mu in (1.0, 1.1, 1.2):
                t0 = time.perf_counter()
                cls.append(1 - float(stat.exclusion_confidence_level(poi_test=mu)[0]))
                times.append(time.perf_counter() - t0)
            # a batch of 10 new values in one likeflow.CLsTest call (the pair's fits shared)
            batch = np.linspace(1.3, 2.2, 10)
            t0 = time.perf_counter()
            batch_cls = stat.backend._test(batch).cls
            batch_s = time.perf_counter() - t0
            # warm: after the tests above (traced, best fits known); spey remembers a limit,
            # so only its first call computes one
            t0 = time.perf_counter()
            limit = float(stat.poi_upper_limit())
            limit_s = time.perf_counter() - t0
            poi = sur.poi[0]
            i = sur.names.index(poi)
            # the card's CLs limit (likeflow's own scan, a fresh test): spey's root finder asks
            # in another order, and a fit at mu depends on mu alone, so the two agree
            own_all = cls_limits(sur, sur_a, poi, fast=fast)
            own = own_all.observed
            t0 = time.perf_counter()
            prof = scan(sur, poi, np.linspace(0.0, float(sur.support["hi"][i]), 31))
            prof_s = time.perf_counter() - t0
            rec[key] = {"load_s": load_s, "cls_first_s": times[0],
                        "cls_next_s": float(np.mean(times[1:])), "cls": cls,
                        "poi_upper_limit_s": limit_s, "poi_upper_limit": limit,
                        "cls_limits_observed": own, "cls_limits_expected": own_all.expected,
                        "spey_vs_cls_limits": limit / own - 1 if own else None,
                        "profile31_s": prof_s, "profile_q": list(map(float, prof.q)),
                        "batch10_s": batch_s, "batch10_cls": batch_cls.tolist()}
            if fast:   # what the fast mode moves: relative to the default test's numbers
                ref = rec[backend]
                rec[key]["vs_default"] = {
                    "cls": [a / b - 1 for a, b in zip(cls, ref["cls"])],
                    "batch10_cls": (batch_cls / np.array(ref["batch10_cls"]) - 1).tolist(),
                    "poi_upper_limit": limit / ref["poi_upper_limit"] - 1,
                    "cls_limits": [a / b - 1 for a, b in
                                   zip([own, *own_all.expected],
                                       [ref["cls_limits_observed"], *ref["cls_limits_expected"]])]}
                v = rec[key]["vs_default"]
                print(f"{name} {key}: relative to the default test: CLs at 1, 1.1, 1.2 "
                      f"{np.round(v['cls'], 6).tolist()}, the batch's largest "
                      f"{max(map(abs, v['batch10_cls'])):.2e}, spey's limit "
                      f"{v['poi_upper_limit']:+.2e}, observed and expected limits "
                      f"{np.round(v['cls_limits'], 6).tolist()}")
            rows.append([f"likeflow {key}", load_s, times[0], np.mean(times[1:]), batch_s,
                         limit_s, prof_s])
        if args.cls_cold:
            rec["cold"] = _cls_cold(name, obs, asimov, modes, args.cls_cold)
            for b, c in rec["cold"].items():
                rows.append([f"likeflow {b}, fresh processes (median of {args.cls_cold})",
                             c["load_s"], c["first_s"], c["next_s"], "-", "-", "-"])
        out[name] = rec
        for b in args.cls_backends:
            print(f"{name} {b}: spey's poi_upper_limit {rec[b]['poi_upper_limit']:.6f}, "
                  f"likeflow's cls_limits {rec[b]['cls_limits_observed']:.6f} "
                  f"({rec[b]['spey_vs_cls_limits']:+.2e} relative)")
        print(f"{name}: CLs at mu = 1, 1.1, 1.2: pyhf {np.round(cls_exact, 5).tolist()}, "
              + ", ".join(f"{b} {np.round(rec[b]['cls'], 5).tolist()}"
                          for b in args.cls_backends))
        table(f"{name}: one CLs hypothesis test (mu = 1, 1.1, 1.2), spey's poi_upper_limit, "
              "a 31-point profile", ["", "load s", "CLs 1st s", "CLs next s",
                                     "10 mu in one CLsTest s", "upper limit warm s",
                                     "profile 31 s"], rows)
    return out


def _mode_key(backend: str, fast: bool) -> str:
    """The name of a CLs bench mode: the backend, and " fast" for a fast test."""
    return backend + (" fast" if fast else "")


_COLD_CLS = '''
import sys, time, json
t0 = time.perf_counter()
import spey, likeflow
obs, asimov, backend, name, fast = sys.argv[1:6]
t1 = time.perf_counter()
stat = spey.get_backend("likeflow")(surrogate=likeflow.load(obs, backend=backend),
                                    asimov=likeflow.load(asimov, backend=backend),
                                    analysis=name, xsection=1.0, fast=fast == "fast")
t2 = time.perf_counter()
stat.exclusion_confidence_level(poi_test=1.0)
t3 = time.perf_counter()
stat.exclusion_confidence_level(poi_test=1.1)
t4 = time.perf_counter()
print("RESULT " + json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2,
                              "next_s": t4 - t3}))
'''


def _cls_cold(name: str, obs: str, asimov: str, modes: list[tuple[str, bool]],
              repeats: int) -> dict:
    """What a reinterpreter's fresh process pays: import, load the pair into spey's backend,
    the first CLs test (mu 1) and the next (mu 1.1), ``repeats`` processes per (backend, fast)
    with the modes alternating (a shared machine's drift hits all); medians and every run."""
    runs = {_mode_key(b, fast): [] for b, fast in modes}
    for _ in range(repeats):
        for b, fast in modes:
            res, proc = _child_result(_COLD_CLS, obs, asimov, b, name,
                                      "fast" if fast else "default")
            if res is None:
                raise RuntimeError(f"the fresh CLs process failed:\n{proc.stderr[-2000:]}")
            runs[_mode_key(b, fast)].append(res)
    return {b: {**{k: float(np.median([r[k] for r in rs])) for k in rs[0]}, "runs": rs}
            for b, rs in runs.items()}


def bench_workspace(args) -> dict:
    """'likeflow fit WS.json --patch P.json' end to end with defaults (issue 30), then
    'publish' and 'verify': wall time per stage, the exact check, the bundle."""
    import re

    import likeflow
    results = {}
    for case in args.real_cases:
        region, patch_name, scale = REAL_CASES[case]
        ws, patch = real_workspace(args, region, patch_name, scale)
        out = os.path.join(args.workdir, f"ws_{case}.likeflow.h5")
        cmd = ["fit", ws, "-o", out, "-q", *(["--patch", patch] if patch else []),
               *(["-n", str(args.real_n)] if args.real_n != 200_000 else [])]
        wall, text = _cli(cmd, out + ".log")
        stages = dict(re.findall(r"(\w+) (\d+)", text.split("stages (s): ")[-1].split("\n")[0]))
        sur = likeflow.load(out, backend="numpy")
        ex = sur.validation["exact"]
        bundle = os.path.join(args.workdir, f"bundle_{case}")
        if os.path.isdir(bundle):
            import shutil
            shutil.rmtree(bundle)
        t_pub, _ = _cli(["publish", out, "-o", bundle], out + ".publish.log")
        t_ver, vtext = _cli(["verify", bundle], out + ".verify.log")
        res = {"wall_s": round(wall, 1), "stages_s": {k: float(v) for k, v in stages.items()},
               "verdict": sur.validation["verdict"], "exact_verdict": ex["verdict"],
               "max_profile_difference": ex["max_profile_difference"],
               "limits": ex["limits"], "importance": ex["importance"],
               "publish_s": round(t_pub, 1), "verify_s": round(t_ver, 1),
               "verified": "limits reproduce" in vtext}
        results[case] = res
        table(f"fit {case} (workspace, defaults): {wall:.0f} s; verdict {res['verdict']}",
              ["stage", "s"], [[k, v] for k, v in res["stages_s"].items()]
              + [["publish", res["publish_s"]], ["verify", res["verify_s"]]])
        table(f"{case}: surrogate against pyhf (max |dq| {ex['max_profile_difference']:.3f}, "
              f"ESS fraction {ex['importance']['ess_fraction']:.3f})",
              ["limit", "exact", "surrogate", "diff"],
              [[lim["name"], lim["exact"], lim["surrogate"],
                None if lim["relative"] is None else f"{lim['relative']:+.1%}"]
               for lim in ex["limits"]])
    return results


BENCHES = {"throughput": bench_throughput, "sampling": bench_sampling, "quality": bench_quality,
           "scaling": bench_scaling, "memory": bench_memory, "stream": bench_stream,
           "streamfit": bench_streamfit, "devices": bench_devices,
           "bounded": bench_bounded,
           "real": bench_real, "profile": bench_profile, "reader": bench_reader,
           "piecewise": bench_piecewise, "cls": bench_cls, "workspace": bench_workspace,
           "small": bench_small}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("benches", nargs="+", choices=[*BENCHES, "all"])
    ap.add_argument("--out", default="bench.json", help="JSON output file")
    ap.add_argument("--toy", default=None, help="sample file of the 95-dim toy (quality)")
    ap.add_argument("--fit-args", nargs=argparse.REMAINDER, default=[],
                    help="extra options for 'likeflow fit' in the quality and streamfit "
                         "benchmarks (last)")
    ap.add_argument("--points", type=int, default=1_000_000, help="points for sampling")
    ap.add_argument("--cls-fast", action="store_true",
                    help="cls: also each backend's fast test (CLsTest(fast=True)), with what it "
                         "moves relative to the default")
    ap.add_argument("--cls-cold", type=int, default=0,
                    help="cls: also this many fresh processes per backend (import, load, "
                         "first and next test), medians in the table")
    ap.add_argument("--small-n", type=int, default=10_000, help="small: rows per block")
    ap.add_argument("--small-sets", type=int, default=4, help="small: blocks of --toy")
    ap.add_argument("--small-batches", type=int, nargs="*", default=[1024],
                    help="small: batch sizes fitted beside the default")
    ap.add_argument("--small-settings", nargs="*", default=[],
                    help="small: further settings fitted beside the default, each a quoted "
                         "string of 'likeflow fit' options (e.g. '--density-weight 3')")
    ap.add_argument("--flows", nargs="+", default=list(FLOWS), choices=FLOWS,
                    help="architectures of the throughput and sampling benchmarks")
    ap.add_argument("--spline-bins", type=int, nargs="*", default=[],
                    help="throughput: the spline flows also with these bin counts")
    ap.add_argument("--dims", type=int, nargs="+", default=[10, 50, 100, 400, 1000])
    ap.add_argument("--scaling-n", type=int, default=100_000)
    ap.add_argument("--scaling-epochs", type=int, default=300)
    ap.add_argument("--big", default="big_20m.h5", help="large file for the memory benchmark")
    ap.add_argument("--big-rows", type=int, default=20_000_000)
    ap.add_argument("--memory-max-samples", type=int, default=500_000)
    ap.add_argument("--stream-n", type=int, default=10_000_000,
                    help="samples drawn by the stream benchmark")
    ap.add_argument("--stream-dim", type=int, default=95)
    ap.add_argument("--bounded-n", type=int, default=200_000)
    ap.add_argument("--bounded-train", default="{}",
                    help="TrainConfig fields as JSON for the bounded benchmark's fit")
    ap.add_argument("--atlas", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "shared", "data", "atlas-sbottom"),
                    help="folder of the ATLAS sbottom workspaces (real)")
    ap.add_argument("--real-cases", nargs="+", default=list(REAL_CASES), choices=REAL_CASES)
    ap.add_argument("--real-n", type=int, default=200_000)
    ap.add_argument("--reuse-fits", action="store_true",
                    help="real: reuse surrogates already in --workdir (with --reuse)")
    ap.add_argument("--real-points", type=int, default=21, help="profile grid points (real)")
    ap.add_argument("--real-fit-args", nargs="*", default=[],
                    help="extra 'likeflow fit' options of the real benchmark")
    ap.add_argument("--reuse", action="store_true", help="reuse generated sample files")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--profile-surrogates", nargs="+", default=[],
                    help="surrogate files of the profile benchmark")
    ap.add_argument("--profile-compare", nargs="+", default=[],
                    help="a reference profile per surrogate ('-': none)")
    ap.add_argument("--profile-range", default=None, help="START:STOP of the profile grids")
    ap.add_argument("--piecewise-n", type=int, default=100_000,
                    help="piecewise: samples of the 4-mode mixture")
    ap.add_argument("--reader-surrogate", default=None,
                    help="reader: the surrogate file to time (default: a fresh 95-dim MAF)")
    ap.add_argument("--cls-pair", nargs=5, action="append", default=[],
                    metavar=("NAME", "OBS", "ASIMOV", "WORKSPACE", "PATCH"),
                    help="cls: a surrogate pair and the workspace and patch it came from")
    ap.add_argument("--cls-backends", nargs="+", default=["tensorflow", "numpy"],
                    choices=["tensorflow", "numpy"])
    ap.add_argument("--peer-python", default=None,
                    help="a Python with torch and zuko: runs scripts/peer_zuko.py beside our "
                         "figures (throughput, sampling)")
    args = ap.parse_args()
    names = list(BENCHES) if "all" in args.benches else args.benches
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(results["machine"]))
    for name in names:
        results[name] = BENCHES[name](args)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, default=float)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
