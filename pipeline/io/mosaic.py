"""Survey mosaics in: one large image as the tiled ``mosaic`` array (stage ``ingest_mosaic``).

The image (FITS, TIFF, PNG or JPEG) is read band by band: each band of tile rows is one task
that reads its own rows from the file (FITS through a memory map, TIFF through tifffile's
tile-wise selection) and writes them to ``mosaic (mosaic_y, mosaic_x)``, tiled ``tile`` x
``tile``. Colour images are converted to grayscale. The dimensions are ``mosaic_y`` /
``mosaic_x`` because xarray requires one size per dimension name within a Dataset.

A mosaic is legitimately huge, so the ingest's per-image pixel budget does not apply to what
is read in bands (local FITS and TIFF). What a header claims is still checked before any
work: FITS data and uncompressed TIFF data must fit in the file (a header claiming absurd
dimensions is an :class:`~pipeline.errors.InputError`, not a huge allocation), each TIFF strip
or tile, which is decoded whole, must be within the budget, and PNG, JPEG and remote files,
which are decoded whole in every band's task, must be within it altogether.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import sys
from typing import Any

import numpy as np
import numpy.typing as npt
from skimage.util import img_as_float

from pipeline.core.chunks import chunk_bounds, prepare_array, run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.errors import ImageDecodeError, InputError
from pipeline.io.conform import convert_mode
from pipeline.io.imagefiles import ImageInfo, check_regular_file, read_header, read_image
from pipeline.io.spec import DEFAULT_MAX_PIXELS, MosaicParams

__all__ = [
    "INGEST_TASK",
    "MOSAIC",
    "MOSAIC_DIMS",
    "check_mosaic",
    "ingest_mosaic",
    "read_rows",
    "write_band",
]

log = logging.getLogger(__name__)

#: The array the mosaic is stored as, and its dimensions.
MOSAIC = "mosaic"
MOSAIC_DIMS = ("mosaic_y", "mosaic_x")

#: Marker folder and stage name.
INGEST_TASK = "ingest_mosaic"


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _banded(path: str, fmt: str) -> bool:
    """Whether :func:`read_rows` reads the file in parts (else it decodes it whole)."""
    return _is_local(path) and fmt in ("fits", "tiff")


def _header(path: str) -> ImageInfo:
    # No pixel budget in the header read (sys.maxsize also lifts Pillow's limit for PNG and
    # JPEG): check_mosaic applies the mosaic's own limits, with messages that fit mosaics.
    return read_header(path, max_pixels=sys.maxsize)


def _largest_tiff_segment(path: str) -> tuple[tuple[int, ...], int]:
    """Shape and values of the largest strip or tile of a TIFF's first series (decoded whole)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        pages = [p for p in tif.series[0].pages if p is not None]
        shapes = {tuple(getattr(p, "keyframe", p).chunks) for p in pages}
    largest = max(shapes, key=math.prod)
    return largest, math.prod(largest)


def read_rows(path: str, fmt: str, r0: int, r1: int) -> npt.NDArray[Any]:
    """Rows ``[r0, r1)`` of an image file, reading no more of it than needed where possible.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    fmt : {"fits", "tiff", "png", "jpeg"}
    r0, r1 : int
        Row range.

    Returns
    -------
    numpy.ndarray, shape (r1 - r0, w) or (r1 - r0, w, c)
        Local FITS files are read through a memory map and local TIFFs tile by tile;
        PNG, JPEG and remote files are decoded whole (they are rarely mosaic-sized).

    Raises
    ------
    ImageDecodeError
        If the file cannot be read.
    """
    try:
        if _is_local(path):
            check_regular_file(_local(path))
        if _is_local(path) and fmt == "fits":
            from astropy.io import fits

            with fits.open(_local(path), memmap=True) as hdul:
                hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
                return np.array(hdu.section[r0:r1], copy=True)
        if _is_local(path) and fmt == "tiff":
            import tifffile

            return np.asarray(tifffile.imread(_local(path), selection=(slice(r0, r1),)))
    except (OSError, ValueError, KeyError, IndexError, StopIteration) as exc:
        raise ImageDecodeError(f"cannot read rows {r0}:{r1} of {path}: {exc}") from exc
    return read_image(path, fmt)[r0:r1]


def _mosaic_dtype(dtype: str) -> str:
    return dtype if dtype in ("uint8", "uint16") else "float32"


def _as_mosaic(rows: npt.NDArray[Any], dtype: str) -> npt.NDArray[Any]:
    if rows.ndim == 3:
        # Colour to luminance; 8- and 16-bit integers keep their range so the store stays
        # compact, anything else becomes float in the units img_as_float gives it.
        if dtype in ("uint8", "uint16"):
            return convert_mode(rows, "gray")
        return convert_mode(img_as_float(rows), "gray").astype(np.float32)
    return rows.astype(dtype, copy=False)


