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

__all__ = [
    "GALAXY_CLASSES",
    "IMAGE_KINDS",
    "TRUTH_COLUMNS",
    "TRUTH_FILENAME",
    "GalaxyFractions",
    "generate_galaxies",
    "load_truth",
    "render_galaxy_image",
]
