"""A surrogate of a pyhf likelihood checked against the likelihood itself (``likeflow validate
SUR --exact WS.json``).

Sample-based validation compares marginals, correlations and log densities where the samples
are; limits are set elsewhere, at the conditional modes of the POI's slices, where no sample
lies. With the workspace at hand the surrogate can be held to the exact answers there:

- the profile of the POI, exact and surrogate, on one grid, and its largest difference where
  the exact q is below :data:`Q_COMPARED`;
- the asymptotic q~ limit, the CLs observed limit and the expected band (with the surrogate's
  Asimov partner, against the workspace's background-only Asimov data), side by side;
- importance sampling of the exact likelihood with the surrogate as proposal: weights
  ``w = p / q`` on surrogate samples. Their effective-sample-size fraction
  ``(sum w)^2 / (n sum w^2)`` is 1 for a perfect surrogate and falls with every mismatch, a
  direct measure of its quality; the weighted quantile of the POI is the credible limit of
  the exact likelihood (with the surrogate's prior range), corrected for the surrogate's error.

The verdict is the worst of the figures against the thresholds below (``docs/validation.md``):
a surrogate whose profile or limits are off from the exact ones cannot PASS.

Example:
    >>> check = validate_exact("obs.likeflow.h5", "BkgOnly.json", patch="patch.json")  # doctest: +SKIP
    >>> print(check.table())                                                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import LikeflowError
from ..fileio import file_sha256
from ..infer.inference import DEFAULT_CL, credible_upper_limit
# max |q_surrogate - q_exact| where q < Q_COMPARED: PASS up to the first, WARN up to the second
from .residuals import PROFILE_TOLERANCE, Q_COMPARED
# relative difference of every limit: PASS / WARN bounds
LIMIT_TOLERANCE = (0.03, 0.06)
# the surrogate's credible limit against the importance-corrected one: PASS / WARN bounds
CREDIBLE_TOLERANCE = (0.01, 0.03)
# importance weights this degenerate make the corrected limit noise: WARN
MIN_ESS_FRACTION = 0.01
# profile grid points and importance samples by default
POINTS = 31
IMPORTANCE_SAMPLES = 100_000

EXPECTED_NAMES = ("-2 sigma", "-1 sigma", "median", "+1 sigma", "+2 sigma")


@dataclass
class ExactCheck:
    """A surrogate against the exact likelihood it came from: profiles, limits, importance
    weights and a verdict (``table()``, ``to_dict()``, ``plot(path)``, ``write(folder)``)."""

    poi: str
    values: np.ndarray
    q_exact: np.ndarray
    q_surrogate: np.ndarray
    limits: list[dict]          # {"name", "exact", "surrogate", "relative"}
    importance: dict            # n, ess_fraction, credible_limit (surrogate), corrected, ...
    source: dict                # surrogate, partner, workspace, patch
    cl: float = DEFAULT_CL
    elapsed: float = 0.0
    reasons: list[tuple[str, str]] = field(default_factory=list)

    @property
    def max_profile_difference(self) -> float:
        """max |q_surrogate - q_exact| where the exact q is below :data:`Q_COMPARED`."""
        near = np.isfinite(self.q_exact) & (self.q_exact < Q_COMPARED)
        d = np.abs(self.q_surrogate - self.q_exact)[near]
        return float(np.nanmax(d)) if d.size else float("nan")

    def verdict(self) -> tuple[str, list[str]]:
        order = {"PASS": 0, "WARN": 1, "FAIL": 2}
        worst = max((level for level, _ in self.reasons), key=order.get, default="PASS")
        return worst, [f"{level}: {text}" for level, text in self.reasons if level != "PASS"]

    def to_dict(self) -> dict:
        verdict, reasons = self.verdict()
        return {"poi": self.poi, "cl": self.cl, "source": self.source,
                "profile": {"values": self.values.tolist(), "q_exact": self.q_exact.tolist(),
                            "q_surrogate": self.q_surrogate.tolist(),
                            "q_compared_below": Q_COMPARED,
                            "max_difference": self.max_profile_difference},
                "limits": self.limits, "importance": self.importance,
                "verdict": verdict, "verdict_reasons": reasons,
                "thresholds": {"profile": PROFILE_TOLERANCE, "limits": LIMIT_TOLERANCE,
                               "credible": CREDIBLE_TOLERANCE,
                               "min_ess_fraction": MIN_ESS_FRACTION},
                "elapsed": self.elapsed}

    def summary(self) -> dict:
        """What a surrogate file's validation record keeps (``validation["exact"]``)."""
        verdict, reasons = self.verdict()
        return {"verdict": verdict, "verdict_reasons": reasons, "poi": self.poi,
                "workspace": self.source["workspace"], "patch": self.source.get("patch"),
                "workspace_sha256": self.source.get("workspace_sha256"),
                "max_profile_difference": self.max_profile_difference,
                "q_compared_below": Q_COMPARED, "limits": self.limits,
                "importance": self.importance, "cl": self.cl}

    def to_json(self) -> str:
        from ..jsonutil import strict_json
        return json.dumps(strict_json(self.to_dict()))

    def table(self) -> str:
        lines = [f"surrogate against the exact likelihood ({self.source['workspace']}"
                 + (f", patch {self.source['patch']}" if self.source.get("patch") else "") + ")",
                 f"profile of {self.poi}: max |q_surrogate - q_exact| where exact q < "
                 f"{Q_COMPARED:g}: {self.max_profile_difference:.3f}",
                 f"{'limit (' + format(self.cl, '.0%') + ')':<26} {'exact':>10} "
                 f"{'surrogate':>10} {'diff':>8}"]
        for lim in self.limits:
            ex, su, rel = lim["exact"], lim["surrogate"], lim["relative"]
            lines.append(f"{lim['name']:<26} {_fmt(ex):>10} {_fmt(su):>10} "
                         f"{'' if rel is None else format(rel, '+.1%'):>8}")
        imp = self.importance
        lines.append(f"importance sampling ({imp['n']} surrogate samples, weights p/q): "
                     f"ESS fraction {imp['ess_fraction']:.3f}; credible limit "
                     f"{_fmt(imp['credible_limit'])} (surrogate), "
                     f"{_fmt(imp['corrected_credible_limit'])} (corrected by the weights)"
                     + (f", {_fmt(imp['reference_credible_limit'])} (exact samples)"
                        if imp.get("reference_credible_limit") is not None else ""))
        verdict, reasons = self.verdict()
        lines.append(f"exact verdict: {verdict}" + (f" ({'; '.join(reasons)})" if reasons else ""))
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> str:
        """The exact and surrogate profiles and their difference, with both sets of limits."""
        from .plots import exact_comparison_plot
        return exact_comparison_plot(self, os.fspath(path), q_compared=Q_COMPARED,
                                     profile_tolerance=PROFILE_TOLERANCE[0],
                                     limit_tolerance=LIMIT_TOLERANCE)

    def write(self, folder: str | os.PathLike, *, plots: bool = True) -> list[str]:
        """``exact.json`` (and ``exact_profile.png``) into ``folder``, each written whole."""
        from ..fileio import write_text
        from ..jsonutil import strict_json
        os.makedirs(folder, exist_ok=True)
        write_text(os.path.join(folder, "exact.json"),
                   json.dumps(strict_json(self.to_dict()), indent=1))
        files = ["exact.json"]
        if plots:
            self.plot(os.path.join(folder, "exact_profile.png"))
            files.append("exact_profile.png")
        return files


