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

FITS. The image is the first HDU that is an image of two or more axes: the primary HDU, or,
when that holds no data (as in most multi-extension survey files), the first image extension;
the ingest logs which, and returns its index as ``hdu``. Its header is kept as text in the
``mosaic`` array's attributes (``fits_header``, read back by :func:`mosaic_header`, e.g. for
its WCS through :func:`pipeline.io.wcs.read_wcs`) together with ``fits_hdu``, ``{"index":
int, "extname": str or None}``. Pixels are stored as physical values: ``BSCALE`` and
``BZERO`` are applied, and integer pixels equal to ``BLANK`` become NaN, so they are masked
downstream rather than detected. The mosaic keeps ``uint8`` (``BITPIX 8``) or ``uint16``
(``BITPIX 16``, ``BZERO 32768``) only when the file is unscaled otherwise and has no
``BLANK``; every other FITS image is stored as float32, whose NaNs (blank regions of float
data) are kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from skimage.util import img_as_float

from pipeline.core.chunks import chunk_bounds, prepare_array, run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.errors import ImageDecodeError, InputError
from pipeline.io.conform import convert_mode
from pipeline.io.imagefiles import (
    ImageInfo,
    _fits_shape_dtype,
    _open,
    check_regular_file,
    read_header,
    read_image,
)
from pipeline.io.spec import DEFAULT_MAX_PIXELS, MosaicParams

