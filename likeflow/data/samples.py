"""Sample files: the :class:`SampleSet`, HDF5 reading and writing, input checks and the split.

likeflow's own layout (written by :func:`write_samples`, read by default)::

    samples         (N, D) float     required
    log_prob        (N,)   float     target log density (log posterior, or log L with flat priors)
    log_likelihood  (N,)   float     optional
    log_prior       (N,)   float     optional
    weights         (N,)   float     optional, >= 0
    chain           (N,)   float     optional: MCMC chain of each row (a chain's rows contiguous)
    attrs: parameter_names (D strings), poi (names), bounds (D x 2, +-inf for none)

Foreign layouts are read by option: any 2-D dataset with an optional log-prob dataset
(``layout="array"``, e.g. DNNLikelihood's ``data/X`` and ``data/Y``) and emcee's HDF5 backend
(``layout="emcee"``: ``mcmc/chain`` of shape (steps, walkers, D), with ``burn`` and ``thin``).
``layout="auto"`` recognises all three.

Reading goes in blocks of rows, so ``max_samples`` draws a seeded subsample of a file far larger
than memory while holding only the subsample and one block.

Example:
    >>> import numpy as np, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> s = SampleSet(rng.normal(size=(1000, 2)), names=["mu", "theta"], poi=["mu"])
    >>> path = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> write_samples(path, s)
    >>> read_samples(path).values.shape
    (1000, 2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import h5py
import numpy as np

from ..flows.bounds import as_bounds, bounds_to_json
from .chains import TEXT_LAYOUTS, read_text_chain

if TYPE_CHECKING:
    from .anchors import Anchors
from ..errors import LikeflowError, SampleFileError
from ..fileio import atomic_h5, check_memory, check_stored, open_h5

__all__ = [
    "SampleSet",
    "ReadOptions",
    "Split",
    "read_samples",
    "write_samples",
    "split_indices",
    "min_samples",
]

# Rows read per block: 65536 rows x 95 columns x 8 bytes is 50 MB, small next to any subsample.
BLOCK_ROWS = 1 << 16

# ``chain``: the MCMC chain of each row (rows of a chain contiguous, in draw order); a split
# keeps whole blocks of each chain apart (:func:`split_indices`)
OPTIONAL_COLUMNS = ("log_prob", "log_likelihood", "log_prior", "weights", "chain")


# Values beyond this magnitude cannot be standardised in float32 (their spread overflows); a
# parameter that large must be rescaled by the user.
MAX_ABS_VALUE = 1e30


def min_samples(dim: int) -> int:
    """The fewest samples likeflow accepts for ``dim`` parameters.

    Ten per dimension (and at least 100): below that neither a flow nor its validation on a
    held-out tenth of the data means anything.
    """
    return max(100, 10 * dim)


@dataclass
class Origin:
    """Where a :class:`SampleSet`'s rows live: the file, its row count and each row's index.

    Rows are counted after burn-in and thinning (emcee: step-major, walker-minor), which is the
    numbering ``max_samples`` draws from. Validation uses this to keep training rows out of a
    test set read from the same file with other options.
    """

    file: str
    n: int
    rows: np.ndarray
    options: dict


@dataclass
class SampleSet:
    """Samples of a target density with everything needed to fit and validate a surrogate.

    Attributes:
        values: (N, D) parameter values.
        names: D parameter names (default ``x0 .. x{D-1}``).
        poi: names of the parameters of interest (a subset of ``names``).
        bounds: (D, 2) lower and upper bound per parameter, +-inf where there is none.
        log_prob: (N,) target log density at each sample, if known.
        log_likelihood, log_prior: (N,) the two parts of ``log_prob``, if known.
        weights: (N,) non-negative sample weights, if any.
        chain: (N,) the MCMC chain of each row, if known (rows of a chain contiguous, in order).
        anchors: points off the samples with their exact log density (the conditional modes
            along the POI: :mod:`likeflow.data.anchors`), if the file has them; not rows.
        dropped_nonfinite: rows dropped on reading because they held NaN or inf.
        origin: where the rows came from (file, row indices in it), when read from a file.
    """

    values: np.ndarray
    names: list[str] | None = None
    poi: list[str] = field(default_factory=list)
    bounds: np.ndarray | None = None
    log_prob: np.ndarray | None = None
    log_likelihood: np.ndarray | None = None
    log_prior: np.ndarray | None = None
    weights: np.ndarray | None = None
    chain: np.ndarray | None = None
    anchors: "Anchors | None" = None
    dropped_nonfinite: int = 0
    origin: "Origin | None" = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim == 1:
            self.values = self.values[:, None]
        d = self.values.shape[1] if self.values.ndim == 2 else 0
        if self.names is None:
            self.names = [f"x{i}" for i in range(d)]
        self.names = [str(n) for n in self.names]
        self.poi = [str(p) for p in self.poi]
        if self.bounds is None:
            self.bounds = np.tile([-np.inf, np.inf], (d, 1))
        self.bounds = np.asarray(self.bounds, dtype=np.float64)
        for col in OPTIONAL_COLUMNS:
            v = getattr(self, col)
            if v is not None:
                setattr(self, col, np.asarray(v, dtype=np.float64).reshape(-1))

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def index(self, name: str) -> int:
        """Column of parameter ``name``; a clear error if there is none."""
        try:
            return self.names.index(name)
        except ValueError:
            raise SampleFileError("<samples>", f"unknown parameter '{name}'; the parameters are "
                                  f"{_short_list(self.names)}") from None

    def subset(self, rows: np.ndarray) -> "SampleSet":
        """The samples at ``rows`` (an index array or boolean mask), with all their columns."""
        kw = {c: (None if getattr(self, c) is None else getattr(self, c)[rows])
              for c in OPTIONAL_COLUMNS}
        origin = None if self.origin is None else dataclasses.replace(
            self.origin, rows=self.origin.rows[rows])
        return dataclasses.replace(self, values=self.values[rows], origin=origin, **kw)

    def fingerprint(self) -> str:
        """SHA-256 of the values: identifies the data a split refers to, whatever the file."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.values, dtype=np.float64).tobytes())
        return h.hexdigest()

    def check(self, path: str | os.PathLike = "<samples>", *, drop_nonfinite: bool = False,
              minimum: int | None = None) -> "SampleSet":
        """Check the set against every input rule; return it (or a copy without NaN rows).

        Raises :class:`SampleFileError` naming ``path`` and the offending dataset.
        """
        v = self.values
        if v.ndim != 2:
            raise SampleFileError(path, f"samples must be 2-D (N, D), got shape {v.shape}",
                                  "samples")
        n, d = v.shape
        if d == 0:
            raise SampleFileError(path, "samples have no columns", "samples")
        if len(self.names) != d:
            raise SampleFileError(path, f"{len(self.names)} parameter names for {d} columns",
                                  "parameter_names")
        if len(set(self.names)) != d:
            dup = sorted({x for x in self.names if self.names.count(x) > 1})
            raise SampleFileError(path, f"duplicate parameter names {dup}")
        unknown = [p for p in self.poi if p not in self.names]
        if unknown:
            raise SampleFileError(path, f"POI {unknown} not among the parameter names "
                                  f"{_short_list(self.names)}")
        for col in OPTIONAL_COLUMNS:
            c = getattr(self, col)
            if c is not None and c.shape[0] != n:
                raise SampleFileError(path, f"has {c.shape[0]} entries but there are {n} samples",
                                      col)
        if self.bounds.shape != (d, 2):
            raise SampleFileError(path, f"the bounds must have shape ({d}, 2), got "
                                  f"{self.bounds.shape}")
        if np.isnan(self.bounds).any() or (self.bounds[:, 0] >= self.bounds[:, 1]).any():
            bad = [self.names[i] for i in np.flatnonzero(~(self.bounds[:, 0] < self.bounds[:, 1]))]
            raise SampleFileError(path, f"the bounds: lower bound not below upper bound for {bad}")
        problem = None if self.anchors is None else self.anchors.problem(d, self.bounds)
        if problem:
            raise SampleFileError(path, problem, "anchors")

        out = self
        bad_rows = ~np.isfinite(v).all(axis=1)
        if self.log_prob is not None:
            bad_rows |= ~np.isfinite(self.log_prob)
        n_bad = int(bad_rows.sum())
        if n_bad:
            if not drop_nonfinite:
                first = int(np.flatnonzero(bad_rows)[0])
                which = "samples" if not np.isfinite(v[first]).all() else "log_prob"
                # the row of the file, where a subsample was read
                row = first if self.origin is None else int(self.origin.rows[first])
                raise SampleFileError(path, f"{n_bad} rows hold NaN or inf (first at row {row});"
                                      " use --drop-nonfinite to drop them", which)
            out = self.subset(~bad_rows)
            out.dropped_nonfinite = self.dropped_nonfinite + n_bad
            v = out.values
            n = v.shape[0]

        need = min_samples(d) if minimum is None else minimum
        if n < need:
            raise SampleFileError(path, f"only {n} usable samples for {d} parameters; at least "
                                  f"{need} are needed", "samples")
        # max == min, not std == 0: the std of a constant column is rounding noise, not zero
        flat = np.flatnonzero(~(v.max(axis=0) > v.min(axis=0)))
        if flat.size:
            raise SampleFileError(path, "zero variance (constant) in parameter(s) "
                                  f"{_short_list([self.names[i] for i in flat])}: fix them "
                                  "or leave them out", "samples")
        huge = np.flatnonzero(np.abs(v).max(axis=0) > MAX_ABS_VALUE)
        if huge.size:
            raise SampleFileError(path, f"values beyond +-{MAX_ABS_VALUE:g} in parameter(s) "
                                  f"{_short_list([self.names[i] for i in huge])}: rescale "
                                  "them (a flow works in float32)", "samples")
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        outside = (v < lo) | (v > hi)
        if outside.any():
            cols = np.flatnonzero(outside.any(axis=0))
            raise SampleFileError(path, f"{int(outside.any(axis=1).sum())} samples lie outside "
                                  f"the declared bounds of {_short_list([self.names[i] for i in cols])}",
                                  "samples")
        if out.weights is not None:
            w = out.weights
            if not np.isfinite(w).all():
                raise SampleFileError(path, f"{int((~np.isfinite(w)).sum())} weights are NaN or inf",
                                      "weights")
            if (w < 0).any():
                raise SampleFileError(path, f"{int((w < 0).sum())} weights are negative",
                                      "weights")
            if not w.sum() > 0:
                raise SampleFileError(path, "all weights are zero", "weights")
            # scale-free (training uses the weights relative to the largest)
            rel = w / w.max()
            ess = float(rel.sum() ** 2 / np.sum(rel ** 2))
            if ess < need:
                raise SampleFileError(path, f"the weights leave an effective sample size of "
                                      f"{ess:.1f} ({int((w > 0).sum())} non-zero weights); at "
                                      f"least {need} are needed for {d} parameters", "weights")
        return out

    def summary(self) -> dict:
        """N, D, names, POIs, bounds and per-parameter mean/std/min/max as plain JSON types."""
        v = self.values
        w = self.weights
        if w is None:
            mean, std = v.mean(axis=0), v.std(axis=0)
        else:
            mean = np.average(v, axis=0, weights=w)
            std = np.sqrt(np.average((v - mean) ** 2, axis=0, weights=w))
        bounds = bounds_to_json(self.bounds)
        params = []
        for i, name in enumerate(self.names):
            params.append({
                "name": name,
                "poi": name in self.poi,
                "mean": float(mean[i]), "std": float(std[i]),
                "min": float(v[:, i].min()), "max": float(v[:, i].max()),
                "bounds": bounds[i],
            })
        return {
            "n": self.n,
            "dim": self.dim,
            "poi": list(self.poi),
            "datasets": [c for c in OPTIONAL_COLUMNS if getattr(self, c) is not None],
            "dropped_nonfinite": self.dropped_nonfinite,
            "parameters": params,
        }


