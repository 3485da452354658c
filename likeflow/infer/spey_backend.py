"""likeflow as a statistics backend of spey, the reinterpretation community's plug-in interface.

Registered as the entry point ``likeflow`` of the group ``spey.backend.plugins``
(``pip install 'likeflow[spey]'``)::

    import spey
    model = spey.get_backend("likeflow")(surrogate="obs.likeflow.h5",
                                         asimov="asimov.likeflow.h5",   # optional
                                         analysis="ATLAS-SUSY-2018-31", xsection=0.01)
    model.poi_upper_limit(); model.exclusion_confidence_level(); model.maximize_likelihood()

The statistical model is the surrogate's log density over all its parameters; spey's parameter
of interest is the surrogate's first POI (or ``poi=``). A surrogate is a likelihood of its own
data only: spey's expected (``apriori``) likelihood and its Asimov likelihoods for the
asymptotic CLs calculator are the surrogate's **Asimov partner**, a surrogate of the
background-only Asimov likelihood (``likeflow generate pyhf --asimov``, then ``fit``), given as
``asimov=`` or recorded in the surrogate's file (``fit --asimov-partner``). Without a partner,
likelihoods, best fits and the profile-likelihood test statistics work; CLs does not.

Fits use likeflow's own optimiser (:func:`likeflow.infer.inference.maximize`: batched L-BFGS from
several starting points, inside the surrogate's training region), the same one behind
``likeflow profile``, so spey's and likeflow's limits of one surrogate agree.
"""

from __future__ import annotations

import numpy as np

from .._version import __version__
from ..errors import LikeflowError

try:  # the backend is importable (for docs, errors) without spey; spey loads it as a plugin
    from spey import BackendBase, ExpectationType
    from spey.base.model_config import ModelConfig
except ImportError:  # pragma: no cover - exercised only without spey
    BackendBase = object
    ExpectationType = ModelConfig = None

