"""Flow architectures, all TFP bijectors built from one plain, JSON-serialisable :class:`FlowConfig`.

Four flows, each a chain ``base N(0, I) -> layer -> permutation -> ... -> layer -> preprocessing``:

- ``maf``: masked autoregressive flow; MADE conditioner, affine transform, soft-clamped log scale.
- ``realnvp``: affine coupling layers; MLP conditioner, soft-clamped log scale.
- ``ansf``: autoregressive neural spline flow; MADE outputs 3K-1 spline parameters per dimension
  (K bin widths, K bin heights, K-1 interior knot slopes) of a rational-quadratic spline on
  [-B, B] with identity tails.
- ``cnsf``: the same spline in coupling layers.

The last bijector of the forward chain, :class:`Preprocess`, maps the flow's standardised,
unbounded space to the physical parameters: ``x = lo + (hi - lo) * Phi(m + s * u)`` (the normal
CDF: ``bound_map="probit"``, the default of new fits) for a parameter bounded on both sides,
``lo + softplus(.)`` / ``hi - softplus(.)`` for one bound, ``m + s * u`` for none. The probit
map sends a density that is flat up to the bounds to an exact standard normal (the sigmoid of
files written before it, ``bound_map="sigmoid"``, to a logistic with exponential tails, which
flows model poorly). A two-sided parameter whose data stay away from both bounds (a nuisance
parameter ~N(0, 1) with bounds +-5) uses a soft clip instead (``softclip``, a scale per
parameter): ``x = lo + c softplus((v - lo)/c) - c softplus((v - hi)/c)``, the identity in the
bulk and bending only within ~c of a bound. Any map that curves inside the data turns a
Gaussian into a narrow core with wide tails in the flow's coordinates, which flows fit badly. Its Jacobian is part of ``log_prob``, so the density is in the
coordinates of the sample file and no mass lies outside the bounds.

Densities piled up at a bound (a signal strength whose best fit is 0): such a map sends the
bound to infinity, where a flow's Gaussian-like tails force the density at the bound to 0 or to
infinity (a wall, or a spike). For those parameters (``reflect``, chosen from the training data by
:func:`bound_reflections`) the flow instead models the density mirrored across the bound, on a
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

from .errors import LikeflowError
from .jsonutil import check_types

FLOWS = ("maf", "realnvp", "ansf", "cnsf")
PERMUTATIONS = ("reverse", "random", "rotate")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")

BOUND_MAPS = ("probit", "sigmoid")
# log_prob evaluates the probit map no further than this many standard deviations from its
# centre: within Phi(-2) = 2.3% of the range from a bound the data reach (and that is not
# reflected), the density is held at its value there instead of being read from the flow's
# tail. Measured on a real ATLAS likelihood (RegionC, signal strength flat on [0, 10]): the
# flow's conditional densities narrow in its tail, and the profile rose by 1.4 (exact: 0.003)
# over the last 3.5% of the range with a hold at 3.5 sigma; with the hold at 2 sigma it is
# within 0.12 everywhere. Sampling and the latent maps use the exact map.
PROBIT_MAX = 2.0
# Training and the latent maps clip the probit map only this far out (a hold in training would
# pile the training points near a bound onto one point of the base space).
PROBIT_TRAIN_MAX = 7.0
# At most this many reflected parameters (log_prob evaluates the flow 2^k times).
MAX_REFLECTIONS = 3
# Reflect at a bound when the density there is at least this fraction of the marginal's peak.
REFLECT_MIN_RATIO = 0.1

# Size limits of a flow (a config read from a file is checked against them before anything is
# allocated): far above any practical surrogate, far below what exhausts a machine.
MAX_DIM = 20_000
MAX_LAYERS = 100
MAX_HIDDEN_UNITS = 8192     # per hidden layer
MAX_HIDDEN_LAYERS = 16      # per conditioner
MAX_BINS = 512
MAX_WEIGHTS = 200_000_000   # trainable numbers in all

# Minimum bin size and slope of the splines: keeps the spline invertible in float32.
_MIN_BIN = 1e-3
_MIN_SLOPE = 1e-3


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
        bins: K, spline bins (``ansf``, ``cnsf``).
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
    """

    dim: int
    flow: str = "maf"
    layers: int = 5
    hidden: tuple[int, ...] = (64, 64)
    bins: int = 8
    spline_range: float = 5.0
    permutation: str = "reverse"
    activation: str = "relu"
    log_scale_clamp: float = 3.0
    dtype: str = "float32"
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

    def __post_init__(self) -> None:
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
                           "marginal_spline": "bool"}, "flow config")
        for key in ("bounds", "permutations", "reflect"):
            v = getattr(self, key)
            if not isinstance(v, list) or not all(isinstance(x, (list, tuple)) for x in v):
                raise LikeflowError(f"flow config: '{key}' must be a list of lists")
        for pair in self.bounds:
            if len(pair) != 2 or not all(b is None or _is_number(b) for b in pair):
                raise LikeflowError(f"flow config: bounds entry {pair!r:.60} is not [lo, hi] "
                                    "(numbers, or null for none)")
        limits = (("dim", self.dim, MAX_DIM), ("layers", self.layers, MAX_LAYERS),
                  ("bins", self.bins, MAX_BINS),
                  ("hidden layers", len(self.hidden), MAX_HIDDEN_LAYERS),
                  ("hidden units", max(self.hidden, default=0), MAX_HIDDEN_UNITS))
        for what, value, top in limits:
            if value > top:
                raise LikeflowError(f"flow config: {what} {value} is above likeflow's limit "
                                    f"{top}")
        if self.dim >= 1 and self.layers >= 1 and self.hidden and min(self.hidden) >= 1 \
                and self.bins >= 2:
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
        if self.flow in ("realnvp", "cnsf") and self.dim < 2:
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
    def from_data(cls, values: np.ndarray, *, names: Sequence[str] | None = None,
                  poi: Sequence[str] = (), bounds: np.ndarray | None = None,
                  weights: np.ndarray | None = None, reflect="auto",
                  bound_map: str = "probit", marginal_spline: bool | None = None,
                  **hyper) -> "FlowConfig":
        """A config whose preprocessing standardises ``values`` (the training data).

        ``bounds`` is (D, 2) with +-inf for none; ``reflect`` is ``"auto"`` (from the data, see
        :func:`bound_reflections`), ``"none"``, or explicit ``[dimension, bound]`` pairs;
        ``marginal_spline`` defaults to True for the affine flows (maf, realnvp); ``hyper`` sets
        any other field (``flow``, ``layers``, ``hidden``, ...).
        """
        if marginal_spline is None:
            marginal_spline = hyper.get("flow", "maf") in ("maf", "realnvp")
        values = np.asarray(values, dtype=np.float64)
        d = values.shape[1]
        b = np.tile([-np.inf, np.inf], (d, 1)) if bounds is None else np.asarray(bounds, float)
        if isinstance(reflect, str):
            if reflect not in ("auto", "none"):
                raise LikeflowError(f"flow config: reflect must be 'auto', 'none' or a list of "
                                    f"[dimension, bound] pairs, not '{reflect}'")
            reflect = bound_reflections(values, b) if reflect == "auto" else []
        reflect = [[int(i), float(v)] for i, v in reflect]
        # the flow sees the data mirrored across each reflected bound, on the extended range
        fb = flow_bounds(b, reflect)
        for i, point in reflect:
            mirrored = values.copy()
            mirrored[:, i] = 2 * point - mirrored[:, i]
            # a second reflection of a mirror image lies beyond the extended range: dropped
            keep = (mirrored[:, i] >= fb[i, 0]) & (mirrored[:, i] <= fb[i, 1])
            values = np.concatenate([values, mirrored[keep]])
            if weights is not None:
                weights = np.concatenate([weights, weights[keep]])
        softclip = bound_maps(values, fb) if bound_map == "probit" else np.zeros(d)
        u = unbounded_coordinates(values, fb, bound_map, softclip)
        if weights is None:
            mean, std = u.mean(axis=0), u.std(axis=0)
        else:
            mean = np.average(u, axis=0, weights=weights)
            std = np.sqrt(np.average((u - mean) ** 2, axis=0, weights=weights))
        std = np.where(std > 0, std, 1.0)
        return cls(dim=d, names=list(names) if names is not None else [],
                   poi=list(poi), bounds=[[_none_if_inf(lo), _none_if_inf(hi)] for lo, hi in b],
                   shift=[float(m) for m in mean], scale=[float(s) for s in std],
                   reflect=reflect, bound_map=bound_map,
                   softclip=[float(c) for c in softclip],
                   marginal_spline=bool(marginal_spline), **hyper)

    def bounds_array(self) -> np.ndarray:
        """(D, 2) bounds with +-inf for none."""
        return np.array([[-np.inf if lo is None else lo, np.inf if hi is None else hi]
                         for lo, hi in self.bounds], dtype=np.float64)

    def flow_bounds_array(self) -> np.ndarray:
        """(D, 2) bounds of the flow's own range: the physical bounds, extended past each
        reflected bound by the width of the range (to infinity for a one-sided one)."""
        return flow_bounds(self.bounds_array(), self.reflect)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
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