#: the array layout's dataset of rows when none is named (DNNLikelihood's)
ARRAY_DATASET = "data/X"

#: the layouts a sample file is read in (``auto`` recognises the HDF5 ones)
LAYOUTS = ("auto", "likeflow", "array", "emcee", *TEXT_LAYOUTS)


@dataclass(frozen=True)
class ReadOptions:
    """How a sample file was read; stored in a surrogate so that validation reads it the same way."""

    layout: str = "auto"
    dataset: str | None = None
    log_prob_dataset: str | None = None
    burn: int = 0
    thin: int = 1
    max_samples: int | None = None
    seed: int = 0
    drop_nonfinite: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReadOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def read_samples(path: str | os.PathLike, options: ReadOptions | None = None, *,
                 check: bool = True, minimum: int | None = None,
                 rows: np.ndarray | None = None, **kwargs) -> SampleSet:
    """Read a sample file in any supported layout, streaming in blocks, and check it.

    Args:
        path: the HDF5 file.
        options: a :class:`ReadOptions`; or give its fields as keyword arguments
            (``layout``, ``dataset``, ``log_prob_dataset``, ``burn``, ``thin``, ``max_samples``,
            ``seed``, ``drop_nonfinite``).
        check: run :meth:`SampleSet.check` (on by default).
        minimum: the fewest samples accepted (default :func:`min_samples`).
        rows: read exactly these file rows (sorted indices; the likeflow and array layouts,
            without ``max_samples``): a part of a file too large to read whole.

    Raises:
        SampleFileError: with one line naming the file, the dataset and the problem.
    """
    opts = options if options is not None else ReadOptions(**kwargs)
    if options is not None and kwargs:
        opts = dataclasses.replace(options, **kwargs)
    if opts.thin < 1 or opts.burn < 0:
        raise SampleFileError(path, f"--burn must be >= 0 and --thin >= 1 (got {opts.burn}, "
                              f"{opts.thin})")
    if opts.max_samples is not None and opts.max_samples < 1:
        raise SampleFileError(path, f"max_samples must be positive, got {opts.max_samples}")
    if opts.layout == "auto" and os.fspath(path).endswith(".txt"):
        raise SampleFileError(path, "a text chain: give its convention, --layout polychord "
                              "(weight, -2 log L, parameters: PolyChord, MultiNest) or --layout "
                              "getdist (weight, -log L, parameters)")
    if rows is not None and (opts.layout in TEXT_LAYOUTS or opts.max_samples is not None):
        raise SampleFileError(path, "rows are read from HDF5 files of the likeflow or array "
                              "layout, without --max-samples")
    if opts.layout in TEXT_LAYOUTS:
        s = _read_text(path, opts)
        return s.check(path, drop_nonfinite=opts.drop_nonfinite, minimum=minimum) if check else s
    with _open(path) as f:
        try:
            layout = opts.layout if opts.layout != "auto" else _detect_layout(path, f, opts)
            if layout == "likeflow":
                s = _read_likeflow(path, f, opts, rows)
            elif layout == "array":
                s = _read_array(path, f, opts, rows)
            elif layout == "emcee" and rows is not None:
                raise SampleFileError(path, "rows are read from the likeflow or array layout, "
                                      "not from emcee chains")
            elif layout == "emcee":
                s = _read_emcee(path, f, opts)
            else:
                raise SampleFileError(path, f"unknown layout '{layout}' (likeflow, array, "
                                      f"emcee, {', '.join(TEXT_LAYOUTS)})")
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
            if isinstance(e, SampleFileError):
                raise
            raise SampleFileError(path, f"damaged or unreadable ({_first_line(e)})") from None
    s.origin = Origin(os.path.realpath(os.fspath(path)), s.origin.n, s.origin.rows,
                      dataclasses.replace(opts, layout=layout).to_dict())
    return s.check(path, drop_nonfinite=opts.drop_nonfinite, minimum=minimum) if check else s


