"""Parameters of the drug-efficacy ranking (pydantic only: a job is validated with these), and
the names of its tables.

Source document 001, sections 5 and 6: method 1 scores a well by how far its day-10
representation is from what a time-series model of untreated spheroids predicts from days
7-9; method 2 separates intact from exploded spheroids and ranks the intact ones by a
deterioration percentage learned from an end-point viability read-out.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.core.names import StoreName
from pipeline.workflows.plates.timeseries_spec import TimeSeriesParams

__all__ = [
    "DOSE_RESPONSE_TABLE",
    "EFFICACY_MODELS_TABLE",
    "EFFICACY_MORPHOLOGY_TABLE",
    "EFFICACY_TABLE",
    "EFFICACY_WELLS_TABLE",
    "EfficacyParams",
    "ExplosionParams",
    "efficacy_writes",
]

EFFICACY_TABLE = "efficacy"
EFFICACY_WELLS_TABLE = "efficacy_wells"
EFFICACY_MORPHOLOGY_TABLE = "efficacy_morphology"
EFFICACY_MODELS_TABLE = "efficacy_models"
DOSE_RESPONSE_TABLE = "dose_response"

#: The morphology baseline's features (part 1's profiles): size, circularity, darkness.
DEFAULT_MORPHOLOGY = (
    "AreaShape_Area_ChangeRatio",
    "AreaShape_FormFactor_ChangeDiff",
    "Intensity_MeanIntensity_ChangeDiff",
)


class ExplosionParams(BaseModel):
    """When a well's spheroid counts as exploded (method 2), from its target-day debris.

    Attributes
    ----------
    min_area_fraction : float
        ``Debris_AreaFraction`` (debris / (debris + body)) at or above which the spheroid
        has disintegrated.
    min_fragments : int
        ``Debris_FragmentCount`` at or above which it has (both must hold: a single stray
        clump next to an intact spheroid is not an explosion).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_area_fraction: float = Field(0.01, ge=0, le=1)
    min_fragments: int = Field(2, ge=1)


class EfficacyParams(BaseModel):
    """Parameters of the ``efficacy`` stage.

    Attributes
    ----------
    representation : str
        The learned representation, an ``(image, feature)`` array (the ``embed`` step's:
        ``embeddings``). A well's representation on a day is the mean over its fields that
        passed QC (``tables/spheroid_crops`` ``ok``).
    input_days, target_day : list of int, int
        The model predicts ``target_day`` from ``input_days`` (the thesis: 7, 8, 9 -> 10).
        Wells without a QC-passed image on one of these days are left out (counted).
    control_group : str
        The plate-map group the time-series model is trained on (untreated wells).
    positive_group : str
        The positive control, for the score's Z'-factor (none on the plates: no Z').
    metric : {"l2", "cosine"}
        The deviation the ranking uses; both are computed and reported.
    timeseries : TimeSeriesParams
        The candidate models and their cross-validation over control wells.
    bootstrap : int
        Bootstrap replicates of each treatment's median score (0: no interval).
    confidence : float
        Level of the bootstrap percentile interval.
    morphology : list of str
        Columns of ``spheroid_profiles_normalized`` (robust z-scores against each plate's
        untreated wells) whose target-day values form the morphology baseline's score.
    explosion : ExplosionParams
        Method 2's intact / exploded rule.
    readout : str, optional
        A CSV of the end-point viability read-out (``plate``, ``well``, ``viability``), as
        the plate generator's ``viability.csv``; relative to the working directory. Unset:
        no deterioration model (method 2 ranks exploded wells only by their debris).
    readout_alphas : list of float
        Ridge penalties the deterioration model chooses from by cross-validation.
    readout_features : {"change", "target_day"}
        What the deterioration model reads from the frozen representations: ``change``, the
        target day's minus the first input day's (the treatment day's), so a spheroid that
        started large is not taken for one that grew; ``target_day``, the target day's
        alone. ``benchmarks/efficacy.py`` measured ``change`` clearly better.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    representation: StoreName = "embeddings"
    input_days: list[int] = Field(default_factory=lambda: [7, 8, 9], min_length=1)
    target_day: int = 10
    control_group: str = Field("untreated", min_length=1)
    positive_group: str = Field("positive_control", min_length=1)
    metric: Literal["l2", "cosine"] = "l2"
    timeseries: TimeSeriesParams = Field(default_factory=TimeSeriesParams)
    bootstrap: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    morphology: list[str] = Field(default_factory=lambda: list(DEFAULT_MORPHOLOGY), min_length=1)
    explosion: ExplosionParams = Field(default_factory=ExplosionParams)
    readout: str | None = None
    readout_alphas: list[float] = Field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1000.0])
    readout_features: Literal["change", "target_day"] = "change"

    @field_validator("input_days")
    @classmethod
    def _distinct_days(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or value != sorted(value):
            raise ValueError(f"input_days must be distinct and increasing, got {value}")
        return value

    @field_validator("readout_alphas")
    @classmethod
    def _alphas(cls, value: list[float]) -> list[float]:
        if not value or any(not a > 0 for a in value):
            raise ValueError(f"readout_alphas must be positive numbers, got {value}")
        return value

    @model_validator(mode="after")
    def _target_after_inputs(self) -> EfficacyParams:
        if self.target_day <= self.input_days[-1]:
            raise ValueError(
                f"target_day {self.target_day} must come after the input days "
                f"{self.input_days}; e.g. input_days: [7, 8, 9], target_day: 10"
            )
        return self


def efficacy_writes(step: str, params: EfficacyParams) -> tuple[str, ...]:
    """The tables the ``efficacy`` stage writes."""
    names = (
        EFFICACY_TABLE,
        EFFICACY_WELLS_TABLE,
        EFFICACY_MORPHOLOGY_TABLE,
        EFFICACY_MODELS_TABLE,
        DOSE_RESPONSE_TABLE,
    )
    return tuple(f"tables/{n}.parquet" for n in names)
