"""The numpy reader: surrogate files evaluated without TensorFlow, equal to TensorFlow's numbers.

Runs in two environments (``.ci/run``): the test environment, where the TensorFlow-marked tests
compare the two backends live for every flow, dtype, activation, permutation and bound map; and
a second virtual environment with ``pip install .`` only (no TensorFlow), where the committed
files of the version-1 format (``tests/data/v1``, made by ``make.py`` there) are checked against
the TensorFlow numbers stored beside them, and the CLI runs without TensorFlow.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import likeflow
from likeflow.flows.config import FlowConfig, weight_roles, expected_weight_shapes
from likeflow.flows.numpy_flow import NumpyFlow
from flow_helpers import random_whitening

HERE = os.path.dirname(os.path.abspath(__file__))
V1 = os.path.join(HERE, "data", "v1")
FILES = [f"{flow}_{dtype}" for flow in ("maf", "realnvp", "ansf", "cnsf")
         for dtype in ("float32", "float64")]
HAVE_TF = all(importlib.util.find_spec(m) is not None
              for m in ("tensorflow", "tensorflow_probability", "tf_keras"))
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="compares with TensorFlow (not installed)")

# What "equal" means: float64 files to 1e-10 relative; float32 files to 1e-5 relative where the
# surrogate was trained, and to 1e-4 far outside (latent radius ~50, log density ~ -1000s), where
# TensorFlow's own float32 arithmetic loses digits (numpy computes in float64).
REL = {"float32": 1e-5, "float64": 1e-10}
# the worst of 4000 points: in float32, 3 random spline layers at a point 1e-7 from a bound
# reach 1.2e-4 on some CPUs (this machine, 2026-12) and stay below 1e-4 on others
REL_FAR = {"float32": 3e-4, "float64": 1e-10}
# A sketch of TensorFlow's hiding: every import of these fails, as in an environment without it.
HIDE_TF = (
    "import sys, importlib.abc\n"
    "class _NoTF(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'tensorflow_probability', 'tf_keras'):\n"
    "            raise ModuleNotFoundError(name)\n"
    "sys.meta_path.insert(0, _NoTF())\n")


@pytest.fixture(scope="module")
def expected():
    return np.load(os.path.join(V1, "expected.npz"))


def _soft_holds(config, pts):
    """The points with each soft-clipped value moved to the nearest point where the clip's
    inverse is held (:func:`likeflow.flows.plan.softclip_edge`), if it lies beyond it."""
    from likeflow.flows.plan import softclip_edge

    c = np.asarray(config.softclip, np.float64)
    b = config.flow_bounds_array()  # a reflected column's mirror image is held at the far bound
    soft = c > 0
    near = c * softclip_edge()
    out = pts.copy()
    inside = (pts >= b[:, 0]) & (pts <= b[:, 1])
    out[:, soft] = np.where(inside[:, soft], np.clip(pts[:, soft], (b[:, 0] + near)[soft],
                                                     (b[:, 1] - near)[soft]), pts[:, soft])
    return out


def _rel(a, b):
    fin = np.isfinite(b)
    assert np.array_equal(np.isfinite(a), fin)
    return np.abs(a[fin] - b[fin]) / np.maximum(np.abs(b[fin]), 1e-300), fin


@pytest.mark.parametrize("name", FILES)
def test_version_1_files_evaluate_as_tensorflow_did(name, expected):
    """log_prob at 10,000 random and boundary points, the sampling map at fixed latent points,
    and samples that TensorFlow's pass a two-sample test against. Near a soft clip's bounds
    the density is now held (session 30): there it is the density at the held point."""
    sur = likeflow.load(os.path.join(V1, f"{name}.likeflow.h5"), backend="numpy")
    assert sur.backend == "numpy" and sur.config.flow == name.split("_")[0]
    dtype = sur.config.dtype
    pts = expected["points"].astype(np.float64)
    lp, theirs = sur.log_prob(pts), expected[f"{name}/log_prob"]
    np.testing.assert_array_equal(np.isfinite(lp), np.isfinite(theirs))
    assert (~np.isfinite(lp)).sum() == 50         # the points outside the bounds, and only they
    held_at = _soft_holds(sur.config, pts)
    moved = np.any(held_at != pts, axis=1)
    assert moved.sum() > 10
    np.testing.assert_array_equal(lp[moved], sur.log_prob(held_at[moved]))
    rel, fin = _rel(lp[~moved], theirs[~moved])
    inside = np.all((pts >= sur.support["lo"]) & (pts <= sur.support["hi"]), axis=1)[~moved][fin]
    assert inside.sum() > 1000
    assert rel[inside].max() < REL[dtype]
    assert rel.max() < REL_FAR[dtype]
    x = sur.from_latent(expected["latent"])
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(x, expected[f"{name}/from_latent"], rtol=tol, atol=tol)
    mine, theirs = sur.sample(3000, seed=3), expected[f"{name}/samples"]
    pvalues = [stats.ks_2samp(mine[:, i], theirs[:, i]).pvalue for i in range(sur.dim)]
    assert min(pvalues) > 0.01 / sur.dim          # Bonferroni over the dimensions
    assert np.all((mine >= sur.bounds[:, 0]) & (mine <= sur.bounds[:, 1]))


def test_seeded_numpy_samples_repeat_and_differ_by_seed():
    sur = likeflow.load(os.path.join(V1, "maf_float32.likeflow.h5"), backend="numpy")
    a, b = sur.sample(100, seed=5), sur.sample(100, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, sur.sample(100, seed=6))
    assert not np.allclose(sur.sample(100), sur.sample(100))


@needs_tf
@pytest.mark.parametrize("name", ["maf_float64", "cnsf_float64", "ansf_float32"])
def test_one_seed_gives_the_same_samples_on_every_backend(name):
    """A seeded sample is the same points with TensorFlow and with numpy (to float rounding):
    both draw the base points from numpy's generator. More than one batch, and a reflected
    bound (cnsf's) folded the same way."""
    path = os.path.join(V1, f"{name}.likeflow.h5")
    n = 16384 + 7                                   # two batches: the second seeded apart
    tf_x = likeflow.load(path).sample(n, seed=3)
    np_x = likeflow.load(path, backend="numpy").sample(n, seed=3)
    rtol = 1e-9 if name.endswith("64") else 2e-4
    np.testing.assert_allclose(tf_x, np_x, rtol=rtol, atol=rtol)


def test_latent_maps_invert_each_other():
    for name in ("ansf_float64", "realnvp_float64"):
        sur = likeflow.load(os.path.join(V1, f"{name}.likeflow.h5"), backend="numpy")
        z = np.random.default_rng(0).standard_normal((500, sur.dim))
        # before the fold at the reflected bounds, the maps are exact inverses
        np.testing.assert_allclose(sur.to_latent(sur.flow.from_latent(z, fold=False)), z,
                                   atol=1e-8)


def test_a_spline_per_column_gathers_the_same_numbers_as_a_spline_per_point():
    """The marginal spline on a batch (bins counted per column, each bin's constants computed
    once and gathered) gives the bits of the same splines given per point (the generic path),
    inside, outside and at the knots, both ways."""
    from likeflow.flows.numpy_flow import Spline
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(5, 3 * 8 - 1))
    per_column = Spline(raw, 8, 3.0)
    y = rng.normal(0, 2, size=(400, 5))
    y[:5] = per_column._ky[:, 3]                    # on a knot
    y[5:10] = [[-3.0] * 5, [3.0] * 5, [-9.0] * 5, [9.0] * 5, [np.nan] * 5]
    per_point = Spline(np.broadcast_to(raw, (400, 5, 3 * 8 - 1)), 8, 3.0)
    assert per_column._per_column(y) and not per_point._per_column(y)
    for fast, slow in ((per_column.inverse(y), per_point.inverse(y)),
                       (per_column.forward(y), per_point.forward(y))):
        for a, b in zip(fast, slow):
            np.testing.assert_array_equal(a, b)