def mcmc_record(path: str | os.PathLike) -> dict | None:
    """The MCMC record a sample file carries (kernel, R-hat, ESS, acceptance, step size, ...),
    as written by ``likeflow generate`` or ``combine``; None if there is none."""
    try:
        with open_h5(path) as f:
            raw = f.attrs.get("mcmc")
    except (LikeflowError, OSError, RuntimeError):
        return None
    if raw is None:
        return None
    try:
        rec = json.loads(raw if isinstance(raw, str) else bytes(raw).decode())
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def write_sample_stream(path: str | os.PathLike, blocks, *, n: int, names: list[str],
                        poi: list[str], bounds: np.ndarray) -> None:
    """Write ``n`` samples arriving as ``(values, log_prob)`` blocks in likeflow's layout,
    without holding more than one block (atomically, the free space checked first)."""
    d = len(names)
    with atomic_h5(path, size_hint=8 * n * (d + 1)) as f:
        chunks = (max(1, min(n, BLOCK_ROWS)), d)
        xs = f.create_dataset("samples", shape=(n, d), dtype="f8", chunks=chunks if n else None)
        lps = f.create_dataset("log_prob", shape=(n,), dtype="f8",
                               chunks=chunks[:1] if n else None)
        i = 0
        for x, lp in blocks:
            xs[i:i + len(x)] = x
            lps[i:i + len(x)] = lp
            i += len(x)
        if i != n:
            raise RuntimeError(f"{i} samples arrived for {n}")
        _write_meta(f, names, poi, bounds)


