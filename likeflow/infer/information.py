"""Marginal statistics of a parameter subset (margarine, Bevins, Handley et al.,
arXiv:2205.12841, 2207.11457): how much the data taught about those parameters alone, free of
the nuisance parameters.

With P(theta) the marginal posterior of the subset (a surrogate of it: ``likeflow marginal``)
and pi(theta) its prior,

- the marginal Kullback-Leibler divergence D = E_P[log P - log pi] (nats: the information
  gained; 0 if the data say nothing);
- the Bayesian model dimensionality d = 2 Var_P[log P - log pi] (the number of parameters
  the data constrain: d for a Gaussian posterior well inside a uniform prior);
- with the evidence Z, the nuisance-free likelihood L(theta) = P(theta) Z / pi(theta).

Both are Monte-Carlo averages over samples of P, reported with their standard errors. The
prior is uniform on bounds (the surrogate's own, or given) or another density with the same
parameters (a surrogate of the prior: ``likeflow fit`` on prior samples).

Example:
    >>> stats = likeflow.marginal_stats("mu.likeflow.h5", prior={"mu": (-2, 5)})  # doctest: +SKIP
    >>> stats.kl, stats.kl_error, stats.bmd, stats.bmd_error                      # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import LikeflowError
from ..flows.bounds import as_bounds

#: samples of the marginal posterior behind the averages
DEFAULT_SAMPLES = 100_000


@dataclass
class MarginalStats:
    """Marginal KL divergence and Bayesian model dimensionality, with Monte-Carlo errors."""

    names: list[str]
    kl: float
    kl_error: float
    bmd: float
    bmd_error: float
    n: int
    prior: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def write_json(self, path: str | os.PathLike) -> None:
        import json

        from ..fileio import write_text
        write_text(os.fspath(path), json.dumps(self.to_dict(), indent=1))

    def table(self) -> str:
        return (f"parameters: {', '.join(self.names)}  (prior: {self.prior}; {self.n} samples)\n"
                f"marginal KL divergence     {self.kl:.4f} +- {self.kl_error:.4f} nats\n"
                f"Bayesian model dimension   {self.bmd:.4f} +- {self.bmd_error:.4f}")


class _Uniform:
    """A uniform prior on finite bounds."""

    def __init__(self, bounds: np.ndarray):
        if not np.all(np.isfinite(bounds)):
            raise LikeflowError("a uniform prior needs finite bounds on every parameter "
                                "(give them, e.g. prior={'mu': (0, 10)})")
        self.bounds = bounds
        self.log_density = -float(np.sum(np.log(bounds[:, 1] - bounds[:, 0])))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        inside = np.all((x >= self.bounds[:, 0]) & (x <= self.bounds[:, 1]), axis=1)
        return np.where(inside, self.log_density, -np.inf)

    def describe(self) -> str:
        return "uniform on " + ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in self.bounds)


def _prior(prior, marginal):
    """The prior as an object with ``log_prob``: uniform on bounds, or a density."""
    from ..surrogate.loading import load

    if prior is None or isinstance(prior, (dict, np.ndarray, list, tuple)):
        bounds = marginal.bounds if prior is None else as_bounds(prior, marginal.names)
        if prior is not None and isinstance(prior, dict):  # the others keep their own
            own = np.asarray(marginal.bounds, float)
            given = [marginal.names.index(k) for k in prior]
            keep = np.setdiff1d(np.arange(len(marginal.names)), given)
            bounds[keep] = own[keep]
        return _Uniform(np.asarray(bounds, float))
    density = load(prior) if isinstance(prior, (str, os.PathLike)) else prior
    if sorted(density.names) != sorted(marginal.names):
        raise LikeflowError(f"the prior's parameters {density.names[:6]} are not the "
                            f"marginal's {marginal.names[:6]}")
    return density


def _log_prior(prior, marginal, x: np.ndarray) -> np.ndarray:
    if isinstance(prior, _Uniform):
        return prior.log_prob(x)
    cols = [marginal.names.index(n) for n in prior.names]
    return np.asarray(prior.log_prob(x[:, cols]), float)


def marginal_stats(marginal, prior=None, *, n: int = DEFAULT_SAMPLES,
                   seed: int = 0) -> MarginalStats:
    """KL divergence and Bayesian model dimensionality of ``marginal`` against ``prior``.

    Args:
        marginal: a surrogate (or its file) of the marginal posterior of the parameters of
            interest (``likeflow marginal``), or any object with ``names``, ``bounds``,
            ``sample(n, seed=)`` and ``log_prob``.
        prior: None (uniform on the marginal's bounds), bounds (a ``{name: (lo, hi)}`` mapping
            or a (D, 2) array: uniform), or a density with the same parameters (a surrogate of
            the prior, or its file).
        n: samples of the marginal posterior.
    """
    from ..surrogate.loading import load

    marg = load(marginal) if isinstance(marginal, (str, os.PathLike)) else marginal
    if not isinstance(n, (int, np.integer)) or n < 100:
        raise LikeflowError(f"marginal statistics need at least 100 samples, not {n!r}")
    pri = _prior(prior, marg)
    x = np.asarray(marg.sample(int(n), seed=seed), float)
    log_ratio = np.asarray(marg.log_prob(x), float) - _log_prior(pri, marg, x)
    if not np.all(np.isfinite(log_ratio)):
        bad = int(np.sum(~np.isfinite(log_ratio)))
        raise LikeflowError(f"{bad} of {n} posterior samples lie where the prior density is "
                            "0 (outside its bounds): the prior must cover the posterior")
    m = float(log_ratio.mean())
    dev = log_ratio - m
    var = float(np.mean(dev ** 2))
    # the standard error of a sample variance: sqrt((m4 - var^2) / n)
    var_error = math.sqrt(max(float(np.mean(dev ** 4)) - var ** 2, 0.0) / n)
    describe = pri.describe() if isinstance(pri, _Uniform) else (
        f"density {getattr(pri, 'path', None) or type(pri).__name__}")
    return MarginalStats(names=list(marg.names), kl=m, kl_error=math.sqrt(var / n),
                         bmd=2 * var, bmd_error=2 * var_error, n=int(n), prior=describe)


def nuisance_free_log_likelihood(marginal, x, *, log_evidence: float, prior=None) -> np.ndarray:
    """log L(theta) = log P(theta) + log Z - log pi(theta): the likelihood of the parameters
    of interest with the nuisance parameters marginalised, from the marginal posterior, the
    evidence Z and the prior."""
    from ..surrogate.loading import load

    marg = load(marginal) if isinstance(marginal, (str, os.PathLike)) else marginal
    if not math.isfinite(log_evidence):
        raise LikeflowError(f"the log evidence must be a finite number, not {log_evidence!r}")
    pts = np.atleast_2d(np.asarray(x, float))
    pri = _prior(prior, marg)
    return np.asarray(marg.log_prob(pts), float) + log_evidence - _log_prior(pri, marg, pts)
