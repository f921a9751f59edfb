"""Parameters of source detection in mosaics (pydantic only)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.imaging.spec import BlobParams, ExtractParams

__all__ = ["SOURCE_CUTOUTS", "SOURCE_CUTOUT_DIMS", "MatchParams", "SourceParams"]

#: The array of aligned source cutouts ``detect_sources`` writes (as ``preprocess`` does for
#: galaxies, so a mosaic's sources flow into the same feature stages).
SOURCE_CUTOUTS = "cutouts"
#: Its dimensions.
SOURCE_CUTOUT_DIMS = ("image", "cutout_y", "cutout_x")


class SourceParams(BaseModel):
    """Parameters of ``detect_sources``: the detector, then the cutouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # SEP (Source Extractor) by default: on the demo's generated 4096 x 4096 field it finds
    # 0.99 of the sources at precision 1.00, where the Laplacian of Gaussian finds 0.90 and
    # blob_doh at the galaxy notebook's 0.004 under 0.2 (`benchmarks/sources.py`).
    method: Literal["sep", "log", "doh"] = "sep"
    sep: ExtractParams = Field(
        default_factory=ExtractParams, description="Source Extractor's parameters (method sep)"
    )
    min_sigma: float = Field(1.0, gt=0, description="smallest blob scale (px)")
    max_sigma: float = Field(15.0, gt=0, description="largest blob scale (px)")
    num_sigma: int = Field(10, ge=1, description="blob scales tried")
    threshold: float = Field(0.05, gt=0, description="absolute blob threshold (log, doh)")
    overlap: float = Field(0.5, ge=0, le=1, description="blob pruning overlap fraction")
    log_scale: bool = False
    radius_factor: float = Field(
        math.sqrt(2.0), gt=0, description="source radius / blob sigma, or / SEP's a (px)"
    )
    moment_level: float = Field(0.25, gt=0, lt=1, description="alignment isophote")
    cutout_size: int = Field(128, ge=8, le=4096, description="cutout side (px)")
    crop_factor: float = Field(2.0, gt=0, description="cutout half-width in source radii")
    min_half_width: float = Field(8.0, gt=0, description="smallest cutout half-width (px)")
    rescale: bool = Field(True, description="rescale each cutout to [0, 1]")
    align: bool = Field(True, description="rotate each cutout's major axis to +x")
    cutouts_per_chunk: int = Field(256, ge=1, description="cutouts per chunk of `cutouts`")

    @model_validator(mode="after")
    def _sigma_order(self) -> SourceParams:
        self.blob_params()  # validates min_sigma <= max_sigma with the detector's message
        return self

    def blob_params(self) -> BlobParams:
        """The blob detector's parameters (methods ``log`` and ``doh``)."""
        return BlobParams(
            method="doh" if self.method == "doh" else "log",
            min_sigma=self.min_sigma,
            max_sigma=self.max_sigma,
            num_sigma=self.num_sigma,
            threshold=self.threshold,
            overlap=self.overlap,
            log_scale=self.log_scale,
        )


class MatchParams(BaseModel):
    """Parameters of ``match_sources``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str | None = Field(
        None,
        description="reference catalog (CSV or FITS table with ra/dec, x/y or "
        "X_IMAGE/Y_IMAGE); None: the `<stem>_truth.csv` `pipeline synth mosaic` wrote beside "
        "the mosaic",
    )
    radius: float = Field(2.0, gt=0, description="match radius in pixels")
    radius_arcsec: float | None = Field(
        None, gt=0, description="match radius on the sky; None: `radius` x the pixel scale"
    )
    bin_width: float = Field(0.5, gt=0, description="magnitude bin width (mag)")