class LikeflowBackend(BackendBase):
    """A spey statistical model of a likeflow surrogate (and its Asimov partner).

    Args:
        surrogate: a :class:`~likeflow.surrogate.artifact.Surrogate` or the path of a surrogate
        file.
        asimov: its background-only Asimov partner (surrogate or path); default: the partner
            the surrogate's file records, if any.
        poi: the parameter of interest (default: the surrogate's first POI).
        fast: the fits of a fast :class:`~likeflow.infer.cls.CLsTest` (tests about twice as
            fast, CLs within about 2.5e-3 relative where it is above 0.005, limits within
            about 1e-3).
    """

    name = "likeflow"
    version = __version__
    author = "likeflow developers"
    spey_requires = ">=0.2.0"
    doi: list = []
    arXiv: list = []

    def __init__(self, surrogate, asimov=None, poi: str | None = None, *, fast: bool = False):
        from .cls import CLsTest
        from .profiling import open_target
        from ..surrogate.artifact import Surrogate

        sur, partner, _ = open_target(surrogate, asimov=asimov)
        if not isinstance(sur, Surrogate):
            raise LikeflowError("the likeflow backend takes a surrogate; for a pyhf workspace "
                                "use spey's pyhf backend (spey-pyhf)")
        self.surrogate, self.asimov = sur, partner
        names = self.surrogate.names
        poi = poi or (self.surrogate.poi[0] if self.surrogate.poi else None)
        if poi is None:
            raise LikeflowError("spey needs a parameter of interest: the surrogate names none; "
                                "give poi=")
        if poi not in names:
            raise LikeflowError(f"unknown parameter of interest '{poi}'; the parameters are "
                                f"{', '.join(names[:10])}")
        if self.asimov is not None and self.asimov.names != names:
            raise LikeflowError("the Asimov partner's parameters differ from the surrogate's")
        self.poi_name, self.poi_index = poi, names.index(poi)
        # every fit goes through likeflow's hypothesis-test API (batched, remembered)
        self._test = CLsTest(self.surrogate, self.asimov, poi, fast=fast)

    # --- what spey must know ------------------------------------------------------------------
    @property
    def is_alive(self) -> bool:
        return True

    def config(self, allow_negative_signal: bool = True,
               poi_upper_bound: float = 10.0) -> ModelConfig:
        """The parameters: names, the POI, starting values (the best fit) and bounds (the
        surrogate's bounds, within the region it was trained on)."""
        lo, hi = self._box()
        i = self.poi_index
        minimum_poi = lo[i] if allow_negative_signal else max(lo[i], 0.0)
        bounds = [(float(a), float(b)) for a, b in zip(lo, hi)]
        bounds[i] = (float(minimum_poi), float(min(hi[i], poi_upper_bound)))
        best = self._best("observed", allow_negative_signal)
        init = np.clip(best.x, [b[0] for b in bounds], [b[1] for b in bounds])
        return ModelConfig(poi_index=i, minimum_poi=float(minimum_poi),
                           suggested_init=[float(v) for v in init], suggested_bounds=bounds,
                           parameter_names=list(self.surrogate.names))

    def get_logpdf_func(self, expected=None, data=None):
        """log L(parameters): the surrogate's (observed), its Asimov partner's (apriori), by
        the numpy reader in float64 on either backend (as likeflow's own fits)."""
        sur = self._surrogate(expected, data).numpy_twin()
        return lambda pars: float(sur.log_prob(np.asarray(pars, float)[None])[0])

    def get_objective_function(self, expected=None, data=None, do_grad: bool = True):
        """-log L and its exact gradient
        (:meth:`~likeflow.surrogate.artifact.Surrogate.log_prob_grad`
        of the numpy reader in float64, on either backend: one point at a time is what spey's
        optimisers ask for, where TensorFlow's per-call cost dominates)."""
        sur = self._surrogate(expected, data).numpy_twin()

        def objective(pars):
            p = np.asarray(pars, float)[None]
            if not do_grad:
                return -float(sur.log_prob(p)[0])
            lp, grad = sur.log_prob_grad(p)
            return -float(lp[0]), -grad[0]

        return objective

    # --- fits by likeflow's optimiser ---------------------------------------------------------
    def negative_loglikelihood(self, poi_test: float = 1.0, expected=None, data=None,
                               return_parameters: bool = False, **kwargs):
        """-log L profiled at POI = ``poi_test`` (what spey's ``likelihood`` returns)."""
        m = self._profile(self._kind(expected, data), float(poi_test))
        return (-m.log_prob, m.x) if return_parameters else -m.log_prob

    def minimize_negative_loglikelihood(self, expected=None, allow_negative_signal: bool = True,
                                        data=None, poi_indices=None, **kwargs):
        """The best fit: (POI, -log L) as spey's ``maximize_likelihood`` returns."""
        m = self._best(self._kind(expected, data), allow_negative_signal)
        return _spey_best(m, self.poi_index, poi_indices, self.surrogate.names)

    def asimov_negative_loglikelihood(self, poi_test: float = 1.0, expected=None,
                                      test_statistics: str = "qtilde", **kwargs):
        """-log L_A profiled at ``poi_test``: the Asimov partner's."""
        self._check_asimov(test_statistics)
        return -self._profile("asimov", float(poi_test)).log_prob

    def minimize_asimov_negative_loglikelihood(self, expected=None,
                                               test_statistics: str = "qtilde",
                                               poi_indices=None, **kwargs):
        self._check_asimov(test_statistics)
        m = self._best("asimov", test_statistics in ("q", "qmu"))
        return _spey_best(m, self.poi_index, poi_indices, self.surrogate.names)

    # --- helpers ------------------------------------------------------------------------------
    def _kind(self, expected, data) -> str:
        if data is not None:
            raise LikeflowError("a likeflow surrogate is the likelihood of its own data: it "
                                "cannot be evaluated on other data (spey's data=)")
        if expected is not None and ExpectationType is not None \
                and expected == ExpectationType.apriori:
            if self.asimov is None:
                raise LikeflowError("the expected (apriori) likelihood is the Asimov partner "
                                    "surrogate: give asimov= (or fit with --asimov-partner)")
            return "asimov"
        return "observed"

    def _surrogate(self, expected, data):
        return self.asimov if self._kind(expected, data) == "asimov" else self.surrogate

    def _check_asimov(self, test_statistics: str) -> None:
        if self.asimov is None:
            raise LikeflowError("CLs with the asymptotic calculator needs the Asimov partner "
                                "surrogate: give asimov= (or fit with --asimov-partner)")
        if test_statistics == "q0":
            raise LikeflowError("q0 needs the signal-plus-background Asimov likelihood; the "
                                "partner is the background-only one (qtilde, q)")

    def _box(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the optimisation: the surrogate's bounds, inside its training region."""
        b = self.surrogate.bounds
        lo, hi = b[:, 0].copy(), b[:, 1].copy()
        sup = self.surrogate.support
        if sup is not None:
            lo, hi = np.maximum(lo, sup["lo"]), np.minimum(hi, sup["hi"])
        return lo, hi

    def _best(self, kind: str, allow_negative_signal: bool):
        return self._test.best(kind, allow_negative_signal)

    def _profile(self, kind: str, value: float):
        return self._test.fit(kind, [value])[0]


def _spey_best(m, poi_index: int, poi_indices, names):
    if poi_indices is None:
        return float(m.x[poi_index]), -m.log_prob
    out = {}
    for key in poi_indices:
        idx = names.index(key) if isinstance(key, str) else int(key)
        out[key] = float(m.x[idx])
    return out, -m.log_prob