def _fmt(v) -> str:
    return "none" if v is None else f"{v:.4f}"


def _relative(exact, surrogate):
    if exact is None or surrogate is None:
        return None
    return float(surrogate / exact - 1.0) if exact else None


def _grade(value: float, bounds: tuple[float, float]) -> str:
    return "PASS" if value <= bounds[0] else "WARN" if value <= bounds[1] else "FAIL"


def validate_exact(surrogate, workspace, *, patch=None, asimov=None, poi: str | None = None,
                   points: int = POINTS, value_range: tuple[float, float] | None = None,
                   importance_samples: int = IMPORTANCE_SAMPLES, samples=None,
                   cl: float = DEFAULT_CL, seed: int = 0, progress=None) -> ExactCheck:
    """Hold a surrogate of a pyhf likelihood to the likelihood itself.

    Args:
        surrogate: a surrogate or its file, fitted to samples of ``workspace`` (+ ``patch``).
        workspace: the pyhf workspace (path or spec), ``patch`` its signal patch.
        asimov: the surrogate's Asimov partner (default: the partner its file records); with
            it, the CLs limits and their expected band are compared too.
        poi: default the surrogate's first POI.
        points: grid points of the profiles, over ``value_range`` (default: the surrogate's
            profile grid, best fit -2/+4 marginal standard deviations).
        importance_samples: surrogate samples weighted by p/q.
        samples: optional exact samples (a sample file or :class:`SampleSet`) whose quantile
            is the reference credible limit.
        progress: ``str -> None`` for progress lines.

    Returns:
        An :class:`ExactCheck`.
    """
    import time

    from ..targets.likelihoods.pyhf_target import PyhfTarget
    from ..infer.profiling import open_target, profile
    say = progress or (lambda m: None)
    t0 = time.perf_counter()
    sur, partner, sur_name = open_target(surrogate, asimov=asimov)
    if not hasattr(sur, "sample") or isinstance(sur, PyhfTarget):
        raise LikeflowError(f"{sur_name}: not a surrogate (the exact check takes a surrogate "
                            "and the workspace it came from)")
    exact = PyhfTarget(workspace, patch=patch)
    if list(sur.names) != list(exact.names):
        extra = sorted(set(sur.names) ^ set(exact.names))
        raise LikeflowError(
            f"{sur_name}: the surrogate's parameters are not the workspace's "
            f"({sur.dim} vs {exact.dim}" + (f"; not in both: {', '.join(extra[:4])}" if extra
                                            else "; another order") + ")")
    poi = poi or (sur.poi[0] if sur.poi else exact.poi[0] if exact.poi else None)
    if poi is None:
        raise LikeflowError(f"{sur_name}: no POI recorded; name one")
    if poi not in exact.names:
        raise LikeflowError(f"{workspace}: no parameter '{poi}' in the workspace")
    exact_asimov = PyhfTarget(workspace, patch=patch, asimov=True) if partner is not None else None

    say(f"profile of {poi} on the surrogate ({points} points)")
    # no credible limit here: importance_weights draws the samples and computes it
    p_sur = profile(sur, poi, points=points, value_range=value_range, cl=cl, seed=seed,
                    asimov=partner, bayesian_samples=0)
    wider = None if value_range is not None else _reaching(p_sur, sur.bounds[
        list(sur.names).index(poi)], points)
    if wider is not None:   # the default grid ends below q = Q_COMPARED: compare out to it
        say(f"profile of {poi} on the surrogate, out to q = {Q_COMPARED:g} "
            f"({wider[0]:.4g} to {wider[-1]:.4g})")
        limits_of = p_sur
        p_sur = profile(sur, poi, values=wider, cl=cl, seed=seed, limits=False)
        p_sur.upper_limit, p_sur.cls = limits_of.upper_limit, limits_of.cls
    say(f"profile of {poi} on the exact likelihood (pyhf, the same grid)")
    p_ex = profile(exact, poi, values=p_sur.values, cl=cl, seed=seed, asimov=exact_asimov,
                   limits=True)
    limits = [{"name": "q~ profile limit", "exact": p_ex.upper_limit.value,
               "surrogate": p_sur.upper_limit.value}]
    if p_sur.cls is not None and p_ex.cls is not None:
        limits.append({"name": "CLs observed", "exact": p_ex.cls.observed,
                       "surrogate": p_sur.cls.observed})
        limits += [{"name": f"CLs expected {n}", "exact": e, "surrogate": s}
                   for n, e, s in zip(EXPECTED_NAMES, p_ex.cls.expected, p_sur.cls.expected)]
    for lim in limits:
        lim["relative"] = _relative(lim["exact"], lim["surrogate"])

    say(f"importance sampling: {importance_samples} surrogate samples weighted by p/q")
    importance = importance_weights(sur, exact, poi, n=importance_samples, cl=cl, seed=seed)
    if samples is not None:
        from ..data.samples import as_sample_set
        ref = as_sample_set(samples)
        importance["reference_credible_limit"] = credible_upper_limit(
            ref.values[:, ref.names.index(poi)], cl=cl,
            weights=ref.weights).value

    check = ExactCheck(poi, np.asarray(p_sur.values, float), np.asarray(p_ex.q, float),
                       np.asarray(p_sur.q, float), limits, importance,
                       {"surrogate": sur_name, "partner": getattr(partner, "path", None),
                        "workspace": exact.source, "patch": exact.patch_source,
                        "workspace_sha256": None if isinstance(workspace, dict)
                        else file_sha256(workspace)}, cl=cl)
    check.reasons = _reasons(check)
    check.elapsed = time.perf_counter() - t0
    return check


