"""Outlier scores of points under a surrogate: where the flow maps them, and how dense they are.

A flow maps its training distribution to a D-dimensional standard normal, whose radius follows
the chi distribution with D degrees of freedom: in high dimension nearly all of the mass sits in
a thin shell of radius ~sqrt(D). A point is atypical if its latent radius is far outside the
shell (an outlier) or far inside it (too close to the mode: in 95 dimensions the mode itself is
atypical). :func:`typicality` gives per point

- ``latent_radius`` and ``radius_pvalue``, the two-sided p-value of the radius under chi(D)
  (uniform for points of the training distribution; small for atypical ones);
- ``log_prob`` and ``log_prob_percentile``: the fraction of the surrogate's own samples whose
  log density is below the point's (uniform for typical points; near 0 for outliers).

A surrogate folded at a reflected bound maps a point by its nearest mirror image inside the
flow's range (:meth:`likeflow.surrogate.artifact.Surrogate.latent_r2`).

Example:
    >>> import numpy as np, likeflow                                    # doctest: +SKIP
    >>> t = likeflow.typicality(sur, points)                            # doctest: +SKIP
    >>> outliers = points[t["radius_pvalue"] < 1e-3]                    # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

#: surrogate samples behind the log-density percentiles
DEFAULT_SAMPLES = 20_000


def typicality(surrogate, points, *, n_samples: int = DEFAULT_SAMPLES,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Per point: ``latent_radius``, ``radius_pvalue`` (two-sided, chi(D)), ``log_prob`` and
    ``log_prob_percentile`` (among ``n_samples`` seeded samples of the surrogate)."""
    from scipy import stats

    x = surrogate._as_points(points)
    r = np.sqrt(surrogate.latent_r2(x))
    cdf = stats.chi(surrogate.dim).cdf(r)
    p = np.clip(2 * np.minimum(cdf, 1 - cdf), 0.0, 1.0)
    p = np.where(np.isfinite(r), p, 0.0)
    lp = surrogate.log_prob(x)
    ref = np.sort(surrogate.log_prob(surrogate.sample(n_samples, seed=seed)))
    percentile = np.searchsorted(ref, lp, side="right") / len(ref)
    return {"latent_radius": r, "radius_pvalue": p, "log_prob": lp,
            "log_prob_percentile": percentile}
