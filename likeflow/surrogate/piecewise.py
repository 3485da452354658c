"""Piecewise flows (margarine, Bevins et al. arXiv:2305.02930): cluster the samples, fit one
flow per cluster, and use the weighted sum of their densities.

A single flow is one continuous map of a Gaussian: between separated modes it cannot help
drawing bridges of density. Clustering the training data (k-means, :func:`scipy.cluster.vq.kmeans2`,
best of :data:`KMEANS_INITS` seeded starts, in coordinates standardised by the training data's
mean and spread) and fitting one flow per cluster removes them:

    p(x) = sum_k w_k p_k(x),   w_k = cluster k's share of the training weight,

sampled by drawing the cluster by weight, then from its flow.

The number of clusters is given, or ``auto``, by two stated criteria on the training rows:

1. separated modes: the silhouette of the two-cluster split, measured along the line between
   the two centres (in all D dimensions the noise of the other directions hides any
   separation), must be at least :data:`MIN_SILHOUETTE`; a Gaussian scores 0.55, skewed or
   curved unimodal densities 0.55-0.62, modes 6 sigma apart 0.8;
2. then K = 1 .. :data:`MAX_AUTO_CLUSTERS` by the held-out log-likelihood of a Gaussian per
   cluster (k-means on 80% of the training rows, scored on the other 20%): the fewest
   clusters within :data:`HELD_OUT_TOLERANCE` of the best.

Otherwise one flow is fitted.

:class:`PiecewiseSurrogate` is a :class:`~likeflow.surrogate.artifact.Surrogate` (the same methods,
file
format version, validation, numpy reader), its flows stored as the file's own and
``components/k``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LikeflowError
from .artifact import SAMPLE_BATCH, Surrogate, fresh_seed

MAX_AUTO_CLUSTERS = 8
SILHOUETTE_POINTS = 2000
MIN_SILHOUETTE = 0.7
KMEANS_INITS = 10
HELD_OUT_TOLERANCE = 0.02   # nats per point


# --- clustering ------------------------------------------------------------------------------

def _kmeans(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Centres of the best (least squared distance) of :data:`KMEANS_INITS` k-means runs."""
    from scipy.cluster.vq import kmeans2

    best, best_sse = None, np.inf
    for i in range(KMEANS_INITS):
        centres, labels = kmeans2(z, k, minit="++", seed=np.random.default_rng(seed + i))
        sse = float(np.sum((z - centres[labels]) ** 2))
        if sse < best_sse:
            best, best_sse = centres, sse
    return best


