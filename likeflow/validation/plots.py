"""Plots of the validation report (matplotlib, written as PNG files; no display needed)."""

from __future__ import annotations

import math
import os

import numpy as np
from scipy import ndimage

TEST_COLOR = "#1f77b4"
MODEL_COLOR = "#ff7f0e"


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str, *, dpi: int = 90, rect=None, layout: bool = True) -> str:
    """Lay ``fig`` out (unless ``layout`` is False: a figure that sets its own spacing),
    write it to ``path`` and close it; ``path``."""
    if layout:
        fig.tight_layout(**({} if rect is None else {"rect": rect}))
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _text(name: str) -> str:
    """A parameter name drawn as written: '$' would start matplotlib's math mode (and a name
    like '$\\notacommand$' would fail to draw)."""
    return str(name).replace("$", r"\$")


def validation_plots(result, folder: str, *, training: dict | None = None) -> list[str]:
    """Write every plot of a :class:`~likeflow.validation.report.ValidationResult`; return the file
    names."""
    from ..interrupts import check as check_interrupt
    plots = [(marginals, "marginals.png"), (corner, "corner.png"),
             (correlation_difference, "corr_diff.png")]
    if result.samples.get("true_lp") is not None:
        plots.append((log_prob_scatter, "log_prob.png"))
    if (result.residual or {}).get("status") == "measured":
        plots.append((residual_drifts, "residual.png"))
    files = []
    for plot, name in plots:
        check_interrupt()  # a SIGTERM swallowed inside matplotlib ends the report here
        files.append(plot(result, os.path.join(folder, name)))
    history = (training or {}).get("result", {}).get("history")
    if history:
        files.append(training_curves(history, os.path.join(folder, "training.png")))
    return [os.path.basename(f) for f in files]


