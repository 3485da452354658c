"""Any pyhf workspace as a target, with TensorFlow gradients from pyhf's own ``tensorflow`` backend.

``log_likelihood`` is pyhf's ``model.logpdf(pars, data)``: the main Poisson terms and every
constraint term (Gaussian, Poisson for staterror/shapesys, ...). Parameters without a
constraint get a flat prior inside pyhf's suggested bounds (closed, as pyhf's fits treat them):
``log_prior`` is 0 inside the bounds and -inf outside. Names come from ``model.config.par_names`` (``staterror_ch[3]`` style)
and the POI from the measurement (or ``poi=``).

Gradients: pyhf 0.7.6's ``tensorflow`` backend runs on TF 2.21, so the log density is a TF graph
and NUTS, L-BFGS profiles and limits run on the exact likelihood like on any other target. Two
pyhf habits shape the code:

- pyhf's backend is global, and switching it re-converts every live model (batched ones fail).
  A pyhf target therefore sets the ``tensorflow`` backend once (:func:`use_tensorflow_backend`)
  and leaves it: pyhf's own fits then run on TensorFlow too.
- pyhf's interpolators cache tensors of the graph they were first traced in; a second trace of
  the same model object fails ("out of scope"). Every trace therefore builds its own model.

The value and gradient are computed together in one XLA-compiled call and joined through a
custom gradient: measured on RegionC of the ATLAS sbottom search (66 parameters), 16 points
1.3 ms per value+gradient with XLA against 5.0 ms without.

Parameters fixed in the measurement (``"fixed": true``) are held at their value and are not
parameters of the target (``names``, ``bounds``, the sampled vector hold the free ones;
``fixed_parameters`` and ``describe()`` record the others), as pyhf's own fits hold them.

``asimov=True`` replaces the observed data by pyhf's background-only Asimov data (POI fixed at 0
in the fit that sets the nuisance parameters), the partner likelihood of CLs limits.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ...errors import LikeflowError
from .base import Target


def use_tensorflow_backend() -> None:
    """Set pyhf's backend to ``tensorflow`` (64-bit), once.

    pyhf's backend is global, and switching it back and forth re-converts every live model
    (which fails for batched models), so a pyhf target sets it and leaves it: after building a
    :class:`PyhfTarget`, pyhf runs on TensorFlow in this process (its fits too, with autodiff).
    """
    import pyhf

    from ...tfsetup import import_tf
    import_tf()  # quietly, before pyhf's backend imports it
    backend = pyhf.get_backend()[0]
    if backend.name != "tensorflow" or backend.precision != "64b":
        pyhf.set_backend("tensorflow", precision="64b")


class PyhfTarget(Target):
    """The likelihood of a pyhf workspace (JSON file or dict), optionally patched.

    Args:
        workspace: path of a pyhf workspace JSON file, or the spec as a dict.
        patch: a JSON patch (path or list of operations), e.g. a signal hypothesis.
        poi: name of the parameter of interest (default: the measurement's).
        asimov: use the background-only Asimov data instead of the observed data.
    """

    name = "pyhf"
    has_gradients = True

    def __init__(self, workspace, *, patch=None, poi: str | None = None, asimov: bool = False):
        import pyhf

        self.source = os.fspath(workspace) if not isinstance(workspace, dict) else "<dict>"
        self.patch_source = (os.fspath(patch) if isinstance(patch, (str, os.PathLike))
                             else None if patch is None else "<patch>")
        spec = _load_json(workspace, "workspace")
        use_tensorflow_backend()
        try:
            ws = pyhf.Workspace(spec)
        except Exception as e:  # pyhf raises its own exception types for bad specs
            raise LikeflowError(f"{self.source}: not a valid pyhf workspace "
                                f"({_first_line(e)})") from None
        patches = [_load_json(patch, "patch")] if patch is not None else []
        if patches and not isinstance(patches[0], list):
            raise LikeflowError(f"{self.patch_source}: not a JSON patch (a list of "
                                "operations expected)")
        self._model_kw = dict(patches=patches) if patches else {}
        if poi is not None:
            self._model_kw["poi_name"] = poi
        try:
            model = ws.model(**self._model_kw)
        except Exception as e:
            if poi is not None and _is_unknown_poi(ws, poi, patches):
                raise LikeflowError(f"{self.source}: unknown POI '{poi}' (not a parameter of "
                                    "the model)") from None
            what = (f"the patch {self.patch_source} does not apply to {self.source}"
                    if patches else f"{self.source}: no model can be built")
            raise LikeflowError(f"{what} ({_first_line(e)})") from None
        data = np.asarray(ws.data(model), dtype=np.float64)
        cfg = model.config
        names = list(cfg.par_names)
        bounds = np.asarray(cfg.suggested_bounds(), dtype=np.float64)
        init = np.asarray(cfg.suggested_init(), dtype=np.float64)
        fixed = np.asarray(cfg.suggested_fixed(), dtype=bool)
        self.poi = [cfg.poi_name] if cfg.poi_name else []
        if self.poi and fixed[cfg.poi_index]:
            raise LikeflowError(f"{self.source}: the POI '{self.poi[0]}' is fixed in the "
                                "measurement; a fixed POI has no profile or limit")
        if asimov:
            if not self.poi:
                raise LikeflowError(f"{self.source}: Asimov data need a POI")
            data = np.asarray(pyhf.infer.calculators.generate_asimov_data(
                0.0, data, model, init.tolist(), bounds.tolist(), fixed.tolist()),
                dtype=np.float64)
        # Parameters fixed in the measurement (a luminosity, a normalisation) are held at their
        # value, as pyhf's fits hold them, and are not parameters of the target: the sampled
        # and fitted vector holds the free ones, embedded into pyhf's full vector by
        # ``x @ self._embed + self._offset`` (0/1 entries: exact in float64).
        self._free = np.flatnonzero(~fixed)
        self._fixed_mask = fixed
        self._embed = np.zeros((len(self._free), len(names)))
        self._embed[np.arange(len(self._free)), self._free] = 1.0
        self._offset = np.where(fixed, init, 0.0)
        self.fixed_parameters = {n: float(v) for n, v, f in zip(names, init, fixed) if f}
        self.names = [names[j] for j in self._free]
        self.bounds = bounds[self._free]
        self.init = init[self._free]
        self._poi_full = cfg.poi_index if self.poi else None
        self._ws = ws
        self.model = model
        self.data = data
        self.asimov = bool(asimov)
        self._traced = {}
        self._best_fits: dict = {}

    def describe(self) -> dict:
        return {"target": self.name, "workspace": self.source, "patch": self.patch_source,
                "parameters": len(self.names), "poi": self.poi,
                "data": "asimov (background-only, mu=0)" if self.asimov else "observed",
                "prior": "flat inside pyhf's suggested bounds",
                **({"fixed_parameters": self.fixed_parameters} if self.fixed_parameters
                   else {})}

    # --- TensorFlow ---------------------------------------------------------------------------
    def _compiled(self, batch: int, grad: bool):
        """pyhf's logpdf (and its gradient) for ``batch`` points, one XLA call, traced once."""
        from ...tfsetup import tf

        key = (batch, grad)
        if key in self._traced:
            return self._traced[key]
        with tf.init_scope():  # eager: the function outlives the graph being traced now
            model = self._batched_model(batch)
            data = tf.constant(self.data)
            embed, offset = tf.constant(self._embed), tf.constant(self._offset)
            full = (lambda x: x) if not self.fixed_parameters else (
                lambda x: tf.matmul(x, embed) + offset)

            @tf.autograph.experimental.do_not_convert  # pyhf's own Python, not autograph's
            def logpdf(x):
                x = full(x)
                return tf.reshape(model.logpdf(x if batch > 1 else x[0], data), [batch])

            @tf.function(jit_compile=True,
                         input_signature=[tf.TensorSpec([batch, self.dim], tf.float64)])
            def value_and_grad(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = logpdf(x)
                return y, tape.gradient(y, x)

            self._traced[key] = value_and_grad if grad else tf.function(
                logpdf, jit_compile=True,
                input_signature=[tf.TensorSpec([batch, self.dim], tf.float64)])
        return self._traced[key]

    def _batched_model(self, batch: int):
        """A fresh pyhf model for ``batch`` points: pyhf caches tensors of the first graph that
        uses a model, so every traced function needs its own. Built eagerly (the caller holds
        ``tf.init_scope``): inside a graph pyhf's conversion of ragged masks fails."""
        if batch == 1:
            return self._ws.model(**self._model_kw)
        return self._ws.model(batch_size=batch, **self._model_kw)

    def log_likelihood(self, x):
        """pyhf's logpdf at (n, D) float64 points; ``n`` must be known when traced."""
        from ...tfsetup import tf

        x = tf.convert_to_tensor(x, tf.float64)
        n = x.shape[0]
        if n is None:
            raise LikeflowError("pyhf targets need a fixed number of points per call")
        fn = self._compiled(int(n), grad=True)

        @tf.custom_gradient
        def logpdf(x):
            y, g = fn(x)
            return y, lambda up: up[:, None] * g

        y = logpdf(x)
        inside = tf.reduce_all((x >= self.bounds[:, 0]) & (x <= self.bounds[:, 1]), axis=-1)
        # pyhf gives NaN outside its domain: the flat prior is -inf there anyway
        return tf.where(inside & tf.math.is_finite(y), y, tf.constant(-np.inf, tf.float64))

    def log_prior(self, x):
        from ...tfsetup import tf

        x = tf.convert_to_tensor(x, tf.float64)
        inside = tf.reduce_all((x >= self.bounds[:, 0]) & (x <= self.bounds[:, 1]), axis=-1)
        return tf.where(inside, tf.zeros(tf.shape(x)[:-1], tf.float64),
                        tf.constant(-np.inf, tf.float64))

    # --- numpy ------------------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, batch: int = 1024) -> dict[str, np.ndarray]:
        """pyhf's logpdf where the flat prior allows (inside the bounds), -inf elsewhere.

        Evaluated in fixed-size compiled batches (the last one padded)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        inside = np.all((x >= self.bounds[:, 0]) & (x <= self.bounds[:, 1]), axis=1)
        lp = np.where(inside, 0.0, -np.inf)
        ll = np.full(len(x), -np.inf)
        rows = np.flatnonzero(inside)
        size = int(min(batch, max(1, len(rows))))
        fn = self._compiled(size, grad=False) if len(rows) else None
        for i in range(0, len(rows), size):
            r = rows[i:i + size]
            part = x[r]
            if len(r) < size:
                part = np.concatenate([part, np.repeat(part[-1:], size - len(r), axis=0)])
            ll[r] = fn(part).numpy()[:len(r)]
        ll[~np.isfinite(ll)] = -np.inf
        return {"log_prob": ll + lp, "log_likelihood": ll, "log_prior": lp}

    def log_prob_numpy(self, x: np.ndarray) -> np.ndarray:
        return self.evaluate(x)["log_prob"]

    # --- pyhf's own answers -------------------------------------------------------------------
    def full(self, x: np.ndarray) -> np.ndarray:
        """pyhf's full parameter vector(s) from the target's (free) ones: the parameters fixed
        in the measurement inserted at their values."""
        return np.asarray(x, dtype=np.float64) @ self._embed + self._offset

    def _fit(self, init: np.ndarray, poi_value: float | None = None):
        """pyhf's own fit from the free ``init`` (the POI held at ``poi_value`` if given):
        (free parameters, log density)."""
        import pyhf

        full = self.full(init)
        args = (self.data, self.model)
        kw = dict(init_pars=full.tolist(), par_bounds=self._full_bounds().tolist(),
                  fixed_params=self._fixed_mask.tolist(), return_fitted_val=True)
        if poi_value is None:
            x, twice_nll = pyhf.infer.mle.fit(*args, **kw)
        else:
            x, twice_nll = pyhf.infer.mle.fixed_poi_fit(float(poi_value), *args, **kw)
        return np.asarray(x, dtype=np.float64)[self._free], -0.5 * float(twice_nll)

    def _full_bounds(self) -> np.ndarray:
        return np.asarray(self.model.config.suggested_bounds(), dtype=np.float64)

    def best_fit(self, start: np.ndarray | None = None, *, checks: int = 4) -> np.ndarray:
        """pyhf's own maximum-likelihood fit (scipy's optimiser, gradients from TF), checked
        against fits with the POI held at ``checks`` values around it.

        pyhf's global fit can stop at its starting point (seen on workspaces that fix
        parameters in their measurement); a fixed-POI fit that ends higher restarts it from
        there, so the best fit is never below a point of the profile it computed.

        Remembered per (start, checks), a copy returned: the data never change, and every
        scan, band and candidate set of the exact likelihood starts around it (a partner's
        refinement asked for it five times, five or more pyhf fits each)."""
        key = (None if start is None else tuple(np.asarray(start, np.float64).tolist()), checks)
        if key not in self._best_fits:
            self._best_fits[key] = self._checked_best_fit(start, checks)
        return self._best_fits[key].copy()

    def _checked_best_fit(self, start: np.ndarray | None, checks: int) -> np.ndarray:
        x, top = self._fit(self.init if start is None else np.asarray(start, np.float64))
        if not self.poi or checks < 1:
            return x
        i = self.names.index(self.poi[0])
        lo, hi = self.bounds[i]
        width = 0.1 * (hi - lo) if np.isfinite(hi - lo) else 1.0
        for value in np.clip(x[i] + width * np.linspace(-1, 1, checks), lo, hi):
            y, val = self._fit(x, poi_value=value)
            if val > top + 1e-6:
                x, top = self._fit(y)
                if val > top + 1e-6:  # the free fit from there fell back: keep the point
                    x, top = y, val
        return x

    def conditional_mode(self, poi: int, value: float, start: np.ndarray) -> np.ndarray:
        """pyhf's own fit with the POI held at ``value`` (the profile's point)."""
        if self._poi_full is None or self._free[poi] != self._poi_full:
            raise LikeflowError(f"{self.source}: pyhf profiles its model's POI "
                                f"({self.poi[0] if self.poi else 'none'}), not "
                                f"{self.names[poi]}")
        init = np.array(start, dtype=np.float64)
        init[poi] = value
        return self._fit(init, poi_value=value)[0]

    def initial_points(self, n: int, seed: int = 0) -> np.ndarray:
        """Around pyhf's best fit, spread by a tenth of the bounds' width (capped at 0.1)."""
        rng = np.random.default_rng(seed)
        center = self.best_fit()
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        width = np.minimum(0.1, 0.05 * (hi - lo))
        x = center + width * rng.normal(size=(n, self.dim))
        return np.clip(x, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))


def _is_unknown_poi(ws, poi: str, patches) -> bool:
    try:
        kw = dict(patches=patches) if patches else {}
        return poi not in ws.model(**kw).config.par_names
    except Exception:  # the patch itself is bad: not a POI problem
        return False


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _load_json(obj, what: str):
    if isinstance(obj, (dict, list)):
        return obj
    try:
        with open(obj) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise LikeflowError(f"{obj}: cannot read the pyhf {what} ({_first_line(e)})") from None
