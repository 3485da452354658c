"""Flow architectures as one plain, JSON-serialisable :class:`FlowConfig` (no TensorFlow here;
the bijectors are built from it in :mod:`likeflow.flows.tf_flow`).

A flow is a conditioner (autoregressive: a MADE; coupling: an MLP on half the dimensions) and a
transformer (affine or spline); the four names are the four combinations. Each is a chain ``base N(0, I) -> layer -> permutation -> ... -> layer -> [whitening] -> [marginal spline] -> preprocessing``:

- ``maf``: masked autoregressive flow; MADE conditioner, affine transform, soft-clamped log scale.
- ``realnvp``: affine coupling layers; MLP conditioner, soft-clamped log scale.
- ``ansf``: autoregressive neural spline flow; MADE outputs 3K-1 spline parameters per dimension
  (K bin widths, K bin heights, K-1 interior knot slopes) of a rational-quadratic spline on
  [-B, B] with identity tails.
- ``cnsf``: the same spline in coupling layers.

The whitening (``whiten``, new fits) is the lower-triangular Cholesky factor ``L`` of the training
data's correlation in the flow's standardised coordinates (``u = L v``), a fixed matrix stored with
the weights. The layers start close to the identity, so a new flow is the best Gaussian of its
samples and training learns only the departures from it: a flow is never worse than that
Gaussian, and a Gaussian-like density (a mixture's cluster, a likelihood near its maximum)
needs no epochs to learn its correlations.

The last layer of every flow, the bound map (:class:`likeflow.flows.plan.BoundPlan`, evaluated
by every backend), maps the flow's standardised, unbounded space to the physical parameters:
``x = lo + (hi - lo) * Phi(m + s * u)`` (the normal CDF: ``bound_map="probit"``, the default of
new fits) for a parameter bounded on both sides,
``lo + softplus(.)`` / ``hi - softplus(.)`` for one bound, ``m + s * u`` for none. The probit
map sends a density that is flat up to the bounds to an exact standard normal (the sigmoid of
files written before it, ``bound_map="sigmoid"``, to a logistic with exponential tails, which
flows model poorly). A two-sided parameter whose data stay away from both bounds (a nuisance
parameter ~N(0, 1) with bounds +-5) uses a soft clip instead (``softclip``, a scale per
parameter): ``x = lo + c softplus((v - lo)/c) - c softplus((v - hi)/c)``, the identity in the
bulk and bending only within ~c of a bound. Any map that curves inside the data turns a
Gaussian into a narrow core with wide tails in the flow's coordinates, which flows fit badly.
Its Jacobian is part of ``log_prob``, so the density is in the coordinates of the sample file
and no mass lies outside the bounds. The rules that choose the maps and the reflections are in
:mod:`likeflow.flows.bounds`.

Densities piled up at a bound (a signal strength whose best fit is 0): such a map sends the
bound to infinity, where a flow's Gaussian-like tails force the density at the bound to 0 or to
infinity (a wall, or a spike). For those parameters (``reflect``, chosen from the training data by
:func:`~likeflow.flows.bounds.bound_reflections`) the flow instead models the density mirrored
across the bound, on a
range that extends past it, and the surrogate's density is the exact fold
``p(x) = q(x) + q(2 b - x)``: finite and smooth at the bound, normalised on the physical range,
sampled by folding ``q``'s samples. With k reflected parameters ``log_prob`` costs 2^k flow
evaluations; at most :data:`MAX_REFLECTIONS` are reflected.

TF 2.21 / TFP 0.25 pitfalls handled here: the conditioners are tf_keras (Keras 2) layers held
in a ``tf.Module`` (Keras 3 layers would not be tracked and the flow would never train), and
:func:`expected_variable_count` states what the architecture implies so tests can assert it.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1000, 3))
    >>> cfg = FlowConfig.from_data(x, flow="maf", layers=2, hidden=(16, 16))
    >>> from likeflow.flows.tf_flow import build_flow
    >>> flow = build_flow(cfg)
    >>> flow.log_prob(x[:5].astype("float32")).shape
    TensorShape([5])
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import LikeflowError
from ..jsonutil import check_types
from .bounds import (BOUND_MAPS, MAX_REFLECTIONS, bound_maps, bound_reflections, bounds_from_json,
                     bounds_to_json, flow_bounds)
from .plan import UNBOUNDED_EDGE, BoundPlan, unbounded_coordinates

# A flow is two orthogonal choices: the conditioner (autoregressive: a MADE; coupling: an MLP on
# half the dimensions) and the transformer (affine: shift and soft-clamped log scale; spline: a
# rational-quadratic spline). The four names are the four combinations.
ARCHITECTURES = {
    "maf": ("autoregressive", "affine"),
    "realnvp": ("coupling", "affine"),
    "ansf": ("autoregressive", "spline"),
    "cnsf": ("coupling", "spline"),
}
FLOWS = tuple(ARCHITECTURES)
#: what each flow is for, in a few words (the CLI's help)
FLOW_HELP = {
    "maf": "masked autoregressive (fast density)",
    "realnvp": "affine coupling (fast sampling)",
    "ansf": "autoregressive neural spline (flexible)",
    "cnsf": "coupling neural spline (flexible, fast sampling)",
}
#: spline bins of each flow when none are given (the affine flows': their marginal spline's).
#: The coupling spline flow has 4: on the 95-dim toy (500,000 samples, three seeds) 4 bins
#: and 8 gave the same validation (PASS twice and one dimension flagged once, each; summary
#: metrics equal within noise) and 4 train 1.7x faster (docs/benchmarks.md, "Spline bins")
DEFAULT_BINS = {"maf": 8, "realnvp": 8, "ansf": 8, "cnsf": 4}
CONDITIONERS = ("autoregressive", "coupling")
TRANSFORMERS = ("affine", "spline")
PERMUTATIONS = ("reverse", "random", "rotate")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")

# Size limits of a flow (a config read from a file is checked against them before anything is
# allocated): far above any practical surrogate, far below what exhausts a machine.
MAX_DIM = 20_000
MAX_LAYERS = 100
MAX_HIDDEN_UNITS = 8192     # per hidden layer
MAX_HIDDEN_LAYERS = 16      # per conditioner
MAX_BINS = 512
MAX_WEIGHTS = 200_000_000   # trainable numbers in all
MAX_SEED = 2 ** 32 - 1      # the initialisers' seeds (seed * 1000 + ...) stay within int64




#: the conditioners' hidden units of a new flow (``hidden="auto"``, :func:`hidden_by_default`):
#: :data:`HIDDEN`, and :data:`WIDE_HIDDEN` from :data:`WIDE_ROWS` training rows on
HIDDEN = (64, 64)
WIDE_HIDDEN = (128, 128)
WIDE_ROWS = 2 ** 18
#: ``hidden="auto"`` in words (the CLI's help)
HIDDEN_HELP = (f"auto: {','.join(map(str, HIDDEN))}, and {','.join(map(str, WIDE_HIDDEN))} "
               f"from {WIDE_ROWS:,} training rows on")

#: ``whiten``'s words (the CLI's and a config file's) as booleans
WHITEN_WORDS = {"on": True, "off": False}
_TYPES = {"flow": "str", "layers": "int", "hidden": "ints", "bins": "int?",
          "spline_range": "float", "permutation": "str", "activation": "str",
          "log_scale_clamp": "float", "dtype": "str", "bound_map": "str"}


@dataclass(frozen=True, kw_only=True)
class FlowOptions:
    """What a user chooses about a new flow, each default written here once: ``likeflow.fit
    (flow_config=...)`` takes these options (or a dict of some of them), :meth:`FlowConfig.
    from_data` turns them and the training data into a :class:`FlowConfig` (the options plus
    what the data decide: bounds, standardisation, reflections, permutations), and the CLI's
    ``fit`` shows these defaults.

    Example:
        >>> FlowOptions(flow="ansf", layers=3).hidden
        'auto'
        >>> FlowOptions(hidden="128,128").hidden
        (128, 128)
        >>> FlowOptions.coerce({"hidden": [32], "whiten": "off"}).whiten
        False
        >>> FlowOptions(layers=0)
        Traceback (most recent call last):
        ...
        likeflow.errors.LikeflowError: flow config: layers and hidden units must be positive

    Attributes:
        flow: ``maf`` (default), ``realnvp``, ``ansf`` or ``cnsf``
            (:data:`likeflow.flows.config.FLOW_HELP`).
        layers: flow layers.
        hidden: hidden units per layer of each conditioner network, or ``"auto"``
            (:func:`~likeflow.flows.config.hidden_by_default` of the training rows).
        bins: spline bins (None: :data:`~likeflow.flows.config.DEFAULT_BINS` of the flow).
        spline_range: B, the splines act on [-B, B] (standardised units).
        permutation: ``reverse``, ``random`` or ``rotate``, between layers.
        activation: of the conditioners' hidden layers.
        log_scale_clamp: the affine flows' log scale is soft-clamped to (-c, c).
        dtype: ``float32`` or ``float64``.
        reflect: ``"auto"`` (parameters piled up at a bound are mirrored across it, see
            :func:`~likeflow.flows.bounds.bound_reflections`), ``"none"``, or explicit
            ``[dimension, bound]`` pairs.
        bound_map: ``probit`` (new fits) or ``sigmoid``: the map of two-sided bounds.
        marginal_spline: a per-parameter spline next to the data (None: for the affine flows).
        whiten: start as the data's best Gaussian: True, False or ``"auto"``
            (:func:`~likeflow.flows.config.whiten_by_default`); ``"on"``/``"off"`` are read
            as True/False.
    """

    flow: str = "maf"
    layers: int = 5
    hidden: tuple[int, ...] | str = "auto"
    bins: int | None = None
    spline_range: float = 5.0
    permutation: str = "reverse"
    activation: str = "relu"
    log_scale_clamp: float = 3.0
    dtype: str = "float32"
    reflect: str | tuple = "auto"
    bound_map: str = "probit"
    marginal_spline: bool | None = None
    whiten: bool | str = "auto"

    def __post_init__(self) -> None:
        auto = self.hidden == "auto"
        if isinstance(self.hidden, str) and not auto:   # "64,64" (a config file may say so)
            units = [u.strip() for u in self.hidden.replace("x", ",").split(",")]
            if not all(u.isdigit() for u in units):
                raise LikeflowError(f"flow config: 'hidden' must be a list of integers (or "
                                    f"\"64,64\"), not {self.hidden!r:.40}")
            object.__setattr__(self, "hidden", [int(u) for u in units])
        check_types(self, {k: v for k, v in _TYPES.items() if not (auto and k == "hidden")},
                    "flow config")
        if not auto:
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        whiten = WHITEN_WORDS.get(self.whiten, self.whiten) if isinstance(self.whiten, str) \
            else self.whiten
        if whiten not in (True, False, "auto"):
            raise LikeflowError(f"flow config: whiten must be true, false, 'auto', 'on' or "
                                f"'off', not {self.whiten!r:.40}")
        object.__setattr__(self, "whiten", whiten)
        if self.marginal_spline not in (None, True, False):
            raise LikeflowError(f"flow config: marginal_spline must be true, false or null, "
                                f"not {self.marginal_spline!r:.40}")
        if isinstance(self.reflect, str):
            if self.reflect not in ("auto", "none"):
                raise LikeflowError(f"flow config: reflect must be 'auto', 'none' or a list of "
                                    f"[dimension, bound] pairs, not '{self.reflect}'")
        else:
            object.__setattr__(self, "reflect", tuple(tuple(p) for p in self.reflect))
        # the architecture's own rules (names, ranges, sizes), written once in FlowConfig
        FlowConfig(dim=2, **self.architecture(), bound_map=self.bound_map)

    def architecture(self, n_rows: float = 0) -> dict:
        """The options that are :class:`~likeflow.flows.config.FlowConfig` fields as they
        are (the others, ``reflect``, ``marginal_spline`` and ``whiten``, are decided with
        the data), ``hidden="auto"`` as :func:`hidden_by_default` of ``n_rows`` training
        rows."""
        arch = {k: getattr(self, k) for k in _TYPES if k != "bound_map"}
        if arch["hidden"] == "auto":
            arch["hidden"] = hidden_by_default(n_rows)
        return arch

    def replace(self, **changes) -> "FlowOptions":
        return dataclasses.replace(self, **changes)

    def given(self) -> dict:
        """The options that differ from their defaults."""
        default = FlowOptions()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    @classmethod
    def coerce(cls, options: "FlowOptions | dict | None") -> "FlowOptions":
        """``options`` as :class:`FlowOptions`: a dict names some of them (an unknown key is
        an error), None is the defaults."""
        if options is None:
            return cls()
        if isinstance(options, FlowOptions):
            return options
        if not isinstance(options, dict):
            raise LikeflowError(f"flow config: give FlowOptions or a dict, not "
                                f"{type(options).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if "seed" in unknown:
            raise LikeflowError("give the seed as fit(seed=...), not in flow_config: one seed "
                                "seeds everything")
        if unknown:
            raise LikeflowError(f"flow config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in options.items() if v is not None or k in
                      ("bins", "marginal_spline")})


@dataclass
class FlowConfig:
    """Everything needed to rebuild a flow: architecture, hyperparameters, preprocessing constants.

    Build one with :meth:`FlowConfig.from_data`, which computes the preprocessing constants from
    training data; the config is plain JSON (:meth:`to_json`) and is what a surrogate file stores.

    Attributes:
        flow: ``maf`` | ``realnvp`` | ``ansf`` | ``cnsf``.
        dim: number of parameters D.
        layers: number of flow layers (transforms; permutations come between them).
        hidden: hidden units per layer of each conditioner network.
        bins: K, spline bins (``ansf``, ``cnsf``, and the affine flows' marginal spline);
            None: :data:`DEFAULT_BINS` of the flow.
        spline_range: B, the spline acts on [-B, B] and is the identity outside.
        permutation: ``reverse``, ``random`` (seeded) or ``rotate`` (shift by one).
        activation: of the conditioners' hidden layers.
        log_scale_clamp: affine flows soft-clamp their log scale to (-c, c) with c*tanh(./c).
        dtype: ``float32`` (default) or ``float64``.
        seed: seeds the weights' initialisation and the random permutations.
        names, poi, bounds: of the parameters; bounds as [lo, hi] with None for no bound.
        shift, scale: per-dimension standardisation after the bound maps.
        permutations: the explicit permutation after each layer but the last (derived from
            ``permutation`` and ``seed``; stored so a file never depends on a RNG's stream).
        reflect: ``[dimension, bound]`` pairs: the flow models those parameters mirrored
            across that bound and ``log_prob`` folds it back (see the module docstring).
        bound_map: ``probit`` (new fits) or ``sigmoid``: the map of two-sided bounds.
        softclip: per parameter, the scale c of the soft clip of its two bounds, or 0 for
            ``bound_map`` (empty: 0 everywhere); chosen by :func:`bound_maps`.
        marginal_spline: an elementwise rational-quadratic spline (K bins on [-B, B], its own
            parameters, no conditioner) as the layer next to the data: each parameter's
            marginal shape (skew), which affine layers fit poorly. New affine fits have it.
        whiten: a fixed linear map ``u = L v`` between the layers and the marginal spline,
            ``L`` the Cholesky factor of the training data's correlation (:func:`whitening`),
            stored as the weight ``whiten``: the flow starts as the data's best Gaussian. New
            fits have it.
    """

    dim: int
    # the architecture's defaults are the options' (written once, in FlowOptions)
    flow: str = FlowOptions.flow
    layers: int = FlowOptions.layers
    hidden: tuple[int, ...] = HIDDEN      # a new flow's: FlowOptions.hidden ("auto")
    bins: int | None = FlowOptions.bins
    spline_range: float = FlowOptions.spline_range
    permutation: str = FlowOptions.permutation
    activation: str = FlowOptions.activation
    log_scale_clamp: float = FlowOptions.log_scale_clamp
    dtype: str = FlowOptions.dtype
    seed: int = 0
    names: list[str] = field(default_factory=list)
    poi: list[str] = field(default_factory=list)
    bounds: list[list[float | None]] = field(default_factory=list)
    shift: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    permutations: list[list[int]] = field(default_factory=list)
    reflect: list[list[float]] = field(default_factory=list)
    # "sigmoid" is what files written before the probit map hold (they have no such key)
    bound_map: str = "sigmoid"
    softclip: list[float] = field(default_factory=list)
    # False is what files written before the marginal spline hold (they have no such key)
    marginal_spline: bool = False
    # False is what files written before the whitening hold (they have no such key)
    whiten: bool = False

    def __post_init__(self) -> None:
        if self.bins is None:
            self.bins = DEFAULT_BINS.get(self.flow, DEFAULT_BINS["maf"])
        self._check_types_and_sizes()
        self.hidden = tuple(int(h) for h in self.hidden)
        d = self.dim
        if not self.names:
            self.names = [f"x{i}" for i in range(d)]
        if not self.bounds:
            self.bounds = [[None, None]] * d
        if not self.shift:
            self.shift = [0.0] * d
        if not self.softclip:
            self.softclip = [0.0] * d
        if not self.scale:
            self.scale = [1.0] * d
        if not self.permutations:
            self.permutations = make_permutations(self.permutation, d, self.layers, self.seed)
        self.validate()

    def _check_types_and_sizes(self) -> None:
        """Types and size limits first: a config from a file may be hostile, and the
        permutations and the flow are allocated from these numbers."""
        check_types(self, {"dim": "int", "flow": "str", "layers": "int", "hidden": "ints",
                           "bins": "int", "spline_range": "float", "permutation": "str",
                           "activation": "str", "log_scale_clamp": "float", "dtype": "str",
                           "seed": "int", "names": "strs", "poi": "strs", "shift": "floats",
                           "scale": "floats", "softclip": "floats", "bound_map": "str",
                           "marginal_spline": "bool", "whiten": "bool"}, "flow config")
        for key in ("bounds", "permutations", "reflect"):
            v = getattr(self, key)
            if not isinstance(v, list) or not all(isinstance(x, (list, tuple)) for x in v):
                raise LikeflowError(f"flow config: '{key}' must be a list of lists")
        for pair in self.bounds:
            if len(pair) != 2 or not all(b is None or _is_number(b) for b in pair):
                raise LikeflowError(f"flow config: bounds entry {pair!r:.60} is not [lo, hi] "
                                    "(numbers, or null for none)")
        # JSON's 2.0 passes a schema's "integer"; TFP's permutations and indexing do not
        if not all(type(i) is int for p in self.permutations for i in p):
            raise LikeflowError("flow config: 'permutations' must hold integers")
        if not 0 <= self.seed <= MAX_SEED:
            raise LikeflowError(f"flow config: seed {self.seed:.4g} is outside [0, {MAX_SEED}]")
        limits = (("dim", self.dim, MAX_DIM), ("layers", self.layers, MAX_LAYERS),
                  ("bins", self.bins, MAX_BINS),
                  ("hidden layers", len(self.hidden), MAX_HIDDEN_LAYERS),
                  ("hidden units", max(self.hidden, default=0), MAX_HIDDEN_UNITS))
        for what, value, top in limits:
            if value > top:
                raise LikeflowError(f"flow config: {what} {value} is above likeflow's limit "
                                    f"{top}")
        if self.dim >= 1 and self.layers >= 1 and self.hidden and min(self.hidden) >= 1 \
                and self.bins >= 2 and self.flow in FLOWS:
            n = sum(int(np.prod(shape)) for shape in expected_weight_shapes(self))
            if n > MAX_WEIGHTS:
                raise LikeflowError(f"flow config: {n} trainable numbers, above likeflow's "
                                    f"limit {MAX_WEIGHTS}")

    def validate(self) -> None:
        """Raise :class:`LikeflowError` for a config no flow can be built from."""
        def bad(msg):
            raise LikeflowError(f"flow config: {msg}")
        if self.flow not in FLOWS:
            bad(f"unknown flow '{self.flow}' (choose from {', '.join(FLOWS)})")
        if self.permutation not in PERMUTATIONS:
            bad(f"unknown permutation '{self.permutation}' ({', '.join(PERMUTATIONS)})")
        if self.activation not in ACTIVATIONS:
            bad(f"unknown activation '{self.activation}' ({', '.join(ACTIVATIONS)})")
        if self.dtype not in ("float32", "float64"):
            bad(f"dtype must be float32 or float64, not '{self.dtype}'")
        if self.dim < 1:
            bad("dim must be at least 1")
        if self.flow in FLOWS and self.conditioner == "coupling" and self.dim < 2:
            bad(f"a coupling flow ({self.flow}) needs at least 2 dimensions; use maf or ansf")
        if self.layers < 1 or not self.hidden or min(self.hidden) < 1:
            bad("layers and hidden units must be positive")
        if self.bins < 2 or not 0 < self.spline_range <= 1e3:
            bad("bins must be >= 2 and spline_range in (0, 1000]")
        if not 0 < self.log_scale_clamp <= 50:
            bad("log_scale_clamp must be in (0, 50]")
        if any(abs(v) > 1e30 for v in self.shift) or any(not 1e-30 < v < 1e30
                                                           for v in self.scale):
            bad("shift and scale must lie within +-1e30 (scale above 1e-30)")
        for key in ("names", "bounds", "shift", "scale", "softclip"):
            if len(getattr(self, key)) != self.dim:
                bad(f"'{key}' has {len(getattr(self, key))} entries for dim {self.dim}")
        for name, (lo, hi) in zip(self.names, self.bounds):
            if lo is not None and hi is not None and not lo < hi:
                bad(f"the bounds of '{name}' are [{lo:g}, {hi:g}]: the lower must be below the "
                    "upper")
        twice = sorted({n for n in self.names if self.names.count(n) > 1})
        if twice:
            bad(f"parameter {', '.join(repr(n) for n in twice)} named twice")
        unknown = [p for p in self.poi if p not in self.names]
        if unknown:
            bad(f"POI {', '.join(repr(p) for p in unknown)} is not a parameter")
        if len(self.permutations) != self.layers - 1 or any(
                sorted(p) != list(range(self.dim)) for p in self.permutations):
            bad("'permutations' must hold layers-1 permutations of range(dim)")
        if not all(s > 0 and math.isfinite(s) for s in self.scale):
            bad("every scale must be positive and finite")
        if not all(c >= 0 and math.isfinite(c) for c in self.softclip):
            bad("every softclip scale must be finite and >= 0")
        if self.bound_map not in BOUND_MAPS:
            bad(f"unknown bound_map '{self.bound_map}' ({', '.join(BOUND_MAPS)})")
        if len(self.reflect) > MAX_REFLECTIONS:
            bad(f"at most {MAX_REFLECTIONS} reflected parameters")
        seen = set()
        for item in self.reflect:
            if (not isinstance(item, (list, tuple)) or len(item) != 2
                    or not isinstance(item[0], int) or not 0 <= item[0] < self.dim
                    or item[1] is None or tuple(item) in seen
                    or float(item[1]) not in [b for b in self.bounds[item[0]] if b is not None]):
                bad(f"'reflect' entry {item} is not [dimension, one of its finite bounds]")
            seen.add(tuple(item))

    @classmethod
    def from_data(cls, values: np.ndarray, options: FlowOptions | dict | None = None, *,
                  names: Sequence[str] | None = None, poi: Sequence[str] = (),
                  bounds: np.ndarray | None = None, weights: np.ndarray | None = None,
                  best_fit: np.ndarray | None = None, seed: int = 0,
                  **changes) -> "FlowConfig":
        """The config of a new flow of ``options`` (:class:`FlowOptions`, a dict of some of
        them, or None: the defaults; ``changes`` replace single options) whose preprocessing
        standardises ``values`` (the training data).

        ``bounds`` is (D, 2) with +-inf for none; ``best_fit`` (the target's exact mode, from
        a file's anchors) keeps ``reflect="auto"`` from reflecting a bound of a POI (one of
        ``poi``, found in ``names``) the best fit lies inside of; ``marginal_spline=None`` is
        True for the affine flows (maf, realnvp);
        ``whiten="auto"`` is :func:`whiten_by_default` of the rows (the matrix itself is
        :func:`whitening` of the same data, set when the flow is built for training).
        """
        opts = FlowOptions.coerce(options)
        if changes:
            opts = opts.replace(**changes)
        reflect, bound_map = opts.reflect, opts.bound_map
        marginal_spline, whiten = opts.marginal_spline, opts.whiten
        if marginal_spline is None:
            marginal_spline = ARCHITECTURES[opts.flow][1] == "affine"
        values = np.asarray(values, dtype=np.float64)
        d = values.shape[1]
        # the rows' effective number (weighted rows count as Kish's effective sample size)
        n_rows = len(values) if weights is None else float(np.sum(weights) ** 2
                                                           / np.sum(weights ** 2))
        if whiten == "auto":
            whiten = whiten_by_default(n_rows, d)
        b = np.tile([-np.inf, np.inf], (d, 1)) if bounds is None else np.asarray(bounds, float)
        if isinstance(reflect, str):
            poi_index = [list(names).index(p) for p in poi] if names is not None else []
            reflect = (bound_reflections(values, b, best_fit, poi=poi_index)
                       if reflect == "auto" else [])
        reflect = [[int(i), float(v)] for i, v in reflect]
        fb = flow_bounds(b, reflect)
        values, weights = _mirrored(values, weights, BoundPlan(fb, reflect=reflect, physical=b))
        softclip = bound_maps(values, fb) if bound_map == "probit" else np.zeros(d)
        u = unbounded_coordinates(values, fb, bound_map, softclip)
        if weights is None:
            mean, std = u.mean(axis=0), u.std(axis=0)
        else:
            mean = np.average(u, axis=0, weights=weights)
            std = np.sqrt(np.average((u - mean) ** 2, axis=0, weights=weights))
        std = np.where(std > 0, std, 1.0)
        return cls(dim=d, names=list(names) if names is not None else [],
                   poi=list(poi), bounds=bounds_to_json(b),
                   shift=[float(m) for m in mean], scale=[float(s) for s in std],
                   reflect=reflect, bound_map=bound_map,
                   softclip=[float(c) for c in softclip],
                   marginal_spline=bool(marginal_spline), whiten=bool(whiten), seed=seed,
                   **opts.architecture(n_rows))

    @property
    def conditioner(self) -> str:
        """``autoregressive`` (maf, ansf) or ``coupling`` (realnvp, cnsf)."""
        return ARCHITECTURES[self.flow][0]

    @property
    def transformer(self) -> str:
        """``affine`` (maf, realnvp) or ``spline`` (ansf, cnsf)."""
        return ARCHITECTURES[self.flow][1]

    @property
    def params_per_dimension(self) -> int:
        """Conditioner outputs per transformed dimension: shift and log scale, or the spline's
        K widths, K heights and K - 1 interior slopes."""
        return 2 if self.transformer == "affine" else 3 * self.bins - 1

    def bounds_array(self) -> np.ndarray:
        """(D, 2) bounds with +-inf for none."""
        return bounds_from_json(self.bounds)

    def flow_bounds_array(self) -> np.ndarray:
        """(D, 2) bounds of the flow's own range: the physical bounds, extended past each
        reflected bound by the width of the range (to infinity for a one-sided one)."""
        return flow_bounds(self.bounds_array(), self.reflect)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        if not self.whiten:  # written only where it is used: older readers read the rest
            del d["whiten"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "FlowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise LikeflowError(f"flow config: unknown keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "FlowConfig":
        return cls.from_dict(json.loads(text))


def _mirrored(values: np.ndarray, weights, plan: BoundPlan):
    """The data as the flow sees them: with their mirror images across the reflected bounds
    that carry density (:meth:`BoundPlan.mirror_images`), in the images' order."""
    if not plan.reflections:
        return values, weights
    images, ok = plan.mirror_images(values)
    values = np.concatenate([img[keep] for img, keep in zip(images, ok)])
    if weights is not None:
        weights = np.concatenate([weights[keep] for keep in ok])
    return values, weights


#: the most noise (nats per point) a fixed whitening estimated from the training rows may carry
WHITEN_NOISE = 0.1


def hidden_by_default(n_rows: float) -> tuple[int, ...]:
    """The hidden units of a new flow's conditioners (``hidden="auto"``): :data:`HIDDEN`
    (64, 64), and :data:`WIDE_HIDDEN` (128, 128) from :data:`WIDE_ROWS` (262,144) training
    rows on, so that capacity follows the samples.

    Measured (``docs/benchmarks.md``, session 29) on the 95-dim toy's 500,000 samples (400,000
    training rows), two seeds: (128, 128) against (64, 64) profile max |dq| where q < 4 0.129
    against 0.173 and 0.071 against 0.142, q~ limit +0.8% against +1.3% and +0.9% against
    +1.2%, credible limit +0.01% against +0.56% and 0.00% against -0.13%, test log-likelihood
    0.003 nats higher, the drift along mu 0.17 -> 0.03 nats (seed 0: WARN -> PASS), the fit 5%
    longer; 8 layers of (64, 64) instead did not help (+1.35%, WARN). On 10,000 samples (32, 32)
    was worse than (64, 64) (q~ limit +10.6 +- 3.8% against -0.5 +- 3.2% over five files).
    At 160,000 rows (the toy's first 200,000 samples, as many rows as the ATLAS files) the
    wider network was worse (profile 0.263 against 0.148, q~ limit +1.9% against -0.6%): the
    ATLAS surrogates keep (64, 64), with which they were measured.

    Example:
        >>> hidden_by_default(160_000), hidden_by_default(400_000)
        ((64, 64), (128, 128))
    """
    return WIDE_HIDDEN if n_rows >= WIDE_ROWS else HIDDEN


def whiten_by_default(n_rows: float, dim: int) -> bool:
    """Whether a new flow is whitened (``whiten="auto"``): where the noise of the estimated
    correlation, ``D (D + 1) / (4 n)`` nats per point for n rows in D dimensions, is at most
    :data:`WHITEN_NOISE` (n at least about 2.5 D^2).

    Measured (``docs/benchmarks.md``, session 20): a 100-dim mixture of three correlated
    Gaussians (53,000 rows per cluster, noise 0.05) goes from WARN to PASS in a third of the
    time, its test log-likelihood 0.32 -> 0.08 nats from the exact one; ATLAS RegionC
    1300_1295_60 (160,000 rows, 66 dimensions) from WARN to PASS, every limit within 2.6% of
    pyhf's; the README's 10,000 toy samples in 95 dimensions (noise 0.28) fit worse whitened
    (WARN on the latent check, test log-likelihood 0.1 nats lower), since the flow then
    overfits the departures within a few epochs.

    Example:
        >>> whiten_by_default(8000, 95), whiten_by_default(53000, 100)
        (False, True)
    """
    return dim * (dim + 1) / (4 * max(n_rows, 1.0)) <= WHITEN_NOISE


def whitening(values: np.ndarray, config: FlowConfig,
              weights: np.ndarray | None = None) -> np.ndarray:
    """The whitening matrix of a flow of ``config`` trained on ``values``: the lower-triangular
    Cholesky factor ``L`` of their correlation in the flow's standardised coordinates (after
    the mirror images and bound maps, as :meth:`FlowConfig.from_data` standardises them), so
    that ``u = L v`` with ``v ~ N(0, I)`` is the data's best Gaussian.

    The correlation is shrunk towards the identity by the Ledoit-Wolf intensity (Ledoit and
    Wolf, J. Multivar. Anal. 88 (2004) 365): the estimate of the matrix nearest the true one
    in expectation. A sample correlation of n rows in D dimensions carries noise of about
    D^2 / 4n nats (0.28 for 10,000 rows in 95 dimensions), which a fixed matrix would impose
    on the flow: shrinkage removes most of it where the correlations are weak, and keeps
    strong ones. A parameter without spread has no correlation.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(20000, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
        >>> cfg = FlowConfig.from_data(x)
        >>> np.round(whitening(x, cfg), 2)
        array([[1. , 0. ],
               [0.8, 0.6]])
    """
    # the standardisation's own plan (float64, as FlowConfig.from_data computed it)
    plan = BoundPlan.of(config, dtype="float64")
    values, weights = _mirrored(np.asarray(values, dtype=np.float64), weights, plan)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = plan.inverse(plan.numpy, values, edge=UNBOUNDED_EDGE)
    n, d = u.shape
    w = np.full(n, 1.0 / n) if weights is None else weights / weights.sum()
    u = u - w @ u
    std = np.sqrt(w @ (u * u))
    u = u / np.where(std > 0, std, 1.0)     # unit spread: the covariance is the correlation
    corr = (u * w[:, None]).T @ u
    # a parameter without spread has no correlation. (Leaving the POIs out of the whitening,
    # to the layers, was tried on the 500k toy: the profile off by 0.30 against 0.15)
    corr[:, std == 0] = corr[std == 0, :] = 0
    corr[np.diag_indices(d)] = 1.0
    shrink = _shrinkage(u, w, corr)
    corr = (1 - shrink) * corr + shrink * np.eye(d)
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:  # rounding in a degenerate correlation: no whitening
        return np.eye(d)


def _shrinkage(u: np.ndarray, w: np.ndarray, corr: np.ndarray) -> float:
    """The Ledoit-Wolf intensity of shrinking ``corr`` (of the rows ``u``, weights ``w``
    summing to 1) towards the identity: the rows' spread around it over its distance from
    the identity, at most 1."""
    d = corr.shape[0]
    distance = np.sum((corr - np.eye(d)) ** 2)
    if distance == 0:
        return 0.0
    sq = np.sum(u * u, axis=1)
    # sum_k w_k^2 ||u_k u_k^T - corr||_F^2, without forming the D x D outer products
    spread = np.sum(w ** 2 * (sq ** 2 - 2 * np.sum((u @ corr) * u, axis=1)
                              + np.sum(corr ** 2)))
    return float(min(1.0, spread / distance))


def make_permutations(kind: str, dim: int, layers: int, seed: int) -> list[list[int]]:
    """The permutation applied after each of the first ``layers - 1`` layers.

    ``reverse`` flips the order (every dimension alternates between conditioning and being
    transformed), ``rotate`` shifts by one (in low dimension each dimension meets every
    position), ``random`` draws a seeded permutation per layer.
    """
    if kind == "reverse":
        return [list(range(dim - 1, -1, -1)) for _ in range(layers - 1)]
    if kind == "rotate":
        return [[(i + 1) % dim for i in range(dim)] for _ in range(layers - 1)]
    if kind == "random":
        rng = np.random.default_rng(seed)
        return [[int(i) for i in rng.permutation(dim)] for _ in range(layers - 1)]
    raise LikeflowError(f"flow config: unknown permutation '{kind}'")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def weight_roles(config: FlowConfig) -> list[str]:
    """What each weight array of a surrogate file is, in file order (the TensorFlow flow's
    variable order): ``marginal_spline``, then per layer its conditioner's dense layers
    (``layer3/dense0/kernel``; a MADE lists its output layer first, as tf.Module orders it),
    then ``whiten``, the fixed matrix (not a trainable variable:
    :attr:`likeflow.flows.tf_flow.Flow.stored_variables` lists it last)."""
    roles = ["marginal_spline"] if config.marginal_spline else []
    n = len(config.hidden) + 1
    order = ([n - 1, *range(n - 1)] if config.conditioner == "autoregressive"
             else list(range(n)))
    for layer in range(config.layers):
        for j in order:
            roles += [f"layer{layer}/dense{j}/kernel", f"layer{layer}/dense{j}/bias"]
    # not trained (TensorFlow's last variable, after the trainable ones)
    return roles + (["whiten"] if config.whiten else [])


def expected_weight_shapes(config: FlowConfig) -> list[tuple[int, ...]]:
    """The shapes of the flow's trainable variables in file order (:func:`weight_roles`),
    from the config alone (no TensorFlow, no allocation): a kernel and a bias per dense layer
    of each conditioner, and the marginal spline's parameters. A surrogate file's weights are
    checked against these before the flow is built."""
    d, p = config.dim, config.params_per_dimension
    if config.conditioner == "autoregressive":
        sizes = [d, *config.hidden, d * p]
    else:
        sizes = [d // 2, *config.hidden, (d - d // 2) * p]
    shapes = []
    for role in weight_roles(config):
        if role == "marginal_spline":
            shapes.append((d, 3 * config.bins - 1))
            continue
        if role == "whiten":
            shapes.append((d, d))
            continue
        j = int(role.split("/")[1][len("dense"):])
        shapes.append((sizes[j], sizes[j + 1]) if role.endswith("kernel") else (sizes[j + 1],))
    return shapes


def expected_variable_count(config: FlowConfig) -> int:
    """Stored variables the architecture implies (one per shape of
    :func:`expected_weight_shapes`: the trainable ones and the whitening)."""
    return len(expected_weight_shapes(config))
