"""The flows: what a surrogate file's weights mean, and every backend that evaluates them.

- :mod:`.config`: :class:`~likeflow.flows.config.FlowConfig` (architecture, bounds,
  standardisation, whitening), the weight roles of a file; no array library but numpy;
- :mod:`.plan`: the bound maps, mirror images and fold, written once
  (:class:`~likeflow.flows.plan.BoundPlan`), and :mod:`.rq` the spline's formulas and
  parametrisation, written once; :mod:`.bounds` the rules that choose maps and reflections;
- the backends: :mod:`.tf_flow` (TensorFlow, training; :mod:`.splines` its fast spline),
  :mod:`.numpy_flow` (numpy, exact gradients, no TensorFlow), :mod:`.onnx_export` (a graph).
"""
