"""What the galaxy workflow contributes: the ``preprocess`` stage, the catalog, its report."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.galaxy import tables
from pipeline.workflows.galaxy.spec import GalaxyParams

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="galaxy",
    summary="galaxy cutouts: the central galaxy found, checked, aligned and cut out",
    stages=(
        StageDef(
            "preprocess",
            GalaxyParams,
            "pipeline.workflows.galaxy.catalog:build_catalog",
            "galaxy cutouts: find the central galaxy, reject overlaps, stripes and empty "
            "images, align, cut out -> catalog + cutouts",
            writes=("store.zarr/cutouts/zarr.json", "tables/catalog.parquet"),
            growth="new_rows",
        ),
    ),
    tables=tables.TABLES,
    sections=(
        ReportSection("galaxy_catalog", 100, "pipeline.workflows.galaxy.report:catalog_section"),
    ),
)