def test_threaded_numpy_batches_give_the_same_bits():
    """The numpy backend evaluates batches on one thread per core: the numbers are those of
    one thread and one batch, in order."""
    from likeflow.surrogate.artifact import _Batched
    sur = likeflow.load(os.path.join(V1, "ansf_float64.likeflow.h5"), backend="numpy")
    x = sur.sample(5000, seed=2)
    flow = sur.flow
    one = flow.log_prob(x)
    np.testing.assert_array_equal(sur.log_prob(x), one)
    np.testing.assert_array_equal(_Batched(flow.log_prob, 1024, threads=3)(x), one)
    np.testing.assert_array_equal(sur.log_prob_grad(x[:3000])[1],
                                  flow.log_prob_grad(x[:3000])[1])
    assert _Batched(flow.log_prob, 1024, threads=3)(x[:0]).shape == (0,)


@pytest.mark.parametrize("name", ["maf_float64", "realnvp_float64", "ansf_float32", "cnsf_float32"])
def test_no_points_give_empty_answers(name):
    """0 points (an empty selection) give empty arrays, not a reshape error, on every flow."""
    sur = likeflow.load(os.path.join(V1, f"{name}.likeflow.h5"), backend="numpy")
    none = np.zeros((0, sur.dim))
    assert sur.log_prob(none).shape == (0,)
    lp, grad = sur.log_prob_grad(none)
    assert lp.shape == (0,) and grad.shape == (0, sur.dim)
    assert sur.to_latent(none).shape == (0, sur.dim)


