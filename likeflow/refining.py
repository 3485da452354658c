"""A fitted surrogate refined against the exact likelihood at its own conditional modes.

A profile is decided at the surrogate's conditional maxima along the POI, and a flow fitted to
samples (even with the file's anchors at the *exact* modes) has maxima of its own a few tenths
of a nat too high: on RegionC 1300_1295_60 the observed surrogate's profile was off by 0.17 in
q. Anchors at the exact modes cannot know where the next fit's maxima will be; a refit from
scratch with anchors at one fit's maxima grew new ones elsewhere (docs/benchmarks.md, session
15). With the exact likelihood at hand (``likeflow fit WS.json``), :func:`refine` instead
continues the fitted flow from its own weights, a few rounds of:

1. profile the surrogate on the POI values of its training anchors' modes (out to the exact
   q of :data:`likeflow.anchors.ANCHOR_Q_MAX`): its own conditional maxima;
2. evaluate the exact log density there and half-way to the exact mode of the same POI value,
   and add these points to the training anchors;
3. train :data:`EPOCHS` epochs at a small learning rate (the density term holds ``log q -
   log p`` at every anchor to the batch's mean).

Each round is scored by the largest difference of the surrogate's profile from the exact one
on that grid, and the best round is kept, the fit as it came among them: a refinement never
leaves the profile worse than it found it. The rounds and their scores go into the training
record (``refinement``).

Example:
    >>> from likeflow.likelihoods.pyhf_target import PyhfTarget             # doctest: +SKIP
    >>> sur = refine("obs.likeflow.h5", "obs.samples.h5", PyhfTarget("ws.json"))  # doctest: +SKIP
    >>> sur.training["refinement"]["scores"]                                 # doctest: +SKIP
    [0.146, 0.130, 0.130, 0.130]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import LikeflowError

#: rounds of profile, exact evaluation and training
ROUNDS = 2
#: epochs per round, and their learning rate (a tenth of a fit's: the flow is near its optimum)
EPOCHS = 2
LEARNING_RATE = 5e-4


def refine(path, samples, target, *, rounds: int = ROUNDS, epochs: int = EPOCHS,
           learning_rate: float = LEARNING_RATE, report=None,
           messages: Callable[[str], None] | None = None):
    """Refine the surrogate at ``path`` (fitted to ``samples``, a sample file with anchors)
    against ``target``, the exact likelihood it replaces; the file is rewritten with the best
    round's weights, validated again on its test rows as a fit is (its report into ``report``
    when given), and returned (module docstring).

    Raises:
        LikeflowError: the sample file is not the one the surrogate was fitted to, or has no
            anchors, or the surrogate names no POI.
    """
    from .anchors import ANCHOR_Q_MAX, SEGMENT, Anchors
    from .fitting import _save_and_validate, _split, finish_training, plan_seeds
    from .inference import scan
    from .loading import load
    from .samples import ReadOptions, as_sample_set
    from .training import TrainConfig, restore, snapshot, train

    say = messages or (lambda m: None)
    sur = load(path, backend="tensorflow")
    if not sur.poi:
        raise LikeflowError(f"{path}: refining against the exact likelihood needs a POI")
    seeds = plan_seeds(sur.training.get("seed", 0))
    s = as_sample_set(samples, read_options=ReadOptions(seed=seeds.read))
    if s.fingerprint() != sur.training.get("data", {}).get("fingerprint"):
        raise LikeflowError(f"{path} was not fitted to {samples}: cannot refine it there")
    parts = _split(s, seeds.split, samples)
    tr, va, _ = parts
    if tr.anchors is None or not tr.anchors.modes().n:
        raise LikeflowError(f"{samples} has no anchors: nothing says where the exact modes are")
    i = sur.names.index(sur.poi[0])
    modes = tr.anchors.modes()
    grid = np.unique(modes.values[:, i])
    exact = scan(target, sur.poi[0], values=grid)
    inside = exact.q < ANCHOR_Q_MAX + 1
    grid, q_exact, exact_modes = grid[inside], exact.q[inside], exact.nuisances[inside]

    def score(s_) -> tuple[float, np.ndarray]:
        prof = scan(s_, s_.poi[0], values=grid)
        return float(np.max(np.abs(prof.q - q_exact))), prof.nuisances

    anchors, steps = tr.anchors, int(np.ceil(tr.n / 1024))
    first, own = score(sur)
    scores, best = [first], (first, snapshot(sur.flow.trainable_variables), 0)
    say(f"refining against the exact likelihood: profile off by up to {first:.3f} in q "
        f"on {len(grid)} POI values")
    for r in range(1, rounds + 1):
        pts = np.concatenate([own, 0.5 * (own + exact_modes)])
        lp = target.evaluate(pts)["log_prob"]
        ok = np.isfinite(lp)
        anchors = Anchors(np.concatenate([anchors.values, pts[ok]]),
                          np.concatenate([anchors.log_prob, lp[ok]]),
                          np.concatenate([anchors.kind, np.full(int(ok.sum()), SEGMENT)]))
        cfg = TrainConfig(learning_rate=learning_rate, cosine_steps=epochs * steps,
                          epochs=epochs, patience=epochs + 1)
        # the last epoch's weights: the validation samples do not see the anchors, the score
        # below judges the round
        train(sur.flow, tr.values, va.values, train_w=tr.weights, val_w=va.weights,
              train_y=tr.log_prob, val_y=va.log_prob, anchors=anchors, config=cfg,
              seed=seeds.shuffle + r, keep_best=False)
        value, own = score(sur)
        scores.append(value)
        say(f"refinement round {r}/{rounds}: profile off by up to {value:.3f}")
        if value < best[0]:
            best = (value, snapshot(sur.flow.trainable_variables), r)
    restore(sur.flow.trainable_variables, best[1])
    training = dict(sur.training, refinement={
        "rounds": rounds, "epochs": epochs, "learning_rate": learning_rate,
        "poi_values": len(grid), "scores": scores, "kept": best[2],
        "anchors_added": int(anchors.n - tr.anchors.n)})
    out = finish_training(sur.flow, training, parts)
    say(f"refinement: round {best[2]} kept (profile off by up to {best[0]:.3f}, was {first:.3f})")
    _save_and_validate(out, parts[2], seeds, path, True, report)
    return out
