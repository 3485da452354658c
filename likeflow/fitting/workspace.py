"""From a pyhf workspace to a checked surrogate pair in one call (``likeflow fit WS.json``).

The analyser holds the workspace; the reinterpreter gets the surrogates. :func:`fit_workspace`
does what took five commands:

1. samples the observed likelihood (``generate pyhf``, NUTS defaults, anchors) and
2. its background-only Asimov partner the same way;
3. fits the partner and refines it against the exact Asimov likelihood out to the q of
   :data:`PARTNER_Q_MAX`, each round scored by its expected CLs band against the exact one
   and trained with the density term at :data:`REFINE_DENSITY_WEIGHT`
   (:func:`likeflow.refine`; the band's limits are set on its profile). Where the partner's
   POI bound is reflected, it is also fitted (and refined) without reflection and the one
   whose expected CLs band is nearer the exact likelihood's is kept (:func:`_choose_partner`).
   Then the observed surrogate is fitted with the partner recorded (``fit`` defaults, each
   validated on its held-out samples);
4. refines the observed surrogate against the exact likelihood at its own conditional modes
   (:func:`likeflow.refine`: its profile, where the q~ and CLs observed limits are set), in
   :data:`OBSERVED_REFINE_ROUNDS` rounds with the density term at :data:`REFINE_DENSITY_WEIGHT`;
5. holds the pair to the exact likelihood (:func:`likeflow.validation.exact_check.validate_exact`):
   profiles, q~ / CLs observed / expected-band limits, importance weights. The check goes
   into the observed surrogate's validation record (``validation["exact"]``) and its verdict:
   a surrogate whose limits are off from the exact ones cannot PASS.

Every stage writes its file whole, so an interrupted run resumes: sample files already
written (complete, of this workspace, patch and size) are not redrawn, and a surrogate already
fitted to them is not refitted.

Files, beside ``out`` (``<workspace>[_<patch>].likeflow.h5`` by default)::

    <stem>.samples.h5              observed samples        <stem>.likeflow.h5           surrogate
    <stem>.asimov.samples.h5       Asimov samples          <stem>.asimov.likeflow.h5    partner
    <stem>.likeflow-report/        validation and exact-check report of the surrogate

Example:
    >>> run = fit_workspace("BkgOnly.json", patch="patch.json", n=200_000)   # doctest: +SKIP
    >>> run.check.verdict()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time

from dataclasses import dataclass, field
from typing import Callable

from ..errors import LikeflowError
from ..flows.config import FlowOptions

SAMPLES = 200_000
#: the Asimov partner is refined out to this exact q, its rounds scored by its expected CLs
#: band against the exact one: the band is set from q about 1.1 (-2 sigma) to 13.4 (+2 sigma),
#: past the anchors' :data:`~likeflow.data.anchors.ANCHOR_Q_MAX`
PARTNER_Q_MAX = 16.0
#: the density term's weight in the refinement rounds of both surrogates (a fit's is 1): the
#: term is quadratic in the residual, so at a fit's weight errors of a few hundredths of a nat
#: barely pull. The partner's -2 sigma expected limit is set where the Asimov q is about 1.1,
#: where an error of 0.03 nats moves it by 3%: at a fit's weight RegionB 1000_950_60's partner
#: stayed 0.05 nats too high near its bound after 2 or 4 rounds (band -3.5% / -4.5% at -2
#: sigma), at 20 its band came within 2.6% (docs/benchmarks.md, session 24). The observed
#: surrogate's profile near its best fit (session 27, 4 rounds): RegionC 1300_205_60 x40 0.467
#: -> 0.264 in q, RegionB 900_850_60 0.077 -> 0.056, RegionC 1300_1295_60 0.130 -> 0.130
REFINE_DENSITY_WEIGHT = 20.0
#: the observed surrogate's refinement rounds (the best is kept): on RegionC 1300_205_60 x40 at
#: weight 20 the rounds scored 0.528 (as fitted), 0.626, 0.363, 0.287, 0.238 in q
OBSERVED_REFINE_ROUNDS = 4


@dataclass
class WorkspaceFit:
    """What :func:`fit_workspace` made: the surrogate pair, the exact check, the files, and
    the seconds of each stage (``stages``; a reused stage has 0 and is named in ``reused``)."""

    surrogate: object
    partner: object
    check: object
    files: dict
    stages: dict = field(default_factory=dict)
    reused: list = field(default_factory=list)
    choice: dict | None = None   # the Asimov partner's reflection, decided on the exact band


def workspace_files(workspace, patch=None, out=None) -> dict:
    """The paths :func:`fit_workspace` writes (see the module docstring)."""
    if out is None:
        stem = os.path.splitext(os.fspath(workspace))[0]
        if patch is not None:
            p = os.path.splitext(os.path.basename(os.fspath(patch)))[0]
            stem += "_" + (p[len("patch."):] if p.startswith("patch.") else p)
    else:
        out = os.fspath(out)
        stem = out[:-len(".likeflow.h5")] if out.endswith(".likeflow.h5") else \
            os.path.splitext(out)[0]
    return {"samples": stem + ".samples.h5", "asimov_samples": stem + ".asimov.samples.h5",
            "surrogate": out or stem + ".likeflow.h5", "partner": stem + ".asimov.likeflow.h5",
            "report": stem + ".likeflow-report"}


def fit_workspace(workspace, *, patch=None, out=None, n: int = SAMPLES, seed: int = 0,
                  poi: str | None = None, flow_config: FlowOptions | dict | None = None,
                  train_config=None, refine: bool = True,
                  progress: Callable[[dict], None] | None = None,
                  messages: Callable[[str], None] | None = None) -> WorkspaceFit:
    """Sample, fit and check the surrogate pair of a pyhf workspace (module docstring).

    Args:
        workspace: the pyhf workspace (a JSON file), ``patch`` its signal patch.
        out: the observed surrogate's file; the other files go beside it.
        n: samples of each likelihood.
        seed: seeds the sampling and the fits.
        poi: default the measurement's.
        flow_config, train_config: as for :func:`likeflow.fit` (both fits).
        refine: refine the partner (out to :data:`PARTNER_Q_MAX`) and the observed surrogate
            against their exact likelihoods at their own conditional modes
            (:func:`likeflow.refine`) before the exact check.
        progress: each fit's epoch records; ``messages``: stage lines and the samplers'
            progress.

    Returns:
        A :class:`WorkspaceFit`.
    """
    import likeflow   # the fit through the package face, as scan does
    from ..validation.exact_check import validate_exact
    from ..fileio import check_outputs
    from ..targets.generate import generate
    from ..targets.likelihoods.pyhf_target import PyhfTarget
    from ..surrogate.loading import load

    say = messages or (lambda m: None)
    flow_config = FlowOptions.coerce(flow_config)   # checked before anything is sampled
    files = workspace_files(workspace, patch, out)
    check_outputs([files[k] for k in ("samples", "asimov_samples", "surrogate", "partner")],
                  inputs=[workspace, patch])
    target = PyhfTarget(workspace, patch=patch, poi=poi)   # a bad workspace or patch fails first
    if not target.poi:
        raise LikeflowError(f"{workspace}: the measurement names no POI; a surrogate pair for "
                            "limits needs one (add \"poi\" to the measurement's config)")
    run = WorkspaceFit(None, None, None, files)

    def stage(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        run.stages[name] = round(time.perf_counter() - t0, 1)
        return out

    for key, asimov in (("samples", False), ("asimov_samples", True)):
        what = "Asimov (background-only)" if asimov else "observed"
        path = files[key]
        if _complete_samples(path, workspace, patch, asimov, n):
            say(f"{path}: {n} {what} samples already written; not redrawn")
            run.reused.append(key)
            run.stages[key] = 0.0
            continue
        say(f"sampling the {what} likelihood: {n} samples -> {path}")
        stage(key, lambda: generate("pyhf", n, workspace=workspace, patch=patch, poi=poi,
                                    asimov=asimov, seed=seed, out=path, progress=say))

    def fitted(samples_key: str, sur_key: str, partner=None):
        path, samples = files[sur_key], files[samples_key]
        if _fitted_to(path, samples, partner):
            say(f"{path}: already fitted to {samples}; not refitted")
            run.reused.append(sur_key)
            run.stages[sur_key] = 0.0
            return load(path)
        say(f"fitting {samples} -> {path}")
        report = files["report"] if sur_key == "surrogate" else None
        return stage(sur_key, lambda: likeflow.fit(
            samples, out=path, seed=seed, flow_config=flow_config, train_config=train_config,
            report=report, asimov_partner=partner, progress=progress, messages=say))

    asimov_target = PyhfTarget(workspace, patch=patch, poi=poi, asimov=True)

    def refined_partner(path: str, exact_band=None):
        say(f"refining the Asimov partner {path} against the exact Asimov likelihood out to "
            f"q {PARTNER_Q_MAX:g}")
        return likeflow.refine(path, files["asimov_samples"], asimov_target,
                               q_max=PARTNER_Q_MAX, score="band", exact_band=exact_band,
                               density_weight=REFINE_DENSITY_WEIGHT, messages=say)

    run.partner = fitted("asimov_samples", "partner")
    if "partner" not in run.reused and _poi_reflection(run.partner) and \
            flow_config.reflect == "auto":
        run.partner = stage("partner_choice", lambda: _choose_partner(
            run, asimov_target, flow_config, train_config, seed, progress, say,
            refined_partner if refine else None))
    elif refine and "refinement" not in run.partner.training:
        run.partner = stage("partner_refine", lambda: refined_partner(files["partner"]))
    run.surrogate = fitted("samples", "surrogate", partner=files["partner"])
    if refine and "refinement" not in run.surrogate.training:
        run.surrogate = stage("refine", lambda: likeflow.refine(
            files["surrogate"], files["samples"], target, rounds=OBSERVED_REFINE_ROUNDS,
            density_weight=REFINE_DENSITY_WEIGHT, report=files["report"], messages=say))
    say("holding the pair to the exact likelihood (profiles, limits, importance weights)")
    run.check = stage("exact", lambda: validate_exact(
        run.surrogate, workspace, patch=patch, asimov=run.partner, poi=poi,
        samples=files["samples"], seed=seed, progress=say))
    run.check.write(files["report"])
    run.surrogate = record_exact_check(files["surrogate"], run.check)
    return run


def _choose_partner(run, target, flow_config, train_config, seed, progress, say,
                    refined: Callable | None = None):
    """The Asimov partner's reflection decided against the exact Asimov likelihood ``target``.

    Both the Asimov likelihoods of the sbottom search have their maximum at the POI's bound
    with zero slope, and the sample-based rule reflects both; yet reflected, RegionC
    1300_1295_60's expected band came out 13% too strong (the fold averages the flow's error
    over two images everywhere but at the bound, so the surrogate's spurious maxima stand
    highest there) and not reflected within 2.4%, while RegionB 900_850_60's is better
    reflected. With the workspace at hand the partner is fitted both ways (the POI reflected
    or not; the reflections of nuisance parameters kept in both), each refined against the
    exact likelihood when ``refined`` (``(path, exact band) -> surrogate``) is given, and the
    one whose expected band is nearer the exact one is kept; the other stays beside it
    (``<stem>.asimov-rejected.likeflow.h5``) and the choice is said."""
    import likeflow
    from ..infer.cls import band_error, cls_limits
    files = run.files
    partner, poi = run.partner, run.partner.poi[0]
    alt = files["partner"][:-len(".likeflow.h5")] + "-rejected.likeflow.h5"
    say(f"fitting the Asimov partner again without reflecting {poi}'s bound -> {alt}")
    others = tuple((i, v) for i, v in partner.config.reflect if i != partner.names.index(poi))
    other = likeflow.fit(files["asimov_samples"], out=alt, seed=seed,
                         flow_config=flow_config.replace(reflect=others),
                         train_config=train_config, progress=progress, messages=say)
    say("the expected band of the exact Asimov likelihood and of both partners")
    exact = cls_limits(target, target, poi, seed=seed).expected
    if refined is not None:   # each refinement judged by the same exact band, kept by it
        partner, other = refined(files["partner"], exact), refined(alt, exact)
        reflected, plain = _kept_band_error(partner), _kept_band_error(other)
    else:
        reflected, plain = (band_error(partner, exact, poi, seed=seed),
                            band_error(other, exact, poi, seed=seed))
    run.choice = {"reflected": reflected, "not_reflected": plain,
                  "kept": "not reflected" if plain < reflected else "reflected"}
    say(f"Asimov partner: expected band off by up to {reflected:.1%} reflected, {plain:.1%} "
        f"not reflected: keeping the {run.choice['kept']} one")
    if plain < reflected:
        tmp = files["partner"] + ".swap"
        os.replace(files["partner"], tmp)
        os.replace(alt, files["partner"])
        os.replace(tmp, alt)
        from ..surrogate.loading import load
        return load(files["partner"])
    return partner


def _poi_reflection(sur) -> bool:
    """Whether ``sur``'s POI is reflected at a bound (nuisance parameters' reflections are
    kept either way: the choice is the POI's)."""
    i = sur.names.index(sur.poi[0])
    return any(j == i for j, _ in sur.config.reflect)


