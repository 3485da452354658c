"""Samples in and out: sample files (HDF5 and numpy layouts, splits, weights; :mod:`.samples`),
weighted chains in text (:mod:`.chains`) and anchors, points of known exact density
(:mod:`.anchors`). numpy and h5py only."""
