"""What the plate workflow contributes: spheroid segmentation with QC, features, profiles."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.plates import tables
from pipeline.workflows.plates.efficacy_spec import EfficacyParams, efficacy_writes
from pipeline.workflows.plates.segment_spec import FeatureParams, SegmentParams
from pipeline.workflows.plates.spec import (
    CROPS,
    CROPS_TABLE,
    FEATURES_TABLE,
    MASKS,
    PROFILES_NORMALIZED_TABLE,
    PROFILES_TABLE,
    QC_TABLE,
    CropParams,
    ProfileParams,
)

__all__ = ["WORKFLOW"]

_STAGES = "pipeline.workflows.plates.stages"

WORKFLOW = Workflow(
    name="plates",
    summary="spheroid plates: segmentation with per-image QC, CellProfiler-named features, "
    "per-well profiles normalised to untreated wells",
    stages=(
        StageDef(
            "segment_spheroids",
            SegmentParams,
            f"{_STAGES}:segment_spheroids",
            "find the spheroid and its debris in every image; QC flags (empty well, out of "
            "focus, touches edge, multiple bodies) -> spheroid_masks + spheroid_qc",
            writes=(f"store.zarr/{MASKS}/zarr.json", f"tables/{QC_TABLE}.parquet"),
            growth="new_rows",
        ),
        StageDef(
            "spheroid_features",
            FeatureParams,
            f"{_STAGES}:spheroid_features",
            "area, perimeter, form factor, solidity, axes, intensity and debris of every "
            "spheroid, with CellProfiler's names -> spheroid_features",
            writes=(f"tables/{FEATURES_TABLE}.parquet",),
        ),
        StageDef(
            "spheroid_profiles",
            ProfileParams,
            f"{_STAGES}:spheroid_profiles",
            "per plate, well and day: fields aggregated, change from day 7, robust z-scores "
            "against the plate's untreated wells -> spheroid_profiles(_normalized)",
            writes=(
                f"tables/{PROFILES_TABLE}.parquet",
                f"tables/{PROFILES_NORMALIZED_TABLE}.parquet",
            ),
            growth="refit",
        ),
        StageDef(
            "spheroid_crops",
            CropParams,
            "pipeline.workflows.plates.crops:spheroid_crops",
            "a square of fixed physical size centred on every spheroid, for the learned "
            "representation (train_encoder / embed on spheroid_crops) -> spheroid_crops",
            writes=(f"store.zarr/{CROPS}/zarr.json", f"tables/{CROPS_TABLE}.parquet"),
            growth="new_rows",
        ),
        StageDef(
            "efficacy",
            EfficacyParams,
            "pipeline.workflows.plates.efficacy:run_efficacy",
            "drug-efficacy ranking: deviation of day 10 from a time-series model of untreated "
            "wells (method 1), bootstrap intervals, dose-response fits, the morphology "
            "baseline, intact vs exploded with a learned deterioration (method 2) -> efficacy",
            writes=efficacy_writes,
            growth="refit",
        ),
    ),
    tables=tables.TABLES,
    sections=(
        ReportSection("plates", 110, "pipeline.workflows.plates.report:plates_section"),
        ReportSection(
            "efficacy", 120, "pipeline.workflows.plates.efficacy_report:efficacy_section"
        ),
    ),
)
