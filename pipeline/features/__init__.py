"""Feature matrices of any ``(image, ...)`` array: PCA, clustering, linear probes."""