def silhouette(z: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette of points ``z`` in clusters ``labels`` (Euclidean)."""
    from scipy.spatial.distance import cdist

    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    dist = cdist(z, z)
    sizes = np.array([(labels == k).sum() for k in ks])
    mean_to = np.stack([dist[:, labels == k].sum(1) for k in ks], axis=1) / sizes
    own = np.searchsorted(ks, labels)
    a = mean_to[np.arange(len(z)), own] * sizes[own] / np.maximum(sizes[own] - 1, 1)
    other = mean_to.copy()
    other[np.arange(len(z)), own] = np.inf
    b = other.min(1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-300)
    s[sizes[own] == 1] = 0.0
    return float(s.mean())


def _gaussian_score(z_fit: np.ndarray, z_test: np.ndarray, centres: np.ndarray) -> float:
    """Mean log density of ``z_test`` under a Gaussian per cluster of ``z_fit``."""
    from scipy import stats
    from scipy.special import logsumexp

    labels = _nearest(z_fit, centres)
    d = z_fit.shape[1]
    parts = []
    for k in range(len(centres)):
        zk = z_fit[labels == k]
        if len(zk) <= d:
            return -np.inf
        cov = np.cov(zk, rowvar=False).reshape(d, d) + 1e-6 * np.eye(d)
        parts.append(np.log(len(zk) / len(z_fit))
                     + stats.multivariate_normal(zk.mean(0), cov).logpdf(z_test))
    return float(np.mean(logsumexp(parts, axis=0)))


def clusters(x: np.ndarray, k, *, seed: int = 0) -> dict:
    """The clustering of the training data ``x``: k-means with ``k`` clusters (an int, or
    ``"auto"``: see the module docstring). Returns the ``piecewise`` record without weights
    (``centres``, ``mean``, ``std``, ``criterion``, ``scores``, ``components``)."""
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    z = (x - mean) / std
    scores: dict[str, float] = {}
    if k == "auto":
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(z))
        fit_rows, test_rows = order[:len(z) * 4 // 5], order[len(z) * 4 // 5:]
        two = _kmeans(z[fit_rows], 2, seed)
        sub = z[test_rows[:SILHOUETTE_POINTS]]
        line = (two[1] - two[0]) / max(np.linalg.norm(two[1] - two[0]), 1e-300)
        sep = silhouette((sub @ line)[:, None], _nearest(sub, two))
        scores["silhouette K=2 (along the centres)"] = sep
        chosen = 1
        if sep >= MIN_SILHOUETTE:
            for kk in range(1, MAX_AUTO_CLUSTERS + 1):
                cen = z[fit_rows].mean(0, keepdims=True) if kk == 1 else \
                    _kmeans(z[fit_rows], kk, seed)
                scores[f"held-out log-likelihood K={kk}"] = _gaussian_score(
                    z[fit_rows], z[test_rows], cen)
            ll = [scores[f"held-out log-likelihood K={kk}"]
                  for kk in range(1, MAX_AUTO_CLUSTERS + 1)]
            # the fewest clusters within HELD_OUT_TOLERANCE of the best (splitting one mode
            # in two changes a Gaussian's held-out likelihood by noise only)
            chosen = 1 + next(i for i, v in enumerate(ll) if v >= max(ll) - HELD_OUT_TOLERANCE)
        criterion = (f"auto: silhouette of 2 clusters {sep:.2f} "
                     + (f">= {MIN_SILHOUETTE} (separated modes); K = {chosen} by the held-out "
                        "likelihood of a Gaussian per cluster" if sep >= MIN_SILHOUETTE
                        else f"< {MIN_SILHOUETTE}: one flow"))
    else:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise LikeflowError(f"clusters must be a positive integer or 'auto', not {k!r}")
        chosen, criterion = int(k), "given"
    centres = _kmeans(z, chosen, seed) if chosen > 1 else z.mean(0, keepdims=True)
    scores = {key: float(v) if np.isfinite(v) else -1e300 for key, v in scores.items()}
    return {"components": chosen, "method": "kmeans", "criterion": criterion,
            "scores": scores, "centres": centres.tolist(), "mean": mean.tolist(),
            "std": std.tolist()}


def _nearest(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    from scipy.cluster.vq import vq
    return vq(z, centres)[0]


def assign(x: np.ndarray, record: dict) -> np.ndarray:
    """The cluster of each row of ``x`` under a ``piecewise`` record (nearest centre)."""
    z = (x - np.asarray(record["mean"])) / np.asarray(record["std"])
    return _nearest(z, np.asarray(record["centres"]))


# --- the surrogate ---------------------------------------------------------------------------

class PiecewiseSurrogate(Surrogate):
    """A weighted sum of flows, one per cluster of the training data.

    Args:
        components: the per-cluster :class:`Surrogate` objects (same parameters and bounds).
        record: the ``piecewise`` record (``weights``, ``centres``, ...).
        training, validation: the fit's records (shared by the components).
    """

    def __init__(self, components: list[Surrogate], record: dict, training: dict | None = None,
                 validation: dict | None = None):
        if len(components) < 2:
            raise LikeflowError("a piecewise surrogate needs at least two flows")
        first = components[0]
        if any(c.names != first.names or not np.array_equal(c.bounds, first.bounds)
               for c in components):
            raise LikeflowError("the flows of a piecewise surrogate must share parameters and "
                                "bounds")
        super().__init__(first.__dict__.get("_source") or first.flow, training, validation)
        self.components = components
        self.record = dict(record)
        w = np.asarray(record["weights"], float)
        self.weights = w / w.sum()
        self._log_w = np.log(self.weights)

    def __repr__(self) -> str:
        return (f"PiecewiseSurrogate({self.kind}, {len(self.components)} x {self.config.flow}, "
                f"dim={self.dim}, weights={np.round(self.weights, 3).tolist()}, "
                f"backend={self.backend})")

    def summary(self) -> dict:
        """:meth:`Surrogate.summary` (of the first flow's config) with the flows' number and
        weights."""
        out = super().summary()
        out["kind"] = self.kind
        out["components"] = {"flows": len(self.components),
                             "weights": [float(w) for w in self.weights]}
        return out

    # --- evaluation ---------------------------------------------------------------------------
    def component_log_prob(self, x) -> np.ndarray:
        """(K, n): log w_k + log p_k(x)."""
        x = self._as_points(x)
        return np.stack([lw + c.log_prob(x) for lw, c in zip(self._log_w, self.components)])

    def log_prob(self, x) -> np.ndarray:
        from ..flows.numpy_flow import logsumexp0   # the fold's, as log_prob_grad's sum
        return logsumexp0(self.component_log_prob(x))

    def log_prob_grad(self, x) -> tuple[np.ndarray, np.ndarray]:
        """log sum_k w_k p_k(x) and its gradient: the flows' gradients weighted by their
        responsibilities w_k p_k(x) / p(x)."""
        from ..flows.numpy_flow import sum_gradient
        x = self._as_points(x)
        parts = [c.log_prob_grad(x) for c in self.components]
        with np.errstate(invalid="ignore"):
            return sum_gradient(np.stack([lw + p[0] for lw, p in zip(self._log_w, parts)]),
                                [p[1] for p in parts])

    def numpy_twin(self) -> PiecewiseSurrogate:
        """:meth:`Surrogate.numpy_twin` of every flow."""
        if self.backend == "numpy":
            return self
        twin = PiecewiseSurrogate([c.numpy_twin() for c in self.components], self.record,
                                  self.training, self.validation)
        twin.path, twin.provenance = self.path, self.provenance
        return twin

    @property
    def kind(self) -> str:
        """``ensemble`` (flows of the same data) or ``piecewise`` (a flow per cluster)."""
        return "ensemble" if self.record.get("method") == "ensemble" else "piecewise"

    def member_spread(self, x) -> np.ndarray:
        """Per point, the standard deviation of the members' log densities: how much flows
        fitted to the same data disagree there (small where the data are, large where the
        surrogate extrapolates). Meaningful for ensembles."""
        x = self._as_points(x)
        lp = np.stack([c.log_prob(x) for c in self.components])
        with np.errstate(invalid="ignore"):
            return np.where(np.all(np.isfinite(lp), axis=0), lp.std(axis=0), np.inf)

    def _pick(self, x: np.ndarray, seed: int) -> np.ndarray:
        """Each point's flow, drawn by its responsibilities w_k p_k(x) / p(x) (seeded): a
        sample of the mixture with its draw of the flow."""
        lp = self.component_log_prob(x)
        top = np.max(np.where(np.isfinite(lp), lp, -np.inf), axis=0)
        p = np.exp(lp - np.where(np.isfinite(top), top, 0.0))
        p = p / np.maximum(p.sum(0), 1e-300)
        u = np.random.default_rng(seed).random(len(x))
        return np.minimum((u > np.cumsum(p, axis=0)).sum(0), len(self.components) - 1)

    def to_latent(self, x, *, seed: int = 0) -> np.ndarray:
        """Each point mapped by one of the flows, drawn by its responsibility (seeded), and
        by the flow's mirror image where it folds (:meth:`Surrogate.unfold`): for samples of
        the surrogate, standard normal (the latent check of validation)."""
        x = self._as_points(x)
        k = self._pick(x, seed)
        z = np.empty_like(x)
        for j, c in enumerate(self.components):
            rows = k == j
            if rows.any():
                z[rows] = c.to_latent(c.unfold(x[rows], seed=seed))
        return z

    def from_latent(self, z):
        raise LikeflowError("a piecewise surrogate has one latent space per flow: sample it "
                            "with sample(), or map with one of its components")

    def unfold(self, x, *, seed: int = 0) -> np.ndarray:
        """The identity: :meth:`to_latent` draws each point's flow and unfolds within it."""
        return self._as_points(x).copy()

    def latent_r2(self, x) -> np.ndarray:
        x = self._as_points(x)
        return np.min([c.latent_r2(x) for c in self.components], axis=0)

    def sample_with_log_prob(self, n: int, *, seed: int | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample` and the mixture's :meth:`log_prob` at the draws (a draw's density is
        every flow's, not only the one that drew it)."""
        x = self.sample(n, seed=seed)
        return x, self.log_prob(x)

    def sample_blocks(self, n: int, *, seed: int | None = None, block: int | None = None):
        """Blocks of samples: each block's counts per flow drawn by weight, the flows'
        samples shuffled together (seeded)."""
        n = self._count(n)
        seed = fresh_seed() if seed is None else seed
        block = block or SAMPLE_BATCH
        rng = np.random.default_rng([seed % 2 ** 31, 7919])
        done = 0
        while done < n:
            m = min(block, n - done)
            counts = rng.multinomial(m, self.weights)
            parts = [c.sample(int(cnt), seed=int(rng.integers(2 ** 31)))
                     for c, cnt in zip(self.components, counts) if cnt]
            x = np.concatenate(parts)
            yield x[rng.permutation(len(x))]
            done += m

    # --- files --------------------------------------------------------------------------------
    def _records(self) -> dict:
        records = super()._records()
        records["piecewise"] = {**self.record, "components": len(self.components),
                                "weights": self.weights.tolist()}
        return records

    def weight_arrays(self):
        return self.components[0].weight_arrays()

    def _other_flows(self):
        return [(c.config.to_dict(), c.weight_arrays()) for c in self.components[1:]]
