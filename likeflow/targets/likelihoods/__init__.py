"""Benchmark targets with exact log densities.

- :class:`LHCToy`: the 95-dim LHC-like toy search (arXiv:1911.03305).
- :class:`CorrelatedGaussian`, :class:`GaussianMixture`: exact, in any dimension.
- :class:`PyhfTarget`: any pyhf workspace, evaluated by pyhf.

:func:`make_target` builds one by name, as ``likeflow generate`` does.
"""

from __future__ import annotations

from .base import Target
from .gaussian import DEFAULT_COMPONENTS, DEFAULT_DIM, CorrelatedGaussian, GaussianMixture
from .lhc_toy import LHCToy

__all__ = ["Target", "LHCToy", "CorrelatedGaussian", "GaussianMixture", "make_target", "TARGETS"]

#: the benchmark targets by name
TARGETS = ("lhc-toy", "gaussian", "mixture", "pyhf")


def make_target(name: str, *, dim: int = DEFAULT_DIM, components: int = DEFAULT_COMPONENTS,
                seed: int = 0, workspace=None, patch=None, poi: str | None = None,
                asimov: bool = False) -> Target:
    """A target by name: ``lhc-toy``; ``gaussian`` (dim, seed); ``mixture`` (dim, components,
    seed); ``pyhf`` (workspace, patch, poi, asimov)."""
    if name in ("lhc-toy", "lhc_toy"):
        return LHCToy()
    if name == "gaussian":
        return CorrelatedGaussian(dim, seed=seed)
    if name == "mixture":
        return GaussianMixture(dim, components=components, seed=seed)
    if name == "pyhf":
        from .pyhf_target import PyhfTarget
        return PyhfTarget(workspace, patch=patch, poi=poi, asimov=bool(asimov))
    from ...errors import LikeflowError
    raise LikeflowError(f"unknown target '{name}' (choose from {', '.join(TARGETS)})")
