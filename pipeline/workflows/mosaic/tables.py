"""Sources detected in a survey mosaic."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="sources",
        description="One row per source detected in the mosaic (stage `detect_sources`), "
        "in the order of the cutouts' `image` dimension.",
        columns={
            "image_id": "source identifier, also the cutouts' `image_id`",
            "y": "row of the blob centre in the mosaic (px)",
            "x": "column of the blob centre in the mosaic (px)",
            "sigma": "blob scale (px)",
            "tile": "the mosaic tile (chunk) whose core holds the centre, `r{row}c{col}`",
            "angle_deg": "major axis of the source's cutout (degrees, as in `catalog`)",
        },
    ),
)