def _reaching(prof, bounds, points: int):
    """A grid from ``prof``'s start out to where its q reaches :data:`Q_COMPARED` (a
    quadratic extrapolation from its last point, inside ``bounds``), or None when ``prof``
    already gets there."""
    q = np.asarray(prof.q, float)
    v = np.asarray(prof.values, float)
    ok = np.isfinite(q)
    if not ok.any() or np.nanmax(q) >= Q_COMPARED:
        return None
    best = float(prof.best.x[prof.index])
    end, q_end = float(v[ok][-1]), float(q[ok][-1])
    if q_end <= 0.05 or end <= best:
        return None
    reach = best + (end - best) * np.sqrt(1.3 * Q_COMPARED / q_end)
    reach = min(reach, float(bounds[1]))
    return np.linspace(float(v[0]), reach, points) if reach > end else None


def importance_weights(sur, exact, poi: str, *, n: int = IMPORTANCE_SAMPLES,
                       cl: float = DEFAULT_CL, seed: int = 0) -> dict:
    """Importance sampling of ``exact`` with ``sur`` as proposal: the weights' effective sample
    size fraction and the POI's credible limit, raw and corrected by the weights."""
    x = sur.sample(n, seed=seed + 7)
    log_q = np.asarray(sur.log_prob(x), np.float64)
    log_p = np.asarray(exact.evaluate(x)["log_prob"], np.float64)
    log_w = log_p - log_q
    ok = np.isfinite(log_w)
    w = np.zeros(n)
    if ok.any():
        w[ok] = np.exp(log_w[ok] - log_w[ok].max())
    i = list(sur.names).index(poi)
    ess = float(w.sum() ** 2 / (n * np.sum(w ** 2))) if w.any() else 0.0
    raw = credible_upper_limit(x[:, i], cl=cl).value
    corrected = credible_upper_limit(x[:, i], cl=cl, weights=w).value if w.any() else None
    spread = float(np.std(log_w[ok])) if ok.sum() > 1 else float("nan")
    return {"n": int(n), "ess_fraction": ess, "outside_bounds": int((~ok).sum()),
            "log_weight_std": spread, "credible_limit": raw,
            "corrected_credible_limit": corrected}


