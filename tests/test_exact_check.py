"""The exact check (``likeflow validate SUR --exact WS.json``): importance weights against
known answers, the verdict's rules, the plot and the refusals. The whole check on a fitted
surrogate of a pyhf workspace runs in tests/test_pyhf.py (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from likeflow.validation.exact_check import (LIMIT_TOLERANCE, ExactCheck, _reasons, importance_weights)


class _Gaussian:
    """An isotropic Gaussian of width ``s`` in ``dim`` dimensions: as a proposal (``sample``,
    ``log_prob``) and as an exact target (``evaluate``, unnormalised by ``shift``)."""

    def __init__(self, dim: int, s: float = 1.0, shift: float = 0.0):
        self.dim, self.s, self.shift = dim, s, shift
        self.names = [f"x{i}" for i in range(dim)]

    def sample(self, n, seed=None):
        return self.s * np.random.default_rng(seed).normal(size=(n, self.dim))

    def log_prob(self, x):
        x = np.asarray(x)
        return (-0.5 * np.sum((x / self.s) ** 2, axis=1) - self.dim * np.log(self.s)
                - 0.5 * self.dim * np.log(2 * np.pi))

    def evaluate(self, x):
        return {"log_prob": self.log_prob(x) + self.shift}


def test_importance_weights_of_the_exact_density_are_flat():
    p = _Gaussian(3)
    imp = importance_weights(p, _Gaussian(3, shift=-40.0), "x0", n=20000)
    assert imp["ess_fraction"] == pytest.approx(1.0, abs=1e-12)
    assert imp["corrected_credible_limit"] == pytest.approx(imp["credible_limit"], abs=1e-3)
    assert imp["log_weight_std"] < 1e-9


def test_importance_weights_known_answer_for_a_wider_proposal():
    # p = N(0, 1), q = N(0, s^2) per dimension: E_q[w^2] / E_q[w]^2 = s^2 / sqrt(2 s^2 - 1)
    s, dim = 1.2, 3
    imp = importance_weights(_Gaussian(dim, s), _Gaussian(dim), "x0", n=400_000, seed=1)
    expected = (np.sqrt(2 * s ** 2 - 1) / s ** 2) ** dim
    assert imp["ess_fraction"] == pytest.approx(expected, abs=0.01)
    # the weights undo the proposal's width: the 95% quantile of N(0, 1), not of N(0, 1.44)
    assert imp["credible_limit"] == pytest.approx(1.6449 * s, abs=0.02)
    assert imp["corrected_credible_limit"] == pytest.approx(1.6449, abs=0.02)


def test_importance_samples_outside_the_exact_bounds_weigh_nothing():
    class Bounded(_Gaussian):
        def evaluate(self, x):
            lp = super().evaluate(x)["log_prob"]
            return {"log_prob": np.where(x[:, 0] > 0, lp, -np.inf)}
    imp = importance_weights(_Gaussian(2), Bounded(2), "x0", n=10000)
    assert 4000 < imp["outside_bounds"] < 6000
    assert imp["ess_fraction"] == pytest.approx(0.5, abs=0.02)
    assert imp["corrected_credible_limit"] > imp["credible_limit"]


def _check(dq=0.05, rel=0.01, ess=0.8, credible=(1.0, 1.0), missing=False) -> ExactCheck:
    values = np.linspace(0, 2, 11)
    q_exact = 2.0 * values ** 2
    q_sur = q_exact + dq * np.sin(values)
    limits = [{"name": "q~ profile limit", "exact": 1.2, "surrogate": 1.2 * (1 + rel)},
              {"name": "CLs observed", "exact": 1.5, "surrogate": None if missing else 1.5}]
    for lim in limits:
        lim["relative"] = (None if lim["surrogate"] is None
                           else lim["surrogate"] / lim["exact"] - 1)
    imp = {"n": 1000, "ess_fraction": ess, "outside_bounds": 0, "log_weight_std": 0.1,
           "credible_limit": credible[0], "corrected_credible_limit": credible[1]}
    c = ExactCheck("mu", values, q_exact, q_sur, limits, imp,
                   {"surrogate": "s", "partner": None, "workspace": "ws.json", "patch": None})
    c.reasons = _reasons(c)
    return c


def test_the_verdict_follows_the_thresholds():
    assert _check().verdict()[0] == "PASS"
    verdict, reasons = _check(dq=0.3).verdict()
    assert verdict == "WARN" and "profile of mu off by up to" in reasons[0]
    assert _check(dq=1.0).verdict()[0] == "FAIL"
    assert _check(rel=LIMIT_TOLERANCE[0] * 1.5).verdict()[0] == "WARN"
    verdict, reasons = _check(rel=-0.134).verdict()
    assert verdict == "FAIL" and "q~ profile limit -13.4% off the exact" in reasons[0]
    verdict, reasons = _check(missing=True).verdict()
    assert verdict == "FAIL" and "CLs observed: exact 1.5000, surrogate none" in reasons[0]
    assert _check(ess=0.001).verdict()[0] == "WARN"
    assert _check(credible=(1.02, 1.0)).verdict()[0] == "WARN"


def test_the_profile_difference_counts_only_where_exact_q_is_below_6():
    c = _check()
    c.q_surrogate = c.q_exact.copy()
    c.q_surrogate[c.q_exact > 6] += 5.0     # far out, where no limit is set
    assert c.max_profile_difference == 0.0
    c.q_surrogate[1] += 0.2
    assert c.max_profile_difference == pytest.approx(0.2)


def test_table_json_and_plot(tmp_path):
    c = _check(rel=-0.05)
    text = c.table()
    assert "q~ profile limit" in text and "-5.0%" in text and "exact verdict: WARN" in text
    files = c.write(tmp_path / "rep")
    assert files == ["exact.json", "exact_profile.png"]
    d = json.loads((tmp_path / "rep" / "exact.json").read_text())
    assert d["verdict"] == "WARN" and d["profile"]["max_difference"] == c.max_profile_difference
    assert (tmp_path / "rep" / "exact_profile.png").read_bytes()[:4] == b"\x89PNG"


# --- the command line ---------------------------------------------------------------------------

def test_validate_needs_samples_or_exact(tmp_path):
    from likeflow.cli import cli
    f = tmp_path / "s.likeflow.h5"
    f.write_bytes(b"")
    r = CliRunner().invoke(cli, ["validate", str(f)])
    assert r.exit_code == 2 and "give SAMPLES, or --exact" in r.output
    ws = tmp_path / "ws.json"
    ws.write_text("{}")
    r = CliRunner().invoke(cli, ["validate", str(f), str(f), "--patch", str(ws)])
    assert r.exit_code == 2 and "belong to --exact" in r.output


@pytest.mark.slow
def test_a_surrogate_of_other_parameters_is_refused(tmp_path):
    pytest.importorskip("pyhf")
    import likeflow
    from likeflow.cli import cli
    from pyhf_workspaces import small_workspace
    x = np.random.default_rng(0).normal(size=(2000, 2))
    sur = tmp_path / "g.likeflow.h5"
    likeflow.fit(x, out=sur, seed=0, flow_config={"layers": 1, "hidden": (8,)},
                 train_config=likeflow.TrainConfig(epochs=1))
    ws = tmp_path / "ws.json"
    ws.write_text(json.dumps(small_workspace()))
    r = CliRunner().invoke(cli, ["validate", str(sur), "--exact", str(ws)])
    assert r.exit_code == 2, r.output
    assert "the surrogate's parameters are not the workspace's (2 vs" in r.stderr
    r = CliRunner().invoke(cli, ["validate", str(ws), "--exact", str(ws)])
    assert r.exit_code == 2 and "not a surrogate" in r.stderr


def test_a_check_recorded_again_replaces_the_one_before(tmp_path):
    """A resumed ``fit WS.json`` checks a reused surrogate again: the file's verdict is then the
    worse of its sample-based reasons and the new check, not of the old check too."""
    import os

    import likeflow
    from likeflow.fitting.workspace import record_exact_check

    here = os.path.dirname(os.path.abspath(__file__))
    sur = likeflow.load(os.path.join(here, "data", "bundle", "obs.likeflow.h5"),
                        backend="numpy")
    path = tmp_path / "s.likeflow.h5"
    sur.validation = dict(sur.validation, verdict="WARN", verdict_reasons=["WARN: x0's tails"])
    sur.save(path)

    class Check:
        def __init__(self, verdict, reasons):
            self.verdict, self.reasons = verdict, reasons

        def summary(self):
            return {"verdict": self.verdict, "verdict_reasons": self.reasons, "poi": "mu",
                    "workspace": "ws.json", "max_profile_difference": 0.1, "limits": [],
                    "importance": {"n": 10, "ess_fraction": 0.9}}

    v = record_exact_check(path, Check("FAIL", ["FAIL: CLs observed +9%"])).validation
    assert v["verdict"] == "FAIL"
    assert v["verdict_reasons"] == ["WARN: x0's tails", "exact: FAIL: CLs observed +9%"]
    v = record_exact_check(path, Check("PASS", [])).validation
    assert v["verdict"] == "WARN" and v["verdict_reasons"] == ["WARN: x0's tails"]
    assert v["exact"]["verdict"] == "PASS"
