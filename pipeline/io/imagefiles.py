"""Reading image files: format sniffing, cheap header checks, and decoding.

:func:`read_header` reads a file's header and its last bytes only, so that the ingest can plan
the collection (shape, dtype, which files are bad) without decoding every pixel twice. It
catches empty files, files that are not images, and truncated files (a JPEG without its end
marker, a PNG without IEND, TIFF strips or FITS data past the end of the file). Corruption it
cannot see is caught when the image is decoded.

Hostile files are refused before anything is allocated for their pixels:

- only regular files are opened (a FIFO, socket or device among the inputs would block a read
  for ever, or have side effects when opened);
- the size a header claims is checked against a pixel budget (``max_pixels``) before any
  decoder runs, for every format: a 69-byte PNG may claim 100000 x 100000 pixels. Pillow's own
  decompression-bomb check is raised to that budget for each open (under a lock, restored
  after), so it can neither abort a run nor warn about an image the budget allows;
- a multi-page TIFF whose pages differ in shape or dtype is refused rather than cut to its
  first page.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from pipeline.errors import ImageDecodeError
from pipeline.io.spec import DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "check_regular_file",
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


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _not_regular(path: str, mode: int) -> ImageDecodeError:
    return ImageDecodeError(
        f"not a regular file but a {_file_kind(mode)}: only regular files (or symlinks to "
        f"them) are read; take {path} out of the sources"
    )


def check_regular_file(path: str) -> None:
    """Raise unless the local ``path`` is a regular file (symlinks are followed).

    Opening a FIFO blocks until something writes to it, and opening a device can have side
    effects, so this is checked with :func:`os.stat` before the file is opened.

    Raises
    ------
    ImageDecodeError
        If ``path`` is a directory, FIFO, socket or device; the message names the kind.
    OSError
        If ``path`` does not exist or cannot be stat'ed.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)


def _open(path: str) -> IO[bytes]:
    if "://" in path and not path.startswith("file://"):
        return fsspec.open(path, "rb").open()
    local = path[len("file://") :] if path.startswith("file://") else path
    check_regular_file(local)

    def opener(name: str, flags: int) -> int:
        # Non-blocking open, then the same check on what was opened: a file swapped for a
        # FIFO after the stat cannot block us. A regular file's reads never block anyway.
        fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise _not_regular(path, mode)
            if hasattr(os, "O_NONBLOCK"):
                os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    return open(local, "rb", opener=opener)


def _check_budget(
    fmt: str, dims: Sequence[int], max_pixels: int | None, claim: str | None = None
) -> None:
    """Refuse a file whose header claims more pixel values than ``max_pixels``.

    ``dims`` are the claimed (pages,) height, width and (where more than one) channels; their
    product is what decoding would allocate, in values. ``claim`` describes them where
    ``h x w`` does not.
    """
    if max_pixels is None:
        return
    values = math.prod(int(d) for d in dims)
    if values > max_pixels:
        raise ImageDecodeError(
            f"{fmt.upper()} header claims {claim or ' x '.join(map(str, dims))} = {values:,} "
            f"pixel values, over the budget of {max_pixels:,} per image (a decompression "
            "bomb, or an image too large to decode whole; nothing was decoded). If the image "
            "is genuine, raise input.max_pixels"
        )


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


# Samples per pixel Pillow decodes a PNG colour type to (palette expands to RGB).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC
# share the range but are other segments.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI


def _png_claim(fh: IO[bytes]) -> tuple[int, int, int]:
    head = fh.read(26)
    fh.seek(0)
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageDecodeError("corrupt PNG: the IHDR header chunk is missing")
    width, height = struct.unpack(">II", head[16:24])
    return height, width, _PNG_SAMPLES.get(head[25], 4)


def _jpeg_claim(fh: IO[bytes]) -> tuple[int, int, int]:
    """Height, width and components from a JPEG's frame header, read by hand.

    Pillow checks its own limit only once it has opened the file; walking the marker
    segments (skipping stray bytes between them, as Pillow does) finds the claimed size
    first, reading a few bytes per segment.
    """
    fh.seek(2)
    try:
        while True:
            byte = fh.read(1)
            if not byte:
                break
            if byte != b"\xff":
                continue
            marker = fh.read(1)
            while marker == b"\xff":  # fill bytes
                marker = fh.read(1)
            if not marker:
                break
            m = marker[0]
            if m in _JPEG_STANDALONE or m == 0x00:
                continue
            if m in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
                break
            (length,) = struct.unpack(">H", fh.read(2))
            if m in _JPEG_SOF:
                _, height, width, components = struct.unpack(">BHHB", fh.read(6))
                return height, width, components
            if length < 2:
                break
            fh.seek(length - 2, io.SEEK_CUR)
    except struct.error:
        pass
    finally:
        fh.seek(0)
    raise ImageDecodeError("corrupt JPEG: no frame header (SOF marker) before the image data")


