"""The training loop: fit quality per architecture, best-weight restore, NaN guard, weights."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from scipy import stats  # noqa: E402

from likeflow.flows.config import FLOWS, FlowConfig  # noqa: E402
from likeflow.flows.tf_flow import build_flow  # noqa: E402
from likeflow.targets.likelihoods import CorrelatedGaussian  # noqa: E402
from likeflow.fitting.loop import (TrainConfig, default_batch_size, make_mean_loss,  # noqa: E402
                               train)


@pytest.fixture(scope="module")
def gauss10():
    target = CorrelatedGaussian(10, seed=3)
    x = target.sample(12000, seed=1)
    return target, x[:9000], x[9000:10500], x[10500:]


@pytest.mark.slow
@pytest.mark.parametrize("flow", FLOWS)
def test_fit_quality_on_a_10d_correlated_gaussian(gauss10, flow):
    """Held-out mean log-likelihood within 0.05 nats/dim of the true density's."""
    target, tr, va, te = gauss10
    cfg = FlowConfig.from_data(tr, flow=flow, layers=3, hidden=(48, 48), bins=6, seed=0)
    f = build_flow(cfg)
    result = train(f, tr, va, config=TrainConfig(epochs=40, batch_size=256, patience=6,
                                                 learning_rate=2e-3))
    fitted = -make_mean_loss(f, te, None)()
    exact = target.evaluate(te)["log_prob"].mean()
    gap = (exact - fitted) / 10
    assert gap < 0.05, f"{flow}: {gap:.4f} nats/dim worse than the true density"
    assert result.stopped in ("early_stopping", "schedule_done")


def test_early_stopping_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    x = rng.standard_t(df=3, size=(3000, 3))
    f = build_flow(FlowConfig.from_data(x[:2000], layers=2, hidden=(32, 32)))
    # a learning rate this high makes the validation loss jump around: the last epoch is
    # rarely the best one
    res = train(f, x[:2000], x[2000:], config=TrainConfig(epochs=15, patience=4, lr_patience=50,
                                                          learning_rate=3e-2, batch_size=64))
    val = [h["val_loss"] for h in res.history]
    assert res.best_val_loss == pytest.approx(min(val))
    assert make_mean_loss(f, x[2000:], None)() == pytest.approx(res.best_val_loss, abs=1e-5)
    # the last epoch's weights were discarded whenever it was not the best
    assert res.best_epoch == int(np.argmin(val))