def flow_bounds(bounds: np.ndarray, reflect) -> np.ndarray:
    """The bounds of the flow's range: ``bounds`` with each reflected bound pushed out by the
    range's width (mirror of the other bound), or removed when the other bound is infinite."""
    out = np.array(bounds, dtype=np.float64)
    for i, point in reflect:
        lo, hi = bounds[i]
        if point == lo:
            out[i, 0] = 2 * lo - hi if np.isfinite(hi) else -np.inf
        else:
            out[i, 1] = 2 * hi - lo if np.isfinite(lo) else np.inf
    return out


def bound_reflections(values: np.ndarray, bounds: np.ndarray) -> list[list[float]]:
    """``[dimension, bound]`` pairs where the data pile up at a bound.

    A bound qualifies when the density of the data within a tenth of a standard deviation of it
    is at least :data:`REFLECT_MIN_RATIO` of the marginal's peak density (histogram of the same
    bin width). Of a parameter, the bound with the larger ratio (reflecting both bounds of a
    posterior flat over its range only moves the problem to the edges of the extended range);
    the other one is a probit bound, held at :data:`PROBIT_MAX`. Of all, the
    :data:`MAX_REFLECTIONS` largest ratios.
    """
    values = np.asarray(values, dtype=np.float64)
    found = []
    for i in range(values.shape[1]):
        lo, hi = bounds[i]
        if not (np.isfinite(lo) or np.isfinite(hi)):
            continue
        ratios = _edge_ratios(values[:, i], lo, hi)
        if ratios is None:
            continue
        k = int(np.argmax(ratios))
        if ratios[k] >= REFLECT_MIN_RATIO:
            found.append((ratios[k], i, float((lo, hi)[k])))
    found.sort(reverse=True)
    return [[i, point] for _, i, point in sorted(found[:MAX_REFLECTIONS], key=lambda t: t[1:])]


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


