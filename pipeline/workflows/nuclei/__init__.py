"""Nuclei segmentation (source document 002): the Multi-ResUNet, its training, evaluation and
tiled inference over images of any size."""