def _kept_band_error(sur) -> float:
    """The band error a partner's refinement scored its kept round with (the same weights,
    exact band and seed as :func:`~likeflow.infer.cls.band_error` here: not computed twice)."""
    rec = sur.training["refinement"]
    value = rec["scores"][rec["kept"]]
    return float("inf") if value is None else float(value)


def record_exact_check(path: str, check) -> object:
    """Store ``check``'s summary in the surrogate file's validation record and let its verdict
    decide the file's (the worse of the two); the file is rewritten whole. A check recorded
    before (a resumed run) is replaced, its reasons with it."""
    from ..surrogate.loading import load
    sur = load(path)
    v = dict(sur.validation)
    summary = check.summary()
    order = ["PASS", "WARN", "FAIL"]
    own = v.get("verdict", "PASS")
    reasons = list(v.get("verdict_reasons", []))
    if "exact" in v:   # the sample-based verdict again: the worst of its own reasons
        reasons = [r for r in reasons if not r.startswith("exact: ")]
        own = max((r.split(":")[0] for r in reasons if r.split(":")[0] in order),
                  key=order.index, default="PASS")
    v["exact"] = summary
    v["verdict"] = max(own, summary["verdict"], key=order.index)
    v["verdict_reasons"] = reasons + [f"exact: {r}" for r in summary["verdict_reasons"]]
    sur.validation = v
    sur.save(path)
    return sur