def test_backend_choice_and_errors(monkeypatch):
    path = os.path.join(V1, "maf_float32.likeflow.h5")
    with pytest.raises(likeflow.LikeflowError, match="unknown backend"):
        likeflow.load(path, backend="torch")
    monkeypatch.setenv("LIKEFLOW_BACKEND", "numpy")
    assert likeflow.load(path).backend == "numpy"
    monkeypatch.setenv("LIKEFLOW_BACKEND", "jax")
    with pytest.raises(likeflow.LikeflowError, match="LIKEFLOW_BACKEND"):
        likeflow.load(path)


def test_numpy_surrogate_saves_the_same_file(tmp_path):
    src = os.path.join(V1, "cnsf_float32.likeflow.h5")
    sur = likeflow.load(src, backend="numpy")
    sur.save(tmp_path / "again.likeflow.h5")
    again = likeflow.load(tmp_path / "again.likeflow.h5", backend="numpy")
    for (n1, w1), (n2, w2) in zip(sur.weight_arrays(), again.weight_arrays()):
        assert n1 == n2 and w1.dtype == w2.dtype
        np.testing.assert_array_equal(w1, w2)
    pts = sur.sample(200, seed=1)
    np.testing.assert_array_equal(sur.log_prob(pts), again.log_prob(pts))


def test_numpy_profile_agrees_with_tensorflow_profile_of_the_same_file():
    """profile on the numpy backend (the reader's exact gradients) of a parameter piled at its
    bound (reflected): every maximum within 1e-3 of TensorFlow's or higher (TensorFlow's
    L-BFGS stopped 0.003 lower against the reflected bound at x0 = 4), and close."""
    sur = likeflow.load(os.path.join(V1, "maf_float64.likeflow.h5"), backend="numpy")
    res = likeflow.profile(sur, "x0", values=np.linspace(0.0, 4.0, 9), bayesian_samples=20000)
    q = np.asarray(res.profile.q)
    assert np.all(np.isfinite(q)) and q.min() > -1e-6 and q[-1] > q[0]
    if HAVE_TF:
        tf_res = likeflow.profile(likeflow.load(sur.path, backend="tensorflow"), "x0",
                                  values=np.linspace(0.0, 4.0, 9), bayesian_samples=20000)
        diff = np.asarray(res.profile.log_prob) - np.asarray(tf_res.profile.log_prob)
        assert diff.min() > -1e-3 and diff.max() < 0.01


def test_profile_without_a_credible_limit():
    """bayesian_samples=0: the profile and its q~ limit, no surrogate samples drawn."""
    sur = likeflow.load(os.path.join(V1, "maf_float64.likeflow.h5"), backend="numpy")
    with_it = likeflow.profile(sur, "x0", values=np.linspace(0.0, 4.0, 9), bayesian_samples=2000)
    res = likeflow.profile(sur, "x0", values=np.linspace(0.0, 4.0, 9), bayesian_samples=0)
    assert res.bayesian_upper_limit is None and with_it.bayesian_upper_limit is not None
    assert res.upper_limit.value == with_it.upper_limit.value


# --- without TensorFlow at all --------------------------------------------------------------

