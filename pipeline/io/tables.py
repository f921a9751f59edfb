"""Tables the ingest writes: one row per image, and the inputs set aside."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="images",
        description="One row per ingested image, in the order of the `image` dimension.",
        columns={
            "image": "position along the `image` dimension of store.zarr (0-based)",
            "image_id": "identifier: the manifest's `image_id` column, else the file "
            "stem, else (stems not unique) the path relative to the sources' common folder",
            "source": "the file the image was read from (absolute path or URL)",
            "height": "height of the source file in pixels, before any resize or pad",
            "width": "width of the source file in pixels, before any resize or pad",
            "channels": "channels of the source file (1 for grayscale)",
            "format": "decoder used: jpeg, png, tiff or fits",
        },
        open_columns=True,  # metadata columns from a CSV/Parquet manifest follow
    ),
    TableSchema(
        name="quarantine",
        description="One row per input set aside; the run went on without it.",
        columns={
            "path": "the file (absolute path or URL)",
            "reason": "why, in one line",
            "stage": "the stage that set it aside",
        },
    ),
)
