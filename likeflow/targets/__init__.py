"""Densities to learn and samples of them: the benchmark likelihoods and pyhf workspaces
(:mod:`.likelihoods`), MCMC (:mod:`.mcmc`), sample files of a target (:mod:`.generate`) and
joint densities of several surrogates (:mod:`.combination`)."""
