"""The residual check: ``r = log q - log p`` must be constant; its drift along each POI, in nats.

A surrogate ``q`` of a density ``p`` known up to a constant is right exactly where the residual
``r(x) = log q(x) - log p(x)`` is constant. The marginal metrics of
:mod:`likeflow.validation.metrics` do
not see a slow drift of ``r`` along a POI, yet a profile likelihood takes it whole: a
surrogate's ``q(mu)`` is off by twice the drift between the best fit and ``mu``. On held-out
test points with the file's ``log_prob`` this module measures

- along each POI: the weighted mean of ``r`` in quantile bins of the POI out to the 0.5% tails,
  and the mean over the densest quarter of each bin (the points nearest the slice's mode,
  where profiles are decided), each minus its mean over all bins, with standard errors;
- along the latent radius ``|z|^2`` (the surrogate's own measure of depth into the tails);
- at held-out anchors (:mod:`likeflow.data.anchors`): ``r`` at the exact conditional modes minus
  ``r`` at the best fit. This is the profile's error itself: ``q_surrogate(mu) - q_exact(mu)``
  is ``-2`` times it (where the surrogate's conditional modes are near the exact ones). The
  verdict grades the modes where the exact q is below :data:`Q_COMPARED`, as the exact check
  compares profiles there.

The verdict (:mod:`likeflow.validation.report`) takes the largest drift beyond :data:`SIGMAS`
standard
errors along any POI (``residual_drift``) and the largest drift at an anchor
(``anchor_drift``), thresholds in ``docs/validation.md``.

Example:
    >>> rng = np.random.default_rng(0)
    >>> mu = rng.normal(size=4000)
    >>> d = drift_along(0.3 * mu + rng.normal(0, 0.01, 4000), mu)   # r grows with mu
    >>> round(d["excess"], 1) > 0.3
    True
"""

from __future__ import annotations

import numpy as np

from .metrics import effective_size, weighted_quantile, weighted_std

#: POI quantiles that bound the bins: out to the 0.5% tails on both sides
EDGES = (0.0, 0.005, 0.025, 0.16, 0.5, 0.84, 0.975, 0.995, 1.0)
#: a drift counts beyond this many standard errors (many bins are looked at)
SIGMAS = 3.0
#: how far a profile may be off in q: PASS up to the first, WARN up to the second (issue 28's
#: 0.15; the exact check's, :mod:`likeflow.validation.exact_check`)
PROFILE_TOLERANCE = (0.15, 0.5)
#: ... where the exact q is below this (limits live at q ~ 2.7-4): the exact check compares
#: the profiles there, and the verdict counts the held-out anchors there (the anchors reach
#: q = 9; those beyond are reported, not graded)
Q_COMPARED = 6.0
#: (warn above, fail above) in nats, for the drift along a POI beyond the noise (the verdict's,
#: :mod:`likeflow.validation.report`)
DRIFT_THRESHOLDS = (0.05, 0.15)
#: the same at held-out anchors, where the drift is the profile's error in nats (q off by twice
#: it): WARN past the profile tolerance (0.075 nats is 0.15 in q), FAIL past 0.15 nats (0.3 in
#: q, the ATLAS surrogates' error before anchors)
ANCHOR_DRIFT_THRESHOLDS = (PROFILE_TOLERANCE[0] / 2, 0.15)
#: fewest (effective) points in a bin: smaller tail bins join their neighbour
MIN_BIN = 20