def _range(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    lo = min(np.quantile(a, 0.001), np.quantile(b, 0.001))
    hi = max(np.quantile(a, 0.999), np.quantile(b, 0.999))
    return (lo, hi) if hi > lo else (lo - 1, hi + 1)


def marginals(result, path: str) -> str:
    """A grid of 1D histograms, every dimension by name; flagged dimensions titled in red."""
    plt = _plt()
    test, model = result.samples["test"], result.samples["model"]
    d = test.shape[1]
    cols = min(10, d) if d > 4 else d
    rows = math.ceil(d / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 1.7 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= d:
            ax.axis("off")
            continue
        r = _range(test[:, i], model[:, i])
        bins = np.linspace(*r, 40)
        ax.hist(test[:, i], bins=bins, histtype="stepfilled", alpha=0.35, color=TEST_COLOR,
                density=True)
        ax.hist(model[:, i], bins=bins, histtype="step", color=MODEL_COLOR, density=True,
                linewidth=1.2)
        flagged = result.names[i] in result.flagged
        ax.set_title(_text(result.names[i]), fontsize=7, color="#c00" if flagged else "black")
        ax.tick_params(labelsize=5)
        ax.set_yticks([])
    fig.legend(["test data", "surrogate"], loc="upper right", fontsize=8)
    return _save(fig, path, rect=(0, 0, 1, 0.97))


def corner(result, path: str, k: int = 5) -> str:
    """Pairwise densities of the POIs and the worst dimensions: test (filled) vs surrogate."""
    plt = _plt()
    test, model = result.samples["test"], result.samples["model"]
    idx = [result.names.index(p) for p in result.poi]
    for w in result.worst(k):
        j = result.names.index(w["name"])
        if j not in idx and len(idx) < k:
            idx.append(j)
    n = len(idx)
    fig, axes = plt.subplots(n, n, figsize=(2.2 * n, 2.2 * n), squeeze=False)
    for r, i in enumerate(idx):
        for c, j in enumerate(idx):
            ax = axes[r, c]
            if c > r:
                ax.axis("off")
                continue
            if r == c:
                bins = np.linspace(*_range(test[:, i], model[:, i]), 40)
                ax.hist(test[:, i], bins=bins, density=True, alpha=0.35, color=TEST_COLOR)
                ax.hist(model[:, i], bins=bins, density=True, histtype="step",
                        color=MODEL_COLOR)
                ax.set_yticks([])
            else:
                rx, ry = _range(test[:, j], model[:, j]), _range(test[:, i], model[:, i])
                # fewer, smoothed bins at small n: contours of noise help nobody
                nb = int(np.clip(np.sqrt(len(test)) / 2, 10, 40))
                for data, color, filled in ((test, TEST_COLOR, True),
                                            (model, MODEL_COLOR, False)):
                    h, xe, ye = np.histogram2d(data[:, j], data[:, i], bins=nb,
                                               range=[rx, ry], density=True)
                    h = ndimage.gaussian_filter(h, 1.0)
                    levels = _hpd_levels(h)
                    xc, yc = (xe[1:] + xe[:-1]) / 2, (ye[1:] + ye[:-1]) / 2
                    if filled:
                        ax.contourf(xc, yc, h.T, levels=levels + [h.max()], colors=[color],
                                    alpha=0.3)
                    else:
                        ax.contour(xc, yc, h.T, levels=levels, colors=[color], linewidths=1)
            if r == n - 1:
                ax.set_xlabel(_text(result.names[j]), fontsize=8)
            if c == 0 and r > 0:
                ax.set_ylabel(_text(result.names[i]), fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle("test data (filled) vs surrogate (lines): 68% and 95% regions", fontsize=9)
    return _save(fig, path)


def _hpd_levels(h: np.ndarray) -> list[float]:
    """Histogram heights enclosing 95% and 68% of the mass (increasing)."""
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / flat.sum()
    levels = sorted({float(flat[min(np.searchsorted(cum, q), len(flat) - 1)])
                     for q in (0.95, 0.68)})
    return levels if len(levels) == 2 and levels[0] < levels[1] else [levels[0], levels[0] * 1.01]


def correlation_difference(result, path: str) -> str:
    """Heatmap of corr(surrogate) - corr(test)."""
    plt = _plt()
    diff = np.asarray(result.model["corr_diff"])
    d = diff.shape[0]
    vmax = max(0.05, float(np.abs(diff).max()))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    fig.colorbar(im, ax=ax, label="corr(surrogate) - corr(test)")
    if d <= 20:
        ax.set_xticks(range(d), [_text(n) for n in result.names], rotation=90, fontsize=7)
        ax.set_yticks(range(d), [_text(n) for n in result.names], fontsize=7)
    ax.set_title(f"correlation difference (Frobenius {result.model['corr_frobenius']:.3f}, "
                 f"floor {result.floor['corr_frobenius']:.3f})", fontsize=9)
    return _save(fig, path)


def log_prob_scatter(result, path: str) -> str:
    """Surrogate vs true log density on the test points, with the offset line."""
    plt = _plt()
    m, t = result.samples["model_lp"], result.samples["true_lp"]
    ok = np.isfinite(m) & np.isfinite(t)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(t[ok], m[ok], s=2, alpha=0.3, color=TEST_COLOR, rasterized=True)
    lo, hi = np.quantile(t[ok], [0.001, 1.0])
    off = result.log_prob["diff_mean"]
    ax.plot([lo, hi], [lo + off, hi + off], color="k", lw=1, label=f"y = x + {off:.2f}")
    ax.set_xlabel("log density in the file")
    ax.set_ylabel("surrogate log density")
    ax.set_title(f"Pearson {result.log_prob['pearson']:.5f}, spread "
                 f"{result.log_prob['diff_std']:.3f}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def residual_drifts(result, path: str) -> str:
    """log q - log p along each POI (bin means and densest quarters, 1 sigma errors), the held-out
    exact conditional modes on the first POI's panel, and along the latent radius."""
    from .residuals import DRIFT_THRESHOLDS
    plt = _plt()
    res = result.residual
    panels = list(res.get("poi", {}).items())[:3]
    if "latent_radius" in res:
        panels.append(("latent |z|^2", res["latent_radius"]))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 4),
                             squeeze=False)
    warn = DRIFT_THRESHOLDS[0]
    for ax, (name, d) in zip(axes[0], panels):
        c = np.asarray(d["center"])
        ax.errorbar(c, d["drift"], yerr=d["se"], fmt="o-", color=TEST_COLOR, ms=3,
                    label="bin mean")
        if "dense_drift" in d:
            ax.errorbar(c, d["dense_drift"], yerr=d["dense_se"], fmt="s--", color=MODEL_COLOR,
                        ms=3, label="densest quarter of the bin")
        a = res.get("anchors")
        if a is not None and a["poi"] == name and a["modes"]["poi"]:
            ax.plot(a["modes"]["poi"], a["modes"]["drift"], "k^", ms=5,
                    label="exact conditional modes (vs best fit)")
        ax.axhspan(-warn, warn, color="0.9", zorder=0, label=f"+-{warn} nats")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlabel(_text(name))
        ax.set_ylabel("log q - log p, drift (nats)")
        ax.legend(fontsize=7)
    fig.suptitle("residual of the surrogate's log density: flat where it is right", fontsize=9)
    return _save(fig, path)


def training_curves(history: list[dict], path: str) -> str:
    """Training and validation loss per epoch, the best epoch marked, the learning rate below."""
    plt = _plt()
    ep = [h["epoch"] + 1 for h in history]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6, 5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(ep, [h["train_loss"] for h in history], label="training")
    val = [h["val_loss"] for h in history]
    ax.plot(ep, val, label="validation")
    finite = [v for v in val if np.isfinite(v)]
    if finite:
        best = int(np.nanargmin(np.where(np.isfinite(val), val, np.inf)))
        ax.axvline(ep[best], color="gray", ls=":", label=f"best epoch {ep[best]}")
        lo = min(finite + [h["train_loss"] for h in history if np.isfinite(h["train_loss"])])
        ax.set_ylim(lo - 0.05 * abs(lo) - 0.1, np.quantile(finite, 0.9) + 0.05 * abs(lo) + 0.1)
    ax.set_ylabel("negative log-likelihood per sample")
    ax.legend(fontsize=8)
    ax2.semilogy(ep, [h["lr"] for h in history], color="k")
    ax2.set_ylabel("learning rate")
    ax2.set_xlabel("epoch")
    return _save(fig, path)


def profile_plot(curves: list[tuple], path: str, *, poi: str,
                 limits: list[tuple[str, float]] = (), q_limit: float | None = None) -> str:
    """-2 Delta log L against the POI: one line per (label, values, q[, trusted]), sigma lines,
    limits.

    The horizontal lines at 1 and 4 are the 68% and 95% two-sided intervals (1 and 2 sigma);
    ``q_limit`` (2.71 for a one-sided 95% limit) is drawn dashed, each limit as a vertical line.
    Points marked untrusted (outside a surrogate's training region) are drawn as red crosses.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    styles = [dict(color="k", lw=2), dict(color=MODEL_COLOR, lw=2, ls="--"),
              dict(color=TEST_COLOR, lw=1.5, ls="-.")]
    top = 0.0
    for curve, style in zip(curves, styles * 3):
        label, x, q = curve[:3]
        trusted = curve[3] if len(curve) > 3 and curve[3] is not None else None
        x, q = np.asarray(x), np.asarray(q)
        ok = np.isfinite(q)
        ax.plot(x[ok], q[ok], label=_text(label), **style)
        if trusted is not None and not np.all(trusted):
            bad = ok & ~np.asarray(trusted)
            ax.plot(x[bad], q[bad], "x", color="#c00", ms=8, mew=2,
                    label="untrusted (outside the training data)")
        top = max(top, float(np.nanmax(q[ok])) if ok.any() else 0.0)
    ymax = min(max(top, 5.0), 9.0) * 1.05
    for level, name in ((1.0, r"1$\sigma$"), (4.0, r"2$\sigma$")):
        ax.axhline(level, color="gray", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[1], level, f" {name}", va="center", ha="left", fontsize=9,
                color="gray")
    if q_limit is not None:
        ax.axhline(q_limit, color="#c00", lw=0.8, ls="--")
    for (label, value), color in zip(limits, ("#c00", "#a0a", "#0a0", "#555")):
        ax.axvline(value, color=color, lw=1.2, label=f"{label}: {value:.3f}")
    ax.set_ylim(0, ymax)
    ax.set_xlabel(_text(poi), fontsize=12)
    ax.set_ylabel(r"$-2\,\Delta \ln L$", fontsize=12)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return _save(fig, path, dpi=120)


def roc_plot(fpr: np.ndarray, tpr: np.ndarray, path: str, *, auc: float,
             marks: list[tuple[float, float]] = ()) -> str:
    """The ROC curve: true- against false-positive rate, the latter on a log scale (a rare
    signal is judged at small false-positive rates), with chance and marked working points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    ok = fpr > 0
    ax.plot(fpr[ok], tpr[ok], color="k", lw=2, label=f"density ratio (AUC {auc:.4f})")
    grid = np.logspace(np.log10(max(fpr[ok].min(), 1e-6)), 0, 100) if ok.any() else [1.0]
    ax.plot(grid, grid, color="gray", ls=":", label="chance")
    for f, t in marks:
        ax.plot([f], [t], "o", color=MODEL_COLOR, ms=6)
        # above-left of the point: the curve rises to the right, and chance lies below
        ax.annotate(f"TPR {t:.3f} at FPR {f:g}", (f, t), textcoords="offset points",
                    xytext=(-8, 8), ha="right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("false-positive rate (background accepted)")
    ax.set_ylabel("true-positive rate (signal accepted)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return _save(fig, path, dpi=110)


def check_plot_format(path: str | os.PathLike) -> None:
    """A plot's file type must be one matplotlib writes (checked before any work)."""
    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase
    known = FigureCanvasBase.get_supported_filetypes()
    if ext not in known:
        from ..errors import LikeflowError
        raise LikeflowError(f"{path}: cannot write a plot of type '{ext or '(none)'}'; use one "
                            f"of {', '.join(sorted(known))}")


def exact_comparison_plot(check, path: str, *, q_compared: float,
                          profile_tolerance: float, limit_tolerance: tuple[float, float]) -> str:
    """Left: the exact and surrogate profiles of one POI (top) and their difference (bottom,
    the PASS band ``profile_tolerance`` shaded where the exact q is below ``q_compared``), with
    both CLs observed limits. Right: every limit's relative difference from the exact one,
    against ``limit_tolerance`` (PASS, WARN)."""
    plt = _plt()
    fig = plt.figure(figsize=(10.5, 6.0))
    grid = fig.add_gridspec(2, 2, height_ratios=[2.2, 1], width_ratios=[1.6, 1], wspace=0.45)
    ax = fig.add_subplot(grid[0, 0])
    bx = fig.add_subplot(grid[1, 0], sharex=ax)
    cx = fig.add_subplot(grid[:, 1])
    x, qe, qs = check.values, check.q_exact, check.q_surrogate
    ax.plot(x, qe, color="k", lw=2, label="exact (pyhf)")
    ax.plot(x, qs, color=MODEL_COLOR, lw=2, ls="--", label="surrogate")
    both = np.concatenate([qe, qs])
    top = float(np.nanmax(both)) if np.isfinite(both).any() else 5.0
    ax.set_ylim(0, min(max(top, 5.0), 12.0) * 1.05)
    for level in (1.0, 4.0):
        ax.axhline(level, color="gray", lw=0.8, ls=":")
    shown = "CLs observed" if any(l["name"] == "CLs observed" for l in check.limits) else \
        "q~ profile limit"
    for lim in check.limits:
        if lim["name"] != shown:
            continue
        for v, c, style in ((lim["exact"], "k", "-"), (lim["surrogate"], MODEL_COLOR, "--")):
            if v is not None:
                ax.axvline(v, color=c, lw=1, ls=style)
        ax.plot([], [], color="gray", lw=1, label=f"{shown}: exact {_fmtv(lim['exact'])}, "
                f"surrogate {_fmtv(lim['surrogate'])}")
    ax.set_ylabel(r"$-2\,\Delta \ln L$", fontsize=12)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    plt.setp(ax.get_xticklabels(), visible=False)
    verdict, _ = check.verdict()
    fig.suptitle(f"surrogate against the exact likelihood: verdict {verdict}", fontsize=11)
    near = np.isfinite(qe) & (qe < q_compared)
    d = qs - qe
    bx.axhspan(-profile_tolerance, profile_tolerance, color="#7c7", alpha=0.25, lw=0)
    bx.axhline(0, color="k", lw=0.8)
    bx.plot(x, d, color="#555", lw=1, ls=":")
    bx.plot(np.where(near, x, np.nan), np.where(near, d, np.nan), "o-", color=MODEL_COLOR,
            ms=3, label=f"where exact q < {q_compared:g}")
    span = float(np.nanmax(np.abs(d[near]))) if near.any() else 0.5
    bx.set_ylim(-max(0.3, 1.3 * span), max(0.3, 1.3 * span))
    bx.set_ylabel(r"$q_{sur} - q_{exact}$", fontsize=11)
    bx.set_xlabel(_text(check.poi), fontsize=12)
    bx.legend(fontsize=8, loc="lower left", frameon=False)
    # the limits, one row each, relative to the exact
    names = [l["name"] for l in check.limits]
    rel = [100 * l["relative"] if l["relative"] is not None else np.nan for l in check.limits]
    rows = np.arange(len(names))[::-1]
    tol = 100 * limit_tolerance[0]
    cx.axvspan(-tol, tol, color="#7c7", alpha=0.25, lw=0)
    cx.axvline(0, color="k", lw=0.8)
    colours = ["#070" if abs(r) <= tol else "#a60" if abs(r) <= 100 * limit_tolerance[1]
               else "#b00" for r in np.nan_to_num(rel, nan=1e9)]
    cx.scatter(np.nan_to_num(rel, nan=0.0), rows, c=colours, s=40, zorder=3)
    for r, y, lim in zip(rel, rows, check.limits):
        label = ("none" if np.isnan(r) else f"{r:+.1f}%") + f"  ({_fmtv(lim['surrogate'])} vs " \
            f"{_fmtv(lim['exact'])})"
        cx.annotate(label, (0, y), xytext=(0, 7), textcoords="offset points", ha="center",
                    fontsize=7)
    cx.set_yticks(rows)
    cx.set_yticklabels(names, fontsize=8)
    lim = max(2 * tol, 1.2 * float(np.nanmax(np.abs(rel))) if np.isfinite(rel).any() else 0)
    cx.set_xlim(-lim, lim)
    cx.set_ylim(-0.7, len(names) - 0.3)
    cx.set_xlabel("surrogate / exact - 1 (%)", fontsize=10)
    cx.set_title("limits", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.97, top=0.9, bottom=0.09, hspace=0.08)
    return _save(fig, path, dpi=120, layout=False)


def _fmtv(v) -> str:
    return "none" if v is None else f"{v:.3f}"
