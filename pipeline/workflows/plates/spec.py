"""Parameters of the plate profile stage, and the names the plate workflow writes (pydantic
only: a job is validated without importing the image libraries).

The segmentation and measurement parameters are in
:mod:`pipeline.workflows.plates.segment_spec`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FEATURES_TABLE",
    "MASKS",
    "MASK_DIMS",
    "METADATA",
    "PROFILES_NORMALIZED_TABLE",
    "PROFILES_TABLE",
    "QC_FLAGS",
    "QC_TABLE",
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
