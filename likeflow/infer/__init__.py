"""What a surrogate (or an exact likelihood) is used for: maxima, profile scans and limits
(:mod:`.inference`, :mod:`.profiling`), CLs hypothesis tests (:mod:`.cls`), the optimiser
(:mod:`.lbfgs`), spey's backend (:mod:`.spey_backend`), marginal statistics
(:mod:`.information`), density-ratio classification (:mod:`.classification`) and outlier
scores (:mod:`.outliers`)."""
