"""The validation suite of a surrogate: metrics next to their noise floor, a table, JSON, plots.

:func:`validate` compares surrogate samples with held-out test samples. The test points are cut
into two disjoint halves A and B of m points each; the surrogate draws m samples. Every
two-sample metric is computed for (surrogate vs A) and for (B vs A): the second is the noise
floor, what a perfect surrogate would score at this m. On the test points themselves it also
compares the surrogate's log density with the file's (``log_prob``) and maps them to the base
space (the chi2(D) check).

A dimension is flagged when its KS p-value is below 0.01 / D (a Bonferroni-corrected 1% test:
a perfect surrogate has a 1% chance of any flag at all), or when its tails are off: an end of its
95% or 99.7% central interval further from the test data's than ``TAIL_FACTOR`` times the noise
floor (the larger of that dimension's floor and the median floor over dimensions).

The validation ends in a verdict, ``PASS``, ``WARN`` or ``FAIL``, with its reasons
(:meth:`ValidationResult.verdict`; thresholds in :data:`VERDICT_THRESHOLDS`, documented in
``docs/validation.md``).

Example:
    >>> res = validate(surrogate, test_samples, n=100_000)       # doctest: +SKIP
    >>> print(res.table()); res.write("report/")                 # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..data.samples import ReadOptions, SampleSet, as_sample_set, read_samples
from ..errors import LikeflowError, ReportError
from ..interrupts import check as check_interrupt
from ..jsonutil import strict_json
from . import metrics
from .residuals import ANCHOR_DRIFT_THRESHOLDS, DRIFT_THRESHOLDS, Q_COMPARED, residual_checks


# a dimension's interval end further off than this many noise floors is flagged
TAIL_FACTOR = 3.0
# (warn below, fail below) for the correlations and p-values; (warn above, fail above) for the
# fraction of flagged dimensions
VERDICT_THRESHOLDS = {
    "log_prob_pearson": (0.99, 0.9),
    # the latent check counts when it is both significant (p-value below) and large (the KS
    # statistic, the largest gap between the CDFs of |z|^2 and chi2(D), above): with 10^4 test
    # points a p-value alone flags gaps of a percent that no other metric resolves
    "latent_chi2_pvalue": (1e-3, 1e-8),
    "latent_chi2_ks": (0.02, 0.04),
    "flagged_fraction": (0.0, 0.05),
    # (warn above, fail above), nats: the residual log q - log p drifting along a POI beyond
    # the noise (likeflow.validation.residuals), and at held-out anchors relative to the best fit
    # (the profile's q is off by twice it: 0.075 nats is the profile tolerance, 0.15 in q)
    "residual_drift": DRIFT_THRESHOLDS,
    "anchor_drift": ANCHOR_DRIFT_THRESHOLDS,
}


@dataclass
class ValidationResult:
    """Every metric for the surrogate and for the noise floor, per dimension and summarised."""

    names: list[str]
    poi: list[str]
    n: int
    model: dict
    floor: dict
    log_prob: dict | None = None
    latent: dict | None = None
    residual: dict | None = None
    flagged: list[str] = field(default_factory=list)
    flag_reasons: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    samples: dict = field(default_factory=dict, repr=False)  # arrays for the plots, not saved

    def summary_rows(self) -> list[tuple[str, float | None, float | None, str]]:
        """(metric, surrogate, noise floor, ideal) rows of the summary table."""
        m, f = self.model, self.floor
        rows = [
            ("KS mean p-value (batched)", m["ks_mean_pvalue_batched"],
             f["ks_mean_pvalue_batched"], "0.5"),
            ("KS statistic, max over dims", max(m["ks_statistic"]), max(f["ks_statistic"]), "0"),
            ("W1 / std, median over dims", m["w1_std_units_median"], f["w1_std_units_median"],
             "0"),
            ("W1 / std, max over dims", m["w1_std_units_max"], f["w1_std_units_max"], "0"),
            ("sliced W1 (standardised)", m["sliced_w1"], f["sliced_w1"], "0"),
            ("corr. Frobenius / sqrt(D(D-1))", m["corr_frobenius_normalised"],
             f["corr_frobenius_normalised"], "0"),
        ]
        for lev in ("0.68", "0.95", "0.997"):
            rows.append((f"{float(lev):.1%} interval ends / std, max", 
                         m["interval_diff_std_max"][lev], f["interval_diff_std_max"][lev], "0"))
        if self.log_prob:
            lp = self.log_prob
            rows += [("log-prob Pearson", lp["pearson"], None, "1"),
                     ("log-prob Spearman", lp["spearman"], None, "1"),
                     ("log-prob difference std", lp["diff_std"], None, "0")]
        res = self.residual or {}
        for name, d in res.get("poi", {}).items():
            rows.append((f"residual drift along {name} (nats)", d["excess"], None, "0"))
        if "anchors" in res:
            a = res["anchors"]
            rows.append((f"residual drift at anchors, exact q < {Q_COMPARED:g} (nats)",
                         a["max_abs_drift"], None, "0"))
            if a.get("beyond", {}).get("n"):
                rows.append((f"residual drift at anchors, exact q >= {Q_COMPARED:g} (nats; "
                             "not graded)", a["beyond"]["max_abs_drift"], None, "0"))
        if self.latent:
            rows.append(("latent |z|^2 vs chi2(D): KS p", self.latent["pvalue"], None, ">0.01"))
            rows.append(("latent |z|^2 vs chi2(D): KS stat", self.latent["ks_statistic"], None,
                         "0"))
        return rows

    def worst(self, k: int = 8) -> list[dict]:
        """The ``k`` dimensions with the smallest KS p-value, with their W1 and floor W1."""
        p = np.asarray(self.model["ks_pvalue"])
        order = np.argsort(p)[:k]
        return [{"name": self.names[i], "ks_pvalue": float(p[i]),
                 "ks_statistic": self.model["ks_statistic"][i],
                 "w1_std": self.model["w1_std_units"][i],
                 "floor_w1_std": self.floor["w1_std_units"][i]} for i in order]

    def verdict(self) -> tuple[str, list[str]]:
        """``PASS``, ``WARN`` or ``FAIL`` and the reasons (empty for ``PASS``).

        Checks: log-prob correlation with the true density, the latent chi2 test, and the
        dimensions flagged by KS or by their tails (named); thresholds in
        :data:`VERDICT_THRESHOLDS`.
        """
        level = 0
        reasons = []

        def worse(k: int, why: str) -> None:
            nonlocal level
            level = max(level, k)
            reasons.append(("FAIL: " if k == 2 else "WARN: ") + why)

        warn, fail = VERDICT_THRESHOLDS["log_prob_pearson"]
        if self.log_prob:
            r = self.log_prob["pearson"]
            if not np.isfinite(r) or r < fail:
                worse(2, f"log-prob Pearson {r:.3f} < {fail}")
            elif r < warn:
                worse(1, f"log-prob Pearson {r:.4f} < {warn}")
            if self.log_prob.get("nonfinite"):
                worse(2, f"{self.log_prob['nonfinite']} test points with a non-finite log density")
        warn, fail = VERDICT_THRESHOLDS["latent_chi2_pvalue"]
        warn_ks, fail_ks = VERDICT_THRESHOLDS["latent_chi2_ks"]
        if self.latent:
            p, ks = self.latent["pvalue"], self.latent["ks_statistic"]
            if p < fail and ks > fail_ks:
                worse(2, f"latent |z|^2 vs chi2(D): KS {ks:.3f} > {fail_ks}, p = {p:.2g}")
            elif p < warn and ks > warn_ks:
                worse(1, f"latent |z|^2 vs chi2(D): KS {ks:.3f} > {warn_ks}, p = {p:.2g}")
        res = self.residual or {}
        warn, fail = VERDICT_THRESHOLDS["residual_drift"]
        for name, d in res.get("poi", {}).items():
            e, at = d["excess"], d["worst"]
            if e > warn:
                worse(2 if e > fail else 1,
                      f"log q - log p drifts along {name}: {at['drift']:+.3f} +- {at['se']:.3f} "
                      f"nats ({at['kind']} at {name} = {at['at']:.4g}), "
                      f"{e:.3f} beyond the noise > {fail if e > fail else warn}")
        warn, fail = VERDICT_THRESHOLDS["anchor_drift"]
        if "anchors" in res and res["anchors"]["worst"] is not None:
            a = res["anchors"]
            d = a["max_abs_drift"]
            if d > warn:
                worse(2 if d > fail else 1,
                      f"log q - log p at the exact conditional modes of {a['poi']} drifts by "
                      f"{a['worst']['drift']:+.3f} nats from the best fit (at {a['poi']} = "
                      f"{a['worst']['poi']:.4g}, exact q {a['worst']['q_exact']:.2f}; the "
                      f"profile's q is off by {-2 * a['worst']['drift']:+.2f}) > "
                      f"{fail if d > fail else warn}")
        warn, fail = VERDICT_THRESHOLDS["flagged_fraction"]
        if self.flagged:
            frac = len(self.flagged) / len(self.names)
            named = ", ".join(f"{k} ({', '.join(self.flag_reasons.get(k, ['KS']))})"
                              for k in self.flagged[:8])
            more = " ..." if len(self.flagged) > 8 else ""
            worse(2 if frac > fail else 1,
                  f"{len(self.flagged)} of {len(self.names)} dimensions flagged: {named}{more}")
        return ("PASS", "WARN", "FAIL")[level], reasons

    def summary(self) -> dict:
        """The compact summary stored in a surrogate file."""
        verdict, reasons = self.verdict()
        return {
            "verdict": verdict, "verdict_reasons": reasons,
            "n": self.n,
            "rows": [{"metric": r[0], "surrogate": r[1], "noise_floor": r[2], "ideal": r[3]}
                     for r in self.summary_rows()],
            "flagged": self.flagged,
            "flag_reasons": self.flag_reasons,
            "worst": self.worst(5),
            "notes": self.notes,
            **({"residual": _residual_summary(self.residual)} if self.residual else {}),
        }

    def to_dict(self) -> dict:
        return {"names": self.names, "poi": self.poi, "n": self.n, "model": self.model,
                "noise_floor": self.floor, "log_prob": self.log_prob, "latent": self.latent,
                "residual": self.residual,
                "flagged": self.flagged, "notes": self.notes, "elapsed_s": self.elapsed,
                "summary": self.summary()}

    def to_json(self) -> str:
        """Every metric as one line of strict JSON."""
        return json.dumps(strict_json(self.to_dict()))

    def table(self, k: int = 8) -> str:
        """The summary rows, then the worst dimensions by name, as text."""
        lines = [f"validation on {self.n} test points vs {self.n} surrogate samples "
                 f"(noise floor: two disjoint halves of the test data)",
                 f"{'metric':<34} {'surrogate':>11} {'noise floor':>12}  ideal"]
        for name, a, b, ideal in self.summary_rows():
            lines.append(f"{name:<34} {_num(a):>11} {_num(b):>12}  {ideal}")
        lines.append("")
        lines.append(f"worst dimensions (KS p-value; flag below {0.01 / len(self.names):.2g}):")
        lines.append(f"  {'parameter':<16} {'KS p':>9} {'KS stat':>8} {'W1/std':>8} "
                     f"{'floor':>8}")
        for w in self.worst(k):
            flag = "  FLAGGED" if w["name"] in self.flagged else ""
            lines.append(f"  {w['name']:<16} {w['ks_pvalue']:9.2g} {w['ks_statistic']:8.4f} "
                         f"{w['w1_std']:8.4f} {w['floor_w1_std']:8.4f}{flag}")
        lines.append(f"{len(self.flagged)} of {len(self.names)} dimensions flagged"
                     + (f": {', '.join(self.flagged[:10])}" + (" ..." if len(self.flagged) > 10
                                                                else "")
                        if self.flagged else ""))
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.verdict_line())
        return "\n".join(lines)

    def verdict_line(self) -> str:
        """``verdict: PASS`` or ``verdict: WARN (reasons)``: one line, printed last."""
        verdict, reasons = self.verdict()
        return f"verdict: {verdict}" + (f" ({'; '.join(reasons)})" if reasons else "")

    def write(self, folder: str | os.PathLike, *, training: dict | None = None,
              plots: bool = True) -> list[str]:
        """Write ``metrics.json``, the plots and ``index.html`` into ``folder``; return the files.

        The files are written into a temp folder beside ``folder`` and moved into it when all
        are written: a full disk, an error or an interrupt leaves no half-written report (and
        an older report in ``folder`` as it was). A file system error is a
        :class:`~likeflow.errors.ReportError`.
        """
        import shutil
        import tempfile

        from ..fileio import describe_os_error
        from ..interrupts import held
        folder = os.path.abspath(os.fspath(folder))
        tmp = None
        try:
            # an interrupt between mkdtemp's mkdir and this assignment would leave the folder
            # behind (seen in CI: the test signals as soon as the folder appears): deferred
            with held():
                tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp",
                                       dir=os.path.dirname(folder))
            with open(os.path.join(tmp, "metrics.json"), "w") as f:
                json.dump(strict_json(self.to_dict()), f, indent=1)
            files = ["metrics.json"]
            if plots:
                from . import plots as plotting
                files += plotting.validation_plots(self, tmp, training=training)
            with open(os.path.join(tmp, "index.html"), "w") as f:
                f.write(self._html([p for p in files if p.endswith(".png")]))
            files.append("index.html")
            if not os.path.isdir(folder):
                os.rename(tmp, folder)
                tmp = None
            else:
                for name in files:
                    os.replace(os.path.join(tmp, name), os.path.join(folder, name))
        except OSError as e:
            raise ReportError(folder, "the validation report could not be written "
                              f"({describe_os_error(e)})") from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return files

    def _html(self, images: list[str]) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{_num(a)}</td><td>{_num(b)}</td>"
            f"<td>{html.escape(i)}</td></tr>" for n, a, b, i in self.summary_rows())
        worst = "".join(
            f"<tr{' class=flag' if w['name'] in self.flagged else ''}><td>{html.escape(w['name'])}"
            f"</td><td>{w['ks_pvalue']:.3g}</td><td>{w['ks_statistic']:.4f}</td>"
            f"<td>{w['w1_std']:.4f}</td><td>{w['floor_w1_std']:.4f}</td></tr>"
            for w in self.worst(10))
        figs = "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}">'
                       f"<figcaption>{html.escape(_CAPTIONS.get(p, p))}</figcaption></figure>"
                       for p in images)
        notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in self.notes)
        flagged = (f"{len(self.flagged)} of {len(self.names)} dimensions flagged"
                   + (": " + html.escape(", ".join(self.flagged)) if self.flagged else ""))
        verdict, reasons = self.verdict()
        colour = {"PASS": "#070", "WARN": "#a60", "FAIL": "#b00"}[verdict]
        verdict_html = (f'<p class=verdict style="color:{colour}">Verdict: {verdict}</p>'
                        + "".join(f"<p class=note>{html.escape(r)}</p>" for r in reasons))
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>likeflow validation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 12px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.flag td {{ color: #b00; font-weight: bold; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; }}
img {{ max-width: 640px; border: 1px solid #eee; }}
.note {{ color: #a60; }}
.verdict {{ font-size: 1.6em; font-weight: bold; }}
</style></head><body>
<h1>likeflow validation report</h1>
{verdict_html}
<p>{self.n} held-out test points against {self.n} surrogate samples. The noise floor is the same
metric between two disjoint halves of the test data: what a perfect surrogate scores at this
sample size.</p>
{notes}
<table><tr><th>metric</th><th>surrogate</th><th>noise floor</th><th>ideal</th></tr>{rows}</table>
<h2>Worst dimensions</h2>
<p>{flagged} (KS p-value below {0.01 / len(self.names):.2g}, a Bonferroni-corrected 1% test, or
95%/99.7% interval ends off by more than {TAIL_FACTOR:g} noise floors).</p>
<table><tr><th>parameter</th><th>KS p-value</th><th>KS statistic</th><th>W1 / std</th>
<th>noise floor W1 / std</th></tr>{worst}</table>
<h2>Plots</h2>
{figs}
</body></html>
"""


