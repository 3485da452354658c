"""The 95-dimensional LHC-like toy search of arXiv:1911.03305 (DNNLikelihood), Section 4.

One signal strength ``mu`` (uniform prior on (-1, 5)) and 94 standard-normal nuisance parameters:
90 per-bin MC-statistics nuisances ``delta_mc_1..90``, two shape-and-normalisation nuisances
``delta_isr``, ``delta_jes`` and two normalisation nuisances ``delta_lv``, ``delta_cr``; 90 bins
in 3 categories of 30. The numbers are in ``lhc_toy_95d.json`` beside this file.

Model (bins I, categories c(I) = I // 30; B background, S signal, n observed, eps MC-stat
relative uncertainty):

- category totals N_c = sum_c B, base shape f0 = B / N_c;
- shape factor per j in {ISR, JES} with k+-: quadratic interpolation for |d| <= 1, linear
  extrapolation beyond; g = f0 p_ISR p_JES, renormalised to unit sum in each category: f;
- normalisation per category, product over j in {ISR, JES, LV, CR} of (1 + K+_c)^d (d >= 0) or
  (1 + K-_c)^(-d) (d < 0): D_c;
- nu = mu S + N_c D_c f (1 + eps)^(delta_mc);
- log L = sum [n log nu - nu - lgamma(n + 1)], -inf where any nu <= 0;
- log prior = sum log N(delta; 0, 1) - log 6 inside mu in (-1, 5).

Reference values (float64): all parameters 0 gives log L = -201.3303, log prior = -88.1720.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np

from .base import Target

MU_RANGE = (-1.0, 5.0)


def load_numbers() -> dict:
    """The toy's numbers (observed, background, signal, uncertainties), from the package data."""
    with resources.files(__package__).joinpath("lhc_toy_95d.json").open() as f:
        return json.load(f)


class LHCToy(Target):
    """The 95-dim toy; ``log_likelihood`` and ``log_prior`` on float64 tensors (..., 95)."""

    name = "lhc_toy"

    def __init__(self):
        from ...tfsetup import tf

        d = load_numbers()
        nb, per = d["n_bins"], d["bins_per_category"]
        self.names = (["mu"] + [f"delta_mc_{i}" for i in range(1, nb + 1)]
                      + ["delta_isr", "delta_jes", "delta_lv", "delta_cr"])
        self.poi = ["mu"]
        self.bounds = np.tile([-np.inf, np.inf], (len(self.names), 1))
        self.bounds[0] = MU_RANGE
        c = lambda a: tf.constant(np.asarray(a, dtype=np.float64))  # noqa: E731
        bkg = np.asarray(d["background"], dtype=np.float64)
        cat = np.arange(nb) // per
        self._cat = tf.constant(cat)
        self._n_cat = d["n_categories"]
        totals = np.array([bkg[cat == k].sum() for k in range(self._n_cat)])
        self._totals_per_bin = c(totals[cat])
        self._f0 = c(bkg / totals[cat])
        self._signal = c(d["signal"])
        self._observed = c(d["observed"])
        self._log_eps1 = c(np.log1p(d["mc_stat_rel_unc"]))
        self._lgamma_n1 = float(np.sum([math.lgamma(n + 1) for n in d["observed"]]))
        self._shape_up = c([d["shape_up"][j] for j in ("ISR", "JES")])      # (2, 90)
        self._shape_down = c([d["shape_down"][j] for j in ("ISR", "JES")])
        norm = ("ISR", "JES", "LV", "CR")
        # per bin, log(1 + K) of the bin's category, for each of the four nuisances: (4, 90)
        self._log_norm_up = c(np.log1p(np.array([d["norm_up"][j] for j in norm]))[:, cat])
        self._log_norm_down = c(np.log1p(np.array([d["norm_down"][j] for j in norm]))[:, cat])
        self._category_onehot = c(np.eye(self._n_cat)[cat])               # (90, 3)

    def describe(self) -> dict:
        return {"target": self.name, "reference": "arXiv:1911.03305 Sec. 4"}

    def expected(self, x):
        """Expected counts nu (..., 90) at parameters x (..., 95)."""
        from ...tfsetup import tf

        mu = x[..., :1]
        d_mc = x[..., 1:91]
        d_shape = x[..., 91:93]               # isr, jes
        d_norm = x[..., 91:95]                # isr, jes, lv, cr
        p = _shape_factor(d_shape[..., :, None], self._shape_up, self._shape_down)  # (..., 2, 90)
        g = self._f0 * p[..., 0, :] * p[..., 1, :]
        g_cat = tf.linalg.matvec(self._category_onehot, tf.linalg.matvec(
            self._category_onehot, g, transpose_a=True))  # per bin, the sum over its category
        f = g / g_cat
        dn = d_norm[..., :, None]                                               # (..., 4, 1)
        log_norm = tf.where(dn >= 0, dn * self._log_norm_up, -dn * self._log_norm_down)
        norm = tf.exp(tf.reduce_sum(log_norm, axis=-2))                         # (..., 90)
        return mu * self._signal + self._totals_per_bin * norm * f * tf.exp(
            d_mc * self._log_eps1)

    def log_likelihood(self, x):
        from ...tfsetup import tf

        nu = self.expected(x)
        positive = tf.reduce_all(nu > 0, axis=-1)
        safe = tf.where(nu > 0, nu, tf.ones_like(nu))
        ll = tf.reduce_sum(self._observed * tf.math.log(safe) - safe, axis=-1) - self._lgamma_n1
        return tf.where(positive, ll, tf.constant(-np.inf, dtype=ll.dtype))

    def log_prior(self, x):
        from ...tfsetup import tf

        mu, deltas = x[..., 0], x[..., 1:]
        gauss = -0.5 * tf.reduce_sum(deltas ** 2, axis=-1) - 0.5 * 94 * math.log(2 * math.pi)
        inside = (mu > MU_RANGE[0]) & (mu < MU_RANGE[1])
        return tf.where(inside, gauss - math.log(MU_RANGE[1] - MU_RANGE[0]),
                        tf.constant(-np.inf, dtype=gauss.dtype))

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        """Near the posterior bulk: deltas ~ N(0, 0.5^2), mu ~ U(-0.5, 1)."""
        rng = np.random.default_rng(seed)
        x = rng.normal(scale=0.5, size=(n, self.dim))
        x[:, 0] = rng.uniform(-0.5, 1.0, size=n)
        return x


def _shape_factor(d, up, down):
    """Quadratic interpolation for |d| <= 1 and linear extrapolation beyond (see module doc)."""
    from ...tfsetup import tf

    inner = d * (d - 1) / 2 * down - (d - 1) * (d + 1) + d * (d + 1) / 2 * up
    above = (0.5 * (3 * up + down) - 2) * d - 0.5 * (up + down) + 2
    below = (2 - 0.5 * (3 * down + up)) * d - 0.5 * (up + down) + 2
    return tf.where(d > 1, above, tf.where(d < -1, below, inner))
