"""The artifact: :class:`~likeflow.surrogate.artifact.Surrogate` (evaluate, sample, save),
its file read back (:mod:`.loading`) and checked against the versioned schemas
(:mod:`.schema`), flows of several parts behind the same interface (:mod:`.piecewise`,
:mod:`.ensembles`) and the published bundle (:mod:`.publishing`)."""
