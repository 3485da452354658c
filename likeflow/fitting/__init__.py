"""From samples to a surrogate: the orchestration of a fit (:mod:`.run`: ``fit``, ``refine``),
the training loop (:mod:`.loop`) and its loss (:mod:`.losses`), the rows it is fed
(:mod:`.rows`, :mod:`.stream` for files larger than memory), the devices (:mod:`.devices`),
fits fanned out on Dask (:mod:`.fanout`) and the one command from a pyhf workspace
(:mod:`.workspace`)."""
