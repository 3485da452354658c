"""Is the surrogate right? The validation report and its verdict (:mod:`.report`), two-sample
and density metrics (:mod:`.metrics`), the residual check along the POIs (:mod:`.residuals`),
the check against the exact likelihood (:mod:`.exact_check`) and the plots (:mod:`.plots`)."""