_CAPTIONS = {
    "marginals.png": "1D marginals of every parameter: test data vs surrogate (flagged in red)",
    "corner.png": "POIs and the worst dimensions: test data vs surrogate",
    "corr_diff.png": "correlation matrix of the surrogate minus that of the test data",
    "log_prob.png": "surrogate log density vs the file's log density on the test points",
    "training.png": "training and validation loss per epoch",
    "residual.png": "log q - log p along each POI (mean and densest quarter of quantile bins, "
                    "with 1 sigma errors) and at the held-out exact conditional modes: it must "
                    "be flat; a profile's q is off by twice its drift",
}


def validate(surrogate, samples, *, n: int | None = None, seed: int = 0,
             read_options: ReadOptions | None = None, report: str | os.PathLike | None = None,
             plots: bool = True) -> ValidationResult:
    """How close a surrogate is to held-out samples, next to the noise floor.

    Args:
        surrogate: a :class:`~likeflow.surrogate.artifact.Surrogate` or its file's path.
        samples: a sample file's path, a :class:`SampleSet` or an (N, D) array. With the data
            the surrogate was trained on, only its test rows are used (never training data);
            anything else is used whole, and the result's notes say so. A file is read with
            ``read_options``, by default the ones the surrogate was fitted with. Columns are
            matched to the surrogate's parameters by name where the file names them.
        n: use at most ``n`` test points (two halves of n/2; the surrogate draws n/2).
        seed: seeds the subsample, the surrogate's samples and the sliced-W1 directions.
        report: a folder to write metrics.json, the plots (unless ``plots`` is False) and
            index.html into.

    Returns:
        A :class:`ValidationResult`; ``.table()`` prints, ``.verdict()`` judges.
    """
    from ..fileio import check_output_folder
    from ..surrogate.loading import load
    from ..surrogate.artifact import Surrogate

    sur = surrogate if isinstance(surrogate, Surrogate) else load(surrogate)
    check_output_folder(report)
    path = os.fspath(samples) if isinstance(samples, (str, os.PathLike)) else "<samples>"
    s = _read_as_trained(sur, samples, read_options)
    test, notes = sur.held_out(sur.columns_of(s, path))
    if s.dropped_nonfinite:
        notes.append(f"{s.dropped_nonfinite} rows holding NaN or inf were dropped on reading")
    result = validate_test(sur, test, n=n, seed=seed, notes=notes)
    if report is not None:
        result.write(report, training=sur.training, plots=plots)
    return result


