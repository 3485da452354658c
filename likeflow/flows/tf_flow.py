"""The TensorFlow side of the flows: the bijectors and the :class:`Flow` module.

Everything here subclasses TensorFlow / TFP types, so this module imports TensorFlow at the top
(quietly, :mod:`likeflow.tfsetup`); the artifact and the uses import it only when a flow is
built (:mod:`likeflow.flows.config` holds the configs and never imports it). The conditioners are
tf_keras (Keras 2) layers held in a ``tf.Module``: Keras 3 layers would not be tracked and the
flow would never train. One class or function per concept:

- :class:`Preprocess`: the bound map (standardised unbounded space -> physical parameters), the
  :class:`~likeflow.flows.plan.BoundPlan` evaluated in :mod:`likeflow.flows.tf_ops`; also what
  inference and MCMC move in (:meth:`~likeflow.flows.plan.BoundPlan.bijector`);
- :func:`affine_bijector`, :func:`spline` (chosen by :func:`transformer`): the two transformers;
  :func:`made_conditioner`, :func:`coupling_conditioner` (an :class:`MLP`): the two conditioners;
- :class:`MarginalSpline`: the elementwise spline next to the data;
- :class:`Flow`: the chain, ``log_prob`` with folds at reflected bounds, sampling through the
  one-pass MADE (:func:`_made_forward`); :func:`build_flow` builds one from its config.
"""

from __future__ import annotations

import numpy as np

from ..tfsetup import import_tf

tf, tfp, tf_keras = import_tf()
tfb, tfd = tfp.bijectors, tfp.distributions

from . import affine, rq  # noqa: E402
from .plan import BoundPlan  # noqa: E402
from .splines import RationalQuadraticSpline  # noqa: E402
from .tf_ops import Preprocess  # noqa: E402