def _reasons(check: ExactCheck) -> list[tuple[str, str]]:
    out = []
    d = check.max_profile_difference
    if np.isfinite(d):
        out.append((_grade(d, PROFILE_TOLERANCE),
                    f"profile of {check.poi} off by up to {d:.3f} in q where exact q < "
                    f"{Q_COMPARED:g} (PASS <= {PROFILE_TOLERANCE[0]:g})"))
    for lim in check.limits:
        ex, su = lim["exact"], lim["surrogate"]
        if ex is None and su is None:
            continue
        if ex is None or su is None:
            out.append(("FAIL", f"{lim['name']}: exact {_fmt(ex)}, surrogate {_fmt(su)}"))
        elif lim["relative"] is not None:
            out.append((_grade(abs(lim["relative"]), LIMIT_TOLERANCE),
                        f"{lim['name']} {lim['relative']:+.1%} off the exact "
                        f"(PASS within {LIMIT_TOLERANCE[0]:.0%})"))
    imp = check.importance
    if imp["ess_fraction"] < MIN_ESS_FRACTION:
        out.append(("WARN", f"importance weights degenerate (ESS fraction "
                            f"{imp['ess_fraction']:.3g} < {MIN_ESS_FRACTION:g})"))
    elif imp["corrected_credible_limit"] and imp["credible_limit"] is not None:
        rel = imp["credible_limit"] / imp["corrected_credible_limit"] - 1
        out.append((_grade(abs(rel), CREDIBLE_TOLERANCE),
                    f"credible limit {rel:+.1%} off the importance-corrected one "
                    f"(PASS within {CREDIBLE_TOLERANCE[0]:.0%})"))
    return out
