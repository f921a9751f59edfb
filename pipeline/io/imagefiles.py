"""Reading image files: format sniffing, cheap header checks, and decoding.

:func:`read_header` reads a file's header and its last bytes only, so that the ingest can plan
the collection (shape, dtype, which files are bad) without decoding every pixel twice. It
catches empty files, files that are not images, and truncated files (a JPEG without its end
marker, a PNG without IEND, TIFF strips or FITS data past the end of the file). Corruption it
cannot see is caught when the image is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from pipeline.errors import ImageDecodeError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "read_header",
    "read_image",
    "sniff_format",
    "stored_dtype",
]

#: File name suffixes a folder source picks up (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".fits", ".fit", ".fts")

_TAIL = 1024


@dataclass(frozen=True)
class ImageInfo:
    """What reading the header told about one file.

    ``shape`` is ``(height, width)`` or ``(height, width, channels)`` as decoded, before any
    conversion; ``dtype`` the stored dtype (see :func:`stored_dtype`). ``reason`` is set, and
    the other fields are empty, when the file cannot be used.
    """

    path: str
    format: str = ""
    shape: tuple[int, ...] = ()
    dtype: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the file can be ingested."""
        return not self.reason

    @property
    def channels(self) -> int:
        """1 for a grayscale image, else the length of the channel axis."""
        return self.shape[2] if len(self.shape) == 3 else 1


def sniff_format(head: bytes) -> str | None:
    """The image format from a file's first bytes: ``jpeg``, ``png``, ``tiff``, ``fits``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    return None


def stored_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a source dtype is stored as: uint8 and uint16 as they are, others float32.

    Survey FITS images are often float or signed; float32 holds them without the clipping an
    integer cast would do.
    """
    if dtype == np.uint8 or dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.uint16:
        return np.dtype(np.uint16)
    return np.dtype(np.float32)


def _open(path: str) -> IO[bytes]:
    if "://" in path:
        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def _size(fh: IO[bytes]) -> int:
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    return size


def _tail(fh: IO[bytes], size: int) -> bytes:
    fh.seek(max(0, size - _TAIL))
    data = fh.read()
    fh.seek(0)
    return data


# Pillow modes, mapped to the mode we decode to and its dtype.
_PIL_MODES: dict[str, tuple[str, int, str]] = {
    "1": ("L", 1, "uint8"),
    "L": ("L", 1, "uint8"),
    "LA": ("L", 1, "uint8"),
    "P": ("RGB", 3, "uint8"),
    "PA": ("RGBA", 4, "uint8"),
    "RGB": ("RGB", 3, "uint8"),
    "RGBA": ("RGBA", 4, "uint8"),
    "CMYK": ("RGB", 3, "uint8"),
    "YCbCr": ("RGB", 3, "uint8"),
    "I;16": ("I;16", 1, "uint16"),
    "I;16B": ("I;16", 1, "uint16"),
    "I;16L": ("I;16", 1, "uint16"),
    "I": ("I", 1, "float32"),
    "F": ("F", 1, "float32"),
}


def _header_pil(fh: IO[bytes], fmt: str, size: int) -> tuple[tuple[int, ...], str]:
    tail = _tail(fh, size)
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        raise ImageDecodeError("truncated JPEG: the end-of-image marker is missing")
    if fmt == "png":
        if b"IEND" not in tail:
            raise ImageDecodeError("truncated PNG: the IEND chunk is missing")
        head = fh.read(26)
        fh.seek(0)
        bit_depth, colour_type = head[24], head[25]
        if bit_depth == 16 and colour_type in (2, 6):
            # Pillow reduces 16-bit colour PNG to 8 bits: refuse rather than lose precision.
            raise ImageDecodeError(
                "16-bit colour PNG is read as 8-bit by Pillow; convert it to a 16-bit TIFF"
            )
    with Image.open(fh) as im:
        width, height = im.size
        mode = im.mode
        if getattr(im, "n_frames", 1) > 1 and fmt == "png":
            raise ImageDecodeError("animated PNG: only single images are supported")
    if mode not in _PIL_MODES:
        raise ImageDecodeError(f"unsupported {fmt.upper()} pixel mode {mode!r}")
    _, channels, dtype = _PIL_MODES[mode]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return shape, dtype


