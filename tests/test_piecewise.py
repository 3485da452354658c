"""Piecewise flows (fit --clusters): four separated modes without the bridges a single flow
draws between them; the clustering criteria; the file (both backends), profiles, errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy import stats

import likeflow
from likeflow.surrogate.piecewise import PiecewiseSurrogate, clusters

pytest.importorskip("tensorflow", reason="fits flows")
# one 48 s fit shared by the module's tests
pytestmark = pytest.mark.slow

D = 2
CENTRES = np.array([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
# beyond this distance from every mode lies 6.3e-5 of the mixture's mass (4 sigma, two-sided)
R_BETWEEN = float(np.sqrt(stats.chi2(D).isf(6.3e-5)))


def modes(n, seed):
    rng = np.random.default_rng(seed)
    x = CENTRES[rng.integers(0, 4, n)] + rng.normal(size=(n, D))
    lp = np.log(np.mean([stats.multivariate_normal(c, np.eye(D)).pdf(x) for c in CENTRES], 0))
    return likeflow.SampleSet(x, log_prob=lp)


def between(x):
    d = np.linalg.norm(x[:, None, :] - CENTRES[None], axis=2)
    return float(np.mean(d.min(1) > R_BETWEEN))


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pw")
    data = modes(8000, 0)
    kw = dict(seed=0, validate=False, flow_config={"layers": 3, "hidden": (32, 32)},
              train_config=likeflow.TrainConfig(epochs=30))
    single = likeflow.fit(data, out=folder / "single.likeflow.h5", **kw)
    piece = likeflow.fit(data, out=folder / "piece.likeflow.h5", clusters="auto", **kw)
    return folder, single, piece


def test_piecewise_removes_the_bridges(fits):
    folder, single, piece = fits
    assert isinstance(piece, PiecewiseSurrogate) and len(piece.components) == 4
    np.testing.assert_allclose(piece.weights, 0.25, atol=0.03)
    m_single = between(single.sample(50_000, seed=1))
    m_piece = between(piece.sample(50_000, seed=1))
    assert m_single > 0.01                     # the single flow bridges the modes
    assert m_piece < 0.2 * m_single and m_piece < 0.003
    test = modes(4000, 9)
    assert piece.log_prob(test.values).mean() > single.log_prob(test.values).mean() + 0.05


def test_piecewise_file_on_both_backends(fits):
    folder, _, piece = fits
    x = modes(500, 3).values
    for backend in ("tensorflow", "numpy"):
        again = likeflow.load(folder / "piece.likeflow.h5", backend=backend)
        assert isinstance(again, PiecewiseSurrogate) and again.backend == backend
        np.testing.assert_allclose(again.log_prob(x), piece.log_prob(x), rtol=1e-5, atol=1e-5)
    with h5py.File(folder / "piece.likeflow.h5") as f:
        rec = json.loads(f["piecewise"][()])
        assert rec["components"] == 4 and "components/3/weights" in f
    s = likeflow.load(folder / "piece.likeflow.h5", backend="numpy").sample(2000, seed=4)
    assert between(s) < 0.01
    # draws with their density: the mixture's, the draws of every flow (as sample's)
    xs, lps = likeflow.load(folder / "piece.likeflow.h5",
                            backend="numpy").sample_with_log_prob(2000, seed=4)
    np.testing.assert_array_equal(xs, s)
    np.testing.assert_allclose(lps, again.log_prob(s), rtol=1e-12)
    # the mixture's gradient: the flows' weighted by their responsibilities, on both backends
    num = likeflow.load(folder / "piece.likeflow.h5", backend="numpy")
    lp, g = num.log_prob_grad(x)
    h = 1e-6
    fd = np.stack([(num.log_prob(x + h * e) - num.log_prob(x - h * e)) / (2 * h)
                   for e in np.eye(x.shape[1])], axis=1)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(piece.log_prob_grad(x)[1], g, rtol=1e-3, atol=1e-3)  # float32
    # a profile goes through the whole mixture: both modes of x0 have q near 0
    res = likeflow.profile(piece, "x0", values=np.array([-5.0, 0.0, 5.0]),
                           bayesian_samples=5000)
    q = np.asarray(res.profile.q)
    assert q[0] < 0.5 and q[2] < 0.5 and q[1] > 10


def test_piecewise_validation_and_damage(fits, tmp_path):
    folder, _, piece = fits
    result = likeflow.validate(piece, modes(6000, 5), seed=1)
    assert result.latent["pvalue"] > 1e-4          # responsibilities-drawn latents are normal
    path = tmp_path / "p.likeflow.h5"
    piece.save(path)
    with h5py.File(path, "r+") as f:
        del f["components/2"]
    with pytest.raises(likeflow.SurrogateFileError, match="components/2' is missing"):
        likeflow.load(path)


def test_cluster_criteria():
    rng = np.random.default_rng(1)
    gauss = rng.normal(size=(6000, 6))
    assert clusters(gauss, "auto")["components"] == 1
    skewed = rng.gamma(2.0, size=(6000, 6))
    assert clusters(skewed, "auto")["components"] == 1
    four = np.concatenate([modes(6000, 2).values, rng.normal(size=(6000, 4))], axis=1)
    rec = clusters(four, "auto")
    assert rec["components"] == 4 and "silhouette" in rec["criterion"]
    with pytest.raises(likeflow.LikeflowError, match="positive integer"):
        clusters(gauss, 0)


def test_too_many_clusters_is_an_error():
    with pytest.raises(likeflow.LikeflowError, match="too few for a flow"):
        likeflow.fit(modes(600, 0), clusters=8, validate=False,
                     train_config=likeflow.TrainConfig(epochs=1))
