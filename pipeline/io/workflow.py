"""What the io layer contributes to jobs: the ``ingest``, ``ingest_plates``,
``ingest_mosaic`` and ``ingest_masks`` stages."""

from __future__ import annotations

from pipeline.core.registry import INGEST, StageDef, Workflow
from pipeline.io import tables
from pipeline.io.spec import IngestParams, MaskIngestParams, MosaicParams, PlateIngestParams

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="io",
    summary="image files, manifests, plates and mosaics into a run store",
    stages=(
        StageDef(
            INGEST,
            IngestParams,
            "pipeline.io.ingest:ingest_images",
            "image files -> chunked, labelled Zarr collection (the job's `input` section)",
            writes=(
                "store.zarr/images/zarr.json",
                "tables/images.parquet",
                "tables/quarantine.parquet",
            ),
            preflight="pipeline.io.ingest:check_ingest",
            inputs="pipeline.io.ingest:ingest_fingerprint",
            growth="new_rows",
        ),
        StageDef(
            "ingest_plates",
            PlateIngestParams,
            "pipeline.io.plates:ingest_plates",
            "96/384-well plates (image files + index + plate map, or OME-Zarr HCS) -> the "
            "`images` collection with plate, well, day, field and treatment coordinates",
            writes=(
                "store.zarr/images/zarr.json",
                "tables/images.parquet",
                "tables/quarantine.parquet",
                "tables/plate_wells.parquet",
            ),
            preflight="pipeline.io.plates:check_plates",
            inputs="pipeline.io.plates:plates_fingerprint",
            growth="new_rows",
        ),
        StageDef(
            "ingest_mosaic",
            MosaicParams,
            "pipeline.io.mosaic:ingest_mosaic",
            "one large FITS/TIFF/PNG/JPEG image -> the tiled `mosaic` array",
            writes=("store.zarr/mosaic/zarr.json",),
            preflight="pipeline.io.mosaic:check_mosaic",
        ),
        StageDef(
            "ingest_masks",
            MaskIngestParams,
            "pipeline.io.masks:ingest_masks",
            "each image's ground-truth mask (image/mask pairs by name, per-nucleus files, or "
            "a manifest's mask_path) -> `masks (image, y, x)` instance labels",
            writes=("store.zarr/masks/zarr.json", "tables/masks.parquet"),
        ),
    ),
    tables=tables.TABLES,
)
