"""Parameters of the image algorithms (pydantic and numpy only)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BlobParams", "Method"]

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
