"""Beam PTransforms and DoFns: one stage per module, each wrapping
``curate.classifiers`` and adding batching, counters and rejects."""
