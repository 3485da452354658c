"""The whole analysis of one parameter, what ``likeflow profile`` prints: a profile with its
best fit, its asymptotic, credible and CLs upper limits (:func:`profile`), on a surrogate, an
exact target or a pyhf workspace (:func:`open_target`), and a reference profile to compare with
(:func:`read_reference`).

The fits and limits themselves are :mod:`likeflow.infer.inference`'s and
:mod:`likeflow.infer.cls`'s;
this module puts them together, so that both can be used without it.

Example:
    >>> result = profile("toy.likeflow.h5", "mu")                  # doctest: +SKIP
    >>> print(result.table())                                      # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import LikeflowError
from .cls import CLsLimits, cls_limits
from .inference import (DEFAULT_CL, Maximum, Profile, UpperLimit, as_density, q_threshold,
                        bayesian_upper_limit, parameter_index, scan, upper_limit)

# a --range may reach this many training-range widths beyond a surrogate's training range
RANGE_REACH = 10

DEFAULT_POINTS = 25


@dataclass
class ProfileResult:
    """A profile with its best fit and upper limits, each naming its method.

    ``upper_limit`` is the asymptotic profile-likelihood limit; ``bayesian_upper_limit`` the
    credible limit from samples (surrogates); ``cls`` the CLs limits (with an Asimov partner).
    The profile's own fields (``values``, ``q``, ``best``, ``trusted``, ...) read through.
    """

    profile: Profile
    cl: float
    source: str
    upper_limit: UpperLimit | None = None
    bayesian_upper_limit: UpperLimit | None = None
    cls: CLsLimits | None = None
    elapsed: float = 0.0
    # an ensemble: each member's profile-likelihood upper limit (their spread is the
    # surrogate's own uncertainty of the limit)
    member_upper_limits: list | None = None

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "profile":
            raise AttributeError(name)
        return getattr(self.profile, name)

    def to_dict(self) -> dict:
        return {"profile": self.profile.to_dict(),
                "upper_limit": self.upper_limit.to_dict() if self.upper_limit else None,
                "bayesian_upper_limit": (self.bayesian_upper_limit.to_dict()
                                         if self.bayesian_upper_limit else None),
                "cls": self.cls.to_dict() if self.cls else None, "source": self.source,
                "kind": self.profile.kind, "member_upper_limits": self.member_upper_limits}

    def write_json(self, path: str | os.PathLike) -> None:
        """The profile and limits as a JSON file (written atomically)."""
        import json

        from ..fileio import write_text
        from ..jsonutil import strict_json
        write_text(path, json.dumps(strict_json(self.to_dict()), indent=1))

    def table(self, reference: dict | None = None) -> str:
        """The profile and limits as text; with a :func:`read_reference` profile beside it."""
        p, poi = self.profile, self.profile.poi
        i = p.index
        ref_q = (np.interp(p.values, reference["values"], reference["q"], left=np.nan,
                           right=np.nan) if reference else None)
        lines = [f"{p.kind}; best fit: {poi} = {p.best.x[i]:.5g} (log density "
                 f"{p.best.log_prob:.4f})" + ("" if p.best.trusted
                                              else f"  UNTRUSTED: {p.best.note}"),
                 f"{poi:>10} {'-2 dlogL':>10}" + (f" {'compare':>10} {'diff':>8}"
                                                  if reference else "")]
        for j, (v, q) in enumerate(zip(p.values, p.q)):
            line = f"{v:10.4f} {q:10.4f}"
            if reference:
                line += f" {ref_q[j]:10.4f} {q - ref_q[j]:8.4f}"
            if not p.trusted[j]:
                line += f"  (untrusted: {p.notes[j]})"
            elif not p.converged[j]:
                line += "  (not converged)"
            lines.append(line)
        for lim in (self.upper_limit, self.bayesian_upper_limit):
            if lim is not None:
                val = "none" if lim.value is None else f"{lim.value:.4f}"
                lines.append(f"{self.cl:.0%} upper limit on {poi}: {val}  [{lim.method}]"
                             + ("" if lim.trusted else f"  UNTRUSTED: {lim.note}"))
        if self.member_upper_limits:
            v = np.array([np.nan if x is None else x for x in self.member_upper_limits])
            lines.append(f"members' {self.cl:.0%} upper limits on {poi}: {np.nanmean(v):.4f} +- "
                         f"{np.nanstd(v):.4f} (from {np.nanmin(v):.4f} to {np.nanmax(v):.4f}, "
                         f"{len(v)} members)")
        if self.cls is not None:
            fmt = lambda v: "none" if v is None else f"{v:.4f}"  # noqa: E731
            c = self.cls
            lines.append(f"{self.cl:.0%} CLs upper limit on {poi}: observed {fmt(c.observed)}, "
                         f"expected {fmt(c.expected[2])} (-2..+2 sigma: "
                         f"{', '.join(fmt(v) for v in c.expected)})  [{c.method}]")
        if reference and "upper_limit" in reference:
            lines.append(f"compare: upper limit {reference['upper_limit']:.4f}"
                         + (f", Bayesian {reference['bayesian_upper_limit']:.4f}"
                            if "bayesian_upper_limit" in reference else "")
                         + (f", CLs observed {reference['cls']['observed']:.4f}"
                            if "cls" in reference else ""))
        lines.append(f"({self.elapsed:.1f} s)")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike, reference: dict | None = None) -> None:
        """The profile (and the reference's), the limits and the threshold, as PNG or PDF."""
        from ..validation.plots import profile_plot
        p, cl = self.profile, self.cl
        curves = [(p.kind, p.values, p.q, p.trusted)]
        if reference:
            curves.insert(0, (f"reference ({reference.get('name', 'compare')})",
                              reference["values"], reference["q"], None))
        limits = [(f"{cl:.0%} CL limit (asymptotic)", self.upper_limit),
                  (f"{cl:.0%} credible limit", self.bayesian_upper_limit)]
        limits = [(n, lim.value) for n, lim in limits if lim is not None]
        if self.cls is not None:
            limits.append((f"{cl:.0%} CLs limit (observed)", self.cls.observed))
        profile_plot(curves, path, poi=p.poi, limits=[(n, v) for n, v in limits if v is not None],
                     q_limit=q_threshold(cl))


def profile(target, poi: str | None = None, values=None, *, points: int = DEFAULT_POINTS,
            value_range: tuple[float, float] | None = None, cl: float = DEFAULT_CL,
            limits: bool = True, asimov=None, patch=None, bayesian_samples: int = 200_000,
            seed: int = 0, best: Maximum | None = None) -> ProfileResult:
    """Profile likelihood of ``poi``, its best fit and upper limits.

    Args:
        target: a surrogate, an exact target (:mod:`likeflow.targets.likelihoods`), or a path: a
            surrogate file, or a pyhf workspace (``.json``, with ``patch``) for the exact
            answers computed by the same code.
        poi: the parameter (default: the first POI).
        values: the grid; by default :func:`default_grid` (``points`` values, best fit -2 to
            +4 marginal standard deviations inside the bounds), or ``points`` values evenly over
            ``value_range`` (checked against the bounds before any optimisation).
        cl: confidence / credibility level of the limits.
        limits: also compute the limits: the asymptotic profile-likelihood limit (q~), the
            Bayesian credible limit from ``bayesian_samples`` samples (surrogates; 0: none) and
            the CLs limits when an Asimov partner is known (``asimov``, a surrogate or its path;
            by default the partner a surrogate file records; pyhf workspaces have their own).

    Returns:
        A :class:`ProfileResult` (``.table()``, ``.to_dict()``, ``.plot(path)``).
    """
    import time
    t0 = time.perf_counter()
    obj, partner, source = open_target(target, patch=patch, asimov=asimov)
    # the POI and the range are checked on the records, before anything is built or drawn
    poi = poi or (obj.poi[0] if obj.poi else None)
    if poi is None:
        raise LikeflowError(f"{source}: no POI recorded; name one (--poi)")
    try:
        parameter_index(obj.names, poi)
    except LikeflowError as e:
        raise LikeflowError(f"{source}: {e}") from None
    if values is None and value_range is not None:
        values = _range_grid(obj, poi, value_range, points)
    # drawn once: the starting points, the grid's width and the credible limit
    dens = as_density(obj, seed=seed, n_samples=bayesian_samples if limits else 0)
    prof = scan(dens, poi, values, seed=seed, best=best, points=points)
    out = ProfileResult(prof, cl, source)
    if limits:
        out.upper_limit = upper_limit(dens, poi, cl=cl, prof=prof, seed=seed)
        if dens.sampler is not None and bayesian_samples:
            out.bayesian_upper_limit = bayesian_upper_limit(dens, poi, cl=cl,
                                                            n=bayesian_samples, seed=seed)
        if partner is not None:
            out.cls = cls_limits(dens, partner, poi, cl=cl, seed=seed, best=prof.best)
        if getattr(obj, "kind", None) == "ensemble":
            out.member_upper_limits = [upper_limit(m, poi, cl=cl, seed=seed).value
                                       for m in obj.components]
    out.elapsed = time.perf_counter() - t0
    return out


def _range_grid(obj, poi: str, value_range, points: int) -> np.ndarray:
    """The grid of ``value_range`` for ``obj`` (a surrogate or a target): inside the POI's
    bounds and, for a surrogate, within :data:`RANGE_REACH` widths of its training range
    (beyond, every point would be untrusted, and at 1e300 the optimiser overflows)."""
    i = parameter_index(obj.names, poi)
    lo, hi = np.asarray(obj.bounds, float)[i]
    a, b = (float(v) for v in value_range)
    if not (np.isfinite([a, b]).all() and lo <= a < b <= hi):
        raise LikeflowError(f"range {a:g}:{b:g}: {poi} must stay finite, increasing and inside "
                            f"its bounds [{lo:g}, {hi:g}]")
    sup = getattr(obj, "support", None)
    if sup is not None:
        t_lo, t_hi = float(sup["lo"][i]), float(sup["hi"][i])
        reach = RANGE_REACH * (t_hi - t_lo)
        if a < t_lo - reach or b > t_hi + reach:
            raise LikeflowError(f"range {a:g}:{b:g}: the surrogate was trained on {poi} in "
                                f"[{t_lo:.4g}, {t_hi:.4g}]; a profile reaching more than "
                                f"{RANGE_REACH} times that width beyond it would hold only "
                                "untrusted points")
    return np.linspace(a, b, points)


def open_target(target, *, patch=None, asimov=None):
    """(density object, Asimov partner or None, a name for it) of what :func:`profile` takes."""
    from ..surrogate.loading import load
    from ..surrogate.artifact import Surrogate
    if not isinstance(target, (str, os.PathLike)):
        if patch is not None:
            raise LikeflowError("a patch is for pyhf workspaces (.json)")
        partner = load(asimov) if isinstance(asimov, (str, os.PathLike)) else asimov
        return target, partner, getattr(target, "path", None) or type(target).__name__
    path = os.fspath(target)
    if path.endswith(".json"):
        from ..targets.likelihoods.pyhf_target import PyhfTarget
        return (PyhfTarget(path, patch=patch), PyhfTarget(path, patch=patch, asimov=True), path)
    if patch is not None:
        raise LikeflowError("--patch is for pyhf workspaces (.json)")
    sur = load(path)
    partner = asimov if asimov is not None else sur.training.get("asimov_partner")
    if isinstance(partner, (str, os.PathLike)):
        if asimov is None and not os.path.isabs(partner):
            partner = os.path.join(os.path.dirname(os.path.abspath(path)), partner)
        partner = load(partner)
    if isinstance(partner, Surrogate) and partner.names != sur.names:
        raise LikeflowError(f"{partner.path}: the Asimov partner has other parameters than "
                            f"{path} ({partner.dim} vs {sur.dim}, or other names)")
    return sur, partner, path


def read_reference(path: str | os.PathLike) -> dict:
    """A reference profile to compare with: a :meth:`ProfileResult.to_dict` JSON or a plain
    ``{"grid": [...], "q": [...]}`` (optionally ``upper_limit``, ``cls``), checked up front."""
    import json
    try:
        with open(path) as f:
            ref = json.load(f)
    except (OSError, ValueError) as e:
        raise LikeflowError(f"{path}: cannot read the reference profile "
                            f"(--compare: {str(e).splitlines()[0]})") from None
    if not isinstance(ref, dict):
        raise LikeflowError(f"{path}: a reference profile (--compare) is a JSON object")
    prof = ref.get("profile", ref)
    xs = prof.get("values", prof.get("grid")) if isinstance(prof, dict) else None
    qs = prof.get("q") if isinstance(prof, dict) else None
    try:
        xs, qs = np.asarray(xs, dtype=float), np.asarray(qs, dtype=float)
    except (TypeError, ValueError):
        xs = qs = None
    if xs is None or qs is None or xs.ndim != 1 or xs.shape != qs.shape or len(xs) < 2:
        raise LikeflowError(f"{path}: a reference profile (--compare) needs 'grid' (or 'values') "
                            "and 'q': "
                            "two lists of numbers of the same length (at least 2)")
    order = np.argsort(xs)
    out = {"values": xs[order], "q": qs[order], "name": os.path.basename(os.fspath(path))}
    for key in ("upper_limit", "bayesian_upper_limit"):
        lim = ref.get(key)
        lim = lim.get("value") if isinstance(lim, dict) else lim
        if isinstance(lim, (int, float)):
            out[key] = float(lim)
    cls = ref.get("cls")
    if isinstance(cls, dict) and isinstance(cls.get("observed"), (int, float)):
        out["cls"] = cls
    return out
