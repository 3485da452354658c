"""Joint densities of several surrogates that share parameters by name, and their sampling.

Each surrogate i models a posterior p_i(x_i) = L_i(x_i) pi(x_i) / Z_i over its own parameters
x_i. Parameters with the same name are the same parameter. The joint posterior of independent
measurements is  prod_i L_i  times the prior counted once, so

    log p(x) = sum_i log p_i(x_i) - sum_j (K_j - 1) log pi_j(x_j) + const,

where K_j is the number of surrogates that hold parameter j. The shared prior pi_j must be
known: ``"flat"`` (the default: constant inside the bounds, nothing to subtract) or
``"normal"`` (a unit Gaussian constraint, as for the nuisance parameters of a HistFactory model,
subtracted K_j - 1 times). The result is sampled with :mod:`likeflow.targets.mcmc` and written as a
sample file, so it can be fitted again.

Example:
    >>> joint = Combination([likeflow.load("a.likeflow.h5"), likeflow.load("b.likeflow.h5")])
    ...                                                                   # doctest: +SKIP
    >>> samples = joint.sample_set(100_000)                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ..data.samples import SampleSet
from ..errors import LikeflowError
from .likelihoods.base import Target
from .mcmc import MCMCConfig

#: :func:`combine`'s MCMC unless told otherwise: many chains (a surrogate evaluates a batch of
#: 128 points in about the time of one, so they cost little more than a few) and a shorter
#: warm-up than a likelihood's (the joint density of fitted flows is smooth)
COMBINE_MCMC = MCMCConfig(chains=128, warmup=600)

PRIORS = ("flat", "normal")


class Combination(Target):
    """The joint log density of several surrogates (a :class:`Target`, so MCMC can sample it)."""

    name = "combination"

    def __init__(self, surrogates, *, shared_priors: dict[str, str] | None = None):
        if len(surrogates) < 2:
            raise LikeflowError("combine needs at least two surrogates")
        if any(s.kind != "flow" for s in surrogates):
            raise LikeflowError("combine does not take piecewise surrogates")
        if any(getattr(s, "backend", "tensorflow") != "tensorflow" for s in surrogates):
            raise LikeflowError("combine samples the joint density with TensorFlow's NUTS: "
                                "load the surrogates with backend='tensorflow'")
        self.surrogates = list(surrogates)
        names: list[str] = []
        for s in self.surrogates:
            names += [n for n in s.names if n not in names]
        self.names = names
        self.poi = [p for s in self.surrogates for p in s.poi if p in names]
        self.poi = list(dict.fromkeys(self.poi))
        self.columns = [[names.index(n) for n in s.names] for s in self.surrogates]
        counts = np.zeros(len(names), int)
        bounds = np.tile([-np.inf, np.inf], (len(names), 1))
        for s, cols in zip(self.surrogates, self.columns):
            counts[cols] += 1
            b = s.bounds
            bounds[cols, 0] = np.maximum(bounds[cols, 0], b[:, 0])
            bounds[cols, 1] = np.minimum(bounds[cols, 1], b[:, 1])
        if (bounds[:, 0] >= bounds[:, 1]).any():
            bad = [names[i] for i in np.flatnonzero(bounds[:, 0] >= bounds[:, 1])]
            raise LikeflowError(f"the surrogates' bounds of {bad} do not overlap")
        self.bounds = bounds
        self.counts = counts
        priors = dict(shared_priors or {})
        unknown = [n for n in priors if n not in names]
        if unknown:
            raise LikeflowError(f"--normal-prior names unknown parameters {unknown}")
        bad = {k: v for k, v in priors.items() if v not in PRIORS}
        if bad:
            raise LikeflowError(f"unknown priors {bad} (flat or normal)")
        self.shared = [n for n, c in zip(names, counts) if c > 1]
        if not self.shared:
            raise LikeflowError("the surrogates share no parameter by name: their joint "
                                "density is the product of independent ones (sample each "
                                "with 'likeflow sample'), or rename the shared parameters")
        self.priors = {n: priors.get(n, "flat") for n in self.shared}

    def describe(self) -> dict:
        return {"target": self.name, "parameters": len(self.names), "shared": self.shared,
                "shared_priors": self.priors,
                "rule": "sum of log densities, shared priors subtracted K-1 times"}

    def log_likelihood(self, x):
        from ..tfsetup import tf

        total = 0.0
        for s, cols in zip(self.surrogates, self.columns):
            xi = tf.gather(x, cols, axis=-1)
            total = total + tf.cast(s.flow.log_prob(tf.cast(xi, s.flow.dtype)), tf.float64)
        return total

    def log_prior(self, x):
        """Minus the shared priors counted more than once (a constant for flat ones)."""
        from ..tfsetup import tf

        out = tf.zeros_like(x[..., 0])
        for n in self.shared:
            if self.priors[n] == "normal":
                j = self.names.index(n)
                lp = -0.5 * x[..., j] ** 2 - 0.5 * math.log(2 * math.pi)
                out = out - (int(self.counts[j]) - 1) * lp
        return out

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        """Each parameter from the first surrogate that holds it; shared ones averaged."""
        x = np.zeros((n, len(self.names)))
        seen = np.zeros(len(self.names))
        for k, (s, cols) in enumerate(zip(self.surrogates, self.columns)):
            x[:, cols] += s.sample(n, seed=seed + k)
            seen[cols] += 1
        x /= seen
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
        return np.clip(x, lo + 1e-3 * span, hi - 1e-3 * span)

    def sample_set(self, n: int, *, config=None, progress=None) -> tuple[SampleSet, dict]:
        """``n`` MCMC samples of the joint density with their log densities, and diagnostics."""
        from .mcmc import run_mcmc

        result = run_mcmc(self, n, config or COMBINE_MCMC, progress=progress)
        prior = self.evaluate_prior(result.samples)
        s = SampleSet(result.samples, names=self.names, poi=self.poi, bounds=self.bounds,
                      log_prob=result.log_prob, log_likelihood=result.log_prob - prior,
                      log_prior=prior, chain=result.chain)
        return s, result.diagnostics()


def combine(surrogates, n: int, *, out: str | os.PathLike | None = None,
            normal_prior=(), config=None, progress=None) -> tuple[SampleSet, dict]:
    """``n`` MCMC samples of the joint density of several surrogates (or their paths) that
    share parameters by name, with the MCMC diagnostics; written to ``out`` when given.

    ``normal_prior`` names the shared parameters whose prior is a unit Gaussian (counted once);
    the others are taken as flat. ``config`` is an :class:`~likeflow.targets.mcmc.MCMCConfig`
    (default :data:`COMBINE_MCMC`).
    """
    from ..fileio import check_outputs
    from ..data.samples import write_samples
    from ..surrogate.loading import load

    paths = [os.fspath(s) for s in surrogates if isinstance(s, (str, os.PathLike))]
    check_outputs([out], inputs=paths)
    # the joint density is sampled by TensorFlow's NUTS, whatever the default backend
    surs = [load(s, backend="tensorflow") if isinstance(s, (str, os.PathLike)) else s
            for s in surrogates]
    joint = Combination(surs, shared_priors={k: "normal" for k in normal_prior})
    if progress is not None:
        progress(f"joint density of {len(surs)} surrogates: {len(joint.names)} parameters, "
                 f"shared: {', '.join(joint.shared) or '(none)'}")
    s, diag = joint.sample_set(n, config=config, progress=progress)
    if out is not None:
        write_samples(out, s, attrs={"target": json.dumps(joint.describe()),
                                     "mcmc": json.dumps(diag),
                                     "sources": json.dumps([sur.path for sur in surs])})
    return s, diag