def write_band(
    store: RunStore, index: int, path: str, fmt: str, r0: int, r1: int, dtype: str
) -> dict[str, Any]:
    """Read rows ``[r0, r1)`` of the file and write them to ``mosaic`` (one task)."""
    write_block(store, MOSAIC, r0, _as_mosaic(read_rows(path, fmt, r0, r1), dtype))
    return {}


def check_mosaic(store: RunStore, params: MosaicParams) -> None:
    """Preflight: the mosaic file exists and is a readable 2-D image its header tells true.

    No pixel budget applies to local FITS and TIFF mosaics, which are read band by band; but
    FITS and uncompressed TIFF data must fit in the file, and what one task decodes whole (a
    TIFF strip or tile; a PNG, JPEG or remote file altogether) must be within
    :data:`~pipeline.io.spec.DEFAULT_MAX_PIXELS` values.

    Raises
    ------
    InputError
        If it is not, naming the file, what its header claims and what to do.
    """
    source = params.source
    if _is_local(source):
        try:
            mode = os.stat(_local(source)).st_mode
        except FileNotFoundError:
            raise InputError(
                f"mosaic file {source!r} does not exist; give the path of a FITS, TIFF, "
                "PNG or JPEG file (e.g. one made by `pipeline synth mosaic`)"
            ) from None
        except OSError as exc:  # a symlink loop, a folder we may not enter, ...
            raise InputError(f"mosaic file {source!r} cannot be read: {exc}") from exc
        if not stat.S_ISREG(mode):
            raise InputError(
                f"mosaic file {source!r} is not a regular file; give the path of a FITS, "
                "TIFF, PNG or JPEG file (or a symlink to one)"
            )
    info = _header(source)
    if info.reason:
        raise InputError(f"mosaic file {source!r}: {info.reason}")
    if len(info.shape) not in (2, 3):
        raise InputError(f"mosaic file {source!r} has shape {info.shape}, not 2-D")
    claimed = " x ".join(map(str, info.shape))
    if not _banded(source, info.format):
        values = math.prod(info.shape)
        if values > DEFAULT_MAX_PIXELS:
            raise InputError(
                f"mosaic file {source!r}: its header claims {claimed} = {values:,} pixel "
                f"values, over the {DEFAULT_MAX_PIXELS:,} a file decoded whole may have "
                "(PNG and JPEG files, and remote files, are decoded whole); convert it to a "
                "tiled TIFF or a FITS file on local disk, which are read band by band"
            )
    elif info.format == "tiff":
        segment, values = _largest_tiff_segment(_local(source))
        if values > DEFAULT_MAX_PIXELS:
            raise InputError(
                f"mosaic file {source!r}: its header claims {claimed} in strips or tiles of "
                f"{' x '.join(map(str, segment))} = {values:,} values, each decoded whole, "
                f"over the budget of {DEFAULT_MAX_PIXELS:,}; rewrite it tiled (e.g. "
                "tifffile.imwrite(..., tile=(1024, 1024)))"
            )


def ingest_mosaic(ctx: RunContext, params: MosaicParams) -> dict[str, int]:
    """Write the mosaic file into ``store.zarr/mosaic``, one band of tile rows per task.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.forced`` rewrites every band; ``ctx.progress`` receives ``("mosaic", done,
        total)``.
    params : MosaicParams

    Returns
    -------
    dict
        ``height``, ``width`` (px), ``tiles`` and ``bands_written``.

    Raises
    ------
    InputError
        If the file is missing or not an image.
    """
    store = ctx.store
    check_mosaic(store, params)
    info = _header(params.source)
    height, width = int(info.shape[0]), int(info.shape[1])
    dtype = _mosaic_dtype(info.dtype)
    tile = params.tile
    done = prepare_array(
        store,
        task=INGEST_TASK,
        name=MOSAIC,
        dims=MOSAIC_DIMS,
        shape=(height, width),
        chunks=(tile, tile),
        dtype=dtype,
        config={"source": params.source, "file_shape": list(info.shape)},
        attrs={"source": params.source},
        redo=ctx.forced,
    )
    bands = chunk_bounds(height, tile)
    todo = [i for i in range(len(bands)) if i not in done]
    log.info(
        "ingest_mosaic: %d x %d %s, %d bands (%d to write)",
        height,
        width,
        dtype,
        len(bands),
        len(todo),
    )
    args = {i: (params.source, info.format, r0, r1, dtype) for i, (r0, r1) in enumerate(bands)}
    run_chunks(
        store, ctx.client, INGEST_TASK, write_band, args, label="mosaic", progress=ctx.progress
    )
    n_tiles = len(bands) * math.ceil(width / tile)
    return {"height": height, "width": width, "tiles": n_tiles, "bands_written": len(todo)}