__all__ = [
    "INGEST_TASK",
    "MOSAIC",
    "MOSAIC_DIMS",
    "check_mosaic",
    "ingest_mosaic",
    "mosaic_header",
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


@dataclass(frozen=True)
class _FitsImage:
    """The image HDU of a FITS mosaic and how it is stored."""

    index: int
    extname: str | None
    header: str  # Header.tostring()
    shape: tuple[int, ...]  # (height, width[, planes])
    dtype: str  # the mosaic's dtype


def _image_hdu(hdul: Any) -> tuple[int, Any]:
    """The first image HDU of two or more axes (a table HDU also has NAXIS 2: skipped)."""
    for i, hdu in enumerate(hdul):
        if getattr(hdu, "is_image", False) and hdu.header.get("NAXIS", 0) >= 2:
            return i, hdu
    raise ImageDecodeError("FITS file has no image HDU with 2 or more axes")


def _fits_dtype(header: Any) -> str:
    """The mosaic dtype of a FITS image: its integers only where they are the values."""
    bitpix = int(header["BITPIX"])
    bzero, bscale = float(header.get("BZERO", 0)), float(header.get("BSCALE", 1))
    blank = bitpix > 0 and "BLANK" in header
    if not blank and bscale == 1 and bitpix == 8 and bzero == 0:
        return "uint8"
    if not blank and bscale == 1 and bitpix == 16 and bzero == 32768:
        return "uint16"
    return "float32"


@contextlib.contextmanager
def _fits_file(path: str) -> Iterator[Any]:
    """The FITS file's HDU list, unscaled: :func:`_physical` applies BSCALE, BZERO, BLANK."""
    from astropy.io import fits

    # Unscaled because astropy refuses to scale a memory-mapped section (it raises "Cannot
    # load a memory-mapped image: BZERO/BSCALE/BLANK header keywords present") and ignores
    # BLANK for unsigned 16-bit data; read unscaled, a section still reads only its rows.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns on odd headers; read_wcs reports them
        if _is_local(path):
            with fits.open(_local(path), memmap=True, do_not_scale_image_data=True) as hdul:
                yield hdul
        else:
            with (
                _open(path) as fh,
                fits.open(fh, memmap=False, do_not_scale_image_data=True) as hdul,
            ):
                yield hdul


def _fits_image(path: str) -> _FitsImage:
    """Which HDU of a FITS mosaic holds the image, its header, shape and stored dtype."""
    with _fits_file(path) as hdul:
        index, hdu = _image_hdu(hdul)
        header = hdu.header
        shape, _, _ = _fits_shape_dtype(header)
        extname = header.get("EXTNAME")
        return _FitsImage(
            index=index,
            extname=str(extname).strip() if extname is not None else None,
            header=header.tostring(),
            shape=tuple(int(n) for n in shape),
            dtype=_fits_dtype(header),
        )


def _physical(raw: npt.NDArray[Any], header: Any) -> npt.NDArray[Any]:
    """Stored FITS values to physical ones in the mosaic's dtype (BSCALE, BZERO, BLANK)."""
    dtype = _fits_dtype(header)
    if dtype == "uint8":
        return raw.astype(np.uint8)
    if dtype == "uint16":  # stored as int16 - 32768
        return (raw.astype(np.int32) + 32768).astype(np.uint16)
    bitpix = int(header["BITPIX"])
    bzero, bscale = float(header.get("BZERO", 0)), float(header.get("BSCALE", 1))
    # float32 holds 8- and 16-bit integers scaled exactly enough; wider ones are scaled in
    # float64 and rounded once.
    work = np.float64 if abs(bitpix) >= 32 and bitpix != -32 else np.float32
    values: npt.NDArray[np.floating[Any]] = raw.astype(work)
    if bscale != 1:
        values *= bscale
    if bzero != 0:
        values += bzero
    if bitpix > 0 and "BLANK" in header:
        values[raw == int(header["BLANK"])] = np.nan
    return values.astype(np.float32, copy=False)


def _read_fits_rows(path: str, r0: int, r1: int) -> npt.NDArray[Any]:
    with _fits_file(path) as hdul:
        _, hdu = _image_hdu(hdul)
        if hdu.header["NAXIS"] == 3:  # (planes, y, x) in numpy order
            raw = np.moveaxis(np.asarray(hdu.section[:, r0:r1]), 0, -1)
        else:
            raw = np.asarray(hdu.section[r0:r1])
        return _physical(raw, hdu.header)


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
        PNG, JPEG and remote TIFFs are decoded whole (they are rarely mosaic-sized), remote
        FITS files are read by seeking to the rows. FITS values are physical (see the module
        notes): uint8 or uint16 where the file's integers are the values, else float32 with
        NaN for ``BLANK`` pixels.

    Raises
    ------
    ImageDecodeError
        If the file cannot be read.
    """
    try:
        if _is_local(path):
            check_regular_file(_local(path))
        if fmt == "fits":
            return _read_fits_rows(path, r0, r1)
        if _is_local(path) and fmt == "tiff":
            import tifffile

            return np.asarray(tifffile.imread(_local(path), selection=(slice(r0, r1),)))
    except ImageDecodeError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
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
        ``height``, ``width`` (px), ``tiles`` and ``bands_written``; for a FITS file also
        ``hdu``, the index of the HDU read (0 the primary), which is absent for other
        formats.

    Raises
    ------
    InputError
        If the file is missing or not an image.

    Notes
    -----
    A FITS file's image HDU header is stored as text in the array's ``fits_header``
    attribute and the HDU in ``fits_hdu`` (``{"index": int, "extname": str or None}``);
    :func:`mosaic_header` reads the header back.
    """
    store = ctx.store
    check_mosaic(store, params)
    info = _header(params.source)
    attrs: dict[str, Any] = {"source": params.source}
    fits_image: _FitsImage | None = None
    if info.format == "fits":
        try:
            fits_image = _fits_image(params.source)
        except (ImageDecodeError, OSError, ValueError, KeyError) as exc:
            raise InputError(f"mosaic file {params.source!r}: {exc}") from exc
        shape, dtype = fits_image.shape, fits_image.dtype
        attrs["fits_header"] = fits_image.header
        attrs["fits_hdu"] = {"index": fits_image.index, "extname": fits_image.extname}
        if fits_image.index:
            name = f" ({fits_image.extname!r})" if fits_image.extname else ""
            log.info(
                "ingest_mosaic: primary HDU of %s holds no image; reading extension %d%s",
                params.source,
                fits_image.index,
                name,
            )
    else:
        shape, dtype = tuple(info.shape), _mosaic_dtype(info.dtype)
    height, width = int(shape[0]), int(shape[1])
    tile = params.tile
    config: dict[str, Any] = {"source": params.source, "file_shape": list(shape), "dtype": dtype}
    if fits_image is not None:
        config["hdu"] = fits_image.index
    done = prepare_array(
        store,
        task=INGEST_TASK,
        name=MOSAIC,
        dims=MOSAIC_DIMS,
        shape=(height, width),
        chunks=(tile, tile),
        dtype=dtype,
        config=config,
        attrs=attrs,
        redo=ctx.forced,
        # Float sky images are mostly noise: zstd saves ~12 % of them and makes every read
        # 4 x slower (a tile plus halo: 0.04 s against 0.01 s, measured on a generated
        # 4096 x 4096 field), and the extraction reads each tile's neighbours too.
        compress=dtype != "float32",
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
    counts = {"height": height, "width": width, "tiles": n_tiles, "bands_written": len(todo)}
    if fits_image is not None:
        counts["hdu"] = fits_image.index
    return counts


def mosaic_header(store: RunStore) -> str | None:
    """The FITS header of the ingested mosaic's image HDU, as text.

    Parameters
    ----------
    store : RunStore
        A run store holding ``mosaic`` (from :func:`ingest_mosaic`).

    Returns
    -------
    str or None
        The header as :meth:`astropy.io.fits.Header.tostring` gave it (for
        :func:`pipeline.io.wcs.read_wcs`); None when the mosaic came from a TIFF, PNG or
        JPEG file, or was ingested before headers were kept.

    Raises
    ------
    StoreError
        If the store has no ``mosaic``.
    """
    text = store.open_array(MOSAIC, mode="r").attrs.get("fits_header")
    return text if isinstance(text, str) else None
