"""Parameters of the ingest stages (pydantic only: a job spec is validated with these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PLATE_GROUPS",
    "IngestParams",
    "MaskIngestParams",
    "ModePolicy",
    "MosaicParams",
    "PlateFormatSize",
    "PlateIngestParams",
    "ShapePolicy",
]

#: Default pixel budget of one image (``input.max_pixels``): 2**28 = 268,435,456 values.
DEFAULT_MAX_PIXELS = 2**28

#: Channel conversion of an ingest: keep as decoded, to luminance, or to three channels.
ModePolicy = Literal["keep", "gray", "rgb"]
#: What an ingest does with images of another size than the collection's.
ShapePolicy = Literal["error", "quarantine", "resize", "pad"]


class IngestParams(BaseModel):
    """Parameters of an ingest (the ``input`` section of a job spec).

    Attributes
    ----------
    sources : list of str
        Folders, globs, files, and CSV/Parquet manifests (a ``path`` column, metadata columns).
    mode : {"keep", "gray", "rgb"}
        ``keep`` stores images as decoded (mixed grayscale and RGB is then an error);
        ``gray`` converts to luminance; ``rgb`` to three channels. Alpha is dropped by both.
    shape_policy : {"error", "quarantine", "resize", "pad"}
        What to do with images whose height/width differ from the collection's: stop
        (default; the message lists the shapes found), quarantine them, resize them, or pad
        them (centred, zero background).
    shape : (int, int), optional
        Target ``(height, width)`` for ``resize``/``pad``; default: the most common shape for
        ``resize`` and the largest for ``pad``.
    chunk_mb : float
        Target size of one chunk in megabytes (uncompressed); chunks hold whole images.
    compressor : {"zstd", "lz4"}
        ``zstd`` (default): Zstandard, the smaller store. ``lz4``: Blosc-LZ4 with bit-shuffle,
        about 4x faster to write and about 1.8x larger; for ingests whose speed matters more
        than disk (see ``benchmarks/ingest.py``).
    compression_level : int, optional
        Zstandard level (-7 fastest ... 22 smallest; default 1), or Blosc level (0 ... 9;
        default 5, clipped to that range).
    max_pixels : int
        Pixel budget of one image: the most values (height x width x channels, summed over
        the pages of a TIFF) a file's header may claim. It is checked from the header before
        anything is decoded; a file over it is quarantined with its claimed size (a
        decompression bomb, e.g. a 69-byte PNG claiming 100000 x 100000, cannot then exhaust a
        worker's memory). The default, 2**28 = 268,435,456, is 16384 x 16384 gray or about
        9450 x 9450 RGB: 256 MiB decoded as uint8 and 1 GiB as float32 (FITS), which one
        worker of a few GiB decodes whole. That is far above the cutouts, plates and
        microscopy fields the ingest is for (whole images per chunk) and, per image, above
        Pillow's own default limit of about 89 million pixels, which is raised to this budget
        for each file. Raise it for genuinely larger images; survey mosaics go through
        ``ingest_mosaic``, which reads in bands.
    overwrite : bool
        Replace a different collection already in the store (otherwise that is an error).
    """

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1)
    mode: ModePolicy = "keep"
    shape_policy: ShapePolicy = "error"
    shape: tuple[int, int] | None = None
    chunk_mb: float = Field(32.0, gt=0, le=2048)
    compressor: Literal["zstd", "lz4"] = "zstd"
    compression_level: int | None = Field(None, ge=-7, le=22)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    overwrite: bool = False

    @field_validator("max_pixels", mode="before")
    @classmethod
    def _not_bool(cls, v: object) -> object:
        # pydantic reads true as 1, which would quarantine every file.
        if isinstance(v, bool):
            raise ValueError(f"max_pixels must be a positive integer (pixel values), got {v!r}")
        return v

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError(f"shape must be two positive integers (height, width), got {v}")
        return v


class MosaicParams(BaseModel):
    """Parameters of ``ingest_mosaic``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="the mosaic: a FITS, TIFF, PNG or JPEG file (path or URL)")
    tile: int = Field(2048, ge=64, le=16384, description="tile (chunk) side in pixels")


#: The experimental groups a plate map's ``group`` column may name by default (seed 001):
#: ``untreated`` (control, no drug), ``single`` (the recommended single concentration),
#: ``screening`` (drug combinations x concentrations) and ``positive_control`` (a drug known
#: to work, e.g. a kill control).
PLATE_GROUPS: tuple[str, ...] = ("untreated", "single", "screening", "positive_control")

#: The plate formats an ingest of plates accepts, by number of wells.
PlateFormatSize = Literal[6, 12, 24, 48, 96, 384]


