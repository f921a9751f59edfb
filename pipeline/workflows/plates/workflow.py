"""What the plate workflow contributes: spheroid segmentation with QC, features, profiles."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.plates import tables
from pipeline.workflows.plates.segment_spec import FeatureParams, SegmentParams
from pipeline.workflows.plates.spec import (
    FEATURES_TABLE,
    MASKS,
    PROFILES_NORMALIZED_TABLE,
    PROFILES_TABLE,
    QC_TABLE,
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
        ),
    ),
    tables=tables.TABLES,
    sections=(ReportSection("plates", 110, "pipeline.workflows.plates.report:plates_section"),),
)
