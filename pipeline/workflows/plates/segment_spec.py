"""Parameters of spheroid segmentation, plate QC and morphology measures (pydantic only).

These models are imported when a job spec is validated, so this module imports nothing but
pydantic: the algorithms live in :mod:`pipeline.workflows.plates.segment` and
:mod:`pipeline.workflows.plates.measure`.

Lengths and areas of the segmentation are fractions of the image, not pixels: one well
fills one image whatever the camera's resolution, so the same parameters hold for a 256 px
preview and a 2048 px acquisition of the same plate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FeatureParams", "SegmentParams", "ThresholdMethod"]

#: Global thresholds of scikit-image (``skimage.filters.threshold_<name>``) that split the
#: flattened image's darkness into spheroid and background.
ThresholdMethod = Literal["otsu", "li", "triangle", "yen"]


class SegmentParams(BaseModel):
    """Parameters of :func:`~pipeline.workflows.plates.segment.segment_spheroid` and
    :func:`~pipeline.workflows.plates.segment.flag_out_of_focus`.

    Attributes
    ----------
    processing_size : int, default 256
        Segment on the image shrunk by an integer factor until its longer side is at most
        this (px); the outline is then refined at full resolution. 256 keeps a 1024 px
        image under 0.1 s on one core; the "px of the processing image" below are px of
        this shrunk image.
    background_scale : float, default 0.1
        Scale (Gaussian sigma) of the local quadratic fit that estimates the illumination,
        as a fraction of the image's shorter side: the vignetting, the gradient and the
        meniscus shadow vary on larger scales. The objects are masked out of the fit.
    background_iterations : int, default 2
        Fits of the illumination, each with the objects the previous one found masked out.
    threshold_method : {"otsu", "li", "triangle", "yen"}, default "otsu"
        scikit-image's global threshold of the flattened image's darkness
        (``1 - image / background``): the high hysteresis threshold.
    min_darkness : float, default 0.15
        The high threshold is at least this darkness (0.15 = 15 % darker than the
        background), whatever the automatic threshold says: an empty well's noise and
        the shading a fit leaves are not split into objects. A spheroid is 50-85 % darker
        at its centre.
    hysteresis_fraction : float, default 0.7
        The low threshold, as a fraction of the high one (but at least three noise sigmas
        above the background): pixels above it that touch a pixel above the high one are
        foreground. 0.7 puts the outline half-way down a body's dark outline, where the
        body's true edge is.
    smoothing : float, default 1.0
        Gaussian sigma (px of the processing image) of the darkness before thresholding.
    closing_radius : float, default 2.0
        Radius (px of the processing image) of the closing that joins a body's pieces
        across light cracks (0: none).
    opening_radius : float, default 1.0
        Radius (px of the processing image) of the opening that cuts one-pixel bridges and
        specks (0: none).
    body_radius : float, default 0.015
        Radius of the opening (fraction of the image's shorter side) that tells bodies
        from debris: fragments thinner than twice this, and the debris bridges between
        two bodies, are not bodies. The spheroid's label is the foreground within this
        distance of its body.
    min_spheroid_area : float, default 0.002
        Smallest spheroid body, as a fraction of the image's area (a disc of radius 0.025
        side); a well without one is ``empty_well``.
    min_debris_area : float, default 1e-4
        Smallest debris fragment, as a fraction of the image's area; smaller specks are
        noise.
    centre_radius : float, default 0.5
        The spheroid's centroid lies within this distance of the image centre, as a fraction
        of the image's shorter side (0.5 reaches the middle of each border, so a spheroid
        cut by the border is still found, and flagged ``touches_edge``).
    debris_spread : float, default 0.45
        Debris and other bodies lie within this distance of the spheroid's centroid, as a
        fraction of the image's shorter side; dark things further out are ignored.
    multiple_bodies_ratio : float, default 0.1
        Another body of at least this fraction of the spheroid body's area (and at least
        ``min_spheroid_area``) flags the well ``multiple_bodies``. Debris is removed by the
        body opening first, so this can be small.
    edge_margin : int, default 1
        The spheroid ``touches_edge`` when it comes within this many px (full resolution)
        of the image border (1: it reaches the border row or column).
    focus_sigma : float, default 1.0
        Gaussian sigma (px of the processing image) of the Laplacian of Gaussian whose
        variance around the objects is the focus score.
    focus_z : float, default 3.5
        An image is ``out_of_focus`` when the robust z-score of its log focus score against
        its plate's (median and 1.4826 MAD) is below ``-focus_z``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    processing_size: int = Field(256, ge=64, le=4096, description="segment at this size (px)")
    background_scale: float = Field(
        0.1, gt=0, le=1, description="illumination scale, fraction of the image side"
    )
    background_iterations: int = Field(2, ge=1, le=10, description="illumination fits")
    threshold_method: ThresholdMethod = Field("otsu", description="scikit-image threshold")
    min_darkness: float = Field(
        0.15, ge=0, lt=1, description="least darkness of foreground, fraction of background"
    )
    hysteresis_fraction: float = Field(
        0.7, gt=0, le=1, description="low hysteresis threshold, fraction of the high one"
    )
    smoothing: float = Field(1.0, ge=0, le=16, description="pre-threshold Gaussian sigma (px)")
    closing_radius: float = Field(2.0, ge=0, le=32, description="binary closing radius (px)")
    opening_radius: float = Field(1.0, ge=0, le=32, description="binary opening radius (px)")
    body_radius: float = Field(
        0.015, gt=0, le=0.2, description="body opening radius, fraction of the side"
    )
    min_spheroid_area: float = Field(
        0.002, gt=0, lt=1, description="smallest spheroid, fraction of the image area"
    )
    min_debris_area: float = Field(
        1e-4, gt=0, lt=1, description="smallest debris fragment, fraction of the image area"
    )
    centre_radius: float = Field(
        0.5, gt=0, le=1, description="spheroid centroid within this of the centre (side)"
    )
    debris_spread: float = Field(
        0.45, ge=0, le=2, description="debris within this of the spheroid (image side)"
    )
    multiple_bodies_ratio: float = Field(
        0.1, gt=0, le=1, description="second body of this fraction of the spheroid's area"
    )
    edge_margin: int = Field(1, ge=1, description="touches the edge within this (px)")
    focus_sigma: float = Field(1.0, gt=0, le=16, description="focus Laplacian sigma (px)")
    focus_z: float = Field(3.5, gt=0, description="out of focus below -focus_z robust z")


class FeatureParams(BaseModel):
    """Parameters of :func:`~pipeline.workflows.plates.measure.measure_spheroid`.

    Attributes
    ----------
    pixel_size_um : float or None, default None
        Side of one pixel in micrometres. Given, lengths are reported in um and areas in
        um^2 (the columns that scale are listed in
        :data:`~pipeline.workflows.plates.measure.FEATURE_COLUMNS`' table); None keeps
        pixels, as CellProfiler does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel_size_um: float | None = Field(None, gt=0, description="pixel side (um); None: px")
