"""Parameters of the ingest stages (pydantic only: a job spec is validated with these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_MAX_PIXELS", "IngestParams", "ModePolicy", "MosaicParams", "ShapePolicy"]

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