def test_cosine_schedule_length_and_shape():
    """The cosine runs over cosine_steps optimizer steps, rounded to whole epochs, from the
    initial to the minimum learning rate; the plateau schedule keeps the rate while improving."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1300, 2))
    f = build_flow(FlowConfig.from_data(x[:1000], layers=1, hidden=(8,)))
    cfg = TrainConfig(cosine_steps=100, batch_size=100, learning_rate=1e-2, patience=100)
    res = train(f, x[:1000], x[1000:], config=cfg)
    assert len(res.history) == 10 and res.stopped == "schedule_done"  # 10 steps per epoch
    lrs = [h["lr"] for h in res.history]  # the rate of each epoch's last step
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    expected = [1e-6 + (1e-2 - 1e-6) * 0.5 * (1 + np.cos(np.pi * (10 * e + 9) / 100))
                for e in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)
    res = train(build_flow(f.config), x[:1000], x[1000:],
                config=TrainConfig(schedule="plateau", epochs=3, batch_size=100,
                                   learning_rate=1e-2, lr_patience=50))
    assert [h["lr"] for h in res.history] == pytest.approx([1e-2] * 3)
    with pytest.raises(Exception, match="schedule"):
        TrainConfig(schedule="linear")


def test_the_default_batch_follows_the_training_rows():
    """Powers of two, n_train / 64 rounded down, within [128, 1024]; an asked batch wins, and
    no batch is larger than the training rows."""
    assert [default_batch_size(n) for n in (1, 5000, 8000, 16384, 40000, 65535, 65536, 10**7)] \
        == [128, 128, 128, 256, 512, 512, 1024, 1024]
    auto, asked = TrainConfig(), TrainConfig(batch_size=300)
    assert auto.batch_size is None and auto.rows_per_step(8000) == 128
    assert auto.rows_per_step(100) == 100 and asked.rows_per_step(8000) == 300
    assert auto.for_rows(40000).batch_size == 512 and asked.for_rows(40000) is asked
    assert TrainConfig.from_dict(auto.to_dict()) == auto   # None survives JSON
    with pytest.raises(Exception, match="batch"):
        TrainConfig(batch_size=0)
    # one epoch of the default on 2560 rows: 20 steps of 128
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2860, 2))
    f = build_flow(FlowConfig.from_data(x[:2560], layers=1, hidden=(8,)))
    res = train(f, x[:2560], x[2560:], config=TrainConfig(epochs=1))
    assert res.history[0]["steps"] == 20


def test_nan_guard_survives_a_diverging_learning_rate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 4)) * [1, 10, 0.1, 1]
    f = build_flow(FlowConfig.from_data(x[:1500], layers=3, hidden=(32, 32), flow="realnvp"))
    res = train(f, x[:1500], x[1500:], config=TrainConfig(epochs=8, learning_rate=50.0,
                                                          batch_size=50, clip_norm=1e6))
    assert res.rollbacks > 0 or any(h["bad_steps"] > 0 for h in res.history)
    for v in f.trainable_variables:
        assert np.isfinite(v.numpy()).all()
    assert np.isfinite(make_mean_loss(f, x[1500:], None)())


def test_same_seed_same_training():
    x = np.random.default_rng(2).normal(size=(1500, 3))

    def run():
        cfg = FlowConfig.from_data(x[:1200], layers=2, hidden=(16,), seed=4)
        tf.keras.utils.set_random_seed(4)
        f = build_flow(cfg)
        r = train(f, x[:1200], x[1200:], config=TrainConfig(epochs=3, batch_size=100), seed=4)
        return [h["val_loss"] for h in r.history], [v.numpy() for v in f.trainable_variables]

    (h1, w1), (h2, w2) = run(), run()
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_sample_weights_enter_the_loss():
    """Importance weights N(1,1)/N(0,1) on N(0,1) samples: the fit must centre on 1."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12000, 2))
    w = np.exp(stats.norm(1, 1).logpdf(x[:, 0]) - stats.norm(0, 1).logpdf(x[:, 0]))
    cfg = FlowConfig.from_data(x[:10000], weights=w[:10000], layers=2, hidden=(32, 32))
    f = build_flow(cfg)
    train(f, x[:10000], x[10000:], train_w=w[:10000], val_w=w[10000:],
          config=TrainConfig(epochs=30, batch_size=256, patience=5))
    s = f.sample(20000, seed=(3, 4)).numpy()
    assert abs(s[:, 0].mean() - 1.0) < 0.1
    assert abs(s[:, 1].mean()) < 0.1


def test_time_limit_stops_training():
    x = np.random.default_rng(2).normal(size=(3000, 3))
    f = build_flow(FlowConfig.from_data(x, layers=2, hidden=(16,)))
    r = train(f, x[:2500], x[2500:], config=TrainConfig(epochs=500, max_time=1e-3))
    assert r.stopped == "time_limit" and len(r.history) == 1


def test_time_budget_anneals_the_cosine_within_it():
    """A cosine that would take far longer than max_time is re-planned from the measured
    step time: it ends annealed (schedule done, rate at its minimum) inside the budget."""
    x = np.random.default_rng(4).normal(size=(7000, 3))
    f = build_flow(FlowConfig.from_data(x, layers=2, hidden=(16,)))
    # ten million steps: far beyond 15 s on any machine. Without XLA: its compile of even
    # this small flow takes 9 s on a 2-core CPU, which left too little of a budget to plan
    cfg = TrainConfig(cosine_steps=10_000_000, batch_size=64, epochs=1_000_000,
                      patience=1_000_000, max_time=15.0, jit_compile=False)
    r = train(f, x[:6400], x[6400:], config=cfg)
    assert r.stopped == "schedule_done"
    assert r.planned_steps < 10_000_000 // 10     # the budget shortened the schedule
    assert r.learning_rate < 1e-4                 # ... and it still annealed
    assert r.elapsed < 15.0 + 3.0


def test_time_limit_is_checked_within_an_epoch():
    x = np.random.default_rng(5).normal(size=(100_500, 2))
    f = build_flow(FlowConfig.from_data(x, layers=1, hidden=(8,)))
    r = train(f, x[:100_000], x[100_000:], config=TrainConfig(
        schedule="plateau", epochs=1, batch_size=16, max_time=1.0))
    assert r.stopped == "time_limit"
    assert 0 < r.history[0]["steps"] < 100_000 // 16
    assert r.elapsed < 10.0
