"""pyhf workspaces the tests build for themselves (the tests never read ../shared): a 61-parameter
one-channel model, a small two-channel one, the small one with parameters fixed in its
measurement; and pyhf's own profile, the known answer profiles are held to."""

from __future__ import annotations

import json

import numpy as np

N_BINS = 56


def workspace() -> dict:
    """One channel of 56 bins: per-bin staterror, three normsys, one histosys: 61 parameters."""
    rng = np.random.default_rng(0)
    bkg = (200 * np.exp(-np.arange(N_BINS) / 15) + 5).round(1)
    sig = (8 * np.exp(-0.5 * ((np.arange(N_BINS) - 20) / 5) ** 2)).round(2)
    obs = rng.poisson(bkg).astype(float)
    samples = [
        {"name": "signal", "data": sig.tolist(), "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": "lumi_sig", "type": "normsys", "data": {"hi": 1.02, "lo": 0.98}}]},
        {"name": "background", "data": bkg.tolist(), "modifiers": [
            {"name": "staterror_sr", "type": "staterror", "data": (0.05 * bkg).tolist()},
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            {"name": "bkg_xsec", "type": "normsys", "data": {"hi": 1.05, "lo": 0.94}},
            {"name": "bkg_shape", "type": "histosys", "data": {
                "hi_data": (bkg * np.linspace(1.08, 0.92, N_BINS)).tolist(),
                "lo_data": (bkg * np.linspace(0.93, 1.07, N_BINS)).tolist()}}]},
    ]
    return {"channels": [{"name": "sr", "samples": samples}],
            "observations": [{"name": "sr", "data": obs.tolist()}],
            "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0.0, 5.0]]}]}}],
            "version": "1.0.0"}


def written(tmp_path_factory, name: str, spec: dict):
    """``spec`` as ws.json in a fresh folder (module fixtures share one file)."""
    p = tmp_path_factory.mktemp(name) / "ws.json"
    p.write_text(json.dumps(spec))
    return p


def small_workspace(signal_scale: float = 1.0, observed_shift: float = 0.0) -> dict:
    """Two channels of 4 bins, staterror, normsys and histosys: 12 parameters, POI mu in
    [0, 10]. ``observed_shift`` moves the observed counts (negative: a deficit, so the best
    fit of mu sits at its bound 0)."""
    bkg = [[50.0, 40.0, 25.0, 10.0], [120.0, 80.0, 30.0, 12.0]]
    sig = [[2.0, 4.0, 6.0, 5.0], [1.0, 3.0, 5.0, 6.0]]
    chans, obs = [], []
    for c, (b, s) in enumerate(zip(bkg, sig)):
        chans.append({"name": f"ch{c}", "samples": [
            {"name": "signal", "data": [signal_scale * v for v in s], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": b, "modifiers": [
                {"name": f"stat{c}", "type": "staterror", "data": [0.05 * v for v in b]},
                {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                {"name": "bkg_shape", "type": "histosys", "data": {
                    "hi_data": [v * f for v, f in zip(b, (1.05, 1.02, 0.98, 0.95))],
                    "lo_data": [v * f for v, f in zip(b, (0.95, 0.98, 1.02, 1.05))]}}]}]})
        obs.append({"name": f"ch{c}", "data": [max(0.0, v + observed_shift * v ** 0.5)
                                               for v in b]})
    return {"channels": chans, "observations": obs, "version": "1.0.0",
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0.0, 10.0]]}]}}]}



def fixed_workspace() -> dict:
    """``small_workspace`` with two parameters fixed in its measurement, as published
    workspaces fix a luminosity or a normalisation: a normfactor ``k_bkg`` held at 1.1 and the
    normsys ``bkg_norm`` held at 0.5."""
    spec = small_workspace(observed_shift=-0.5)
    for ch in spec["channels"]:
        ch["samples"][1]["modifiers"].append({"name": "k_bkg", "type": "normfactor",
                                              "data": None})
    spec["measurements"][0]["config"]["parameters"] += [
        {"name": "k_bkg", "fixed": True, "inits": [1.1], "bounds": [[0.5, 2.0]]},
        {"name": "bkg_norm", "fixed": True, "inits": [0.5]}]
    return spec



def pyhf_q(t, grid):
    """pyhf's -2 Delta log L at ``grid`` (fixed_poi_fit against fit) on the same workspace."""
    import pyhf

    _, free = pyhf.infer.mle.fit(t.data, t.model, return_fitted_val=True)
    return np.array([float(pyhf.infer.mle.fixed_poi_fit(
        float(m), t.data, t.model, return_fitted_val=True)[1]) - float(free) for m in grid])