def expected_weight_shapes(config: FlowConfig) -> list[tuple[int, ...]]:
    """The shapes of the flow's trainable variables, from the config alone (no TensorFlow, no
    allocation): a kernel and a bias per dense layer of each conditioner, and the marginal
    spline's parameters. A surrogate file's weights are checked against these before the flow
    is built. The order is not the flow's variable order (compare sorted)."""
    d, hidden = config.dim, list(config.hidden)
    n_params = 2 if config.flow in ("maf", "realnvp") else 3 * config.bins - 1
    if config.flow in ("maf", "ansf"):
        sizes = [d, *hidden, d * n_params]
    else:
        sizes = [d // 2, *hidden, (d - d // 2) * n_params]
    layer = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layer += [(a, b), (b,)]
    shapes = layer * config.layers
    if config.marginal_spline:
        shapes.append((d, 3 * config.bins - 1))
    return shapes


def expected_variable_count(config: FlowConfig) -> int:
    """Trainable variables the architecture implies (one per shape of
    :func:`expected_weight_shapes`)."""
    return len(expected_weight_shapes(config))


def bound_maps(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per parameter, the soft-clip scale for two-sided bounds the data stay away from (the
    density within a tenth of a standard deviation of either bound below 1% of the peak): half
    the data's standard deviation, so that the map bends only within about one standard
    deviation of a bound. 0 (probit) where the data reach a bound, and for parameters without
    two bounds."""
    out = np.zeros(values.shape[1])
    for i in range(values.shape[1]):
        lo, hi = bounds[i]
        if np.isfinite(lo) and np.isfinite(hi):
            ratios = _edge_ratios(values[:, i], lo, hi)
            if ratios is not None and max(ratios) < 0.01:
                out[i] = 0.5 * float(np.std(values[:, i]))
    return out


def _edge_ratios(x: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    """Density of ``x`` within a tenth of a standard deviation of each bound, over the peak
    density (histogram of the same bin width); None where it cannot be told."""
    sd = float(np.std(x))
    if sd == 0 or len(x) < 100:
        return None
    h = 0.1 * sd
    if np.isfinite(lo) and np.isfinite(hi):
        h = min(h, 0.05 * (hi - lo))
    edges = np.arange(x.min(), x.max() + h, h)
    if len(edges) < 3:
        return None
    peak = np.histogram(x, edges)[0].max() / (len(x) * h)
    at_lo = float(np.mean(x < lo + h)) / h / peak if np.isfinite(lo) else 0.0
    at_hi = float(np.mean(x > hi - h)) / h / peak if np.isfinite(hi) else 0.0
    return at_lo, at_hi


def unbounded_coordinates(values: np.ndarray, bounds: np.ndarray,
                          bound_map: str = "sigmoid", softclip=None) -> np.ndarray:
    """The bound maps of :class:`Preprocess`, inverted, in numpy (for the standardisation)."""
    from scipy import special

    lo, hi = bounds[:, 0], bounds[:, 1]
    v = np.array(values, dtype=np.float64)
    both = np.isfinite(lo) & np.isfinite(hi)
    lower = np.isfinite(lo) & ~np.isfinite(hi)
    upper = ~np.isfinite(lo) & np.isfinite(hi)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((v - lo) / (hi - lo), 1e-12, 1 - 1e-12)
        if bound_map == "probit":  # from the nearer bound, for precision
            t_hi = np.clip((hi - v) / (hi - lo), 1e-12, 1 - 1e-12)
            inner = np.where(t < 0.5, special.ndtri(t), -special.ndtri(t_hi))
        else:
            inner = np.log(t) - np.log1p(-t)
        v = np.where(both, inner, v)
        if softclip is not None and np.any(np.asarray(softclip) > 0):
            c = np.where(np.asarray(softclip) > 0, softclip, 1.0)
            soft = both & (np.asarray(softclip) > 0)
            a = np.clip((values - lo) / c, 1e-300, None)
            b = np.clip((values - hi) / c, None, -1e-300)
            # lo + c softplus^-1((x-lo)/c) - c log(1 - exp((x-hi)/c))
            inv = lo + c * (a + np.log(-np.expm1(-a))) - c * np.log(-np.expm1(b))
            v = np.where(soft, inv, v)
        d_lo = np.maximum(v - lo, tiny) if lower.any() else v
        v = np.where(lower, d_lo + np.log(-np.expm1(-d_lo)), v)
        d_hi = np.maximum(hi - values, tiny) if upper.any() else v
        v = np.where(upper, d_hi + np.log(-np.expm1(-d_hi)), v)
    return v


def _padded_schedule(final: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """For each step k < dim, the units with ``final == k`` as a (dim, width) index array padded
    with unit 0, and a 0/1 array marking the real entries (the padding contributes nothing)."""
    groups = [np.flatnonzero(final == k) for k in range(dim)]
    width = max(1, max(len(g) for g in groups))
    idx = np.zeros((dim, width), dtype=np.int32)
    ok = np.zeros((dim, width))
    for k, g in enumerate(groups):
        idx[k, :len(g)] = g
        ok[k, :len(g)] = 1.0
    return idx, ok


def _none_if_inf(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


# --- TensorFlow part -------------------------------------------------------------------------
# Imported lazily so that configs, metrics and sample files work without TensorFlow installed.

def _tf():
    try:
        import tensorflow as tf
        import tensorflow_probability as tfp
        import tf_keras
    except ImportError as e:  # pragma: no cover - depends on the install
        raise LikeflowError("flows need TensorFlow: pip install 'likeflow[tf]' "
                            f"({e})") from None
    return tf, tfp, tf_keras


def bound_bijector(bounds: np.ndarray, shift=None, scale=None, dtype: str = "float64", *,
                   bound_map: str = "sigmoid", softclip=None):
    """The one bound map of the package: unbounded, standardised ``u`` -> physical ``x``.

    ``x = map(shift + scale * u)`` with the probit or sigmoid / softplus maps of
    :class:`Preprocess` (``bounds`` (D, 2), +-inf for none). MCMC samples and inference
    optimises in ``u``, so no step ever leaves the bounds; the flows end with the same map.
    """
    tf, _, _ = _tf()
    bounds = np.asarray(bounds, dtype=np.float64)
    d = len(bounds)
    shift = np.zeros(d) if shift is None else np.asarray(shift, dtype=np.float64)
    scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
    softclip = np.zeros(d) if softclip is None else np.asarray(softclip, dtype=np.float64)
    return _flow_class().Preprocess(bounds, shift, scale, tf.as_dtype(dtype),
                                    probit=bound_map == "probit", softclip=softclip)


def release_trace_caches() -> None:
    """Empty TFP's bijector caches (one per bijector class, shared by all instances).

    In a traced function they hold the graph's tensors, and through them every graph ever
    traced and the variables it captured: about 7 MB per surrogate loaded and evaluated.
    Entries are only of use within one trace, so they are dropped after each."""
    _, tfp, _ = _tf()
    todo = [tfp.bijectors.Bijector]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        cache = cls.__dict__.get("_cache")
        if cache is not None:
            cache.clear()


def build_flow(config: FlowConfig):
    """The :class:`Flow` (a ``tf.Module``) that ``config`` describes, with its variables built."""
    flow = _flow_class()(config)
    # building runs many one-off eager ops on new variables; TensorFlow caches a kernel for
    # each (about 0.2 MB per MADE, never freed): a loop over hundreds of surrogates would grow
    # without bound. The cache is only a speed-up; what is used again is rebuilt
    from tensorflow.python.eager import context
    context.context().clear_kernel_cache()
    return flow


_FLOW_CLASS = None


def _flow_class():
    """Define the TF classes on first use (they subclass TF types)."""
    global _FLOW_CLASS  # noqa: PLW0603 - a cache of a class definition, not state
    if _FLOW_CLASS is not None:
        return _FLOW_CLASS
    tf, tfp, tf_keras = _tf()
    tfb, tfd = tfp.bijectors, tfp.distributions

    class Preprocess(tfb.Bijector):
        """Standardised unbounded space -> physical parameters, keeping all mass inside bounds."""

        def __init__(self, bounds, shift, scale, dtype, probit: bool = False, softclip=None,
                     probit_max: float = PROBIT_MAX):
            super().__init__(forward_min_event_ndims=1, validate_args=False, dtype=dtype,
                             name="preprocess")
            self._probit = bool(probit)
            self._phi_min = float(0.5 * math.erfc(probit_max / math.sqrt(2.0)))
            softclip = np.zeros(len(shift)) if softclip is None else np.asarray(softclip, float)
            b = np.asarray(bounds, dtype=np.float64)
            lo, hi = b[:, 0], b[:, 1]
            fin_lo, fin_hi = np.isfinite(lo), np.isfinite(hi)
            c = lambda a: tf.constant(a, dtype=dtype)  # noqa: E731
            self._both = tf.constant(fin_lo & fin_hi)
            self._lower = tf.constant(fin_lo & ~fin_hi)
            self._upper = tf.constant(~fin_lo & fin_hi)
            # finite stand-ins where a bound is absent, so that no branch of a tf.where sees inf
            lo_s, hi_s = np.where(fin_lo, lo, 0.0), np.where(fin_hi, hi, 1.0)
            width = np.where(fin_lo & fin_hi, hi_s - lo_s, 1.0)
            self._lo, self._hi, self._width = c(lo_s), c(hi_s), c(width)
            self._log_width = c(np.where(fin_lo & fin_hi, np.log(width), 0.0))
            self._shift = c(shift)
            self._scale = c(scale)
            self._log_scale_sum = c(np.sum(np.log(scale)))
            self._eps = c(np.finfo(dtype.as_numpy_dtype).eps)
            soft = (softclip > 0) & fin_lo & fin_hi
            self._any_soft = bool(soft.any())
            self._soft = tf.constant(soft)
            self._c = c(np.where(soft, softclip, 1.0))
            # log(1 - exp(-(hi - lo)/c)): a constant of the soft clip's log-derivative
            self._soft_k = c(np.where(soft, np.log(-np.expm1(-(hi_s - lo_s) / np.where(
                soft, softclip, 1.0))), 0.0))
            self._tiny = c(np.finfo(dtype.as_numpy_dtype).tiny)

        def _forward(self, u):
            v = self._shift + self._scale * u
            if self._probit:  # from the nearer bound: Phi(v) = erfc(-v / sqrt 2) / 2
                inner = tf.where(v < 0, self._lo + self._width * _ndtr(v),
                                 self._hi - self._width * _ndtr(-v))
            else:
                inner = self._lo + self._width * tf.sigmoid(v)
            x = tf.where(self._both, inner, v)
            if self._any_soft:
                soft = (self._lo + self._c * tf.nn.softplus((v - self._lo) / self._c)
                        - self._c * tf.nn.softplus((v - self._hi) / self._c))
                x = tf.where(self._soft, soft, x)
            x = tf.where(self._lower, self._lo + tf.nn.softplus(v), x)
            x = tf.where(self._upper, self._hi - tf.nn.softplus(v), x)
            # rounding must never put a sample outside its bounds
            inf = tf.constant(np.inf, dtype=x.dtype)
            lo = tf.where(self._both | self._lower, self._lo, -inf)
            hi = tf.where(self._both | self._upper, self._hi, inf)
            return tf.clip_by_value(x, lo, hi)

        def _inverse(self, x):
            if self._probit:  # from the nearer bound, for precision in float32
                t_min = tf.constant(self._phi_min, dtype=x.dtype)
                t_lo = tf.clip_by_value((x - self._lo) / self._width, t_min, 0.5)
                t_hi = tf.clip_by_value((self._hi - x) / self._width, t_min, 0.5)
                t_lo, t_hi = tf.where(self._both, t_lo, 0.5), tf.where(self._both, t_hi, 0.5)
                inner = tf.where(t_lo < 0.5, tf.math.ndtri(t_lo), -tf.math.ndtri(t_hi))
            else:
                t = tf.clip_by_value((x - self._lo) / self._width, self._eps, 1 - self._eps)
                t = tf.where(self._both, t, 0.5)
                inner = tf.math.log(t) - tf.math.log1p(-t)
            v = tf.where(self._both, inner, x)
            if self._any_soft:
                a = tf.maximum((x - self._lo) / self._c, self._tiny)
                b = tf.minimum((x - self._hi) / self._c, -self._tiny)
                a = tf.where(self._soft, a, 1.0)
                b = tf.where(self._soft, b, -1.0)
                inv = (self._lo + self._c * tfp.math.softplus_inverse(a)
                       - self._c * tfp.math.log1mexp(-b))
                v = tf.where(self._soft, inv, v)
            d_lo = tf.where(self._lower, tf.maximum(x - self._lo, self._tiny), 1.0)
            v = tf.where(self._lower, tfp.math.softplus_inverse(d_lo), v)
            d_hi = tf.where(self._upper, tf.maximum(self._hi - x, self._tiny), 1.0)
            v = tf.where(self._upper, tfp.math.softplus_inverse(d_hi), v)
            return (v - self._shift) / self._scale

        def _forward_log_det_jacobian(self, u):
            v = self._shift + self._scale * u
            if self._probit:
                both = self._log_width - 0.5 * tf.square(v) - 0.5 * math.log(2 * math.pi)
            else:
                both = self._log_width + tf.math.log_sigmoid(v) + tf.math.log_sigmoid(-v)
            one = tf.math.log_sigmoid(v)
            ldj = tf.where(self._both, both, tf.where(self._lower | self._upper, one,
                                                      tf.zeros_like(v)))
            if self._any_soft:
                # dx/dv = sigmoid(a) - sigmoid(b), a - b = (hi - lo)/c: stable in logs
                a, b = (v - self._lo) / self._c, (v - self._hi) / self._c
                soft = -b + self._soft_k - tf.nn.softplus(-a) - tf.nn.softplus(-b)
                ldj = tf.where(self._soft, soft, ldj)
            return tf.reduce_sum(ldj, axis=-1) + self._log_scale_sum

    class MLP(tf.Module):
        """Dense tf_keras layers: the coupling conditioner (input half -> parameters)."""

        def __init__(self, in_dim, out_dim, hidden, activation, dtype, seed, name):
            super().__init__(name=name)
            init = lambda s: tf_keras.initializers.GlorotUniform(seed=s)  # noqa: E731
            self.hidden_layers = [
                tf_keras.layers.Dense(h, activation=activation, dtype=dtype,
                                      kernel_initializer=init(seed + i))
                for i, h in enumerate(hidden)]
            # a small output layer starts every coupling close to the identity
            self.out = tf_keras.layers.Dense(
                out_dim, dtype=dtype,
                kernel_initializer=tf_keras.initializers.VarianceScaling(
                    0.01, seed=seed + len(hidden)))
            self.in_dim = in_dim

        def __call__(self, x):
            for layer in self.hidden_layers:
                x = layer(x)
            return self.out(x)

    class MarginalSpline(tfb.Bijector):
        """An elementwise rational-quadratic spline per dimension, its parameters a variable
        of shape (D, 3K - 1): the spline is rebuilt from the variable on every call."""

        def __init__(self, params, bins, bound):
            super().__init__(forward_min_event_ndims=1, validate_args=False,
                             dtype=params.dtype, name="marginal_spline")
            self.params = params
            self._bins, self._bound = bins, bound

        def _spline(self):
            return spline(self.params, self._bins, self._bound)

        def _forward(self, x):
            return self._spline().forward(x)

        def _inverse(self, y):
            return self._spline().inverse(y)

        def _forward_log_det_jacobian(self, x):
            return tf.reduce_sum(self._spline().forward_log_det_jacobian(x, event_ndims=0),
                                 axis=-1)

        def _inverse_log_det_jacobian(self, y):
            return tf.reduce_sum(self._spline().inverse_log_det_jacobian(y, event_ndims=0),
                                 axis=-1)

        def _is_increasing(self):  # noqa: D401 - TFP's hook
            return True

    def _ndtr(v):
        return 0.5 * tf.math.erfc(-v / math.sqrt(2.0))

    def affine(params, clamp):
        shift, raw = params[..., 0], params[..., 1]
        log_scale = clamp * tf.tanh(raw / clamp)
        return tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale)])

    def spline(params, bins, bound):
        k = bins
        w, h, s = params[..., :k], params[..., k:2 * k], params[..., 2 * k:]
        widths = (tf.nn.softmax(w, axis=-1) * (1 - k * _MIN_BIN) + _MIN_BIN) * (2 * bound)
        heights = (tf.nn.softmax(h, axis=-1) * (1 - k * _MIN_BIN) + _MIN_BIN) * (2 * bound)
        # softplus(s + log(e - 1)) is 1 at s = 0: a fresh spline is the identity
        slopes = tf.nn.softplus(s + math.log(math.e - 1)) + _MIN_SLOPE
        return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-bound)

    class Flow(tf.Module):
        """A normalizing flow: ``log_prob`` in physical coordinates, ``sample``, latent maps."""

        # built lazily, holding the same bijectors: not tracked, so the variable order stays
        _TF_MODULE_IGNORED_PROPERTIES = tf.Module._TF_MODULE_IGNORED_PROPERTIES | {"_exact"}

        def __init__(self, config: FlowConfig):
            super().__init__(name=f"likeflow_{config.flow}")
            self.config = config
            dtype = tf.as_dtype(config.dtype)
            self.dtype = dtype
            d = config.dim
            n_params = 2 if config.flow in ("maf", "realnvp") else 3 * config.bins - 1
            make_transform = (
                (lambda p: affine(p, config.log_scale_clamp)) if n_params == 2
                else (lambda p: spline(p, config.bins, config.spline_range)))
            self.conditioners = []
            transforms = []
            for i in range(config.layers):
                seed = config.seed * 1000 + 10 * i
                if config.flow in ("maf", "ansf"):
                    made = tfb.AutoregressiveNetwork(
                        params=n_params, event_shape=[d], hidden_units=list(config.hidden),
                        activation=config.activation, dtype=dtype,
                        kernel_initializer=tf_keras.initializers.GlorotUniform(seed=seed),
                        name=f"made_{i}")
                    self.conditioners.append(made)
                    transforms.append(tfb.MaskedAutoregressiveFlow(
                        bijector_fn=_made_bijector_fn(made, make_transform), name=f"maf_{i}"))
                else:
                    n_masked = d // 2
                    mlp = MLP(n_masked, (d - n_masked) * n_params, config.hidden,
                              config.activation, dtype, seed, name=f"coupling_{i}")
                    self.conditioners.append(mlp)
                    transforms.append(tfb.RealNVP(
                        num_masked=n_masked,
                        bijector_fn=_coupling_bijector_fn(mlp, n_params, make_transform),
                        name=f"coupling_{i}"))
            forward_order = []
            made_positions = []  # where each MADE's bijector sits in forward_order
            for i, t in enumerate(transforms):
                if config.flow in ("maf", "ansf"):
                    made_positions.append(len(forward_order))
                forward_order.append(t)
                if i < len(config.permutations):
                    forward_order.append(tfb.Permute(config.permutations[i], name=f"perm_{i}"))
            if config.marginal_spline:
                # zeros: uniform bins and unit slopes, the identity
                forward_order.append(MarginalSpline(
                    tf.Variable(tf.zeros([d, 3 * config.bins - 1], dtype=dtype),
                                name="marginal_spline"), config.bins, config.spline_range))
            self.preprocess = Preprocess(config.flow_bounds_array(), config.shift, config.scale,
                                         dtype, probit=config.bound_map == "probit",
                                         softclip=config.softclip)
            forward_order.append(self.preprocess)
            self._forward_order = forward_order
            # positions only (ints): a second reference to the MADEs would be tracked by
            # tf.Module and reorder the flow's variables
            self._made_positions = tuple(made_positions)
            self._make_transform = make_transform
            # tfb.Chain applies its last element first in the forward (sampling) direction
            self.bijector = tfb.Chain(list(reversed(forward_order)), name="chain")
            self.base = tfd.MultivariateNormalDiag(loc=tf.zeros([d], dtype=dtype))
            self.distribution = tfd.TransformedDistribution(self.base, self.bijector)
            # reflections: dimension, bound, and +1 for a lower bound (-1 for an upper one)
            lows = config.bounds_array()[:, 0]
            self._reflect = [(int(i), float(v), 1.0 if v == lows[int(i)] else -1.0)
                             for i, v in config.reflect]
            self._flow_range = {int(i): tuple(float(b) for b in config.flow_bounds_array()[int(i)])
                                for i, _ in config.reflect}
            self.distribution.log_prob(tf.zeros([1, d], dtype=dtype) + self.preprocess.forward(
                tf.zeros([1, d], dtype=dtype)))  # build every layer's variables

        def log_prob(self, x):
            """Log density at physical points ``x`` of shape (n, D).

            With reflected parameters, the fold: the log of the sum of the flow's density at
            ``x`` and at its mirror images across the reflected bounds.
            """
            return self._fold(self.distribution.log_prob, x)

        def train_log_prob(self, x):
            """The log density training maximises: the flow's own, without the hold of the
            probit map (:data:`PROBIT_MAX`): held, the training points near a bound would all
            map to one point of the base space and the flow would learn a spike there. Points
            are clipped only at :data:`PROBIT_TRAIN_MAX` sigma."""
            if not self.preprocess._probit:
                return self.log_prob(x)
            unheld, inner = self._exact_parts()

            def lp(y):
                return (inner.log_prob(unheld.inverse(y))
                        + unheld.inverse_log_det_jacobian(y, event_ndims=1))

            return self._fold(lp, x)

        def _exact_parts(self):
            """The probit map without the hold, and the flow inside it (same variables)."""
            if "_exact" not in self.__dict__:
                c = self.config
                with tf.init_scope():  # eager constants, usable from every traced function
                    unheld = Preprocess(c.flow_bounds_array(), c.shift, c.scale, self.dtype,
                                        probit=True, softclip=c.softclip,
                                        probit_max=PROBIT_TRAIN_MAX)
                    inner = tfd.TransformedDistribution(
                        self.base, tfb.Chain(list(reversed(self._forward_order[:-1]))))
                self._exact = (unheld, inner)
            return self._exact

        def _fold(self, lp_fn, x):
            if not self._reflect:
                return lp_fn(x)
            images = self.images(x)
            lp = lp_fn(tf.concat(images, axis=0))
            # an image beyond the edge of the flow's range carries no density; one on the edge
            # does (the image of a point on the bound that is not reflected: the density is
            # held there, finite), else the fold would halve the density at that bound
            ok = tf.concat([tf.ones(tf.shape(x)[:-1], tf.bool)]  # the point itself counts
                           + [self._in_range(img) for img in images[1:]], axis=0)
            lp = tf.where(ok & ~tf.math.is_nan(lp), lp, tf.constant(-np.inf, lp.dtype))
            return tf.reduce_logsumexp(tf.reshape(lp, [len(images), -1]), axis=0)

        def images(self, x):
            """``x`` and its mirror images across the reflected bounds (2^k tensors; those
            beyond the flow's range carry no density, see :meth:`_in_range`)."""
            images = [x]
            for i, point, _ in self._reflect:
                hot = tf.one_hot(i, self.config.dim, dtype=x.dtype)
                images += [img + hot * (2 * point - 2 * img[..., i:i + 1]) for img in images]
            return images

        def _in_range(self, y):
            """Whether points lie in the flow's (extended) range, edges included, in the
            reflected dimensions."""
            inside = tf.ones(tf.shape(y)[:-1], tf.bool)
            for i in sorted({i for i, _, _ in self._reflect}):
                lo, hi = self._flow_range[i]
                inside &= (y[..., i] >= lo) & (y[..., i] <= hi)
            return inside

        def unfolded_log_prob(self, x):
            """The flow's own density on its extended range (no fold)."""
            return self.distribution.log_prob(x)

        def fold(self, y):
            """Points of the flow's extended range -> the physical range (mirror images of
            points beyond a reflected bound)."""
            for i, point, side in self._reflect:
                hot = tf.one_hot(i, self.config.dim, dtype=y.dtype)
                yi = y[..., i:i + 1]
                y = y + hot * (point + side * tf.abs(yi - point) - yi)
            return y

        def sample(self, n, seed):
            """``n`` physical samples; ``seed`` is a stateless (2,) int seed."""
            return self.from_latent(self.base.sample(n, seed=seed))

        def to_latent(self, x):
            """Physical points -> base space (standard normal if the flow is perfect): the
            exact inverse of sampling (no hold of the probit map)."""
            if not self.preprocess._probit:
                return self.bijector.inverse(x)
            unheld, inner = self._exact_parts()
            return inner.bijector.inverse(unheld.inverse(x))

        def from_latent(self, z):
            """Base space -> physical points (folded at reflected bounds).

            The MADE layers use :func:`_made_forward` (one network pass in total instead of D),
            everything else its bijector's ``forward``.
            """
            made_layers = dict(zip(self._made_positions, self.conditioners))
            for k, b in enumerate(self._forward_order):
                if k in made_layers:
                    z = _made_forward(made_layers[k], self._make_transform, z)
                else:
                    z = b.forward(z)
            return self.fold(z)

    def _made_forward(made, make_transform, z):
        """MAF's sequential direction (latent -> data) in one pass of the MADE network in total.

        TFP's ``MaskedAutoregressiveFlow.forward`` re-runs the whole network once per dimension:
        D full passes, which makes sampling a 95-dim MAF ~50x slower than its density. But a
        hidden unit of degree c depends only on x_1..x_c, so it is final as soon as x_c is known,
        and it never needs recomputing. Step k (0-based) therefore: adds x_{k-1} to the first
        layer's accumulators (rank one), pushes the units that just became final into the next
        layer's accumulators, and computes only dimension k's output parameters from the last
        hidden layer (the masked kernel ignores units not final yet). The hidden layers cost
        one network evaluation in all; only the order of the sums differs from ``made(x)``, so
        the result agrees to rounding.
        """
        plan = _made_plan(made)
        d, p = plan["dim"], plan["params"]
        dense = plan["dense"]
        # made's own Activation layers, not the bare function: TFP builds them without a dtype,
        # so a float64 MADE computes its activations in float32 (the default Keras policy).
        # Calling the layers themselves keeps sampling consistent with log_prob to rounding.
        acts = [lambda x, layer=layer: tf.cast(layer(x), z.dtype) for layer in plan["acts"]]
        n = tf.shape(z)[0]
        kernels = [layer.kernel * tf.constant(m, dtype=z.dtype)
                   for layer, m in zip(dense, made._masks)]
        biases = [layer.bias if layer.bias is not None else tf.zeros(layer.units, z.dtype)
                  for layer in dense]
        accs = tuple(tf.broadcast_to(b, [n, b.shape[0]]) for b in biases[:-1])
        ys = tf.TensorArray(z.dtype, size=d, element_shape=tf.TensorShape([None]))
        sched = [(tf.constant(idx), tf.constant(ok, dtype=z.dtype)) for idx, ok in plan["steps"]]

        out_kernel = tf.reshape(kernels[-1], [-1, d, p])  # hidden -> (dimension, parameter)
        out_bias = tf.reshape(biases[-1], [d, p])

        def step(k, y_prev, ys, accs):
            accs = list(accs)
            # the first layer sees the inputs directly: a rank-one update with the newest one
            accs[0] = accs[0] + (tf.cast(k > 0, z.dtype) * y_prev[:, None]
                                 * kernels[0][tf.maximum(k - 1, 0)][None, :])
            for layer in range(1, len(accs)):
                idx, ok = sched[layer - 1][0][k], sched[layer - 1][1][k]
                h = acts[layer - 1](tf.gather(accs[layer - 1], idx, axis=1))
                w = tf.gather(kernels[layer], idx) * ok[:, None]
                # a sum of a few outer products: TF's matmul is slow for inner sizes this small
                accs[layer] = accs[layer] + tf.reduce_sum(h[:, :, None] * w[None], axis=1)
            # the output layer only for dimension k (the masked kernel ignores unfinished units)
            params = tf.matmul(acts[-1](accs[-1]), out_kernel[:, k]) + out_bias[k]
            y_k = make_transform(params[:, None, :]).forward(z[:, k:k + 1])[:, 0]
            return k + 1, y_k, ys.write(k, y_k), tuple(accs)

        _, _, ys, _ = tf.while_loop(
            lambda k, *_: k < d, step, (tf.constant(0), tf.zeros([n], z.dtype), ys, accs))
        return tf.transpose(ys.stack())

    def _made_plan(made):
        """MADE's layers, and per step k and layer the (padded) indices of the hidden units that
        become final at that step."""
        dense = [layer for layer in made._network.layers
                 if isinstance(layer, tf_keras.layers.Dense)]
        order = np.asarray(made._input_order)
        if not np.array_equal(order, np.arange(1, len(order) + 1)):
            raise ValueError("the fast MADE pass assumes the left-to-right input order")
        done = order  # when each unit of the previous layer becomes final (its degree)
        steps = []
        for mask in made._masks[:-1]:
            m = np.asarray(mask, dtype=bool)
            # a unit is final once every unit feeding it is
            final = np.array([done[m[:, j]].max() if m[:, j].any() else 0
                              for j in range(m.shape[1])])
            steps.append(_padded_schedule(final, len(order)))
            done = final
        acts = [layer for layer in made._network.layers
                if isinstance(layer, tf_keras.layers.Activation)]
        if len(acts) != len(dense) - 1:
            raise ValueError("unexpected MADE layout: one activation per hidden layer expected")
        # not cached on ``made``: Keras would track the layers a second time, which reorders
        # the flow's variables (and the weights of saved files); this runs once per trace.
        return {"dense": dense, "acts": acts, "steps": steps, "dim": len(order),
                "params": made.params}

    def _made_bijector_fn(made, make_transform):
        return lambda y, **kw: make_transform(made(y))

    def _coupling_bijector_fn(mlp, n_params, make_transform):
        def fn(x0, output_units, **kw):
            p = mlp(x0)
            p = tf.reshape(p, tf.concat([tf.shape(x0)[:-1], [output_units, n_params]], 0))
            return make_transform(p)
        return fn

    Flow.Preprocess = Preprocess
    _FLOW_CLASS = Flow
    return Flow