def _stats(r: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted mean, its standard error and the effective size."""
    n_eff = effective_size(w, len(r))
    se = float(weighted_std(r, w)) / np.sqrt(max(n_eff, 1.0))
    return float(np.average(r, weights=w)), se, n_eff


def _bins(t: np.ndarray, w: np.ndarray, edges) -> list[np.ndarray]:
    """Masks of the quantile bins of ``t``; bins below :data:`MIN_BIN` join the next inward."""
    cuts = np.unique(weighted_quantile(t, list(edges), w))
    masks = []
    for k in range(len(cuts) - 1):
        last = k == len(cuts) - 2
        masks.append((t >= cuts[k]) & ((t <= cuts[k + 1]) if last else (t < cuts[k + 1])))
    merged = True
    while merged and len(masks) > 1:
        merged = False
        for k, m in enumerate(masks):
            wm = w[m]
            if wm.sum() == 0 or wm.sum() ** 2 / np.sum(wm ** 2) < MIN_BIN:
                j = k + 1 if k < len(masks) / 2 else k - 1   # towards the centre
                masks[j] = masks[j] | m
                del masks[k]
                merged = True
                break
    return [m for m in masks if m.any()]


def drift_along(r: np.ndarray, t: np.ndarray, w: np.ndarray | None = None, *,
                log_p: np.ndarray | None = None, edges=EDGES) -> dict:
    """The drift of the residual ``r`` along ``t`` (a POI, or the latent radius), in nats.

    Per quantile bin of ``t``: the centre (weighted median of ``t``), the weighted mean of
    ``r`` minus its mean over all points, its standard error, and with ``log_p`` (the target's
    log density) the same for the densest quarter of each bin. ``excess``: the largest
    ``|drift| - SIGMAS * se`` over the bins (0 when every drift is within the noise),
    ``worst``: where it is."""
    w = np.ones(len(r)) if w is None else np.asarray(w, dtype=np.float64)
    ref, _, _ = _stats(r, w)
    out = {"center": [], "n": [], "drift": [], "se": []}
    masks = _bins(t, w, edges)
    for m in masks:
        mean, se, n_eff = _stats(r[m], w[m])
        out["center"].append(float(weighted_quantile(t[m], [0.5], w[m])[0]))
        out["n"].append(n_eff)
        out["drift"].append(mean - ref)
        out["se"].append(se)
    if log_p is not None:
        out.update(dense_drift=[], dense_se=[])
        tops = [m & (log_p >= weighted_quantile(log_p[m], [0.75], w[m])[0]) for m in masks]
        every = np.logical_or.reduce(tops)
        dense_ref, _, _ = _stats(r[every], w[every])
        for top in tops:
            mean, se, _ = _stats(r[top], w[top])
            out["dense_drift"].append(mean - dense_ref)
            out["dense_se"].append(se)
    excess, worst = 0.0, None
    for kind in ("drift", "dense_drift"):
        if kind not in out:
            continue
        se = out["se" if kind == "drift" else "dense_se"]
        for k, (d, s) in enumerate(zip(out[kind], se)):
            e = abs(d) - SIGMAS * s
            if e > excess:
                excess, worst = e, {"kind": "mean" if kind == "drift" else "densest quarter",
                                    "at": out["center"][k], "drift": d, "se": s}
    out["excess"] = float(excess)
    out["worst"] = worst
    return out


def at_anchors(r: np.ndarray, kind: np.ndarray, poi_values: np.ndarray,
               log_p: np.ndarray) -> dict:
    """The residual at held-out anchors minus its value at the best fit (the first mode), and
    the profile's error that follows (``q_error = -2 drift``) at each held-out mode, with the
    exact ``q`` there (``log_p``: the anchors' exact log densities). ``max_abs_drift`` and
    ``worst``: of the modes where the exact q is below :data:`Q_COMPARED` (what the verdict
    grades); ``beyond``: the same of the modes farther out."""
    from ..data.anchors import MODE

    modes = np.flatnonzero(kind == MODE)
    ref = float(r[modes[0]])
    drift = r - ref
    q_exact = 2 * (log_p[modes[0]] - log_p)
    m = modes[1:]

    def worst_of(rows):
        if not len(rows):
            return 0.0, None
        k = int(rows[np.argmax(np.abs(drift[rows]))])
        return float(abs(drift[k])), {"poi": float(poi_values[k]), "drift": float(drift[k]),
                                      "q_exact": float(q_exact[k])}

    graded = q_exact[m] < Q_COMPARED
    max_abs, worst = worst_of(m[graded])
    beyond_abs, beyond = worst_of(m[~graded])
    return {
        "modes": {"poi": poi_values[m].tolist(), "drift": drift[m].tolist(),
                  "q_error": (-2 * drift[m]).tolist(), "q_exact": q_exact[m].tolist()},
        "segments": {"n": int(np.sum(kind != MODE)),
                     "drift_std": float(np.std(drift[kind != MODE])) if np.any(kind != MODE)
                     else None},
        "max_abs_drift": max_abs,
        "worst": worst,
        "beyond": {"q_exact_from": Q_COMPARED, "n": int(np.sum(~graded)),
                   "max_abs_drift": beyond_abs, "worst": beyond},
    }


def residual_checks(surrogate, test, rows: np.ndarray, model_lp: np.ndarray,
                    latent_r2: np.ndarray | None = None) -> dict:
    """Every residual check on the test points ``test.values[rows]`` (``model_lp``: the
    surrogate's log density there) and at the test part's anchors; ``{"status": "no
    log_prob"}`` when the file has no log densities."""
    if test.log_prob is None:
        return {"status": "no log_prob"}
    log_p = test.log_prob[rows]
    w = None if test.weights is None else test.weights[rows]
    ok = np.isfinite(model_lp) & np.isfinite(log_p)
    r = (model_lp - log_p)[ok]
    wk = None if w is None else w[ok]
    x = test.values[rows][ok]
    out = {"status": "measured", "poi": {}}
    for name in test.poi:
        out["poi"][name] = drift_along(r, x[:, test.names.index(name)], wk, log_p=log_p[ok])
    if latent_r2 is not None:
        out["latent_radius"] = drift_along(r, latent_r2[ok], wk)
    a = test.anchors
    if a is not None and test.poi and np.any(a.kind == 0):
        lq = np.asarray(surrogate.log_prob(a.values), dtype=np.float64)
        out["anchors"] = dict(at_anchors(lq - a.log_prob, a.kind,
                                         a.values[:, test.names.index(test.poi[0])],
                                         a.log_prob),
                              poi=test.poi[0])
    return out
