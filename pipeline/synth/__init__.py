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
from pipeline.synth.plates import (
    FAULTS,
    PlateSynthParams,
    RenderedWell,
    WellState,
    draw_well,
    generate_plates,
    load_image_truth,
    load_plate_truth,
    load_viability,
    plate_map,
    render_example,
    render_well,
)

__all__ = [
    "FAULTS",
    "GALAXY_CLASSES",
    "IMAGE_KINDS",
    "MOSAIC_TRUTH_COLUMNS",
    "TRUTH_COLUMNS",
    "TRUTH_FILENAME",
    "GalaxyFractions",
    "PlateSynthParams",
    "RenderedWell",
    "WellState",
    "draw_well",
    "generate_galaxies",
    "generate_mosaic",
    "generate_plates",
    "hubble_deep_field_gray",
    "load_image_truth",
    "load_mosaic_truth",
    "load_plate_truth",
    "load_truth",
    "load_viability",
    "plate_map",
    "render_example",
    "render_galaxy_image",
    "render_well",
]
