"""Parameters of the plate profile stage, and the names the plate workflow writes (pydantic
only: a job is validated without importing the image libraries).

The segmentation and measurement parameters are in
:mod:`pipeline.workflows.plates.segment_spec`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CROPS",
    "CROPS_TABLE",
    "CROP_DIMS",
    "FEATURES_TABLE",
    "MASKS",
    "MASK_DIMS",
    "METADATA",
    "PROBE_GROUPS",
    "PROFILES_NORMALIZED_TABLE",
    "PROFILES_TABLE",
    "QC_FLAGS",
    "QC_TABLE",
    "CropParams",
    "ProfileParams",
]

#: The spheroid label images: 0 background, 1 spheroid, 2 debris.
MASKS = "spheroid_masks"
MASK_DIMS = ("image", "y", "x")
QC_TABLE = "spheroid_qc"
FEATURES_TABLE = "spheroid_features"
PROFILES_TABLE = "spheroid_profiles"
PROFILES_NORMALIZED_TABLE = "spheroid_profiles_normalized"

#: The per-image QC flags (each true when the fault is found; ``ok`` when none is).
QC_FLAGS = ("empty_well", "out_of_focus", "touches_edge", "multiple_bodies")

#: Image coordinates (from the plate ingest) -> the pycytominer metadata column they become.
METADATA = {
    "plate": "Metadata_Plate",
    "well": "Metadata_Well",
    "row": "Metadata_Row",
    "column": "Metadata_Column",
    "day": "Metadata_Day",
    "treatment": "Metadata_Treatment",
    "concentration": "Metadata_Concentration",
    "unit": "Metadata_Unit",
    "group": "Metadata_Group",
}


class ProfileParams(BaseModel):
    """Parameters of the ``spheroid_profiles`` stage.

    Attributes
    ----------
    aggregate : "median" or "mean"
        How a well's fields are combined into the well's value for a day (median: a field
        with a stray object does not move it).
    qc : "ok" or "all"
        ``ok``: only images that passed QC are aggregated (a well whose every field failed
        keeps its row, with NaN features and the failure counted); ``all``: every valid image.
    baseline_day : int, optional
        The day changes are measured from (the thesis' day 7, when the drug is applied);
        unset: each plate's first day.
    control_group : str
        The plate-map group each plate's features are normalised against (robust z-score,
        pycytominer's ``mad_robustize``), per plate and day: spheroids grow, so day 10 is
        compared with day-10 controls.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggregate: Literal["median", "mean"] = "median"
    qc: Literal["ok", "all"] = "ok"
    baseline_day: int | None = Field(None, ge=0)
    control_group: str = Field("untreated", min_length=1)


#: The spheroid crops the learned representation is trained on and embeds, and their table.
CROPS = "spheroid_crops"
CROP_DIMS = ("image", "crop_y", "crop_x")
CROPS_TABLE = "spheroid_crops"

#: The thesis' three groups of the linear probe (section 6.2); other groups get no label.
PROBE_GROUPS = ("untreated", "single", "screening")


class CropParams(BaseModel):
    """Parameters of the ``spheroid_crops`` stage.

    A crop is a square of a fixed physical size centred on the spheroid's centroid, so the
    encoder sees a spheroid's size (the main drug effect) rather than a view rescaled to fit
    it. One well fills one image whatever the camera, so a fraction of the image side is a
    fixed physical size too; ``side_um`` with ``pixel_size_um`` states it in micrometres.

    Attributes
    ----------
    side : float
        Side of the crop as a fraction of the image's shorter side (0.75: a day-10
        untreated spheroid and the debris around an exploded one fit). Unused when
        ``side_um`` is given.
    side_um, pixel_size_um : float, optional
        Side of the crop in um and the images' pixel side in um (both or neither).
    size : int
        Side of the stored crop in px (the encoder's input; antialiased resize).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    side: float = Field(0.75, gt=0, le=2)
    side_um: float | None = Field(None, gt=0)
    pixel_size_um: float | None = Field(None, gt=0)
    size: int = Field(64, ge=16, le=1024)

    @model_validator(mode="after")
    def _both_or_neither(self) -> CropParams:
        if (self.side_um is None) != (self.pixel_size_um is None):
            raise ValueError(
                f"side_um ({self.side_um}) and pixel_size_um ({self.pixel_size_um}) go together: "
                "give both (e.g. side_um: 400, pixel_size_um: 2.0) or neither (then `side` is "
                "a fraction of the image side)"
            )
        return self

    def side_px(self, height: int, width: int) -> float:
        """The crop's side in px of an image of ``height x width`` px."""
        if self.side_um is not None and self.pixel_size_um is not None:
            return self.side_um / self.pixel_size_um
        return self.side * min(height, width)
