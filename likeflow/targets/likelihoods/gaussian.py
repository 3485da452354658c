"""Correlated Gaussians and correlated mixtures of Gaussians in any dimension, exact.

- :class:`CorrelatedGaussian`: N(m, Sigma) with a random correlation matrix (scipy's
  ``random_correlation`` with seeded, gamma-distributed eigenvalues), random standard deviations
  in [0.5, 2] and random means; the benchmark of the NF4HEP flow comparisons.
- :class:`GaussianMixture`: the "correlated mixture of Gaussians" of arXiv:2202.09188: an
  equal-weight mixture of ``components`` Gaussians, each with means uniform in [0, 10]^D,
  standard deviations uniform in [0.5, 1.5] and its own random correlation matrix; up to 1000
  dimensions.

Both have exact samplers and exact, normalised log densities (flat prior: ``log_prior = 0``).
"""

from __future__ import annotations

import numpy as np

from .base import Target

#: the benchmark Gaussians' size when none is given (``make_target``, ``likeflow generate``)
DEFAULT_DIM = 10
DEFAULT_COMPONENTS = 3


def random_correlation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random correlation matrix with seeded eigenvalues (gamma(2), rescaled to sum to dim)."""
    if dim == 1:
        return np.ones((1, 1))
    from scipy import stats  # here, not at import: scipy.stats costs half a second of start-up
    eig = rng.gamma(2.0, size=dim)
    eig = eig * dim / eig.sum()
    eig[-1] = dim - eig[:-1].sum()  # the sum must be dim to rounding, in 1000 dims too
    c = stats.random_correlation.rvs(eig, random_state=rng, tol=1e-8)
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    return c


class CorrelatedGaussian(Target):
    """A D-dim Gaussian with random (seeded) means, standard deviations and correlations."""

    name = "gaussian"

    def __init__(self, dim: int, *, seed: int = 0):
        from ...tfsetup import tf
        from ...tfsetup import tfp

        rng = np.random.default_rng(seed)
        self.seed = seed
        self.names = [f"x{i}" for i in range(dim)]
        self.poi = []
        self.bounds = np.tile([-np.inf, np.inf], (dim, 1))
        self.mean = rng.normal(size=dim)
        self.std = rng.uniform(0.5, 2.0, size=dim)
        self.corr = random_correlation(dim, rng)
        self.cov = self.corr * np.outer(self.std, self.std)
        self._chol = np.linalg.cholesky(self.cov)
        self._dist = tfp.distributions.MultivariateNormalTriL(
            loc=tf.constant(self.mean), scale_tril=tf.constant(self._chol))

    def describe(self) -> dict:
        return {"target": self.name, "dim": self.dim, "seed": self.seed}

    def log_likelihood(self, x):
        return self._dist.log_prob(x)

    def log_prior(self, x):
        from ...tfsetup import tf
        return tf.zeros_like(x[..., 0])

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        z = np.random.default_rng(seed).normal(size=(n, self.dim))
        return self.mean + z @ self._chol.T

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        return self.sample(n, seed)


class GaussianMixture(Target):
    """Equal-weight mixture of correlated Gaussians (arXiv:2202.09188's CMoG benchmark)."""

    name = "mixture"

    def __init__(self, dim: int, *, components: int = DEFAULT_COMPONENTS, seed: int = 0):
        from ...tfsetup import tf
        from ...tfsetup import tfp

        tfd = tfp.distributions
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.components = components
        self.names = [f"x{i}" for i in range(dim)]
        self.poi = []
        self.bounds = np.tile([-np.inf, np.inf], (dim, 1))
        self.means = rng.uniform(0, 10, size=(components, dim))
        stds = rng.uniform(0.5, 1.5, size=(components, dim))
        self.covs = np.stack([random_correlation(dim, rng) * np.outer(s, s) for s in stds])
        self._chols = np.linalg.cholesky(self.covs)
        self._dist = tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=tf.zeros(components, tf.float64)),
            components_distribution=tfd.MultivariateNormalTriL(
                loc=tf.constant(self.means), scale_tril=tf.constant(self._chols)))

    def describe(self) -> dict:
        return {"target": self.name, "dim": self.dim, "components": self.components,
                "seed": self.seed}

    def log_likelihood(self, x):
        return self._dist.log_prob(x)

    def log_prior(self, x):
        from ...tfsetup import tf
        return tf.zeros_like(x[..., 0])

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        k = rng.integers(self.components, size=n)
        z = rng.normal(size=(n, self.dim))
        out = np.empty((n, self.dim))
        for j in range(self.components):
            m = k == j
            out[m] = self.means[j] + z[m] @ self._chols[j].T
        return out

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        return self.sample(n, seed)
