"""Work on workers: model serving keyed by checkpoint digest, GPU dispatch, seeded replicates."""