def _run_without_tf(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LIKEFLOW_BACKEND"}
    return subprocess.run([sys.executable, "-c", HIDE_TF + code], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)


def test_import_load_and_cli_without_tensorflow(tmp_path):
    """import, load, eval, sample, validate and profile with every TensorFlow import failing,
    and TensorFlow never imported."""
    sur_path = os.path.join(V1, "realnvp_float32.likeflow.h5")
    code = f"""
import likeflow, numpy as np
from click.testing import CliRunner
from likeflow.cli import cli
assert 'tensorflow' not in sys.modules
s = likeflow.load({sur_path!r})
assert s.backend == 'numpy', s.backend
r = CliRunner()
def ok(*args):
    res = r.invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output
ok('sample', {sur_path!r}, '-n', '3000', '-o', 'fresh.h5', '--seed', '1')
out = ok('eval', {sur_path!r}, 'fresh.h5')
assert len(out.split()) == 3000 and all(np.isfinite(float(v)) for v in out.split())
ok('sample', {sur_path!r}, '-n', '3000', '-o', 'test.h5', '--seed', '2')
print(ok('validate', {sur_path!r}, 'test.h5', '--report', 'rep', '--no-plots'))
print(ok('profile', {sur_path!r}, '--poi', 'x0', '--points', '5', '--samples', '2000'))
assert 'tensorflow' not in sys.modules
print('OK')
"""
    res = _run_without_tf(code, tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "OK" in res.stdout and "upper limit" in res.stdout
    assert "PASS" in res.stdout or "WARN" in res.stdout or "FAIL" in res.stdout


def test_training_without_tensorflow_names_the_extra(tmp_path):
    code = """
import likeflow, numpy as np
try:
    likeflow.fit(np.random.default_rng(0).normal(size=(500, 2)))
except likeflow.LikeflowError as e:
    print('ERR', e)
"""
    res = _run_without_tf(code, tmp_path)
    assert "ERR" in res.stdout and "likeflow[tf]" in res.stdout, res.stdout + res.stderr[-2000:]


# --- against TensorFlow, live ---------------------------------------------------------------

def _data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:, 0] = np.abs(x[:, 0])          # piled at its bound 0: reflected
    x[:, 1] = rng.uniform(0, 1, n)     # flat to both bounds: probit (or sigmoid)
    bounds = np.array([[0, 10], [0, 1], [-8, 8], [-np.inf, np.inf], [-np.inf, 20]], float)
    return x, bounds


def _points(x, bounds, rng):
    """Random points over and beyond the data, and points on, near and outside the bounds."""
    n = 4000
    lo, hi = x.min(0) - 1, x.max(0) + 1
    p = lo + (hi - lo) * rng.random((n, x.shape[1]))
    fin = np.isfinite(bounds)
    for j in range(x.shape[1]):
        for k in range(2):
            if fin[j, k]:
                rows = rng.choice(n, 150, replace=False)
                p[rows, j] = bounds[j, k] + (1 - 2 * k) * rng.choice([0, 1e-7, 1e-3], 150)
    return np.clip(p, np.where(fin[:, 0], bounds[:, 0], -np.inf),
                   np.where(fin[:, 1], bounds[:, 1], np.inf))


def perturbed(flow, rng, scale: float) -> NumpyFlow:
    """Move a fresh TensorFlow flow's weights by ``scale`` normal noise (every transform far
    from the identity; the MADE's masked entries stay 0) and return its numpy twin."""
    for v in flow.trainable_variables:
        w = v.numpy()
        keep = (w != 0) if (w.ndim == 2 and "marginal" not in v.name) else 1  # MADE masks
        v.assign(w + scale * rng.normal(size=w.shape) * keep)
    if flow.config.whiten:
        flow.whiten.assign(random_whitening(flow.config.dim, rng))
    return NumpyFlow(flow.config, [v.numpy() for v in flow.stored_variables])


CASES = [(flow, dtype, act, perm, bmap)
         for flow in ("maf", "realnvp", "ansf", "cnsf")
         for dtype, act, perm, bmap in (("float32", "relu", "reverse", "probit"),
                                        ("float64", "tanh", "random", "probit"),
                                        ("float64", "elu", "rotate", "sigmoid"),
                                        ("float64", "silu", "reverse", "probit"))]


@needs_tf
@pytest.mark.parametrize("flow,dtype,act,perm,bmap", CASES)
def test_numpy_flow_equals_tensorflow_flow(flow, dtype, act, perm, bmap):
    """Random (not freshly initialised) weights: every transform far from the identity."""
    from likeflow.flows.tf_flow import build_flow, tf

    x, bounds = _data()
    cfg = FlowConfig.from_data(x, flow=flow, layers=3, hidden=(8, 7), dtype=dtype,
                               bounds=bounds, activation=act, permutation=perm, seed=3,
                               bound_map=bmap, bins=5, marginal_spline=True)
    f = build_flow(cfg)
    rng = np.random.default_rng(1)
    nf = perturbed(f, rng, 0.3)
    # the points as TensorFlow sees them (a float32 flow rounds them first)
    pts = _points(x, bounds, rng).astype(dtype).astype(np.float64)
    a = f.log_prob(tf.constant(pts.astype(dtype))).numpy().astype(np.float64)
    b = nf.log_prob(pts)
    rel, _ = _rel(b, a)
    assert rel.max() < REL_FAR[dtype]
    assert np.percentile(rel, 99) < REL[dtype]
    z = rng.standard_normal((300, 5))
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(nf.from_latent(z),
                               f.from_latent(tf.constant(z.astype(dtype))).numpy(),
                               rtol=tol, atol=tol)
    inside = pts[np.all(np.abs(f.to_latent(tf.constant(pts.astype(dtype))).numpy()) < 6, 1)]
    np.testing.assert_allclose(nf.to_latent(inside),
                               f.to_latent(tf.constant(inside.astype(dtype))).numpy(),
                               rtol=10 * tol, atol=10 * tol)


@needs_tf
@pytest.mark.parametrize("dim, hidden, flow", [(2, (6,), "maf"), (7, (6, 5, 4), "ansf"),
                                               (30, (64, 64), "maf"), (5, (3,), "ansf")])
def test_the_numpy_made_masks_are_tfps(dim, hidden, flow):
    """The numpy reader builds the MADE's masks without TensorFlow (made_masks); TFP's
    AutoregressiveNetwork owns them in training: the same 0/1 matrices, layer by layer."""
    from likeflow.flows.numpy_flow import made_masks
    from likeflow.flows.tf_flow import build_flow

    x = np.random.default_rng(0).normal(size=(200, dim))
    cfg = FlowConfig.from_data(x, flow=flow, layers=1, hidden=hidden)
    made = build_flow(cfg).conditioners[0]
    made(x[:2].astype("float32"))        # TFP makes its masks when the network is built
    ours = made_masks(dim, hidden, cfg.params_per_dimension)
    assert len(ours) == len(made._masks)
    for a, b in zip(ours, made._masks):
        np.testing.assert_array_equal(a, np.asarray(b, dtype=float))


@needs_tf
@pytest.mark.parametrize("flow", ["maf", "realnvp", "ansf", "cnsf"])
@pytest.mark.parametrize("hidden", [(6,), (6, 5, 4), (9, 8, 7, 6, 5)])
def test_weight_roles_are_the_tensorflow_variable_order(flow, hidden):
    """The file's weight order, named from the config alone, is TensorFlow's variable order."""
    from likeflow.flows.tf_flow import build_flow

    x, _ = _data(300)
    cfg = FlowConfig.from_data(x, flow=flow, layers=2, hidden=hidden, marginal_spline=True)
    f = build_flow(cfg)
    roles = {}
    for layer, cond in enumerate(f.conditioners):
        for j, v in enumerate(cond.trainable_variables):  # kernel, bias per dense, in order
            roles[id(v)] = f"layer{layer}/dense{j // 2}/{'kernel' if j % 2 == 0 else 'bias'}"
    roles[id(f.whiten)] = "whiten"
    got = [roles.get(id(v), "marginal_spline") for v in f.stored_variables]
    assert got == weight_roles(cfg)
    assert [tuple(v.shape) for v in f.stored_variables] == expected_weight_shapes(cfg)


@needs_tf
def test_surrogate_backends_agree_after_a_fit(tmp_path):
    x, bounds = _data(3000)
    sur = likeflow.fit(x, bounds=bounds, seed=0, validate=False,
                       out=tmp_path / "s.likeflow.h5",
                       flow_config={"flow": "ansf", "layers": 2, "hidden": (16,)},
                       train_config=likeflow.TrainConfig(epochs=3))
    a = likeflow.load(tmp_path / "s.likeflow.h5", backend="numpy")
    assert "backend=numpy" in repr(a)
    pts = sur.sample(5000, seed=1)
    rel, _ = _rel(a.log_prob(pts), sur.log_prob(pts))
    assert rel.max() < 1e-5
    # one seed, the same points on either backend (float32 rounding through the layers)
    np.testing.assert_allclose(a.sample(5000, seed=1), pts, rtol=2e-4, atol=2e-4)
    # the held-out and latent machinery of validation work the same
    np.testing.assert_allclose(a.latent_r2(pts[:100]), sur.latent_r2(pts[:100]), rtol=1e-3)


def test_combine_refuses_numpy_backed_surrogates():
    a = likeflow.load(os.path.join(V1, "maf_float32.likeflow.h5"), backend="numpy")
    b = likeflow.load(os.path.join(V1, "realnvp_float32.likeflow.h5"), backend="numpy")
    with pytest.raises(likeflow.LikeflowError, match="backend='tensorflow'"):
        likeflow.Combination([a, b])


def test_a_whitened_flow_starts_as_the_best_gaussian():
    """Zero layer weights and the data's whitening: the flow is the Gaussian of the data's
    mean and Ledoit-Wolf shrunk correlation, computed here the direct way (every row's outer
    product)."""
    from likeflow.flows.config import whitening

    rng = np.random.default_rng(4)
    a = rng.normal(size=(6, 6))
    x = rng.normal(size=(400, 6)) @ a.T + rng.normal(size=6)
    # (a zero marginal spline's slopes are 1 + its minimum slope: not exactly the identity)
    cfg = FlowConfig.from_data(x, flow="maf", layers=2, hidden=(8,), marginal_spline=False)
    assert cfg.whiten
    weights = [whitening(x, cfg) if role == "whiten" else np.zeros(shape)
               for role, shape in zip(weight_roles(cfg), expected_weight_shapes(cfg))]
    flow = NumpyFlow(cfg, weights)
    u = (x - x.mean(axis=0)) / x.std(axis=0)
    corr = u.T @ u / len(u)
    spread = sum(np.sum((np.outer(r, r) - corr) ** 2) for r in u) / len(u) ** 2
    shrink = min(1.0, spread / np.sum((corr - np.eye(6)) ** 2))
    assert 0 < shrink < 0.05
    std = x.std(axis=0)
    cov = ((1 - shrink) * corr + shrink * np.eye(6)) * np.outer(std, std)
    pts = x[:200] + rng.normal(size=(200, 6))
    np.testing.assert_allclose(flow.log_prob(pts),
                               stats.multivariate_normal(x.mean(axis=0), cov).logpdf(pts),
                               rtol=1e-10)


def test_independent_parameters_are_not_whitened_by_their_noise():
    """Uncorrelated data: the Ledoit-Wolf intensity shrinks the sample correlation's noise
    away (the whitening is the identity to a few per mille)."""
    from likeflow.flows.config import whitening

    x = np.random.default_rng(5).normal(size=(500, 20))
    cfg = FlowConfig.from_data(x, whiten=True)
    raw = np.abs(np.corrcoef(x, rowvar=False) - np.eye(20)).max()
    assert raw > 0.1
    assert np.abs(whitening(x, cfg) - np.eye(20)).max() < 0.2 * raw


def test_batches_on_threads_hold_blas_to_one_thread():
    """Our threads run one batch per core; BLAS's own threads on top of them contended for the
    cores (log_prob 1.4-1.6x slower): held to one inside, given back after, the same values."""
    from threadpoolctl import threadpool_info

    from likeflow.batching import map_batches

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    seen = []
    x = np.random.default_rng(0).normal(size=(4000, 8))
    w = np.random.default_rng(1).normal(size=(8, 8))

    def fn(b):
        seen.append(blas_threads())
        return b @ w

    out = map_batches(fn, x, 1000, threads=2)
    np.testing.assert_allclose(out, x @ w, rtol=1e-13)
    assert before and all(s == [1] * len(before) for s in seen)
    assert blas_threads() == before