#: Serialises the moments Pillow's global bomb limit is raised (tasks run in threads).
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_open(fh: IO[bytes], fmt: str, max_pixels: int | None) -> Iterator[Image.Image]:
    """``Image.open`` with Pillow's bomb limit raised to ``max_pixels`` for this open only.

    Our own budget check has run by then, so Pillow's (lower by default: about 89 million
    pixels) must not refuse or warn about an image the budget allows. Pillow checks the
    limit in ``Image.open`` only, so it is raised just around that call and then restored;
    decoding happens outside the lock.
    """
    with _PIL_LIMIT_LOCK:
        before = Image.MAX_IMAGE_PIXELS
        raise_to = before is not None and max_pixels is not None and max_pixels > before
        if raise_to:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            im = Image.open(fh, formats=[fmt.upper()])
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(
                f"refused by Pillow as a possible decompression bomb ({exc}); if the image "
                "is genuine, raise input.max_pixels"
            ) from exc
        finally:
            if raise_to:
                Image.MAX_IMAGE_PIXELS = before
    with im:
        yield im


def _pil_claim(fh: IO[bytes], fmt: str, max_pixels: int | None) -> None:
    height, width, samples = _png_claim(fh) if fmt == "png" else _jpeg_claim(fh)
    _check_budget(fmt, (height, width, samples) if samples > 1 else (height, width), max_pixels)


def _header_pil(
    fh: IO[bytes], fmt: str, size: int, max_pixels: int | None
) -> tuple[tuple[int, ...], str]:
    _pil_claim(fh, fmt, max_pixels)
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
    with _pil_open(fh, fmt, max_pixels) as im:
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


# NewSubfileType bits of pages that describe another page rather than hold an image of
# their own: a reduced-resolution copy (preview, pyramid level) and a transparency mask.
_TIFF_AUXILIARY = 0b101


def _page_text(shape: Sequence[int], dtype: object) -> str:
    return f"{' x '.join(map(str, shape))} {dtype}"


def _check_tiff_pages(tif: tifffile.TiffFile, max_pixels: int | None) -> None:
    """Budget and page checks of a TIFF, from its IFDs alone (nothing is decoded).

    Raises
    ------
    ImageDecodeError
        If all pages together claim more than ``max_pixels`` values, the pages differ in
        shape or dtype (such a file is refused, never cut to its first page), or pages that
        agree are not all in the first series (tifffile would read the first one only).
    """
    pages = [p for p in tif.pages if not int(getattr(p, "subfiletype", 0)) & _TIFF_AUXILIARY]
    if not pages:
        raise ImageDecodeError("TIFF without an image page")
    kinds = [(tuple(p.shape), str(p.dtype)) for p in pages]
    first = kinds[0][0]
    if len(pages) == 1:
        _check_budget("tiff", first, max_pixels)
    elif all(shape == first for shape, _ in kinds):
        dims = (len(pages), *first)
        _check_budget(
            "tiff", dims, max_pixels, f"{len(pages)} pages of {' x '.join(map(str, first))}"
        )
    else:
        values = sum(math.prod(shape) for shape, _ in kinds)
        _check_budget("tiff", (values,), max_pixels, f"{len(pages)} pages of different sizes")
    other = next((i for i, k in enumerate(kinds) if k != kinds[0]), None)
    if other is not None:
        raise ImageDecodeError(
            f"multi-page TIFF whose pages differ: page 1 is {_page_text(*kinds[0])}, page "
            f"{other + 1} is {_page_text(*kinds[other])} ({len(pages)} pages); one page "
            "alone is not read as the image: split the pages into files of their own"
        )
    in_first = len(tif.series[0].pages)
    if len(pages) > in_first:
        raise ImageDecodeError(
            f"TIFF of {len(pages)} pages of {_page_text(*kinds[0])} stored as "
            f"{len(tif.series)} series; only single 2-D images are supported (the first "
            "page alone would be read): split stacks into one file per image"
        )


def _header_tiff(fh: IO[bytes], size: int, max_pixels: int | None) -> tuple[tuple[int, ...], str]:
    with tifffile.TiffFile(fh) as tif:
        _check_tiff_pages(tif, max_pixels)
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
            key = getattr(page, "keyframe", page)
            if key.compression == 1 and key.nbytes > size:
                # Uncompressed data cannot be smaller than the image it claims to be.
                raise ImageDecodeError(
                    f"truncated TIFF: the header claims {_page_text(key.shape, key.dtype)} "
                    f"uncompressed ({key.nbytes:,} bytes) in a {size:,}-byte file"
                )
        return shape, str(stored_dtype(np.dtype(series.dtype)))


def _fits_hdu(hdul: Any) -> tuple[int, Any]:
    for i, hdu in enumerate(hdul):
        if hdu.header.get("NAXIS", 0) >= 2:
            return i, hdu
    raise ImageDecodeError("FITS file has no image HDU with 2 or more axes")


