"""Benchmark targets with exact log densities.

- :class:`LHCToy`: the 95-dim LHC-like toy search (arXiv:1911.03305).
- :class:`CorrelatedGaussian`, :class:`GaussianMixture`: exact, in any dimension.
- :class:`PyhfTarget`: any pyhf workspace, evaluated by pyhf.

:func:`make_target` builds one by name, as ``likeflow generate`` does.
"""

from __future__ import annotations

from .base import Target
from .gaussian import CorrelatedGaussian, GaussianMixture
from .lhc_toy import LHCToy

__all__ = ["Target", "LHCToy", "CorrelatedGaussian", "GaussianMixture", "make_target"]


def make_target(name: str, **kw) -> Target:
    """``lhc-toy``, ``gaussian`` (dim, seed), ``mixture`` (dim, components, seed) or ``pyhf``
    (workspace, patch, poi, asimov)."""
    if name in ("lhc-toy", "lhc_toy"):
        return LHCToy()
    if name == "gaussian":
        return CorrelatedGaussian(kw["dim"], seed=kw.get("seed", 0))
    if name == "mixture":
        return GaussianMixture(kw["dim"], components=kw.get("components", 3),
                               seed=kw.get("seed", 0))
    if name == "pyhf":
        from .pyhf_target import PyhfTarget
        return PyhfTarget(kw["workspace"], patch=kw.get("patch"), poi=kw.get("poi"),
                          asimov=bool(kw.get("asimov")))
    raise ValueError(f"unknown target '{name}'")
