"""The interface every benchmark target implements.

A :class:`Target` is a density over named parameters with bounds and POIs, split into a log
likelihood and a log prior, vectorised over a leading batch axis. TensorFlow targets give
gradients (for NUTS and for profiling); targets evaluated outside TF (pyhf) set
``has_gradients = False`` and implement the numpy methods.
"""

from __future__ import annotations

import numpy as np

from ...batching import map_batches


class Target:
    """A log density ``log_prob = log_likelihood + log_prior`` over named, bounded parameters.

    Subclasses set ``name``, ``names``, ``poi``, ``bounds`` and implement
    :meth:`log_likelihood` and :meth:`log_prior` on float64 tensors of shape (..., D).
    """

    name: str = "target"
    names: list[str]
    poi: list[str]
    bounds: np.ndarray
    has_gradients: bool = True

    @property
    def dim(self) -> int:
        return len(self.names)

    def log_likelihood(self, x):
        raise NotImplementedError

    def log_prior(self, x):
        raise NotImplementedError

    def log_prob(self, x):
        """The (unnormalised, for MCMC targets) log posterior at ``x`` (..., D)."""
        return self.log_likelihood(x) + self.log_prior(x)

    def evaluate(self, x: np.ndarray, batch: int = 65536) -> dict[str, np.ndarray]:
        """``log_prob``, ``log_likelihood`` and ``log_prior`` at numpy points (n, D), float64."""
        from ...tfsetup import tf

        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        fn = self.__dict__.get("_evaluate_fn")
        if fn is None:  # traced once per target
            fn = tf.function(lambda t: (self.log_likelihood(t), self.log_prior(t)),
                             input_signature=[tf.TensorSpec([None, self.dim], tf.float64)])
            self._evaluate_fn = fn
        both = map_batches(lambda b: np.stack([v.numpy() for v in fn(tf.constant(b))], axis=1),
                           x, batch, empty=lambda: np.zeros((0, 2)))
        ll, lp = both[:, 0], both[:, 1]
        return {"log_prob": ll + lp, "log_likelihood": ll, "log_prior": lp}

    def evaluate_prior(self, x: np.ndarray, batch: int = 65536) -> np.ndarray:
        """``log_prior`` alone at numpy points (n, D): cheap, no likelihood evaluation."""
        from ...tfsetup import tf

        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        fn = self.__dict__.get("_prior_fn")
        if fn is None:
            fn = tf.function(self.log_prior,
                             input_signature=[tf.TensorSpec([None, self.dim], tf.float64)])
            self._prior_fn = fn
        return map_batches(lambda b: fn(tf.constant(b)).numpy(), x, batch,
                           empty=lambda: np.zeros(0))

    def sample(self, n: int, seed: int = 0) -> np.ndarray | None:
        """Exact samples (n, D), or None where there is no exact sampler (use MCMC)."""
        return None

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        """Starting points for MCMC chains, inside the bounds, spread around the bulk."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Name and settings, stored in the attributes of generated files."""
        return {"target": self.name}