class PlateIngestParams(BaseModel):
    """Parameters of ``ingest_plates``: multi-well plates into the ``images`` collection.

    Give either ``index`` and ``plate_map`` (image files) or ``hcs`` (OME-Zarr plates). Both
    give the same store for the same plate: one image per plate, well, day and field, with
    the coordinates ``plate``, ``well``, ``row``, ``column``, ``field``, ``day``,
    ``treatment``, ``concentration``, ``unit``, ``group`` and ``edge`` on ``image``.

    Attributes
    ----------
    index : str, optional
        The image index: a CSV or Parquet table with columns ``file`` (relative to the
        index's folder, or absolute), ``plate``, ``well``, ``field`` and ``day``; further
        columns become coordinates.
    plate_map : str, optional
        The plate map: a CSV or Parquet table with columns ``plate``, ``well``,
        ``treatment``, ``concentration``, ``unit`` and ``group`` (one row per well); further
        columns become coordinates. Required with ``index``; with ``hcs`` it gives what
        OME-Zarr metadata does not hold (treatments).
    hcs : list of str, optional
        OME-Zarr HCS plates (NGFF 0.4 or 0.5): each a plate group, or a folder holding plate
        groups (e.g. what ``pipeline export-ome-zarr`` writes).
    plate_format : {6, 12, 24, 48, 96, 384}
        Wells per plate; every well must fit it.
    exclude_edge : bool
        Leave the edge wells (first and last row and column: rows A/H and columns 1/12 on a
        96-well plate, A/P and 1/24 on a 384-well plate) out of the ingest, keeping the inner
        wells (the inner 60 of a 96-well plate). They stay in ``tables/plate_wells.parquet``
        with ``excluded`` true. False ingests them, flagged by the ``edge`` coordinate.
    groups : list of str
        The groups the plate map's ``group`` column may name (case-insensitive).
    mode, shape_policy, shape, chunk_mb, compressor, compression_level, max_pixels, overwrite
        As :class:`IngestParams`.
    """

    model_config = ConfigDict(extra="forbid")

    index: str | None = Field(
        None, min_length=1, description="image index CSV/Parquet: file, plate, well, field, day"
    )
    plate_map: str | None = Field(
        None,
        min_length=1,
        description="plate map CSV/Parquet: plate, well, treatment, concentration, unit, group",
    )
    hcs: list[str] | None = Field(
        None, min_length=1, description="OME-Zarr HCS plates, or folders of them (instead of index)"
    )
    plate_format: PlateFormatSize = Field(96, description="wells per plate")
    exclude_edge: bool = Field(
        True, description="leave the edge wells out (the inner-60 rule on 96-well plates)"
    )
    groups: list[str] = Field(
        default_factory=lambda: list(PLATE_GROUPS),
        min_length=1,
        description="the groups the plate map may name",
    )
    # The options of IngestParams, passed through to the ingest (which validates them again).
    mode: ModePolicy = Field("keep", description="as ingest: keep, gray or rgb")
    shape_policy: ShapePolicy = Field("error", description="as ingest: other-sized images")
    shape: tuple[int, int] | None = Field(None, description="as ingest: target (height, width)")
    chunk_mb: float = Field(32.0, gt=0, le=2048, description="as ingest: MB per chunk")
    compressor: Literal["zstd", "lz4"] = Field("zstd", description="as ingest")
    compression_level: int | None = Field(None, ge=-7, le=22, description="as ingest")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="as ingest: pixel budget")
    overwrite: bool = Field(False, description="replace another collection in the store")

    @field_validator("max_pixels", mode="before")
    @classmethod
    def _not_bool(cls, v: object) -> object:
        return IngestParams._not_bool(v)

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        return IngestParams._positive(v)

    @model_validator(mode="after")
    def _one_input(self) -> PlateIngestParams:
        if (self.index is None) == (self.hcs is None):
            raise ValueError(
                "give either index (with plate_map) for image files or hcs for OME-Zarr "
                "plates, not " + ("both" if self.index is not None else "neither")
            )
        if self.index is not None and self.plate_map is None:
            raise ValueError(
                "index needs a plate_map: the table of plate, well, treatment, "
                "concentration, unit and group"
            )
        return self

    def ingest_options(self) -> dict[str, object]:
        """The options this ingest passes to :class:`IngestParams` (all but ``sources``)."""
        return self.model_dump(include=set(IngestParams.model_fields) - {"sources"})


class MaskIngestParams(BaseModel):
    """Parameters of ``ingest_masks``: each image's ground-truth mask, as ``masks``.

    Attributes
    ----------
    source : str, optional
        Where the masks are:

        - a folder of masks matched to the images by file name (stem): ``masks/a.png`` is
          ``images/a.tif``'s mask (the Data Science Bowl's flat image/mask layout), or holds
          per-image folders ``masks/a/*.png`` of one binary file per nucleus;
        - a CSV or Parquet manifest with a ``mask_path`` column and a ``path`` (the image,
          as the ingest's manifest gives it) or ``image_id`` column; relative paths are
          relative to the manifest's folder.

        None (default): the ingest manifest's ``mask_path`` column when the images table has
        one, else the ``masks`` folder beside each image's folder (``root/images/a.png`` ->
        ``root/masks/a.png`` or ``root/masks/a/``), and for the Data Science Bowl's own
        layout (``<id>/images/<id>.png``), every file of ``<id>/masks/``.
    connectivity : {1, 2}
        Neighbourhood that joins pixels of a *binary* mask into one object (1: 4-connected,
        as nuclei that merely touch at a corner stay apart; 2: 8-connected). Label images
        keep their labels.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(
        None, min_length=1, description="masks folder or manifest (mask_path); default: beside"
    )
    connectivity: Literal[1, 2] = Field(1, description="binary masks: 4- (1) or 8- (2) connected")
