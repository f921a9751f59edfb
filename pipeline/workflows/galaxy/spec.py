"""Parameters of the galaxy preprocessing (pydantic only: a job spec is validated with these)."""

from __future__ import annotations

import math
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from pipeline.imaging.spec import BlobParams

__all__ = ["CUTOUTS", "CUTOUT_DIMS", "REASONS", "GalaxyParams"]

#: The array of aligned cutouts the ``preprocess`` stage writes.
CUTOUTS = "cutouts"
#: Its dimensions: ``cutout_y``/``cutout_x``, because xarray requires one size per dimension
#: name in a Dataset and the cutouts are smaller than the images they come from.
CUTOUT_DIMS = ("image", "cutout_y", "cutout_x")

#: Why an image can be rejected, in the order the checks run.
REASONS: Final = ("invalid", "non_finite", "no_galaxy", "overlap", "stripe")


class GalaxyParams(BaseModel):
    """Parameters of the galaxy preprocessing; defaults are the notebook's values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.004, gt=0, description="blob_doh absolute threshold")
    min_sigma: float = Field(1.0, gt=0, description="smallest blob scale (px)")
    max_sigma: float = Field(100.0, gt=0, description="largest blob scale (px)")
    num_sigma: int = Field(10, ge=1, description="blob scales tried")
    overlap: float = Field(1.0, ge=0, le=1, description="blob pruning overlap (1: none)")
    detect_downscale: int = Field(
        2, ge=1, le=8, description="detect on the image shrunk by this factor (1: full size)"
    )
    detect_closing: int = Field(
        3, ge=0, le=15, description="fill dark lines this wide (detection px) before detecting"
    )
    fallback_threshold: float | None = Field(
        0.1,
        gt=0,
        description="Laplacian-of-Gaussian threshold of the search for thin edge-on "
        "galaxies the determinant of Hessian misses (None: no second search)",
    )
    fallback_max_sigma: float = Field(32.0, gt=0, description="largest scale of that search")
    window: float = Field(50.0, gt=0, description="galaxy centre within this of the centre (px)")
    radius_factor: float = Field(math.sqrt(2.0), gt=0, description="blob radius / sigma")
    same_source_fraction: float = Field(
        0.5, ge=0, lt=1, description="blobs this close (in galaxy radii) are the galaxy itself"
    )
    deblend_level: float = Field(
        0.1, gt=0, lt=1, description="blend search isophote, fraction of peak above sky"
    )
    deblend_contrast: float = Field(
        0.05, gt=0, lt=1, description="dip below a second peak that makes it a neighbour"
    )
    max_ellipse_misfit: float | None = Field(
        0.2,
        gt=0,
        description="the galaxy's light (at deblend_level) may differ from one ellipse by "
        "this fraction of its area; more is a blend with a neighbour (None: no test)",
    )
    stripe_fill: int = Field(
        3,
        ge=0,
        le=15,
        description="a blend that filling dark lines this wide (px) undoes is a stripe "
        "(0: no such test)",
    )
    dark_threshold: float = Field(0.1, ge=0, le=1, description="stripe: dark pixel level")
    bright_threshold: float = Field(
        0.2, ge=0, le=1, description="stripe: light around a dark pixel must exceed it by this"
    )
    stripe_window: int = Field(
        7, ge=2, description="stripe: window (px) of the closing that fills stripes"
    )
    min_dark_pixels: int = Field(15, ge=2, description="stripe: more dark pixels than this")
    stripe_r2: float = Field(0.3, ge=0, le=1, description="stripe: line score above this")
    moment_level: float = Field(
        0.25, gt=0, lt=1, description="alignment isophote, fraction of peak above sky"
    )
    cutout_size: int = Field(128, ge=8, le=4096, description="cutout side (px)")
    crop_factor: float = Field(1.0, gt=0, description="cutout half-width in galaxy radii")
    rescale: bool = Field(True, description="rescale each cutout to [0, 1]")

    def blob_params(self) -> BlobParams:
        """The detector's parameters at the detection scale."""
        f = float(self.detect_downscale)
        return BlobParams(
            method="doh",
            min_sigma=self.min_sigma / f,
            max_sigma=self.max_sigma / f,
            num_sigma=self.num_sigma,
            threshold=self.threshold,
            overlap=self.overlap,
        )

    def fallback_params(self) -> BlobParams | None:
        """The second (Laplacian of Gaussian) search's parameters at the detection scale."""
        if self.fallback_threshold is None:
            return None
        f = float(self.detect_downscale)
        return BlobParams(
            method="log",
            min_sigma=self.min_sigma / f,
            max_sigma=max(self.min_sigma, min(self.fallback_max_sigma, self.max_sigma)) / f,
            num_sigma=self.num_sigma,
            threshold=self.fallback_threshold,
            overlap=self.overlap,
        )
