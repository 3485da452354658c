"""Benchmark sample files: a target's samples with their exact log densities (:func:`generate`).

Exact samples where the target has them (Gaussians, mixtures), MCMC otherwise
(:func:`likeflow.targets.mcmc.run_mcmc`: the LHC toy, pyhf workspaces); the file records how the
samples
were drawn and whether the chains converged.

Example:
    >>> import likeflow
    >>> g = likeflow.generate("gaussian", 1000, dim=3, seed=1)
    >>> g.samples.n, g.samples.dim, g.method
    (1000, 3, 'exact')
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..data.samples import SampleSet, write_samples
from ..errors import LikeflowError
from ..fileio import check_outputs
from .likelihoods import DEFAULT_COMPONENTS, DEFAULT_DIM, TARGETS, make_target
from .mcmc import MCMCConfig, run_mcmc


@dataclass
class Generated:
    """Samples of a target and how they were drawn."""

    samples: SampleSet
    method: str                 # "exact" or "mcmc"
    diagnostics: dict | None    # MCMC: R-hat, ESS, kernel, acceptance, step size
    converged: bool
    elapsed: float
    target: dict                # the target's description (stored in the file)

    def summary(self) -> str:
        """One line on the MCMC run (empty for exact samples)."""
        d = self.diagnostics
        if d is None:
            return ""
        return (f"R-hat max {d['rhat_max']:.4f} ({d['rhat_worst_parameter']}), ESS min "
                f"{d['ess_min']:.0f} ({d['ess_min_parameter']}), median {d['ess_median']:.0f}; "
                f"{d['kernel']}, acceptance {d['accept_rate']:.2f}, step size "
                f"{d['step_size']:.3g}")


def generate(target, n: int, *, out: str | os.PathLike | None = None, seed: int = 0,
             method: str = "auto", mcmc: MCMCConfig | None = None, float32: bool = False,
             dim: int = DEFAULT_DIM, components: int = DEFAULT_COMPONENTS, workspace=None,
             patch=None, poi: str | None = None, asimov: bool = False,
             anchors: bool | None = None,
             progress: Callable[[str], None] | None = None) -> Generated:
    """``n`` samples of a benchmark target with their exact log densities.

    Args:
        target: a :class:`~likeflow.targets.likelihoods.Target`, or one of :data:`TARGETS`:
            ``lhc-toy``, ``gaussian`` / ``mixture`` (``dim``, ``components``, seeded by
            ``seed``), ``pyhf`` (``workspace``, ``patch``, ``poi``, ``asimov``).
        n: number of samples.
        out: write them to this sample file (with the target and the MCMC record).
        seed: seeds the target's construction and the sampler.
        method: ``exact``, ``mcmc``, or ``auto`` (exact where the target has it).
        mcmc: the :class:`MCMCConfig` (its seed is ``seed``).
        float32: round the samples to float32 (the log densities are evaluated at the
            rounded points, so they stay exact).
        anchors: add anchors along the exact profile of the (first) POI
            (:func:`likeflow.data.anchors.profile_path`: the target's conditional modes, where
            profiles and limits are decided and no sample goes); None: for targets with a POI.
        progress: called with lines on the MCMC's progress.
    """
    check_outputs([out], inputs=[workspace, patch])
    if method not in ("auto", "exact", "mcmc"):
        raise LikeflowError(f"method must be auto, exact or mcmc, not '{method}'")
    t = _target(target, dim=dim, components=components, seed=seed, workspace=workspace,
                patch=patch, poi=poi, asimov=asimov)
    t0 = time.perf_counter()
    exact = None if method == "mcmc" else t.sample(n, seed=seed)
    if exact is None and method == "exact":
        raise LikeflowError(f"{t.name} has no exact sampler; use MCMC")
    if exact is None:
        cfg = dataclasses.replace(mcmc or MCMCConfig(), seed=seed)
        result = run_mcmc(t, n, cfg, progress=progress)
        x, chain, diag, converged = (result.samples, result.chain, result.diagnostics(),
                                     result.converged)
    else:
        x, chain, diag, converged, result = exact, None, None, True, None
    if float32 or result is None:
        if float32:
            x = x.astype(np.float32).astype(np.float64)
        ev = t.evaluate(x)
    else:  # the chain's own log densities: no second pass over the target
        prior = t.evaluate_prior(x)
        ev = {"log_prob": result.log_prob, "log_prior": prior,
              "log_likelihood": result.log_prob - prior}
    if anchors and not t.poi:
        raise LikeflowError(f"{t.name}: anchors lie along a POI, and this target has none")
    found = None
    if anchors or (anchors is None and t.poi):
        from ..data.anchors import profile_path
        t_a = time.perf_counter()
        i = t.names.index(t.poi[0])
        found = profile_path(t, x, poi=i, seed=seed, progress=progress, **mode_finders(t, i))
        if progress is not None:
            progress(f"anchors: {found.n} points ({int((found.kind == 0).sum())} conditional "
                     f"modes) in {time.perf_counter() - t_a:.0f} s")
    s = SampleSet(x, names=t.names, poi=t.poi, bounds=t.bounds, log_prob=ev["log_prob"],
                  log_likelihood=ev["log_likelihood"], log_prior=ev["log_prior"], chain=chain,
                  anchors=found)
    g = Generated(s, "exact" if diag is None else "mcmc", diag, converged,
                  time.perf_counter() - t0, t.describe())
    if out is not None:
        attrs = {"target": json.dumps(g.target)}
        attrs.update({"mcmc": json.dumps(diag)} if diag else {"sampler": "exact"})
        write_samples(out, s, attrs=attrs)
    return g


def mode_finders(target, poi: int) -> dict:
    """``best_fit`` and ``conditional_mode`` of :func:`likeflow.data.anchors.profile_path` for
    ``target``: pyhf's own fits for a pyhf workspace, else likeflow's batched L-BFGS
    (:func:`likeflow.infer.inference.maximize`) on the target's TF gradients."""
    from .likelihoods.pyhf_target import PyhfTarget
    if isinstance(target, PyhfTarget):
        return {"best_fit": target.best_fit,
                "conditional_mode": lambda value, start: target.conditional_mode(poi, value,
                                                                                 start)}
    from ..infer.inference import as_density, maximize
    dens = as_density(target)
    return {"best_fit": lambda start: maximize(dens, start[None]).x,
            "conditional_mode": lambda value, start: maximize(
                dens, start[None], fixed={poi: np.array([value])})[0].x}


def _target(target, *, dim, components, seed, workspace, patch, poi, asimov):
    if not isinstance(target, str):
        return target
    if target not in TARGETS:
        raise LikeflowError(f"unknown target '{target}' (choose from {', '.join(TARGETS)})")
    if target == "pyhf" and workspace is None:
        raise LikeflowError("pyhf needs a workspace file")
    if target != "pyhf" and workspace is not None:
        raise LikeflowError(f"{target} takes no workspace")
    if target != "pyhf" and (asimov or poi or patch):
        raise LikeflowError("patch, poi and asimov are for pyhf targets")
    return make_target(target, dim=dim, components=components, seed=seed, workspace=workspace,
                       patch=patch, poi=poi, asimov=asimov)
