"""Density-ratio classification: two surrogates, one per class, and the log ratio of their
densities as the classifier (the Neyman-Pearson optimal one where the surrogates are exact).

As in the RR Lyrae studies (a neural spline flow per class, 4 colours, 0.56% signal): fit one
surrogate to signal samples and one to background samples; a point's score is

    log r(x) = log p_S(x) - log p_B(x) + log(prior ratio),

with the prior ratio P(S)/P(B) (1 by default). With labelled points (1 signal, 0 background)
:func:`classify` also gives the ROC curve, its area (AUC), the true-positive rate at chosen
false-positive rates, and the accuracy at the Bayes threshold log r = 0 (the decision that
minimises the error rate when the prior ratio is the true one).

Example:
    >>> res = likeflow.classify("sig.likeflow.h5", "bkg.likeflow.h5", "events.h5",   # doctest: +SKIP
    ...                         prior_ratio=0.0056 / 0.9944)
    >>> res.auc, res.tpr_at(1e-3)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import LikeflowError

#: false-positive rates at which the true-positive rate is reported by default
DEFAULT_FPRS = (1e-3, 1e-2, 0.1)


@dataclass
class ClassifyResult:
    """Scores of points, and with labels the classifier's performance."""

    log_ratio: np.ndarray                 # per point, prior ratio included
    prior_ratio: float = 1.0
    labels: np.ndarray | None = None
    fpr: np.ndarray | None = None         # the ROC curve, thresholds descending
    tpr: np.ndarray | None = None
    auc: float | None = None
    accuracy: float | None = None         # at the Bayes threshold log r = 0
    fprs: tuple = DEFAULT_FPRS
    notes: list[str] = field(default_factory=list)

    def tpr_at(self, fpr: float) -> float:
        """The true-positive rate at a false-positive rate (interpolated on the ROC curve)."""
        if self.fpr is None:
            raise LikeflowError("no labels: the ROC curve needs labelled points")
        return float(np.interp(fpr, self.fpr, self.tpr))

    def to_dict(self) -> dict:
        out = {"n": int(len(self.log_ratio)), "prior_ratio": self.prior_ratio,
               "notes": self.notes}
        if self.labels is not None:
            out.update(n_signal=int(self.labels.sum()),
                       n_background=int((1 - self.labels).sum()), auc=self.auc,
                       accuracy_bayes_threshold=self.accuracy,
                       tpr_at_fpr={f"{f:g}": self.tpr_at(f) for f in self.fprs})
        return out

    def table(self) -> str:
        lines = [f"{len(self.log_ratio)} points, prior ratio P(S)/P(B) = {self.prior_ratio:g}"]
        if self.labels is None:
            lines.append("no labels: scores only (log density ratio per point)")
            return "\n".join(lines + self.notes)
        lines.append(f"{int(self.labels.sum())} signal, {int((1 - self.labels).sum())} "
                     "background")
        lines.append(f"AUC                                  {self.auc:.4f}")
        for f in self.fprs:
            lines.append(f"TPR at FPR {f:<8g}                  {self.tpr_at(f):.4f}")
        lines.append(f"accuracy at the Bayes threshold      {self.accuracy:.4f}")
        return "\n".join(lines + self.notes)

    def write_json(self, path: str | os.PathLike) -> None:
        from ..fileio import write_text
        write_text(os.fspath(path), json.dumps(self.to_dict(), indent=1))

    def write(self, path: str | os.PathLike, points) -> None:
        """The points (a :class:`~likeflow.data.samples.SampleSet`) with their log ratio (and
        labels) as a sample file; the summary as JSON in its ``classification`` attribute."""
        from ..data.samples import write_samples
        cols = {"log_ratio": self.log_ratio}
        if self.labels is not None:
            cols["labels"] = self.labels
        write_samples(path, points, columns=cols,
                      attrs={"classification": json.dumps(self.to_dict())})

    def plot(self, path: str | os.PathLike) -> str:
        """The ROC curve (log false-positive rate, as rare signals are judged)."""
        from ..validation.plots import roc_plot
        if self.fpr is None:
            raise LikeflowError("no labels: the ROC curve needs labelled points")
        marks = [(f, self.tpr_at(f)) for f in self.fprs]
        return roc_plot(self.fpr, self.tpr, os.fspath(path), auc=self.auc, marks=marks)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(false-positive rates, true-positive rates, AUC) of ``scores`` (higher: more signal-like)
    for 0/1 ``labels``; tied scores make one step (the AUC counts a tie as half)."""
    s = np.asarray(scores, float)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise LikeflowError("the ROC curve needs both signal (1) and background (0) labels")
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the end of each tie group
    tpr = np.r_[0.0, np.cumsum(y)[last] / n_pos]
    fpr = np.r_[0.0, np.cumsum(~y)[last] / n_neg]
    auc = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
    return fpr, tpr, auc


def classify(signal, background, points, *, prior_ratio: float = 1.0, labels=None,
             fprs=DEFAULT_FPRS, read_options=None) -> ClassifyResult:
    """Score ``points`` by the log density ratio of two surrogates.

    Args:
        signal, background: surrogates (or their files) of the two classes, with the same
            parameters (matched by name).
        points: a sample file, a :class:`~likeflow.data.samples.SampleSet` or an (N, D) array;
            a file's ``labels`` dataset (1 signal, 0 background), if any, gives the labels.
        prior_ratio: P(signal) / P(background), added to the log ratio (1: none).
        labels: (N,) 0/1 labels (overrides the file's).
        fprs: false-positive rates at which the true-positive rate is reported.
    """
    from ..data.samples import as_sample_set, read_labels
    from ..surrogate.loading import load
    from ..surrogate.artifact import Surrogate

    if not (isinstance(prior_ratio, (int, float)) and math.isfinite(prior_ratio)
            and prior_ratio > 0):
        raise LikeflowError(f"the prior ratio P(S)/P(B) must be a positive number, not "
                            f"{prior_ratio!r}")
    sig = signal if isinstance(signal, Surrogate) else load(signal)
    bkg = background if isinstance(background, Surrogate) else load(background)
    if sorted(sig.names) != sorted(bkg.names):
        raise LikeflowError("the signal and background surrogates have other parameters "
                            f"({sig.names[:6]} vs {bkg.names[:6]})")
    s = as_sample_set(points, read_options=read_options)
    path = os.fspath(points) if isinstance(points, (str, os.PathLike)) else "<points>"
    if labels is None and isinstance(points, (str, os.PathLike)):
        labels = read_labels(points)
    x_sig = sig.columns_of(s, path).values
    x_bkg = bkg.columns_of(s, path).values
    lp_sig, lp_bkg = sig.log_prob(x_sig), bkg.log_prob(x_bkg)
    log_ratio = lp_sig - lp_bkg + math.log(prior_ratio)
    res = ClassifyResult(log_ratio=log_ratio, prior_ratio=float(prior_ratio),
                         fprs=tuple(float(f) for f in fprs))
    both_inf = ~np.isfinite(lp_sig) & ~np.isfinite(lp_bkg)
    if both_inf.any():
        res.notes.append(f"{int(both_inf.sum())} points lie outside both surrogates' bounds "
                         "(scored as background)")
        res.log_ratio = np.where(both_inf, -np.inf, log_ratio)
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (s.n,) or not np.isin(y, (0, 1)).all():
            raise LikeflowError(f"labels must be {s.n} values of 0 (background) or 1 (signal)")
        res.labels = y.astype(int)
        res.fpr, res.tpr, res.auc = roc_curve(res.log_ratio, y)
        res.accuracy = float(np.mean((res.log_ratio > 0) == (y == 1)))
    return res
