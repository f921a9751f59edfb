"""Synthetic image collections with known truth, for tests and demos."""

from pipeline.synth.galaxies import (
    GALAXY_CLASSES,
    IMAGE_KINDS,
    TRUTH_COLUMNS,
    TRUTH_FILENAME,
    GalaxyFractions,
    generate_galaxies,
    load_truth,
    render_galaxy_image,
)
from pipeline.synth.mosaic import (
    MOSAIC_TRUTH_COLUMNS,
    generate_mosaic,
    hubble_deep_field_gray,
    load_mosaic_truth,
)

__all__ = [
    "GALAXY_CLASSES",
    "IMAGE_KINDS",
    "MOSAIC_TRUTH_COLUMNS",
    "TRUTH_COLUMNS",
    "TRUTH_FILENAME",
    "GalaxyFractions",
    "generate_galaxies",
    "generate_mosaic",
    "hubble_deep_field_gray",
    "load_mosaic_truth",
    "load_truth",
    "render_galaxy_image",
]