def _write_meta(f: h5py.File, names, poi, bounds) -> None:
    f.attrs["parameter_names"] = np.array(names, dtype=h5py.string_dtype())
    f.attrs["poi"] = np.array(poi, dtype=h5py.string_dtype())
    f.attrs["bounds"] = bounds
    from .._version import __version__
    f.attrs["likeflow_version"] = __version__


def read_labels(path: str | os.PathLike, dataset: str = "labels") -> np.ndarray | None:
    """The per-row class labels of a sample file (its ``labels`` dataset), or None."""
    with open_h5(path, SampleFileError) as f:
        if dataset not in f:
            return None
        ds = f[dataset]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise SampleFileError(path, f"'{dataset}' must be a 1-D dataset of 0/1 labels")
        check_stored(path, ds, SampleFileError)
        return ds[()]


def write_samples(path: str | os.PathLike, s: SampleSet, *, compression: str | None = "gzip",
                  attrs: dict | None = None, columns: dict | None = None) -> None:
    """Write ``s`` in likeflow's layout, atomically (a temp file in the same folder, then rename).

    ``attrs`` adds root attributes (e.g. MCMC diagnostics); values must be HDF5-storable.
    ``columns`` adds per-row datasets (name -> (N,) array, e.g. outlier scores).
    """
    columns = dict(columns or {})
    for name, c in columns.items():
        if name in ("samples", *OPTIONAL_COLUMNS) or np.shape(c) != (s.n,):
            raise LikeflowError(f"extra column '{name}': a new name and {s.n} values needed")
    cols = sum(getattr(s, c) is not None for c in OPTIONAL_COLUMNS) + len(columns)
    with atomic_h5(path, size_hint=s.values.nbytes + cols * 8 * s.n) as f:
        kw = dict(compression=compression) if compression else {}
        chunks = (min(s.n, BLOCK_ROWS), s.dim) if s.n else None
        values = s.values
        if np.array_equal(values, values.astype(np.float32)):
            values = values.astype(np.float32)  # exactly representable: half the size
        f.create_dataset("samples", data=values, chunks=chunks, **kw)
        for col in OPTIONAL_COLUMNS:
            c = getattr(s, col)
            if c is not None:
                f.create_dataset(col, data=c, **kw)
        for name, c in columns.items():
            f.create_dataset(name, data=np.asarray(c), **kw)
        if s.anchors is not None:
            from . import anchors
            anchors.write(f.create_group("anchors"), s.anchors)
        _write_meta(f, s.names, s.poi, s.bounds)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


