"""Tables the ingests write: one row per image, per plate well, and the inputs set aside."""

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
            "format": "decoder used: jpeg, png, tiff or fits; ome-zarr for a field of an "
            "OME-Zarr plate (ingest_plates with hcs)",
        },
        open_columns=True,  # metadata columns from a CSV/Parquet manifest follow
    ),
    TableSchema(
        name="plate_wells",
        description="One row per well of the plate map (ingest_plates; without a plate map, "
        "per well with images), sorted by plate and well: its treatment and what became of "
        "its images. Further columns of the plate map follow.",
        columns={
            "plate": "plate identifier, as the index / plate map / OME-Zarr plate names it",
            "well": "well, normalised to a row letter and two digits (A01 ... P24)",
            "row": "row letter (A ...)",
            "column": "column number (1-based)",
            "treatment": "what the well received ('' for none)",
            "concentration": "dose, in `unit` (NaN where none)",
            "unit": "unit of `concentration` ('' where none)",
            "group": "experimental group: untreated, single, screening, positive_control, "
            "or another of the stage's `groups` ('' without a plate map)",
            "edge": "the well is on the plate's edge (first or last row or column)",
            "excluded": "an edge well left out of the ingest (exclude_edge)",
            "n_images": "images of the well the index or plate lists (0 when excluded)",
            "n_ingested": "of those, rows in `images` (a file refused by the header step "
            "has none; see the quarantine table)",
            "n_valid": "of those, decoded (valid); n_images - n_valid were quarantined",
        },
        open_columns=True,
    ),
    TableSchema(
        name="masks",
        description="One row per image (ingest_masks): where its ground-truth mask came from "
        "and what it holds, in the order of the `image` dimension.",
        columns={
            "image": "position along the `image` dimension of store.zarr (0-based)",
            "image_id": "as in `images`",
            "mask": "the mask file, or the folder of its per-object files",
            "format": "label (a label image, kept), binary (labelled by connected "
            "components) or instances (one binary file per object)",
            "objects": "objects (distinct non-zero labels) in `masks` for the image",
            "foreground_fraction": "fraction of the image's pixels inside an object",
        },
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
