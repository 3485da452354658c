"""Batched L-BFGS in numpy around one compiled value-and-gradient function.

Profiles minimise many independent problems at once (one per grid value and start). TFP's
``lbfgs_minimize`` does that inside a TensorFlow graph, but its Hager-Zhang line search calls
the objective from several places, and the graph took 8-10 s to trace and start per process
for a 95-dim flow (the run itself: 0.2 s), which made a profile slower than the likelihood
it replaces. Here the loop is numpy: every iteration is one call of the compiled objective
on the whole batch (traced and XLA-compiled once per batch size), the two-loop recursion and
a backtracking (Armijo) line search are vectorised over the batch, and each problem stops on
its own.

Example:
    >>> import numpy as np
    >>> def fg(x):                                # f = sum (x - 1)^2 per row
    ...     return np.sum((x - 1) ** 2, axis=1), 2 * (x - 1)
    >>> r = minimize(fg, np.zeros((3, 4)))
    >>> bool(np.allclose(r.x, 1.0, atol=1e-6) and r.converged.all())
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Result:
    """Per row: the minimum found, its value, and whether the gradient test was met."""

    x: np.ndarray
    f: np.ndarray
    converged: np.ndarray
    iterations: int
    evaluations: int


def minimize(value_and_grad: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
             x0: np.ndarray, *, tolerance: float = 1e-5, max_iterations: int = 500,
             memory: int = 10, f_tolerance: float = 0.0) -> Result:
    """Minimise each row's problem from ``x0`` (k, n).

    Args:
        value_and_grad: (k, n) points -> ((k,) values, (k, n) gradients), all rows at once.
        tolerance: a row converges when the largest component of its gradient is below this.
        max_iterations: the most iterations (each one or a few calls of ``value_and_grad``).
        memory: curvature pairs kept per row.
        f_tolerance: a row also converges when three steps in a row lower its value by less
            than this times ``1 + |f|``, or no step along a descent direction lowers it: the
            objective's rounding, reached before the gradient test on a float32 flow or a
            long float64 likelihood. 0: the gradient test only.

    Rows whose value is not finite at the start are left where they are.
    """
    x = np.array(x0, dtype=np.float64)
    k, n = x.shape
    f, g = (np.asarray(a, np.float64) for a in value_and_grad(x))
    evals = 1
    s_hist = np.zeros((memory, k, n))
    y_hist = np.zeros((memory, k, n))
    rho = np.zeros((memory, k))
    count = np.zeros(k, int)            # pairs stored per row
    gamma = np.ones(k)                  # the initial Hessian scale s'y / y'y of each row
    slow = np.zeros(k, int)             # consecutive iterations of negligible progress
    head = 0                            # next slot (shared: rows store in step)
    active = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    converged = active & (np.max(np.abs(g), axis=1) < tolerance)
    active &= ~converged
    it = 0
    for it in range(1, max_iterations + 1):
        if not active.any():
            break
        d = _direction(g, s_hist, y_hist, rho, gamma, head, memory)
        slope = np.sum(d * g, axis=1)
        bad = ~(slope < 0)                       # not a descent direction: restart there
        d[bad], slope[bad], count[bad] = -g[bad], -np.sum(g[bad] ** 2, axis=1), 0
        rho[:, bad], gamma[bad] = 0.0, 1.0
        step = np.where(count > 0, 1.0, np.minimum(1.0, 1.0 / np.maximum(
            np.max(np.abs(g), axis=1), 1e-12)))
        accepted = ~active
        x_new, f_new, g_new = x.copy(), f.copy(), g.copy()
        for _ in range(20):                      # backtracking until Armijo holds
            trial = np.where(accepted[:, None], x_new, x + step[:, None] * d)
            ft, gt = (np.asarray(a, np.float64) for a in value_and_grad(trial))
            evals += 1
            ok = ~accepted & np.isfinite(ft) & (ft <= f + 1e-4 * step * slope) \
                & np.all(np.isfinite(gt), axis=1)
            x_new[ok], f_new[ok], g_new[ok] = trial[ok], ft[ok], gt[ok]
            accepted |= ok
            if accepted.all():
                break
            # the minimum of the quadratic through f, the slope and the trial value, kept
            # within [0.1, 0.5] of the step (a value that is not finite: a tenth)
            curv = np.where(np.isfinite(ft), ft - f - slope * step, np.inf)
            quad = np.where(curv > 0, -slope * step * step / (2 * np.where(curv > 0, curv, 1.0)),
                            0.1 * step)
            step = np.where(accepted, step, np.clip(quad, 0.1 * step, 0.5 * step))
        stuck = ~accepted                        # no decrease found: a minimum to rounding
        s, y = x_new - x, g_new - g
        sy = np.sum(s * y, axis=1)
        store = active & ~stuck & (sy > 1e-12 * np.sqrt(np.sum(s * s, axis=1)
                                                       * np.sum(y * y, axis=1)))
        s_hist[head][store], y_hist[head][store] = s[store], y[store]
        rho[head][store] = 1.0 / sy[store]
        gamma[store] = sy[store] / np.sum(y[store] ** 2, axis=1)
        # rows that stored nothing keep their old pairs; the slot is reused by all rows
        s_hist[head][~store], y_hist[head][~store], rho[head][~store] = 0.0, 0.0, 0.0
        count = np.minimum(count + store, memory)
        head = (head + 1) % memory
        with np.errstate(invalid="ignore"):     # inactive rows may hold inf
            slow = np.where((f - f_new) <= f_tolerance * (1 + np.abs(f)), slow + 1, 0)
        x, f, g = np.where(active[:, None], x_new, x), np.where(active, f_new, f), \
            np.where(active[:, None], g_new, g)
        done_now = active & (np.max(np.abs(g), axis=1) < tolerance)
        converged |= done_now
        if f_tolerance > 0:
            # three steps in a row that lower the value by less than its rounding, or no
            # decrease at all along a descent direction: a minimum, to the objective's rounding
            converged |= active & ((slow >= 3) | stuck)
        active &= ~(converged | stuck)
    return Result(x, f, converged, it, evals)


def _direction(g, s_hist, y_hist, rho, gamma, head, memory):
    """-H g by the two-loop recursion, for every row (slots with rho = 0 are empty)."""
    q = g.copy()
    alpha = np.zeros((memory, len(g)))
    order = [(head - 1 - j) % memory for j in range(memory)]   # newest first
    for i in order:
        alpha[i] = rho[i] * np.sum(s_hist[i] * q, axis=1)
        q -= alpha[i][:, None] * y_hist[i]
    r = gamma[:, None] * q
    for i in reversed(order):
        beta = rho[i] * np.sum(y_hist[i] * r, axis=1)
        r += s_hist[i] * (alpha[i] - beta)[:, None]
    return -r