@dataclass(frozen=True)
class Split:
    """Disjoint row indices of the training, validation and test parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class SplitSpec:
    """How a sample set is split; stored in the surrogate so validation can rebuild the test rows.

    Samples with a ``chain`` column (MCMC) are split in whole blocks of each chain
    (``blocks_per_chain`` per chain), others row by row at random.
    """

    seed: int = 0
    validation: float = 0.1
    test: float = 0.1
    blocks_per_chain: int = 20

    def rows(self, n: int, chain: np.ndarray | None = None) -> "Split":
        """The train/validation/test rows of ``n`` samples (of these chains) under this spec."""
        return split_indices(n, seed=self.seed, validation=self.validation, test=self.test,
                             chain=chain, blocks_per_chain=self.blocks_per_chain)

    def record(self) -> dict:
        """The fields stored in a surrogate's training record (the seed is stored once, as
        the fit's ``seed``)."""
        return {"validation": self.validation, "test": self.test,
                "blocks_per_chain": self.blocks_per_chain}

    @classmethod
    def from_record(cls, split: dict, seed: int | None) -> "SplitSpec":
        """The spec of a stored record; files before the seed was stored once keep it in
        ``split``."""
        fields = dict(split)
        if seed is not None:
            fields["seed"] = seed
        return cls(**fields)


def split_of(samples: "SampleSet", spec: SplitSpec) -> "Split":
    """The train/validation/test rows of ``samples`` under ``spec``."""
    return spec.rows(samples.n, samples.chain)


def as_sample_set(data, *, names: Sequence[str] | None = None, poi: Sequence[str] = (),
                  bounds=None, weights=None, read_options: "ReadOptions | None" = None,
                  log_prob=None) -> "SampleSet":
    """A :class:`SampleSet` of what a user gives: a ``SampleSet``, a sample file's path (read
    with ``read_options``) or an ``(N, D)`` array (with optional ``names``, ``poi``, ``bounds``
    by name or as a (D, 2) array, ``weights`` and ``log_prob``). Arrays are checked as files
    are (:meth:`SampleSet.check`)."""
    if isinstance(data, SampleSet):
        extra = [k for k, v in (("names", names), ("bounds", bounds), ("weights", weights),
                                ("log_prob", log_prob)) if v is not None] + (["poi"] if poi else [])
        if extra:
            raise LikeflowError(f"{', '.join(extra)}: give them with an array, not with a "
                                "SampleSet (which has its own)")
        return data
    if isinstance(data, (str, os.PathLike)):
        if any(v is not None for v in (names, bounds, weights, log_prob)) or poi:
            raise LikeflowError(f"{os.fspath(data)}: names, poi, bounds and weights come from "
                                "the sample file; give them only with an array")
        return read_samples(data, read_options or ReadOptions())
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise LikeflowError(f"samples must be a SampleSet, a sample file's path or an (N, D) "
                            f"array of numbers, not {type(data).__name__}") from None
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise LikeflowError(f"samples must be an (N, D) array, not of shape {values.shape}")
    names = [f"x{i}" for i in range(values.shape[1])] if names is None else list(names)
    if len(names) != values.shape[1]:
        raise LikeflowError(f"{len(names)} names for {values.shape[1]} columns")
    s = SampleSet(values, names=names, poi=list(poi), bounds=as_bounds(bounds, names),
                  weights=weights, log_prob=log_prob)
    return s.check("<array>")


