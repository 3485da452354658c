"""The training loss of a batch: the weighted negative log-likelihood, plus a density term.

Maximum likelihood alone matches the surrogate ``q`` to the samples where they are dense; where
profiles are decided (the conditional modes along a POI, far from any sample in many
dimensions) it leaves ``log q`` free, and a real ATLAS likelihood showed it off there by
0.1-0.2 nats (limits 7-9% too strong). The sample files carry the target's log density ``p``
(up to a constant), so the residual ``r = log q - log p`` is known at every row and must be
constant. The density term is

    density_weight * [(1 - s) * Var_w(r over the batch) + s * mean((r_anchor - mean_w r)^2)]

where the second part, present when anchors (:mod:`likeflow.data.anchors`) come with the batch,
holds ``r`` at those points to the batch's mean (``s`` = :data:`ANCHOR_SHARE`). Both parts are
invariant to the unknown constant of ``log p``. The batch's rows are samples (weight ``w``,
``a = 0``) and anchors (``w = 0``, ``a = 1``): anchors are not samples, they never enter the
likelihood.
"""

from __future__ import annotations

#: the anchors' share of the density term (when a batch has anchors)
ANCHOR_SHARE = 0.25
#: anchors appended to each batch, as a fraction of its rows
ANCHORS_PER_BATCH = 1 / 16


def nll(log_q, w):
    """The weighted mean negative log-likelihood."""
    from ..tfsetup import tf

    return -tf.reduce_sum(w * log_q) / tf.reduce_sum(w)


def batch_loss(log_q, w, y=None, a=None, *, density_weight: float = 0.0):
    """The loss of one batch: :func:`nll`, plus the density term where ``y`` (the target's log
    density at the rows) is given and ``density_weight`` > 0; ``a`` marks anchors (1.0)."""
    from ..tfsetup import tf

    loss = nll(log_q, w)
    if y is None or not density_weight:
        return loss
    r = log_q - y
    total = tf.reduce_sum(w)
    mean = tf.reduce_sum(w * r) / total
    var = tf.reduce_sum(w * tf.square(r - mean)) / total
    if a is None:
        return loss + density_weight * var
    n_a = tf.reduce_sum(a)
    at_anchors = tf.reduce_sum(a * tf.square(r - mean)) / tf.maximum(n_a, 1.0)
    share = tf.where(n_a > 0, tf.constant(ANCHOR_SHARE, log_q.dtype),
                     tf.constant(0.0, log_q.dtype))
    return loss + density_weight * ((1 - share) * var + share * at_anchors)
