"""The input layer: image files, manifests and mosaics into a run store."""
