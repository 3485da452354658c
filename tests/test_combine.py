"""Combination of surrogates, marginals and the profile command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from likeflow.cli import cli  # noqa: E402
from likeflow.targets.combination import Combination  # noqa: E402
from likeflow.errors import LikeflowError  # noqa: E402
from likeflow.fitting.run import marginal  # noqa: E402
from likeflow.targets.mcmc import MCMCConfig  # noqa: E402
from likeflow.data.samples import SampleSet, read_samples  # noqa: E402
from likeflow.fitting.run import fit  # noqa: E402
from likeflow.surrogate.loading import load  # noqa: E402
from likeflow.fitting.loop import TrainConfig  # noqa: E402


def measurement(nuisance, seed):
    """mu ~ N(1, 1) measured with its own nuisance parameter (correlation 0.5)."""
    x = np.random.default_rng(seed).multivariate_normal([1.0, 0.0], [[1, .5], [.5, 1]], 20000)
    return SampleSet(x, names=["mu", nuisance], poi=["mu"])


@pytest.fixture(scope="module")
def two_measurements(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comb")
    paths = []
    for k, nuis in enumerate(["theta_a", "theta_b"]):
        fit(measurement(nuis, k), validate=False, flow_config={"layers": 3, "hidden": (32, 32)},
            # the profile test below compares tails at 2 sigma: the plateau schedule at 1e-3
            # (what these tolerances were set with) anneals further on 16k samples than the
            # cosine, which early stopping ends while the rate is still high
            seed=k, train_config=TrainConfig(epochs=25, patience=5, batch_size=256,
                                     schedule="plateau", learning_rate=1e-3),
            out=folder / f"{nuis}.likeflow.h5")
        paths.append(folder / f"{nuis}.likeflow.h5")
    return paths, folder


@pytest.mark.slow
def test_combining_the_same_gaussian_twice_halves_the_variance(two_measurements):
    paths, _ = two_measurements
    joint = Combination([load(p) for p in paths])
    assert joint.names == ["mu", "theta_a", "theta_b"] and joint.shared == ["mu"]
    s, diag = joint.sample_set(64 * 200, config=MCMCConfig(chains=64, warmup=300, seed=1))
    assert diag["converged"]
    var_one = read_samples_var(paths[0])
    assert s.values[:, 0].var() == pytest.approx(var_one / 2, rel=0.12)
    assert s.values[:, 0].mean() == pytest.approx(1.0, abs=0.08)


def read_samples_var(path):
    return load(path).sample(50000, seed=3)[:, 0].var()


@pytest.mark.slow
def test_combine_cli_writes_the_joint_samples(two_measurements, tmp_path):
    paths, _ = two_measurements
    out = tmp_path / "joint.h5"
    r = CliRunner().invoke(cli, ["combine", *map(str, paths), "-n", "400", "-o", str(out),
                                 "--chains", "8", "--warmup", "100", "--allow-unconverged"])
    assert r.exit_code == 0, r.output
    s = read_samples(out)
    assert s.names == ["mu", "theta_a", "theta_b"] and s.log_prob is not None


def test_combine_bad_input(two_measurements, tmp_path):
    paths, _ = two_measurements
    out = tmp_path / "joint.h5"
    r = CliRunner().invoke(cli, ["combine", str(paths[0]), "-n", "200", "-o", str(out)])
    assert r.exit_code == 2 and "at least two" in r.stderr
    with pytest.raises(LikeflowError, match="unknown parameters"):
        Combination([load(p) for p in paths], shared_priors={"nope": "normal"})


def test_normal_shared_prior_is_counted_once(two_measurements):
    paths, _ = two_measurements
    flat = Combination([load(p) for p in paths])
    normal = Combination([load(p) for p in paths], shared_priors={"mu": "normal"})
    x = np.array([[0.5, 0.1, -0.2], [2.0, 0.0, 0.0]])
    diff = normal.evaluate(x)["log_prob"] - flat.evaluate(x)["log_prob"]
    np.testing.assert_allclose(diff, 0.5 * x[:, 0] ** 2 + 0.5 * np.log(2 * np.pi))


def test_marginal_surrogate(two_measurements, tmp_path):
    paths, _ = two_measurements
    full = load(paths[0])
    m = marginal(full, ["mu"], n=20000, train_config=TrainConfig(epochs=10, batch_size=256))
    assert m.names == ["mu"] and m.poi == ["mu"]
    x = np.linspace(-1, 3, 5)[:, None]
    # the marginal of mu is N(1, 1)
    from scipy import stats
    np.testing.assert_allclose(m.log_prob(x), stats.norm(1, 1).logpdf(x[:, 0]), atol=0.1)
    m.save(tmp_path / "m.likeflow.h5")
    r = CliRunner().invoke(cli, ["marginal", str(paths[0]), "--params", "mu,nope", "-o",
                                 str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "unknown parameters ['nope']" in r.stderr


def test_profile_cli_with_plot_and_comparison(two_measurements, tmp_path):
    paths, _ = two_measurements
    ref = tmp_path / "ref.json"
    grid = np.linspace(-1, 3, 5)
    ref.write_text(json.dumps({"profile": {"values": grid.tolist(),
                                           "q": ((grid - 1.0) ** 2).tolist()}}))
    plot = tmp_path / "mu.png"
    out = tmp_path / "p.json"
    r = CliRunner().invoke(cli, ["profile", str(paths[0]), "--range", "-1:3", "--points", "5",
                                 "--plot", str(plot), "--compare", str(ref), "--json", str(out),
                                 "--samples", "20000"])
    assert r.exit_code == 0, r.output
    assert "best fit: mu" in r.stdout and "asymptotic" in r.stdout and "Bayesian" in r.stdout
    assert plot.stat().st_size > 10000
    res = json.loads(out.read_text())
    q = np.array(res["profile"]["q"])
    # the profile of mu in a 2-dim Gaussian with unit variance: (mu - 1)^2, learned closely
    np.testing.assert_allclose(q, (grid - 1) ** 2, atol=0.35)
    assert res["upper_limit"]["value"] == pytest.approx(1 + 1.645, abs=0.25)
