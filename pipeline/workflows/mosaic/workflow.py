"""What the mosaic workflow contributes: ``detect_sources``, the sources table, its report."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.mosaic import tables
from pipeline.workflows.mosaic.spec import SourceParams

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="mosaic",
    summary="survey mosaics: sources detected tile by tile, and their cutouts",
    stages=(
        StageDef(
            "detect_sources",
            SourceParams,
            "pipeline.workflows.mosaic.sources:detect_sources",
            "blob detection over the mosaic's tiles (equal to whole-image detection) -> "
            "sources table + aligned cutouts",
            writes=("tables/sources.parquet", "store.zarr/cutouts/zarr.json"),
        ),
    ),
    tables=tables.TABLES,
    sections=(
        ReportSection("mosaic_sources", 110, "pipeline.workflows.mosaic.report:sources_section"),
    ),
)