def _tiff_layout(axes: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Transpose order and decoded shape for a TIFF series, or raise if it is not 2-D."""
    if axes in ("YX",):
        return (0, 1), shape
    if axes in ("YXS", "YXC") and shape[2] <= 4:
        return (0, 1, 2), shape
    if axes in ("SYX", "CYX") and shape[0] <= 4:
        return (1, 2, 0), (shape[1], shape[2], shape[0])
    raise ImageDecodeError(
        f"TIFF with axes {axes!r} and shape {shape}: only single 2-D images, with at most "
        "4 channels, are supported; split stacks into one file per image"
    )


def _header_tiff(fh: IO[bytes], size: int) -> tuple[tuple[int, ...], str]:
    with tifffile.TiffFile(fh) as tif:
        series = tif.series[0]
        _, shape = _tiff_layout(series.axes, tuple(series.shape))
        for page in series.pages:
            if page is None:
                continue
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            if ends and max(ends) > size:
                raise ImageDecodeError(
                    f"truncated TIFF: image data runs to byte {max(ends)} of a {size}-byte file"
                )
        return shape, str(stored_dtype(np.dtype(series.dtype)))


def _fits_hdu(hdul: Any) -> tuple[int, Any]:
    for i, hdu in enumerate(hdul):
        if hdu.header.get("NAXIS", 0) >= 2:
            return i, hdu
    raise ImageDecodeError("FITS file has no image HDU with 2 or more axes")


def _fits_shape_dtype(header: Any) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    naxis = int(header["NAXIS"])
    dims = [int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]  # FITS order: x, y, ...
    if naxis == 2:
        shape: tuple[int, ...] = (dims[1], dims[0])
    elif naxis == 3 and dims[2] <= 4:
        shape = (dims[1], dims[0], dims[2])
    else:
        raise ImageDecodeError(
            f"FITS image of {naxis} axes {dims}: only 2-D images (or 3-D with <= 4 planes) "
            "are supported"
        )
    bitpix = int(header["BITPIX"])
    bzero, bscale = header.get("BZERO", 0), header.get("BSCALE", 1)
    src: np.dtype[Any]
    if bitpix == 8 and bzero == 0 and bscale == 1:
        src = np.dtype(np.uint8)
    elif bitpix == 16 and bzero == 32768 and bscale == 1:
        src = np.dtype(np.uint16)
    else:
        src = np.dtype(np.float32)
    nbytes = abs(bitpix) // 8 * int(np.prod(dims))
    return shape, stored_dtype(src), nbytes


def _header_fits(fh: IO[bytes], size: int) -> tuple[tuple[int, ...], str]:
    from astropy.io import fits  # imported here: astropy is slow to import and FITS is rare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns on odd headers; we check what we need
        with fits.open(fh, memmap=False, lazy_load_hdus=True) as hdul:
            index, hdu = _fits_hdu(hdul)
            shape, dtype, nbytes = _fits_shape_dtype(hdu.header)
            start = hdul.fileinfo(index)["datLoc"]
    if start + nbytes > size:
        raise ImageDecodeError(
            f"truncated FITS: data needs bytes {start}..{start + nbytes} of a {size}-byte file"
        )
    return shape, str(dtype)


def read_header(path: str) -> ImageInfo:
    """Read a file's header (and last bytes) and say whether and how it can be ingested.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.

    Returns
    -------
    ImageInfo
        With ``reason`` set when the file is empty, not an image, unsupported or truncated.
    """
    try:
        with _open(path) as fh:
            size = _size(fh)
            if size == 0:
                return ImageInfo(path, reason="empty file (0 bytes)")
            fmt = sniff_format(fh.read(16))
            fh.seek(0)
            if fmt is None:
                return ImageInfo(
                    path, reason="not an image: content is not JPEG, PNG, TIFF or FITS"
                )
            if fmt == "tiff":
                shape, dtype = _header_tiff(fh, size)
            elif fmt == "fits":
                shape, dtype = _header_fits(fh, size)
            else:
                shape, dtype = _header_pil(fh, fmt, size)
        return ImageInfo(path, format=fmt, shape=shape, dtype=dtype)
    except ImageDecodeError as exc:
        return ImageInfo(path, reason=str(exc))
    except (OSError, ValueError, KeyError, IndexError, UnidentifiedImageError) as exc:
        return ImageInfo(path, reason=f"unreadable: {type(exc).__name__}: {exc}")


def _read_pil(fh: IO[bytes]) -> np.ndarray:
    with Image.open(fh) as im:
        target = _PIL_MODES[im.mode][0]
        return np.asarray(im.convert(target) if im.mode != target else im)


def _read_tiff(fh: IO[bytes]) -> np.ndarray:
    with tifffile.TiffFile(fh) as tif:
        series = tif.series[0]
        order, _ = _tiff_layout(series.axes, tuple(series.shape))
        arr = series.asarray()
    return np.transpose(arr, order)


def _read_fits(fh: IO[bytes]) -> np.ndarray:
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(fh, memmap=False) as hdul:
            _, hdu = _fits_hdu(hdul)
            arr = np.asarray(hdu.data)
    return np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr


def read_image(path: str, fmt: str) -> np.ndarray:
    """Decode one image file.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    fmt : {"jpeg", "png", "tiff", "fits"}
        The format :func:`read_header` found.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` or ``(height, width, channels)`` in the file's own dtype, cast to
        :func:`stored_dtype` of it.

    Raises
    ------
    ImageDecodeError
        If the file cannot be decoded; the message says why.
    """
    try:
        with _open(path) as fh:
            if fmt == "tiff":
                arr = _read_tiff(fh)
            elif fmt == "fits":
                arr = _read_fits(fh)
            else:
                arr = _read_pil(fh)
    except ImageDecodeError:
        raise
    except (OSError, ValueError, KeyError, IndexError, SyntaxError) as exc:
        raise ImageDecodeError(f"cannot decode {fmt.upper()}: {exc}") from exc
    target = stored_dtype(arr.dtype)
    return arr if arr.dtype == target else arr.astype(target)
