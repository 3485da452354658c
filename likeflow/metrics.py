"""Two-sample and density metrics: functions of plain numpy arrays (scipy's statistics, no TF).

Conventions: ``a`` is the sample under test (surrogate samples), ``b`` the reference (held-out
test samples); both (n, D). Every function's docstring gives its definition and its ideal value.
Each metric is meant to be read next to the same metric between two disjoint halves of the
reference (the noise floor at this n): see :func:`likeflow.report.validate`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3))
    >>> stat, p = ks_per_dim(a, b)
    >>> bool(stat.max() < 0.1)
    True
"""

from __future__ import annotations

import numpy as np

LEVELS = (0.68, 0.95, 0.997)


def ks_per_dim(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value per dimension (``scipy.stats.ks_2samp``).

    Ideal: statistic near 0 (of order sqrt(1/n_a + 1/n_b)), p-values uniform on [0, 1].
    """
    from scipy import stats
    res = stats.ks_2samp(a, b, axis=0)
    return np.atleast_1d(res.statistic), np.atleast_1d(res.pvalue)


def ks_mean_pvalue_batched(a: np.ndarray, b: np.ndarray, *, batches: int = 10
                           ) -> tuple[float, float]:
    """Mean over dimensions of the KS p-value, averaged over disjoint batches (NF4HEP papers).

    ``a`` and ``b`` are cut into ``batches`` disjoint parts of equal size; in each, the p-values
    of all dimensions are averaged. Returns the mean and standard deviation over batches.
    Ideal: 0.5 (p-values of identical distributions are uniform).
    """
    n = min(len(a), len(b)) // batches
    if n < 2:
        raise ValueError("too few points for the batched KS test")
    means = [ks_per_dim(a[i * n:(i + 1) * n], b[i * n:(i + 1) * n])[1].mean()
             for i in range(batches)]
    return float(np.mean(means)), float(np.std(means))


def wasserstein_per_dim(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-D Wasserstein-1 distance per dimension, physical and in units of ``b``'s std.

    ``scipy.stats.wasserstein_distance``. Ideal: 0 (of order std/sqrt(n) at finite n).
    """
    from scipy import stats
    w = _w1_columns(a, b)
    return w, w / b.std(axis=0)


def _w1_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W1 of every column pair. For unweighted samples of equal size, W1 is the mean absolute
    difference of the sorted samples: one vectorised sort instead of a scipy call per column
    (the same number to rounding, ~10x faster on 95 x 50k)."""
    from scipy import stats
    if len(a) == len(b):
        return np.mean(np.abs(np.sort(a, axis=0) - np.sort(b, axis=0)), axis=0)
    return np.array([stats.wasserstein_distance(a[:, i], b[:, i]) for i in range(a.shape[1])])


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, *, directions: int = 100,
                       seed: int = 0) -> float:
    """Mean 1-D Wasserstein distance of projections on seeded random unit directions.

    Both samples are first standardised with ``b``'s mean and std, so every parameter counts
    alike. Sensitive to the joint shape (correlations), unlike the per-dimension metrics.
    Ideal: 0.
    """
    mu, sd = b.mean(axis=0), b.std(axis=0)
    an, bn = (a - mu) / sd, (b - mu) / sd
    u = np.random.default_rng(seed).normal(size=(a.shape[1], directions))
    u /= np.linalg.norm(u, axis=0)
    return float(np.mean(_w1_columns(an @ u, bn @ u)))


def correlation_frobenius(a: np.ndarray, b: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Frobenius norm of the difference of the correlation matrices.

    Returns the norm, the norm divided by sqrt(D (D - 1)) (the root-mean-square difference of
    an off-diagonal entry: dimensions compare) and the difference matrix ``corr(a) - corr(b)``.
    Ideal: 0.
    """
    d = a.shape[1]
    if d < 2:
        return 0.0, 0.0, np.zeros((d, d))
    diff = np.corrcoef(a, rowvar=False) - np.corrcoef(b, rowvar=False)
    norm = float(np.linalg.norm(diff))
    return norm, norm / np.sqrt(d * (d - 1)), diff


def log_prob_agreement(model: np.ndarray, truth: np.ndarray) -> dict:
    """Agreement of the surrogate's and the true log density at the same points.

    Pearson and Spearman correlation, and the mean and standard deviation of
    ``model - truth`` (a constant offset is expected when ``truth`` is unnormalised; its spread
    is what matters). Points where either is not finite are left out and counted.
    Ideal: correlations 1, spread 0.
    """
    from scipy import stats
    ok = np.isfinite(model) & np.isfinite(truth)
    m, t = model[ok], truth[ok]
    diff = m - t
    return {
        "pearson": float(stats.pearsonr(m, t).statistic),
        "spearman": float(stats.spearmanr(m, t).statistic),
        "diff_mean": float(diff.mean()),
        "diff_std": float(diff.std()),
        "nonfinite": int((~ok).sum()),
    }


def interval_differences(a: np.ndarray, b: np.ndarray, levels=LEVELS) -> dict:
    """Central credible intervals per dimension and their endpoint differences.

    For each level, the (1 -/+ level)/2 quantiles of ``a`` and ``b`` per dimension, and the
    largest of the two endpoint differences in units of ``b``'s std. Ideal: 0.
    """
    sd = b.std(axis=0)
    out = {}
    for lev in levels:
        q = [(1 - lev) / 2, (1 + lev) / 2]
        qa, qb = np.quantile(a, q, axis=0), np.quantile(b, q, axis=0)
        out[f"{lev:g}"] = {
            "model": qa.T.tolist(), "reference": qb.T.tolist(),
            "diff_std": (np.abs(qa - qb).max(axis=0) / sd).tolist(),
        }
    return out


def latent_chi2(z: np.ndarray) -> dict:
    """Test points mapped to the flow's base space: their squared norm against chi2(D).

    For a perfect flow z ~ N(0, I_D), so sum z^2 ~ chi2(D). Returns the KS statistic and
    p-value against chi2(D) and the mean of sum z^2 (ideal D). Ideal: p-value uniform, not small.
    """
    from scipy import stats
    r2 = np.sum(z ** 2, axis=1)
    d = z.shape[1]
    res = stats.kstest(r2, stats.chi2(d).cdf)
    return {"ks_statistic": float(res.statistic), "pvalue": float(res.pvalue),
            "mean_r2": float(r2.mean()), "dim": d}


def two_sample_metrics(a: np.ndarray, b: np.ndarray, *, batches: int = 10, seed: int = 0,
                       directions: int = 100) -> dict:
    """Every two-sample metric above for ``a`` against ``b``, per dimension and summarised."""
    ks_stat, ks_p = ks_per_dim(a, b)
    ks_mean, ks_std = ks_mean_pvalue_batched(a, b, batches=batches)
    w1, w1_std = wasserstein_per_dim(a, b)
    frob, frob_norm, diff = correlation_frobenius(a, b)
    intervals = interval_differences(a, b)
    return {
        "n": int(min(len(a), len(b))),
        "ks_statistic": ks_stat.tolist(), "ks_pvalue": ks_p.tolist(),
        "ks_mean_pvalue_batched": ks_mean, "ks_mean_pvalue_batched_std": ks_std,
        "w1": w1.tolist(), "w1_std_units": w1_std.tolist(),
        "w1_std_units_median": float(np.median(w1_std)),
        "w1_std_units_max": float(np.max(w1_std)),
        "sliced_w1": sliced_wasserstein(a, b, directions=directions, seed=seed),
        "corr_frobenius": frob, "corr_frobenius_normalised": frob_norm,
        "corr_diff": diff.tolist(),
        "intervals": intervals,
        "interval_diff_std_max": {k: float(np.max(v["diff_std"])) for k, v in intervals.items()},
    }