def _fits_shape_dtype(
    header: Any, max_pixels: int | None = None
) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    naxis = int(header["NAXIS"])
    dims = [int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]  # FITS order: x, y, ...
    _check_budget("fits", dims[1::-1] + dims[2:], max_pixels)
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


def _header_fits(fh: IO[bytes], size: int, max_pixels: int | None) -> tuple[tuple[int, ...], str]:
    from astropy.io import fits  # imported here: astropy is slow to import and FITS is rare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns on odd headers; we check what we need
        with fits.open(fh, memmap=False, lazy_load_hdus=True) as hdul:
            index, hdu = _fits_hdu(hdul)
            shape, dtype, nbytes = _fits_shape_dtype(hdu.header, max_pixels)
            start = hdul.fileinfo(index)["datLoc"]
    if start + nbytes > size:
        raise ImageDecodeError(
            f"truncated FITS: the header claims {' x '.join(map(str, shape))} "
            f"(BITPIX {hdu.header['BITPIX']}), data bytes {start:,}..{start + nbytes:,}, "
            f"of a {size:,}-byte file"
        )
    return shape, str(dtype)


#: Errors decoders raise on malformed input beyond OSError/ValueError (a corrupt deflate
#: stream, a struct read past the end, a file that ends early).
_DECODER_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    IndexError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
)


def read_header(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read a file's header (and last bytes) and say whether and how it can be ingested.

    Parameters
    ----------
    path : str
        Local path or fsspec URL. A local path must be a regular file (or a symlink to one);
        it is checked before it is opened.
    max_pixels : int or None
        Pixel budget: the most values (height x width x channels, summed over the pages of a
        TIFF) the header may claim; checked before any decoder runs. None: no budget of ours
        (Pillow's own limit then stands, and a file it refuses gets a reason too).

    Returns
    -------
    ImageInfo
        With ``reason`` set when the file is not a regular file, empty, not an image,
        unsupported, over the pixel budget, a TIFF whose pages differ, or truncated.
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
                shape, dtype = _header_tiff(fh, size, max_pixels)
            elif fmt == "fits":
                shape, dtype = _header_fits(fh, size, max_pixels)
            else:
                shape, dtype = _header_pil(fh, fmt, size, max_pixels)
        return ImageInfo(path, format=fmt, shape=shape, dtype=dtype)
    except ImageDecodeError as exc:
        return ImageInfo(path, reason=str(exc))
    except Image.DecompressionBombError as exc:  # not a ValueError; never let it abort a run
        return ImageInfo(path, reason=f"refused by Pillow as a decompression bomb: {exc}")
    except (*_DECODER_ERRORS, UnidentifiedImageError) as exc:
        return ImageInfo(path, reason=f"unreadable: {type(exc).__name__}: {exc}")


def _read_pil(fh: IO[bytes], fmt: str, max_pixels: int | None) -> np.ndarray:
    # The file may have changed since its header was read: check its claim again.
    _pil_claim(fh, fmt, max_pixels)
    with _pil_open(fh, fmt, max_pixels) as im:
        target = _PIL_MODES[im.mode][0]
        return np.asarray(im.convert(target) if im.mode != target else im)


def _read_tiff(fh: IO[bytes], max_pixels: int | None) -> np.ndarray:
    with tifffile.TiffFile(fh) as tif:
        _check_tiff_pages(tif, max_pixels)
        series = tif.series[0]
        order, _ = _tiff_layout(series.axes, tuple(series.shape))
        arr = series.asarray()
    return np.transpose(arr, order)


def _read_fits(fh: IO[bytes], max_pixels: int | None) -> np.ndarray:
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(fh, memmap=False) as hdul:
            _, hdu = _fits_hdu(hdul)
            _fits_shape_dtype(hdu.header, max_pixels)  # before .data allocates
            arr = np.asarray(hdu.data)
    return np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr


def read_image(path: str, fmt: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image file.

    Parameters
    ----------
    path : str
        Local path or fsspec URL (a local path must be a regular file).
    fmt : {"jpeg", "png", "tiff", "fits"}
        The format :func:`read_header` found.
    max_pixels : int or None
        Pixel budget, checked again from the header before decoding (see
        :func:`read_header`).

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` or ``(height, width, channels)`` in the file's own dtype, cast to
        :func:`stored_dtype` of it.

    Raises
    ------
    ImageDecodeError
        If the file cannot be decoded, is over the budget or is not a regular file; the
        message says why.
    """
    try:
        with _open(path) as fh:
            if fmt == "tiff":
                arr = _read_tiff(fh, max_pixels)
            elif fmt == "fits":
                arr = _read_fits(fh, max_pixels)
            else:
                arr = _read_pil(fh, fmt, max_pixels)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused by Pillow as a decompression bomb: {exc}") from exc
    except _DECODER_ERRORS as exc:
        raise ImageDecodeError(f"cannot decode {fmt.upper()}: {exc}") from exc
    target = stored_dtype(arr.dtype)
    return arr if arr.dtype == target else arr.astype(target)