def _padded_schedule(final: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """For each step k < dim, the units with ``final == k`` as a (dim, width) index array padded
    with unit 0, and a 0/1 array marking the real entries (the padding contributes nothing)."""
    groups = [np.flatnonzero(final == k) for k in range(dim)]
    width = max(1, max(len(g) for g in groups))
    idx = np.zeros((dim, width), dtype=np.int32)
    ok = np.zeros((dim, width))
    for k, g in enumerate(groups):
        idx[k, :len(g)] = g
        ok[k, :len(g)] = 1.0
    return idx, ok


class MLP(tf.Module):
    """Dense tf_keras layers: the coupling conditioner (input half -> parameters)."""

    def __init__(self, out_dim, hidden, activation, dtype, seed, name):
        super().__init__(name=name)
        init = lambda s: tf_keras.initializers.GlorotUniform(seed=s)  # noqa: E731
        self.hidden_layers = [
            tf_keras.layers.Dense(h, activation=activation, dtype=dtype,
                                  kernel_initializer=init(seed + i))
            for i, h in enumerate(hidden)]
        # a small output layer starts every coupling close to the identity
        self.out = tf_keras.layers.Dense(
            out_dim, dtype=dtype,
            kernel_initializer=tf_keras.initializers.VarianceScaling(
                0.01, seed=seed + len(hidden)))

    def __call__(self, x):
        for layer in self.hidden_layers:
            x = layer(x)
        return self.out(x)


class MarginalSpline(tfb.Bijector):
    """An elementwise rational-quadratic spline per dimension, its parameters a variable
    of shape (D, 3K - 1): the spline is rebuilt from the variable on every call."""

    def __init__(self, params, bins, bound):
        super().__init__(forward_min_event_ndims=1, validate_args=False,
                         dtype=params.dtype, name="marginal_spline")
        self.params = params
        self._bins, self._bound = bins, bound

    def _spline(self):
        return spline(self.params, self._bins, self._bound)

    def _forward(self, x):
        return self._spline().forward(x)

    def _inverse(self, y):
        return self._spline().inverse(y)

    def _forward_log_det_jacobian(self, x):
        return tf.reduce_sum(self._spline().forward_log_det_jacobian(x, event_ndims=0),
                             axis=-1)

    def _inverse_log_det_jacobian(self, y):
        return tf.reduce_sum(self._spline().inverse_log_det_jacobian(y, event_ndims=0),
                             axis=-1)

    def _is_increasing(self):  # noqa: D401 - TFP's hook
        return True


class Whiten(tfb.Bijector):
    """The fixed linear map ``u = L v`` of :attr:`FlowConfig.whiten`, ``L`` lower triangular
    with a positive diagonal (a variable, so that a file's matrix is assigned to it)."""

    def __init__(self, matrix):
        super().__init__(forward_min_event_ndims=1, validate_args=False, is_constant_jacobian=True,
                         dtype=matrix.dtype, name="whiten")
        self.matrix = matrix

    def _forward(self, x):
        return tf.linalg.matvec(self.matrix, x)

    def _inverse(self, y):
        flat = tf.reshape(y, [-1, tf.shape(y)[-1]])
        v = tf.linalg.triangular_solve(self.matrix, tf.transpose(flat), lower=True)
        return tf.reshape(tf.transpose(v), tf.shape(y))

    def _forward_log_det_jacobian(self, x):
        return tf.reduce_sum(tf.math.log(tf.linalg.diag_part(self.matrix)))

    def _inverse_log_det_jacobian(self, y):
        return -tf.reduce_sum(tf.math.log(tf.linalg.diag_part(self.matrix)))


def affine_bijector(params, clamp):
    """Shift and soft-clamped log scale (:func:`likeflow.flows.affine.log_scale`)."""
    log_scale = affine.log_scale(params[..., 1], clamp, tf.tanh)
    return tfb.Chain([tfb.Shift(params[..., 0]), tfb.Scale(log_scale=log_scale)])


def spline(params, bins, bound):
    k = bins
    widths, heights, slopes = rq.parametrise(
        params[..., :k], params[..., k:2 * k], params[..., 2 * k:], k, bound,
        lambda a: tf.nn.softmax(a, axis=-1), tf.nn.softplus)
    return RationalQuadraticSpline(widths, heights, slopes, range_min=-bound)


def transformer(config):
    """The config's transformer: parameters (..., P) -> an elementwise bijector."""
    if config.transformer == "affine":
        return lambda p: affine_bijector(p, config.log_scale_clamp)
    return lambda p: spline(p, config.bins, config.spline_range)


def made_conditioner(config, dtype, seed: int, name: str):
    """The autoregressive conditioner: a MADE from all D inputs to P parameters each."""
    return tfb.AutoregressiveNetwork(
        params=config.params_per_dimension, event_shape=[config.dim],
        hidden_units=list(config.hidden), activation=config.activation, dtype=dtype,
        kernel_initializer=tf_keras.initializers.GlorotUniform(seed=seed), name=name)


def coupling_conditioner(config, dtype, seed: int, name: str):
    """The coupling conditioner: an MLP from the first D // 2 inputs to P parameters for each
    of the others."""
    d = config.dim
    return MLP((d - d // 2) * config.params_per_dimension, config.hidden, config.activation,
               dtype, seed, name=name)


class Flow(tf.Module):
    """A normalizing flow: ``log_prob`` in physical coordinates, ``sample``, latent maps."""

    # built lazily, holding the same bijectors: not tracked, so the variable order stays
    _TF_MODULE_IGNORED_PROPERTIES = tf.Module._TF_MODULE_IGNORED_PROPERTIES | {
        "_exact", "_column_forward"}

    def __init__(self, config):
        super().__init__(name=f"likeflow_{config.flow}")
        self.config = config
        dtype = tf.as_dtype(config.dtype)
        self.dtype = dtype
        d = config.dim
        make_transform = transformer(config)
        autoregressive = config.conditioner == "autoregressive"
        self.conditioners = []
        transforms = []
        for i in range(config.layers):
            seed = config.seed * 1000 + 10 * i
            if autoregressive:
                made = made_conditioner(config, dtype, seed, name=f"made_{i}")
                transforms.append(tfb.MaskedAutoregressiveFlow(
                    bijector_fn=_made_bijector_fn(made, make_transform), name=f"maf_{i}"))
                self.conditioners.append(made)
            else:
                mlp = coupling_conditioner(config, dtype, seed, name=f"coupling_{i}")
                transforms.append(tfb.RealNVP(
                    num_masked=config.dim // 2,
                    bijector_fn=_coupling_bijector_fn(mlp, config.params_per_dimension,
                                                      make_transform),
                    name=f"coupling_{i}"))
                self.conditioners.append(mlp)
        forward_order = []
        made_positions = []  # where each MADE's bijector sits in forward_order
        for i, t in enumerate(transforms):
            if autoregressive:
                made_positions.append(len(forward_order))
            forward_order.append(t)
            if i < len(config.permutations):
                forward_order.append(tfb.Permute(config.permutations[i], name=f"perm_{i}"))
        if config.whiten:
            # the identity until fit (or a file) assigns the data's matrix; not trained
            self.whiten = tf.Variable(tf.eye(d, dtype=dtype), trainable=False, name="whiten")
            forward_order.append(Whiten(self.whiten))
        if config.marginal_spline:
            # zeros: uniform bins and unit slopes, the identity
            forward_order.append(MarginalSpline(
                tf.Variable(tf.zeros([d, 3 * config.bins - 1], dtype=dtype),
                            name="marginal_spline"), config.bins, config.spline_range))
        self.plan = BoundPlan.of(config)
        self.preprocess = Preprocess(self.plan, dtype)
        forward_order.append(self.preprocess)
        self._forward_order = forward_order
        # positions only (ints): a second reference to the MADEs would be tracked by
        # tf.Module and reorder the flow's variables
        self._made_positions = tuple(made_positions)
        # one column of the sampling pass: the spline's XLA-compiled on its own, since the
        # A-NSF samples through a plain graph (see Surrogate) where its many small ops ran
        # 1.7x slower; the affine one plain, inside the MAF's XLA-compiled pass (a nested
        # compiled call there made 10^6 samples 1.8x slower)
        column = lambda params, z_k: make_transform(params).forward(z_k)  # noqa: E731
        self._column_forward = (tf.function(column, jit_compile=True)
                                if config.transformer == "spline" else column)
        # whether the sampling pass gains from XLA: the autoregressive spline's steps run in a
        # while loop, where XLA on a CPU computes the spline 4x slower than a plain graph
        # (measured: 3,000 against 10,700 samples/s of the default 95-dim A-NSF); the affine
        # steps gain 4x from it
        self.sampling_compiles = not (config.transformer == "spline" and autoregressive)
        # tfb.Chain applies its last element first in the forward (sampling) direction
        self.bijector = tfb.Chain(list(reversed(forward_order)), name="chain")
        self.base = tfd.MultivariateNormalDiag(loc=tf.zeros([d], dtype=dtype))
        self.distribution = tfd.TransformedDistribution(self.base, self.bijector)
        self.distribution.log_prob(tf.zeros([1, d], dtype=dtype) + self.preprocess.forward(
            tf.zeros([1, d], dtype=dtype)))  # build every layer's variables
        for made in self.conditioners if autoregressive else ():
            _activations_in(made, dtype)

    @property
    def stored_variables(self) -> list:
        """The variables a surrogate file stores, in its order
        (:func:`likeflow.flows.config.weight_roles`): the
        trainable ones, then the fixed whitening matrix."""
        fixed = [self.whiten] if self.config.whiten else []
        return list(self.trainable_variables) + fixed

    def log_prob(self, x):
        """Log density at physical points ``x`` of shape (n, D).

        With reflected parameters, the fold: the log of the sum of the flow's density at
        ``x`` and at its mirror images across the reflected bounds.
        """
        return self._fold(self.distribution.log_prob, x)

    def train_log_prob(self, x):
        """The log density training maximises: the flow's own, without the holds of the
        probit map and the soft clip (:data:`PROBIT_MAX`): held, the training points near a
        bound would all map to one point of the base space and the flow would learn a spike
        there. Points are clipped only at :data:`PROBIT_TRAIN_MAX`."""
        if not (self.plan.probit or self.plan.has("soft")):
            return self.log_prob(x)
        unheld, inner = self._exact_parts()

        def lp(y):
            return (inner.log_prob(unheld.inverse(y))
                    + unheld.inverse_log_det_jacobian(y, event_ndims=1))

        return self._fold(lp, x)

    def _exact_parts(self):
        """The bound maps without the holds, and the flow inside them (same variables)."""
        if "_exact" not in self.__dict__:
            with tf.init_scope():  # eager constants, usable from every traced function
                unheld = Preprocess(self.plan, self.dtype, held=False)
                inner = tfd.TransformedDistribution(
                    self.base, tfb.Chain(list(reversed(self._forward_order[:-1]))))
            self._exact = (unheld, inner)
        return self._exact

    def _fold(self, lp_fn, x):
        """The log of the sum of ``lp_fn``'s density over ``x``'s mirror images that carry
        density (:meth:`likeflow.flows.plan.BoundPlan.images`, ``image_counts``)."""
        plan, ops = self.plan, self.preprocess._ops
        if not plan.reflections:
            return lp_fn(x)
        images = plan.images(ops, x)
        lp = lp_fn(tf.concat(images, axis=0))
        ok = tf.concat([tf.ones(tf.shape(x)[:-1], tf.bool)]  # the point itself counts
                       + [plan.image_counts(ops, img) for img in images[1:]], axis=0)
        lp = tf.where(ok & ~tf.math.is_nan(lp), lp, tf.constant(-np.inf, lp.dtype))
        return tf.reduce_logsumexp(tf.reshape(lp, [len(images), -1]), axis=0)

    def unfolded_log_prob(self, x):
        """The flow's own density on its extended range (no fold)."""
        return self.distribution.log_prob(x)

    def fold(self, y):
        """Points of the flow's extended range -> the physical range (mirror images of
        points beyond a reflected bound)."""
        return self.plan.fold(self.preprocess._ops, y)

    def sample(self, n, seed):
        """``n`` physical samples; ``seed`` is a stateless (2,) int seed."""
        return self.from_latent(self.base.sample(n, seed=seed))

    def to_latent(self, x):
        """Physical points -> base space (standard normal if the flow is perfect): the
        exact inverse of sampling (no hold of the probit map)."""
        if not self.plan.probit:
            return self.bijector.inverse(x)
        unheld, inner = self._exact_parts()
        return inner.bijector.inverse(unheld.inverse(x))

    def from_latent(self, z):
        """Base space -> physical points (folded at reflected bounds).

        The MADE layers use :func:`_made_forward` (one network pass in total instead of D),
        everything else its bijector's ``forward``.
        """
        made_layers = dict(zip(self._made_positions, self.conditioners))
        for k, b in enumerate(self._forward_order):
            if k in made_layers:
                z = _made_forward(made_layers[k], self._column_forward, z)
            else:
                z = b.forward(z)
        return self.fold(z)


def _made_forward(made, column_forward, z):
    """MAF's sequential direction (latent -> data) in one pass of the MADE network in total.

    TFP's ``MaskedAutoregressiveFlow.forward`` re-runs the whole network once per dimension:
    D full passes, which makes sampling a 95-dim MAF ~50x slower than its density. But a
    hidden unit of degree c depends only on x_1..x_c, so it is final as soon as x_c is known,
    and it never needs recomputing. Step k (0-based) therefore: adds x_{k-1} to the first
    layer's accumulators (rank one), pushes the units that just became final into the next
    layer's accumulators, and computes only dimension k's output parameters from the last
    hidden layer (the masked kernel ignores units not final yet). The hidden layers cost
    one network evaluation in all; only the order of the sums differs from ``made(x)``, so
    the result agrees to rounding.
    """
    plan = _made_plan(made)
    d, p = plan["dim"], plan["params"]
    dense = plan["dense"]
    # made's own Activation layers, not the bare function: the layers' dtype policy is what
    # log_prob uses (:func:`_activations_in`), so sampling agrees with it to rounding.
    acts = [lambda x, layer=layer: tf.cast(layer(x), z.dtype) for layer in plan["acts"]]
    n = tf.shape(z)[0]
    kernels = [layer.kernel * tf.constant(m, dtype=z.dtype)
               for layer, m in zip(dense, made._masks)]
    biases = [layer.bias if layer.bias is not None else tf.zeros(layer.units, z.dtype)
              for layer in dense]
    accs = tuple(tf.broadcast_to(b, [n, b.shape[0]]) for b in biases[:-1])
    ys = tf.TensorArray(z.dtype, size=d, element_shape=tf.TensorShape([None]))
    sched = [(tf.constant(idx), tf.constant(ok, dtype=z.dtype)) for idx, ok in plan["steps"]]

    out_kernel = tf.reshape(kernels[-1], [-1, d, p])  # hidden -> (dimension, parameter)
    out_bias = tf.reshape(biases[-1], [d, p])

    def step(k, y_prev, ys, accs):
        accs = list(accs)
        # the first layer sees the inputs directly: a rank-one update with the newest one
        accs[0] = accs[0] + (tf.cast(k > 0, z.dtype) * y_prev[:, None]
                             * kernels[0][tf.maximum(k - 1, 0)][None, :])
        for layer in range(1, len(accs)):
            idx, ok = sched[layer - 1][0][k], sched[layer - 1][1][k]
            h = acts[layer - 1](tf.gather(accs[layer - 1], idx, axis=1))
            w = tf.gather(kernels[layer], idx) * ok[:, None]
            # a sum of a few outer products: TF's matmul is slow for inner sizes this small
            accs[layer] = accs[layer] + tf.reduce_sum(h[:, :, None] * w[None], axis=1)
        # the output layer only for dimension k (the masked kernel ignores unfinished units)
        params = tf.matmul(acts[-1](accs[-1]), out_kernel[:, k]) + out_bias[k]
        y_k = column_forward(params[:, None, :], z[:, k:k + 1])[:, 0]
        return k + 1, y_k, ys.write(k, y_k), tuple(accs)

    _, _, ys, _ = tf.while_loop(
        lambda k, *_: k < d, step, (tf.constant(0), tf.zeros([n], z.dtype), ys, accs))
    return tf.transpose(ys.stack())


def _made_plan(made):
    """MADE's layers, and per step k and layer the (padded) indices of the hidden units that
    become final at that step."""
    dense = [layer for layer in made._network.layers
             if isinstance(layer, tf_keras.layers.Dense)]
    order = np.asarray(made._input_order)
    if not np.array_equal(order, np.arange(1, len(order) + 1)):
        raise ValueError("the fast MADE pass assumes the left-to-right input order")
    done = order  # when each unit of the previous layer becomes final (its degree)
    steps = []
    for mask in made._masks[:-1]:
        m = np.asarray(mask, dtype=bool)
        # a unit is final once every unit feeding it is
        final = np.array([done[m[:, j]].max() if m[:, j].any() else 0
                          for j in range(m.shape[1])])
        steps.append(_padded_schedule(final, len(order)))
        done = final
    acts = [layer for layer in made._network.layers
            if isinstance(layer, tf_keras.layers.Activation)]
    if len(acts) != len(dense) - 1:
        raise ValueError("unexpected MADE layout: one activation per hidden layer expected")
    # not cached on ``made``: Keras would track the layers a second time, which reorders
    # the flow's variables (and the weights of saved files); this runs once per trace.
    return {"dense": dense, "acts": acts, "steps": steps, "dim": len(order),
            "params": made.params}


def _activations_in(made, dtype) -> None:
    """A built MADE's activations computed in the flow's dtype: TFP builds its Activation
    layers without one, so a float64 MADE computed them in float32 (the default Keras policy),
    rounding every hidden unit to float32 (files written before this change evaluate ~1e-7
    relative more exactly now; the numpy reader computes them in float64 too)."""
    policy = tf_keras.mixed_precision.Policy(dtype.name)
    for layer in made._network.layers:
        if isinstance(layer, tf_keras.layers.Activation):
            layer._set_dtype_policy(policy)


def _made_bijector_fn(made, make_transform):
    return lambda y, **kw: make_transform(made(y))


def _coupling_bijector_fn(mlp, n_params, make_transform):
    def fn(x0, output_units, **kw):
        p = mlp(x0)
        p = tf.reshape(p, tf.concat([tf.shape(x0)[:-1], [output_units, n_params]], 0))
        return make_transform(p)
    return fn


def build_flow(config):
    """The :class:`~likeflow.flows.tf_flow.Flow` (a ``tf.Module``) that ``config`` describes, with
    its variables built."""
    flow = Flow(config)
    # building runs many one-off eager ops on new variables; TensorFlow caches a kernel for
    # each (about 0.2 MB per MADE, never freed): a loop over hundreds of surrogates would grow
    # without bound. The cache is only a speed-up; what is used again is rebuilt
    from tensorflow.python.eager import context
    context.context().clear_kernel_cache()
    return flow


def release_trace_caches() -> None:
    """Empty TFP's bijector caches (one per bijector class, shared by all instances).

    In a traced function they hold the graph's tensors, and through them every graph ever
    traced and the variables it captured: about 7 MB per surrogate loaded and evaluated.
    Entries are only of use within one trace, so they are dropped after each."""
    todo = [tfp.bijectors.Bijector]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        cache = cls.__dict__.get("_cache")
        if cache is not None:
            cache.clear()
