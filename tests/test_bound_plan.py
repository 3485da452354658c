"""The bound plan (likeflow.flows.plan): one definition of the bound maps, the mirror images and
the fold, evaluated by numpy, TensorFlow and ONNX to the same numbers on every kind of column
(probit, sigmoid, soft clip, one bound either side, none), with the right inverse and
log-determinant. numpy is always checked; TensorFlow and ONNX where installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from likeflow.flows.plan import BoundPlan, NumpyMap


KINDS = ("two", "soft", "lower", "upper", "none")


def plan_of(kinds, bound_map, seed, reflect=False):
    """A plan with one column per kind, random bounds, shift and scale."""
    rng = np.random.default_rng(seed)
    d = len(kinds)
    bounds = np.tile([-np.inf, np.inf], (d, 1))
    softclip = np.zeros(d)
    for j, kind in enumerate(kinds):
        lo, width = rng.uniform(-3, 3), rng.uniform(0.5, 20)
        if kind in ("two", "soft"):
            bounds[j] = lo, lo + width
        if kind == "soft":
            softclip[j] = rng.uniform(0.1, 1.0)
        if kind == "lower":
            bounds[j, 0] = lo
        if kind == "upper":
            bounds[j, 1] = lo
    physical = bounds.copy()
    pairs = []
    if reflect:
        j = kinds.index("two")
        pairs = [[j, float(bounds[j, 0])]]
        bounds[j, 0] = 2 * bounds[j, 0] - bounds[j, 1]   # the flow's range, pushed out
    plan = BoundPlan(bounds, rng.normal(size=d), np.exp(rng.normal(scale=0.5, size=d)),
                     bound_map=bound_map, softclip=softclip, reflect=pairs, physical=physical)
    return plan


kinds_st = st.lists(st.sampled_from(KINDS), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(kinds=kinds_st, bound_map=st.sampled_from(["probit", "sigmoid"]),
       seed=st.integers(0, 10_000))
@example(kinds=["two", "soft"], bound_map="probit", seed=25)  # a soft clip's far tail
def test_the_inverse_inverts_and_the_log_det_is_the_jacobian(kinds, bound_map, seed):
    plan = plan_of(kinds, bound_map, seed)
    m = NumpyMap(plan)
    u = np.random.default_rng(seed).normal(scale=1.5, size=(64, len(kinds)))
    x = m.forward(u)
    lo, hi = plan.clip_lo, plan.clip_hi
    assert np.all((x >= lo) & (x <= hi))
    # exact away from the holds (the probit map is held at PROBIT_MAX when read)
    back = m.inverse(x, held=False)
    width = np.where(np.isfinite(hi - lo), hi - lo, 10.0)
    # (a value rounded onto its bound has lost its digits: only those 1e-3 inside)
    inner = ((np.abs(plan.shift + plan.scale * u) < 4) & (x - lo > 1e-3 * width)
             & (hi - x > 1e-3 * width))
    np.testing.assert_allclose(back[inner], u[inner], rtol=1e-7, atol=1e-7)
    # the map is one column at a time: log |det| is the sum of the log derivatives (where
    # those keep their digits: far in a soft clip's tail the derivative is a difference of two
    # sigmoids near 1, and only the log-determinant, computed in logs, is exact)
    dx = np.abs(m.forward_derivative(u))
    fine = np.all(dx > 1e-6, axis=1)
    assert np.all(np.isfinite(m.forward_log_det(u)))
    np.testing.assert_allclose(m.forward_log_det(u)[fine], np.log(dx[fine]).sum(axis=1),
                               rtol=1e-9, atol=1e-9)
    # and the derivative is the finite difference of the map
    h = 1e-6
    fd = (m.forward(u + h) - m.forward(u - h)) / (2 * h)
    ok = inner
    np.testing.assert_allclose(m.forward_derivative(u)[ok], fd[ok], rtol=1e-5, atol=1e-8)


def test_images_and_fold_are_mirror_images():
    plan = plan_of(["none", "two", "lower"], "probit", 3, reflect=True)
    (j, b, side), = plan.reflections
    assert side == 1.0
    x = np.random.default_rng(0).normal(size=(5, 3)) + [0, b + 0.5, 0]
    images, ok = plan.mirror_images(x)
    np.testing.assert_array_equal(images[1][:, j], 2 * b - x[:, j])
    np.testing.assert_array_equal(np.delete(images[1], j, 1), np.delete(x, j, 1))
    assert ok[0].all()
    beyond = np.c_[x[:, 0], np.full(5, b - 1.0), x[:, 2]]
    folded = plan.fold(plan.numpy, beyond)
    np.testing.assert_array_equal(folded[:, j], np.full(5, b + 1.0))


def _points(plan, rng, n=200):
    """Physical points inside the bounds, some on and next to them."""
    lo = np.where(np.isfinite(plan.clip_lo), plan.clip_lo, -5)
    hi = np.where(np.isfinite(plan.clip_hi), plan.clip_hi, 5)
    x = lo + (hi - lo) * rng.random((n, plan.dim))
    x[:10] = np.where(np.isfinite(plan.clip_lo), plan.clip_lo, x[:10])
    x[10:20] = np.where(np.isfinite(plan.clip_hi), plan.clip_hi - 1e-9, x[10:20])
    return x


CASES = [(kinds, bmap, seed) for seed, kinds in enumerate(
    [KINDS, ("two", "two", "none"), ("soft", "lower", "upper"), ("none",)])
    for bmap in ("probit", "sigmoid")]


@pytest.mark.parametrize("kinds,bound_map,seed", CASES)
def test_tensorflow_evaluates_the_same_plan(kinds, bound_map, seed):
    pytest.importorskip("tensorflow")
    from likeflow.flows.tf_flow import tf

    plan = plan_of(list(kinds), bound_map, seed, reflect="two" in kinds)
    bij = plan.bijector("float64")
    rng = np.random.default_rng(seed)
    u = rng.normal(scale=2, size=(200, plan.dim))
    x = _points(plan, rng)
    np.testing.assert_allclose(bij.forward(tf.constant(u)).numpy(),
                               plan.forward(plan.numpy, u), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(bij.inverse(tf.constant(x)).numpy(),
                               plan.inverse(plan.numpy, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(tf.constant(u), event_ndims=1).numpy(),
        plan.forward_log_det(plan.numpy, u), rtol=1e-12, atol=1e-12)
    ops = bij._ops
    for a, b in zip(plan.images(ops, tf.constant(x)), plan.images(plan.numpy, x)):
        np.testing.assert_array_equal(a.numpy(), b)
    np.testing.assert_array_equal(plan.fold(ops, tf.constant(x)).numpy(),
                                  plan.fold(plan.numpy, x))


@pytest.mark.parametrize("kinds,bound_map,seed", CASES)
def test_onnx_evaluates_the_same_plan(kinds, bound_map, seed):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    from likeflow.flows.onnx_export import OPSET, GraphOps, _Graph, _Node

    plan = plan_of(list(kinds), bound_map, seed, reflect="two" in kinds)
    g = _Graph("float64")
    ops = GraphOps(g, plan)
    d = plan.dim
    outputs = {
        "x": plan.forward(ops, _Node(g, "u")),
        "u_of_x": plan.inverse(ops, _Node(g, "xin")),
        "log_det": plan.forward_log_det(ops, _Node(g, "u")),
        "folded": plan.fold(ops, _Node(g, "xin")),
        "image": plan.images(ops, _Node(g, "xin"))[-1],
    }
    for name, node in outputs.items():
        g.nodes.append(helper.make_node("Identity", [node.name], [name]))
    graph = helper.make_graph(
        g.nodes, "plan", [helper.make_tensor_value_info(n, g.elem, ["n", d])
                          for n in ("u", "xin")],
        [helper.make_tensor_value_info(n, g.elem, None) for n in outputs], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    sess = ort.InferenceSession(model.SerializeToString())
    rng = np.random.default_rng(seed)
    u = rng.normal(scale=2, size=(200, d))
    x = _points(plan, rng)
    got = dict(zip(outputs, sess.run(list(outputs), {"u": u, "xin": x})))
    np.testing.assert_allclose(got["x"], plan.forward(plan.numpy, u), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["u_of_x"], plan.inverse(plan.numpy, x), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(got["log_det"], plan.forward_log_det(plan.numpy, u),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got["folded"], plan.fold(plan.numpy, x))
    np.testing.assert_array_equal(got["image"], plan.images(plan.numpy, x)[-1])