def split_indices(n: int, *, seed: int, validation: float = 0.1, test: float = 0.1,
                  chain: np.ndarray | None = None, blocks_per_chain: int = 20) -> Split:
    """A seeded, disjoint train/validation/test split of ``n`` rows.

    Without ``chain``, rows are drawn at random. With the chain of every row (MCMC samples,
    rows of a chain contiguous and in draw order), each chain is cut into ``blocks_per_chain``
    contiguous blocks and whole blocks are dealt to the parts at random: a test point's
    neighbours in its chain are test points too (except at a block's two ends), so correlated
    draws do not make the validation too kind.

    The split depends on its arguments alone, so a later step (validation of a saved surrogate)
    rebuilds exactly the same test rows from the numbers stored in the file. Each part gets at
    least one row.
    """
    if chain is None:
        part = split_labels(n, seed=seed, validation=validation, test=test)
        return Split(train=np.flatnonzero(part == 0), validation=np.flatnonzero(part == 1),
                     test=np.flatnonzero(part == 2))
    n_test, n_val = _part_sizes(n, validation, test)
    rng = np.random.default_rng(seed)
    chain = np.asarray(chain)
    blocks = []
    for c in np.unique(chain):
        rows = np.flatnonzero(chain == c)
        blocks += [b for b in np.array_split(rows, min(blocks_per_chain, len(rows))) if len(b)]
    order = rng.permutation(len(blocks))
    parts: list[list[np.ndarray]] = [[], [], []]
    counts = [0, 0]
    for k in order:
        part = 0 if counts[0] < n_test else 1 if counts[1] < n_val else 2
        parts[part].append(blocks[k])
        if part < 2:
            counts[part] += len(blocks[k])
    te, va, tr = (np.sort(np.concatenate(p)) if p else np.zeros(0, int) for p in parts)
    if not len(tr) or not len(va):
        raise LikeflowError("too few chain blocks for a train/validation/test split (fewer chains or more samples per chain)")
    return Split(train=tr, validation=va, test=te)


def split_labels(n: int, *, seed: int, validation: float = 0.1, test: float = 0.1) -> np.ndarray:
    """The part of each of ``n`` rows split at random (0 training, 1 validation, 2 test), one
    byte per row: :func:`split_indices` without a chain, for files too large for index arrays."""
    n_test, n_val = _part_sizes(n, validation, test)
    perm = np.random.default_rng(seed).permutation(n)
    part = np.zeros(n, dtype=np.int8)
    part[perm[:n_test]] = 2
    part[perm[n_test:n_test + n_val]] = 1
    return part


def _part_sizes(n: int, validation: float, test: float) -> tuple[int, int]:
    """Rows of the test and the validation part of ``n`` (each at least one)."""
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise LikeflowError("validation and test fractions must be in (0, 1) and sum below 1")
    return max(1, int(round(test * n))), max(1, int(round(validation * n)))


# --- reading ------------------------------------------------------------------------------------

def _open(path) -> h5py.File:
    return open_h5(path, SampleFileError)


def _detect_layout(path, f: h5py.File, opts: ReadOptions) -> str:
    if opts.dataset is not None:
        return "array"
    if "samples" in f:
        return "likeflow"
    if "mcmc" in f and isinstance(f["mcmc"], h5py.Group) and "chain" in f["mcmc"]:
        return "emcee"
    if ARRAY_DATASET in f:
        return "array"
    raise SampleFileError(path, "no 'samples' dataset (likeflow), 'mcmc/chain' (emcee) or "
                          f"'data/X' (DNNLikelihood); datasets in the file: {_list_datasets(f)}; "
                          "name one with --dataset")


def rows_dataset(path, f: h5py.File, opts: ReadOptions) -> tuple[str, str]:
    """The layout an HDF5 sample file is read in with ``opts`` and the name of its dataset of
    rows (``samples``; an array's ``opts.dataset`` or ``data/X``; emcee's is 3-D)."""
    layout = opts.layout if opts.layout != "auto" else _detect_layout(path, f, opts)
    if layout == "likeflow":
        return layout, "samples"
    return layout, (opts.dataset or (ARRAY_DATASET if layout == "array" else "mcmc/chain"))


def checked_dataset(path, f: h5py.File, name: str, ndim: Sequence[int]) -> h5py.Dataset:
    """Dataset ``name`` of ``f``, refused (:class:`SampleFileError`) unless it is there, has
    one of the dimensions ``ndim``, is numeric and is stored as declared (``check_stored``)."""
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise SampleFileError(path, f"no such dataset; datasets in the file: {_list_datasets(f)}",
                              name)
    ds = f[name]
    if ds.ndim not in ndim:
        want = " or ".join(f"{k}-D" for k in ndim)
        raise SampleFileError(path, f"must be {want}, got shape {ds.shape}", name)
    if not (np.issubdtype(ds.dtype, np.integer) or np.issubdtype(ds.dtype, np.floating)) \
            or np.issubdtype(ds.dtype, np.bool_):
        raise SampleFileError(path, f"is not numeric (dtype {ds.dtype})", name)
    check_stored(path, ds, SampleFileError)
    return ds


