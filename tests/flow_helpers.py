"""Weights for flows built in tests without training."""

import numpy as np

from likeflow.flows.config import FlowConfig, expected_weight_shapes, weight_roles


def random_whitening(d: int, rng) -> np.ndarray:
    """A lower-triangular matrix with a positive diagonal, far from the identity (what a
    file's ``whiten`` weight must be)."""
    return np.tril(rng.normal(scale=0.4, size=(d, d)), -1) + np.diag(
        np.exp(rng.normal(scale=0.3, size=d)))


def random_weights(cfg: FlowConfig, rng, scale: float = 0.4) -> list[np.ndarray]:
    """Weights in file order far from the identity: normal noise of ``scale``, and a random
    whitening where the config has one."""
    return [random_whitening(cfg.dim, rng) if role == "whiten" else scale * rng.normal(size=s)
            for role, s in zip(weight_roles(cfg), expected_weight_shapes(cfg))]
