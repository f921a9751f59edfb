"""What the mosaic workflow contributes: ``detect_sources``, the sources table, its report."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.mosaic import tables
from pipeline.workflows.mosaic.spec import MatchParams, SourceParams

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="mosaic",
    summary="survey mosaics: Source Extractor catalogs tile by tile, cross-matches, cutouts",
    stages=(
        StageDef(
            "detect_sources",
            SourceParams,
            "pipeline.workflows.mosaic.sources:detect_sources",
            "SEP (Source Extractor) over the mosaic's tiles with a shared background, or "
            "blob detection (log, doh); equal to the whole image -> sources table (Parquet "
            "and FITS) + aligned cutouts",
            writes=("tables/sources.parquet", "store.zarr/cutouts/zarr.json"),
        ),
        StageDef(
            "match_sources",
            MatchParams,
            "pipeline.workflows.mosaic.matching:match_sources",
            "cross-match the catalog with a reference (or the generator's truth) -> "
            "completeness and purity per magnitude",
            writes=("tables/source_matches.parquet",),
        ),
    ),
    tables=tables.TABLES,
    sections=(
        ReportSection("mosaic_sources", 110, "pipeline.workflows.mosaic.report:sources_section"),
    ),
)
