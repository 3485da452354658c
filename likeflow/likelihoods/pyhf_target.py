"""Any pyhf workspace as a target, evaluated by pyhf itself (numpy backend).

``log_likelihood`` is pyhf's ``model.logpdf(pars, data)``: the main Poisson terms and every
constraint term (Gaussian, Poisson for staterror/shapesys, ...). Parameters without a
constraint get a flat prior inside pyhf's suggested bounds: ``log_prior`` is 0 inside the
bounds and -inf outside. Names come from ``model.config.par_names`` (``staterror_ch[3]`` style)
and the POI from the measurement.

pyhf's numpy backend has no TF gradients (its TF backend is gone upstream after 0.7), so MCMC
samples it with adaptive random-walk Metropolis (see :mod:`likeflow.mcmc`), all chains in one
batched pyhf call per step.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import LikeflowError
from .base import Target


class PyhfTarget(Target):
    """The likelihood of a pyhf workspace (JSON file or dict), optionally patched."""

    name = "pyhf"
    has_gradients = False

    def __init__(self, workspace, *, patch=None):
        import pyhf

        pyhf.set_backend("numpy")
        spec = _load_json(workspace, "workspace")
        try:
            ws = pyhf.Workspace(spec)
            patches = [_load_json(patch, "patch")] if patch is not None else []
            self._spec_kw = dict(patches=patches) if patches else {}
            self.model = ws.model(**self._spec_kw)
            self.data = np.asarray(ws.data(self.model), dtype=np.float64)
        except Exception as e:  # pyhf raises its own exception types for bad specs
            raise LikeflowError(f"{workspace}: not a valid pyhf workspace ({e})") from None
        self._ws = ws
        cfg = self.model.config
        self.names = list(cfg.par_names)
        self.poi = [cfg.poi_name] if cfg.poi_name else []
        self.bounds = np.asarray(cfg.suggested_bounds(), dtype=np.float64)
        self._batched = {}
        self.source = os.fspath(workspace) if not isinstance(workspace, dict) else "<dict>"

    def describe(self) -> dict:
        return {"target": self.name, "workspace": self.source,
                "parameters": len(self.names), "poi": self.poi}

    def _model_for(self, batch: int):
        """A pyhf model evaluating ``batch`` parameter vectors in one call (cached)."""
        if batch == 1:
            return self.model
        if batch not in self._batched:
            self._batched[batch] = self._ws.model(batch_size=batch, **self._spec_kw)
        return self._batched[batch]

    def log_likelihood_numpy(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out = np.empty(len(x))
        chunk = 512
        for i in range(0, len(x), chunk):
            part = x[i:i + chunk]
            if len(part) == 1:
                out[i] = float(np.asarray(self.model.logpdf(part[0], self.data)).reshape(-1)[0])
            else:
                m = self._model_for(len(part))
                out[i:i + len(part)] = np.asarray(m.logpdf(part, self.data)).reshape(-1)
        return out

    def log_prior_numpy(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        inside = np.all((x > self.bounds[:, 0]) & (x < self.bounds[:, 1]), axis=1)
        return np.where(inside, 0.0, -np.inf)

    def log_prob_numpy(self, x: np.ndarray) -> np.ndarray:
        out = self.evaluate(x)["log_prob"]
        out[~np.isfinite(out)] = -np.inf  # NaN from pyhf outside its domain counts as -inf
        return out

    def evaluate(self, x: np.ndarray, batch: int = 65536) -> dict[str, np.ndarray]:
        """pyhf's logpdf where the flat prior allows (inside the bounds), -inf elsewhere."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        lp = self.log_prior_numpy(x)
        ll = np.full(len(x), -np.inf)
        ok = np.isfinite(lp)
        if ok.any():
            ll[ok] = self.log_likelihood_numpy(x[ok])
        return {"log_prob": ll + lp, "log_likelihood": ll, "log_prior": lp}

    def log_likelihood(self, x):
        raise LikeflowError("pyhf targets are evaluated in numpy; use log_prob_numpy")

    def log_prior(self, x):
        raise LikeflowError("pyhf targets are evaluated in numpy; use log_prob_numpy")

    def best_fit(self) -> np.ndarray:
        """pyhf's own maximum-likelihood fit (scipy optimiser)."""
        import pyhf
        return np.asarray(pyhf.infer.mle.fit(self.data, self.model), dtype=np.float64)

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        """Around pyhf's best fit, spread by a tenth of the bounds' width (capped at 0.1)."""
        rng = np.random.default_rng(seed)
        center = self.best_fit()
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        width = np.minimum(0.1, 0.05 * (hi - lo))
        x = center + width * rng.normal(size=(n, self.dim))
        return np.clip(x, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))


def _load_json(obj, what: str):
    if isinstance(obj, dict):
        return obj
    try:
        with open(obj) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise LikeflowError(f"{obj}: cannot read the pyhf {what} ({e})") from None