def file_rows(n: int, opts: ReadOptions) -> np.ndarray:
    """The row indices (of ``n``) that reading with ``opts`` returns, in order."""
    rows = _rows_to_read(n, opts)
    return np.arange(n) if rows is None else rows


def _rows_to_read(n: int, opts: ReadOptions) -> np.ndarray | None:
    """Sorted row indices of the subsample, or None for all rows."""
    if opts.max_samples is None or opts.max_samples >= n:
        return None
    rng = np.random.default_rng(opts.seed)
    return np.sort(rng.choice(n, size=opts.max_samples, replace=False))


def _checked_rows(path, rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (len(rows) and (rows[0] < 0 or rows[-1] >= n
                                         or (np.diff(rows) <= 0).any())):
        raise SampleFileError(path, f"rows to read must be sorted, distinct and below {n}")
    return rows


def _gather(ds: h5py.Dataset, rows: np.ndarray | None, n: int, step: int = 1,
            start: int = 0, inner: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start + step*k`` of ``ds`` for k in ``rows`` (all k < n when None), block by block.

    With ``inner``, element ``inner[j]`` of the second axis is taken for the j-th row (emcee's
    walkers). Only one block of the file is in memory at a time besides the result.
    """
    ks = np.arange(n) if rows is None else rows
    raw = start + step * ks
    shape = (len(ks),) + ds.shape[1 + (inner is not None):]
    check_memory(ds.file.filename, ds.name.lstrip("/"), 8 * np.prod(shape, dtype=np.float64),
                 SampleFileError)
    out = np.empty(shape, dtype=np.float64)
    row_size = int(np.prod(ds.shape[1:], dtype=np.int64)) or 1
    block = max(1, (BLOCK_ROWS * 64) // row_size)  # about 4M numbers (32 MB) per block
    i = 0
    while i < len(raw):
        lo = raw[i]
        j = np.searchsorted(raw, lo + block, side="left")
        hi = raw[j - 1] + 1
        chunk = ds[lo:hi]
        sel = raw[i:j] - lo
        out[i:j] = chunk[sel] if inner is None else chunk[sel, inner[i:j]]
        i = j
    return out


def _attr_list(obj, key: str) -> list[str] | None:
    if key not in obj.attrs:
        return None
    v = obj.attrs[key]
    if isinstance(v, (str, bytes)):
        v = [v]
    try:
        return [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(v)]
    except UnicodeDecodeError:
        raise SampleFileError(obj.file.filename, f"attribute '{key}' holds text that is not "
                              "UTF-8") from None


def _meta(path, f, obj, d: int) -> dict:
    names = _attr_list(obj, "parameter_names") or _attr_list(f, "parameter_names")
    poi = _attr_list(obj, "poi") or _attr_list(f, "poi") or []
    bounds = None
    src = obj if "bounds" in obj.attrs else (f if "bounds" in f.attrs else None)
    if src is not None:
        try:
            bounds = np.asarray(src.attrs["bounds"], dtype=np.float64)
        except (TypeError, ValueError):
            raise SampleFileError(path, "attribute 'bounds' must hold numbers (D x 2, +-inf "
                                  "for none)") from None
        if bounds.shape != (d, 2):
            raise SampleFileError(path, f"attribute 'bounds' must have shape ({d}, 2), got "
                                  f"{bounds.shape}")
    if names is not None and len(names) != d:
        raise SampleFileError(path, f"attribute 'parameter_names' has {len(names)} names for "
                              f"{d} columns")
    return dict(names=names, poi=poi, bounds=bounds)


def _read_likeflow(path, f, opts: ReadOptions, rows: np.ndarray | None = None) -> SampleSet:
    ds = checked_dataset(path, f, "samples", (2,))
    n, d = ds.shape
    rows = _rows_to_read(n, opts) if rows is None else _checked_rows(path, rows, n)
    cols = {}
    for c in OPTIONAL_COLUMNS:
        if c in f:
            cds = checked_dataset(path, f, c, (1,))
            if cds.shape[0] != n:
                raise SampleFileError(path, f"has {cds.shape[0]} entries but 'samples' has {n} "
                                      "rows", c)
            cols[c] = _gather(cds, rows, n)
    if "anchors" in f and isinstance(f["anchors"], h5py.Group):
        from . import anchors
        cols["anchors"] = anchors.read(f["anchors"])
    return SampleSet(_gather(ds, rows, n), **_meta(path, f, f, d), **cols,
                     origin=_provisional_origin(n, rows))


def _read_array(path, f, opts: ReadOptions, rows: np.ndarray | None = None) -> SampleSet:
    name = opts.dataset or ARRAY_DATASET
    ds = checked_dataset(path, f, name, (1, 2))
    n = ds.shape[0]
    d = 1 if ds.ndim == 1 else ds.shape[1]
    rows = _rows_to_read(n, opts) if rows is None else _checked_rows(path, rows, n)
    lp_name = opts.log_prob_dataset
    if lp_name is None and name == ARRAY_DATASET and "data/Y" in f:
        lp_name = "data/Y"
    cols = {}
    if lp_name is not None:
        lds = checked_dataset(path, f, lp_name, (1, 2))
        if lds.shape[0] != n or (lds.ndim == 2 and lds.shape[1] != 1):
            raise SampleFileError(path, f"shape {lds.shape} does not match {n} samples in "
                                  f"'{name}'", lp_name)
        cols["log_prob"] = _gather(lds, rows, n).reshape(-1)
    values = _gather(ds, rows, n)
    return SampleSet(values.reshape(-1, d), **_meta(path, f, ds, d), **cols,
                     origin=_provisional_origin(n, rows))


def _read_emcee(path, f, opts: ReadOptions) -> SampleSet:
    name = opts.dataset or "mcmc/chain"
    ds = checked_dataset(path, f, name, (3,))
    steps, walkers, d = ds.shape
    group = ds.parent
    try:  # emcee preallocates; 'iteration' is filled
        filled = int(np.asarray(group.attrs.get("iteration", steps)).item())
    except (TypeError, ValueError):
        raise SampleFileError(path, "attribute 'iteration' of the emcee backend is not a "
                              "number", name) from None
    if filled < 0:
        raise SampleFileError(path, f"attribute 'iteration' of the emcee backend is {filled}",
                              name)
    filled = min(filled, steps)
    if opts.burn >= filled:
        raise SampleFileError(path, f"burn-in {opts.burn} leaves nothing of {filled} steps", name)
    kept_steps = len(range(opts.burn, filled, opts.thin))
    n = kept_steps * walkers
    rows = _rows_to_read(n, opts)
    ks = np.arange(n) if rows is None else rows
    step_k, walker = np.divmod(ks, walkers)
    values = _gather(ds, step_k, kept_steps, step=opts.thin, start=opts.burn, inner=walker)
    cols = {}
    lp_name = opts.log_prob_dataset or (f"{group.name}/log_prob".lstrip("/")
                                        if "log_prob" in group else None)
    if lp_name is not None:
        lds = checked_dataset(path, f, lp_name, (2,))
        if lds.shape[:2] != (steps, walkers):
            raise SampleFileError(path, f"shape {lds.shape} does not match the chain's "
                                  f"{(steps, walkers)}", lp_name)
        # the log-prob dataset is 2-D (steps, walkers): gather its rows the same way
        lp = _gather(lds, step_k, kept_steps, step=opts.thin, start=opts.burn, inner=walker)
        cols["log_prob"] = lp.reshape(-1)
    return SampleSet(values, **_meta(path, f, group, d), **cols,
                     origin=_provisional_origin(n, rows))


def _read_text(path, opts: ReadOptions) -> SampleSet:
    """A weighted text chain (:mod:`likeflow.data.chains`); burn-in and thinning drop rows, and the
    origin counts rows after them (as for emcee), which ``max_samples`` subsamples."""
    def kept(n: int) -> np.ndarray:
        rows = np.arange(opts.burn, n, opts.thin)
        if len(rows) == 0:
            raise SampleFileError(path, f"burn-in {opts.burn} leaves nothing of {n} rows")
        return rows

    def rows_of(n: int) -> np.ndarray:
        rows = kept(n)
        return rows[file_rows(len(rows), opts)]

    values, weights, log_l, names, bounds, n = read_text_chain(os.fspath(path), opts.layout,
                                                               rows_of)
    s = SampleSet(values, names=names, bounds=bounds, log_prob=log_l, log_likelihood=log_l,
                  weights=weights)
    n_kept = len(kept(n))
    s.origin = Origin(os.path.realpath(os.fspath(path)), n_kept, file_rows(n_kept, opts),
                      opts.to_dict())
    return s


def _provisional_origin(n: int, rows: np.ndarray | None) -> Origin:
    return Origin("", n, np.arange(n) if rows is None else rows, {})


def _list_datasets(f: h5py.File) -> str:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(f"{name} {obj.shape}")
                 if isinstance(obj, h5py.Dataset) else None)
    return ", ".join(found[:12]) + (" ..." if len(found) > 12 else "") if found else "none"


def _short_list(xs: Sequence[str], k: int = 8) -> str:
    xs = list(xs)
    return ", ".join(xs[:k]) + (f" (+{len(xs) - k} more)" if len(xs) > k else "")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