def _read_as_trained(sur, samples, read_options: ReadOptions | None) -> SampleSet:
    """The samples; a file read as given, or as the surrogate's training file was read."""
    if read_options is not None or not isinstance(samples, (str, os.PathLike)):
        return as_sample_set(samples, read_options=read_options)
    try:
        opts = sur.read_options()
        return read_samples(samples, opts)
    except (LikeflowError, TypeError, ValueError) as e:
        if isinstance(e, LikeflowError) and "--burn" not in str(e):
            raise
        raise LikeflowError(f"{sur.path or 'the surrogate'}: the read options stored with the "
                            f"surrogate cannot be used ({e}); give the read options (--layout, "
                            "--dataset, --burn, --thin) yourself") from None


def validate_test(surrogate, test: SampleSet, *, n: int | None = None, seed: int = 0,
                  notes: list[str] | None = None) -> ValidationResult:
    """Validate ``surrogate`` on held-out ``test`` samples (never training data).

    Args:
        surrogate: a :class:`likeflow.surrogate.artifact.Surrogate`.
        test: the test samples, with ``log_prob`` if known.
        n: use at most ``n`` test points (two halves of n/2; the surrogate draws n/2).
        seed: seeds the subsample, the surrogate's samples and the sliced-W1 directions.

    Returns:
        A :class:`ValidationResult`; ``.table()`` prints, ``.write(folder)`` writes the report.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    rows = rng.permutation(test.n)
    if n is not None:
        rows = rows[:n]
    m = len(rows) // 2
    if m < 20:
        raise LikeflowError(f"validation needs at least 40 test points, got {len(rows)}")
    half_a, half_b = test.values[rows[:m]], test.values[rows[m:2 * m]]
    # weighted test samples (importance or nested-sampling weights) are compared as weighted
    # distributions; their noise floor is that of their effective size
    w = test.weights
    wa = None if w is None else w[rows[:m]]
    wb = None if w is None else w[rows[m:2 * m]]
    model_samples = surrogate.sample(m, seed=seed + 1)
    check_interrupt()
    batches = 10 if m >= 200 else 2
    notes = list(notes or [])
    if w is not None:
        notes.append(f"weighted test samples: effective size {metrics.effective_size(wa, m):.0f}"
                     f" of {m} per half")
    result = ValidationResult(
        names=list(test.names), poi=list(test.poi), n=m,
        model=metrics.two_sample_metrics(model_samples, half_a, batches=batches, seed=seed,
                                         wb=wa),
        floor=metrics.two_sample_metrics(half_b, half_a, batches=batches, seed=seed, wa=wb,
                                         wb=wa),
        notes=notes)
    check_interrupt()
    points = test.values[rows[:2 * m]]
    model_lp = surrogate.log_prob(points)
    check_interrupt()
    if test.log_prob is not None:
        result.log_prob = metrics.log_prob_agreement(model_lp, test.log_prob[rows[:2 * m]])
    # a surrogate folded at a bound maps the mirror images too: unfold the test points at
    # random (seeded) so that they are samples of the unfolded flow before the chi2 check
    unfolded = surrogate.unfold(points, seed=seed) if hasattr(surrogate, "unfold") else points
    z = np.asarray(surrogate.to_latent(unfolded))
    result.latent = metrics.latent_chi2(z, None if w is None else w[rows[:2 * m]])
    check_interrupt()
    result.residual = residual_checks(surrogate, test, rows[:2 * m], model_lp,
                                      latent_r2=np.sum(z ** 2, axis=1))
    if result.residual["status"] == "no log_prob":
        notes.append("the residual check (log q - log p along each POI) could not run: the "
                     "test samples have no log_prob")
    limit = 0.01 / test.dim
    reasons = {name: ["KS"] for name, p in zip(test.names, result.model["ks_pvalue"])
               if p < limit}
    for i in tail_flags(result.model, result.floor):
        reasons.setdefault(test.names[i], []).append("tails")
    result.flag_reasons = reasons
    result.flagged = [name for name in test.names if name in reasons]
    result.samples = {"test": half_a, "model": model_samples, "model_lp": model_lp,
                      "true_lp": None if test.log_prob is None else test.log_prob[rows[:2 * m]]}
    result.elapsed = time.perf_counter() - t0
    return result


def _residual_summary(res: dict) -> dict:
    """The residual check in a surrogate file: its status and, per POI, the excess drift."""
    out = {"status": res["status"]}
    if res.get("poi"):
        out["poi"] = {k: {"excess": d["excess"], "worst": d["worst"]}
                      for k, d in res["poi"].items()}
    if "anchors" in res:
        out["anchors"] = {k: res["anchors"][k]
                          for k in ("poi", "max_abs_drift", "worst", "beyond")}
    return out


def tail_flags(model: dict, floor: dict) -> list[int]:
    """Dimensions whose 95% or 99.7% interval ends are off by more than :data:`TAIL_FACTOR`
    noise floors (the larger of the dimension's floor and the median floor)."""
    out = set()
    for lev in ("0.95", "0.997"):
        m = np.asarray(model["intervals"][lev]["diff_std"])
        f = np.asarray(floor["intervals"][lev]["diff_std"])
        scale = np.maximum(f, np.median(f))
        out |= set(np.flatnonzero(m > TAIL_FACTOR * scale).tolist())
    return sorted(out)


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (abs(x) >= 1e4 or (abs(x) < 1e-3 and x != 0)):
        return f"{x:.3g}"
    return f"{x:.4f}"
