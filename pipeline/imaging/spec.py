"""Parameters of the image algorithms (pydantic and numpy only)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BlobParams", "ExtractParams", "Method"]

#: Blob detectors: determinant of Hessian or Laplacian of Gaussian (scikit-image's).
Method = Literal["doh", "log"]


class BlobParams(BaseModel):
    """Parameters of :func:`detect_blobs`, with scikit-image's meaning.

    ``threshold`` is absolute, in the units of the image after
    :func:`skimage.util.img_as_float` (integers scaled to [0, 1]; floats as they are).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = "doh"
    min_sigma: float = Field(1.0, gt=0, description="smallest blob scale (px)")
    max_sigma: float = Field(30.0, gt=0, description="largest blob scale (px)")
    num_sigma: int = Field(10, ge=1, description="scales tried between min and max")
    threshold: float = Field(0.01, gt=0, description="absolute response threshold")
    overlap: float = Field(
        0.5, ge=0, le=1, description="area fraction above which the smaller blob is dropped"
    )
    log_scale: bool = False

    @model_validator(mode="after")
    def _sigma_order(self) -> BlobParams:
        if self.max_sigma < self.min_sigma:
            raise ValueError(
                f"max_sigma ({self.max_sigma}) must be >= min_sigma ({self.min_sigma})"
            )
        return self

    def sigma_list(self) -> npt.NDArray[np.float64]:
        """The scales searched, as scikit-image computes them (px)."""
        if self.log_scale:
            return np.logspace(
                math.log10(self.min_sigma), math.log10(self.max_sigma), self.num_sigma
            )
        return np.linspace(self.min_sigma, self.max_sigma, self.num_sigma)


#: SEP's default detection filter, Source Extractor's ``default.conv`` (3 x 3 pyramid).
DEFAULT_KERNEL: tuple[tuple[float, ...], ...] = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))


class ExtractParams(BaseModel):
    """Source Extractor's parameters, as SEP names them (SExtractor's names in brackets).

    Defaults are Source Extractor's where it has one, except ``thresh``: at 1.5 x RMS
    (``DETECT_THRESH``'s default) a matched-filtered survey field yields about nine noise
    peaks for every source; at 5 x RMS a generated mosaic gives recall 0.99 and precision
    1.00 (measured with ``pipeline synth mosaic``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    thresh: float = Field(
        5.0, gt=0, description="detection threshold in background RMS units [DETECT_THRESH]"
    )
    minarea: int = Field(5, ge=1, description="minimum pixels above threshold [DETECT_MINAREA]")
    filter_kernel: tuple[tuple[float, ...], ...] | None = Field(
        DEFAULT_KERNEL, description="detection filter (None: no filtering) [FILTER_NAME]"
    )
    filter_type: Literal["matched", "conv"] = "matched"
    deblend_nthresh: int = Field(32, ge=1, description="deblending levels [DEBLEND_NTHRESH]")
    deblend_cont: float = Field(
        0.005, ge=0, le=1, description="deblending contrast; 1 disables it [DEBLEND_MINCONT]"
    )
    clean: bool = Field(True, description="remove spurious detections near bright ones [CLEAN]")
    clean_param: float = Field(1.0, gt=0, description="cleaning efficiency [CLEAN_PARAM]")
    bw: int = Field(64, ge=1, description="background box width (px) [BACK_SIZE]")
    bh: int = Field(64, ge=1, description="background box height (px) [BACK_SIZE]")
    fw: int = Field(3, ge=1, description="background filter width (boxes) [BACK_FILTERSIZE]")
    fh: int = Field(3, ge=1, description="background filter height (boxes) [BACK_FILTERSIZE]")
    fthresh: float = Field(
        0.0, ge=0, description="background filter threshold (image units) [BACK_FILTERTHRESH]"
    )
    phot_apertures: tuple[float, ...] = Field(
        (6.0,), description="fixed aperture diameters (px) [PHOT_APERTURES]"
    )
    kron_fact: float = Field(2.5, gt=0, description="Kron factor [PHOT_AUTOPARAMS 1]")
    min_radius: float = Field(
        3.5, gt=0, description="smallest Kron radius, in units of a and b [PHOT_AUTOPARAMS 2]"
    )
    subpix: int = Field(5, ge=0, description="aperture subpixel sampling (0: exact overlap)")
    gain: float | None = Field(
        None, gt=0, description="e-/ADU for Poisson errors; None: background noise only [GAIN]"
    )
    saturation: float | None = Field(
        None,
        description="saturation level, image units; None: the header's SATURATE, or the "
        "integer type's maximum, or no saturation flag [SATUR_LEVEL]",
    )
    mag_zeropoint: float | None = Field(
        None,
        description="magnitude zero point; None: the header's MAGZERO/MAGZPT, else 0 "
        "[MAG_ZEROPOINT]",
    )
    halo: int = Field(32, ge=4, description="tile halo (px); grown where an object needs it")
    max_halo: int = Field(512, ge=4, description="largest halo a tile may grow to (px)")
    pixstack: int = Field(
        300_000,
        ge=1000,
        description="SEP's pixel buffer to start with; grown where a tile needs more "
        "[MEMORY_PIXSTACK]",
    )

    @model_validator(mode="after")
    def _halo_order(self) -> ExtractParams:
        if self.max_halo < self.halo:
            raise ValueError(f"max_halo ({self.max_halo}) must be >= halo ({self.halo})")
        if any(d <= 0 for d in self.phot_apertures):
            raise ValueError(
                f"phot_apertures must be positive diameters, got {self.phot_apertures}"
            )
        if self.filter_kernel is not None:
            widths = {len(r) for r in self.filter_kernel}
            if len(widths) != 1 or not self.filter_kernel:
                raise ValueError(
                    "filter_kernel must be a rectangular list of rows, e.g. "
                    "[[1, 2, 1], [2, 4, 2], [1, 2, 1]]"
                )
        return self

    def kernel_margin(self) -> int:
        """Pixels at a window's edge where the filtered image differs from the whole
        image's (the kernel's half-size), plus one for 8-connectivity."""
        if self.filter_kernel is None:
            return 1
        return max(len(self.filter_kernel), len(self.filter_kernel[0])) // 2 + 1
