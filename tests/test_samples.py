"""Sample files: every layout read correctly, subsampling, the split, and the input checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from likeflow.errors import SampleFileError
from likeflow.data.samples import (ReadOptions, SampleSet, min_samples, read_samples, split_indices,
                              write_samples)


def test_roundtrip_keeps_everything(likeflow_file, gauss_set):
    s = read_samples(likeflow_file)
    np.testing.assert_array_equal(s.values, gauss_set.values)
    np.testing.assert_array_equal(s.log_prob, gauss_set.log_prob)
    assert s.names == ["mu", "theta", "phi"] and s.poi == ["mu"]
    np.testing.assert_array_equal(s.bounds, gauss_set.bounds)
    assert s.weights is None and s.log_likelihood is None


def test_dnnlikelihood_layout_is_detected(dnn_file):
    path, x = dnn_file
    s = read_samples(path)
    np.testing.assert_array_equal(s.values, x)
    np.testing.assert_allclose(s.log_prob, -0.5 * (x ** 2).sum(1))
    assert s.names == ["x0", "x1", "x2", "x3"]


def test_emcee_layout_burn_thin_and_unfilled_steps(emcee_file):
    path, chain, lp = emcee_file
    s = read_samples(path, burn=10, thin=3)
    kept = chain[10::3]
    np.testing.assert_array_equal(s.values, kept.reshape(-1, 3))
    np.testing.assert_array_equal(s.log_prob, lp[10::3].reshape(-1))
    # the zero rows beyond 'iteration' were never read (they would be a constant block)
    assert s.n == kept.shape[0] * kept.shape[1]


def test_max_samples_is_a_seeded_subset_of_the_rows(likeflow_file, gauss_set):
    a = read_samples(likeflow_file, max_samples=500, seed=3)
    b = read_samples(likeflow_file, max_samples=500, seed=3)
    c = read_samples(likeflow_file, max_samples=500, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert a.n == 500
    # every row is a row of the file, with its own log_prob, in file order
    full = {tuple(r): lp for r, lp in zip(gauss_set.values, gauss_set.log_prob)}
    assert all(full[tuple(r)] == lp for r, lp in zip(a.values, a.log_prob))


def test_block_reading_matches_a_plain_read(tmp_path, rng, monkeypatch):
    import likeflow.data.samples as samples
    monkeypatch.setattr(samples, "BLOCK_ROWS", 4)  # force many blocks
    x = rng.normal(size=(3000, 5))
    write_samples(tmp_path / "b.h5", SampleSet(x))
    s = read_samples(tmp_path / "b.h5", max_samples=1234, seed=9)
    rows = np.sort(np.random.default_rng(9).choice(3000, 1234, replace=False))
    np.testing.assert_array_equal(s.values, x[rows])


def test_split_is_disjoint_complete_and_reproducible():
    a = split_indices(1000, seed=5)
    b = split_indices(1000, seed=5)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    allrows = np.concatenate([a.train, a.validation, a.test])
    assert len(allrows) == 1000 and len(np.unique(allrows)) == 1000
    assert len(a.test) == 100 and len(a.validation) == 100
    assert not np.array_equal(split_indices(1000, seed=6).test, a.test)


def test_min_samples_grows_with_dimension():
    assert min_samples(2) == 100 and min_samples(95) == 950


def test_fingerprint_identifies_values(gauss_set):
    assert gauss_set.fingerprint() == SampleSet(gauss_set.values.copy()).fingerprint()
    other = gauss_set.values.copy()
    other[0, 0] += 1e-12
    assert SampleSet(other).fingerprint() != gauss_set.fingerprint()


def test_summary_uses_weights(rng):
    x = rng.normal(size=(1000, 2))
    w = rng.uniform(size=1000)
    s = SampleSet(x, weights=w).summary()
    np.testing.assert_allclose(s["parameters"][0]["mean"], np.average(x[:, 0], weights=w))


def test_read_options_roundtrip():
    o = ReadOptions(layout="emcee", burn=5, thin=2, max_samples=10)
    assert ReadOptions.from_dict(o.to_dict()) == o


@pytest.mark.parametrize("bad,pattern", [
    (dict(names=["a", "b"]), "2 parameter names for 3 columns"),
    (dict(names=["a", "a", "b"]), "duplicate parameter names"),
    (dict(poi=["nope"]), "POI \\['nope'\\] not among"),
    (dict(bounds=[[0, 1], [0, 1]]), "bounds must have shape"),
    (dict(bounds=[[1, 0], [-9, 9], [-9, 9]]), "lower bound not below upper"),
    (dict(weights=-np.ones(300)), "300 weights are negative"),
    (dict(log_prob=np.zeros(10)), "has 10 entries but there are 300 samples"),
])
def test_check_rejects(bad, pattern, rng):
    kw = dict(values=rng.normal(size=(300, 3)))
    kw.update(bad)
    with pytest.raises(SampleFileError, match=pattern):
        SampleSet(**kw).check("f.h5")


def test_drop_nonfinite_counts_rows(rng):
    x = rng.normal(size=(300, 3))
    x[[3, 7], 1] = np.nan
    lp = np.zeros(300)
    lp[10] = -np.inf
    with pytest.raises(SampleFileError, match="3 rows hold NaN or inf"):
        SampleSet(x, log_prob=lp).check("f.h5")
    s = SampleSet(x, log_prob=lp).check("f.h5", drop_nonfinite=True)
    assert s.n == 297 and s.dropped_nonfinite == 3


def test_truncated_file_is_reported_as_damaged(tmp_path, rng):
    path = tmp_path / "t.h5"
    write_samples(path, SampleSet(rng.normal(size=(20000, 5))), compression=None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleFileError, match="damaged or truncated"):
        read_samples(path)


def test_bad_bounds_attribute_shape(tmp_path, rng):
    path = tmp_path / "b.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("samples", data=rng.normal(size=(300, 3)))
        f.attrs["bounds"] = np.zeros((2, 2))
    with pytest.raises(SampleFileError, match="'bounds' must have shape"):
        read_samples(path)
