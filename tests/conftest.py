"""Shared fixtures: small sample files in every layout likeflow reads."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from likeflow.data.samples import SampleSet, write_samples

# the scripts that made the stored test files are not tests (run by hand against old
# checkouts); --doctest-modules would import them, and two share the name make.py
collect_ignore_glob = ["data/*"]

# TensorFlow's start-up chatter would drown pytest's output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# one thread per pytest-xdist worker: the workers share the cores (pyproject's addopts)
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def gauss_set(rng):
    """3-dim correlated Gaussian with a bounded POI, 2000 rows."""
    cov = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
    x = rng.multivariate_normal([0.5, -1.0, 2.0], cov, size=2000)
    x[:, 0] = np.clip(x[:, 0], -3.9, 4.9)
    lp = -0.5 * np.einsum("ni,ij,nj->n", x - [0.5, -1.0, 2.0], np.linalg.inv(cov),
                          x - [0.5, -1.0, 2.0])
    return SampleSet(x, names=["mu", "theta", "phi"], poi=["mu"],
                     bounds=[[-4, 5], [-np.inf, np.inf], [-np.inf, np.inf]], log_prob=lp)


@pytest.fixture
def likeflow_file(tmp_path, gauss_set):
    path = tmp_path / "samples.h5"
    write_samples(path, gauss_set)
    return path


@pytest.fixture
def dnn_file(tmp_path, rng):
    """DNNLikelihood layout: data/X (N, D), data/Y (N,)."""
    path = tmp_path / "dnn.h5"
    x = rng.normal(size=(1500, 4))
    with h5py.File(path, "w") as f:
        f.create_dataset("data/X", data=x)
        f.create_dataset("data/Y", data=-0.5 * (x ** 2).sum(1))
    return path, x


@pytest.fixture
def emcee_file(tmp_path, rng):
    """emcee backend layout: mcmc/chain (steps, walkers, D), mcmc/log_prob, 'iteration' < steps."""
    path = tmp_path / "emcee.h5"
    steps, walkers, d, filled = 120, 16, 3, 100
    chain = np.zeros((steps, walkers, d))
    chain[:filled] = rng.normal(size=(filled, walkers, d))
    lp = -0.5 * (chain ** 2).sum(-1)
    with h5py.File(path, "w") as f:
        g = f.create_group("mcmc")
        g.attrs["iteration"] = filled
        g.create_dataset("chain", data=chain)
        g.create_dataset("log_prob", data=lp)
    return path, chain[:filled], lp[:filled]