def _complete_samples(path: str, workspace, patch, asimov: bool, n: int) -> bool:
    """A sample file of this workspace, patch and kind with ``n`` rows (files are written
    whole: one that exists is complete, but it may be of another request)."""
    if not os.path.exists(path):
        return False
    import h5py
    try:
        with h5py.File(path, "r") as f:
            target = json.loads(f.attrs.get("target", "{}"))
            rows = len(f["samples"]) if "samples" in f else -1
    except (OSError, ValueError, KeyError):
        return False
    same = (target.get("workspace") == os.fspath(workspace)
            and target.get("patch") == (None if patch is None else os.fspath(patch))
            and target.get("data", "").startswith("asimov") == asimov)
    if not same or rows != n:
        raise LikeflowError(f"{path}: a sample file of another request is in the way ({rows} "
                            f"rows of {target.get('workspace')}, patch {target.get('patch')}); "
                            "move it or choose another -o")
    return True


def _fitted_to(path: str, samples: str, partner) -> bool:
    """A surrogate at ``path`` fitted to ``samples`` (by its training record), with the
    ``partner`` recorded when one is given."""
    if not os.path.exists(path):
        return False
    from ..surrogate.loading import load
    try:
        sur = load(path, backend="numpy")
    except LikeflowError:
        return False
    data = sur.training.get("data", {})
    same = os.path.abspath(str(data.get("file", ""))) == os.path.abspath(samples)
    finished = sur.training.get("result", {}).get("stopped") not in (None, "interrupted")
    rec = sur.training.get("asimov_partner")
    partner_ok = partner is None or (rec is not None and os.path.basename(str(rec))
                                     == os.path.basename(os.fspath(partner)))
    return bool(same and finished and partner_ok)
