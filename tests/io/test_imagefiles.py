"""Probing and decoding image files: every format round-trips; every bad file gets a reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from PIL import Image

from pipeline.errors import ImageDecodeError
from pipeline.io.imagefiles import read_header, read_image, sniff_format
from tests.conftest import smooth_image, write_image

RNG = np.random.default_rng(42)


@pytest.mark.parametrize(
    ("suffix", "shape", "dtype"),
    [
        (".png", (17, 23), np.uint8),
        (".png", (17, 23, 3), np.uint8),
        (".png", (17, 23, 4), np.uint8),
        (".png", (17, 23), np.uint16),
        (".tif", (17, 23), np.uint8),
        (".tif", (17, 23, 3), np.uint16),
        (".tif", (17, 23), np.float32),
    ],
)
def test_lossless_formats_round_trip_exactly(
    tmp_path: Path, suffix: str, shape: tuple[int, ...], dtype: type
) -> None:
    a = smooth_image(RNG, shape, dtype)
    p = write_image(tmp_path / f"a{suffix}", a)
    info = read_header(str(p))
    assert info.ok, info.reason
    assert info.shape == shape
    assert info.dtype == np.dtype(dtype).name
    out = read_image(str(p), info.format)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, a)


def test_jpeg_decodes_like_pillow(tmp_path: Path) -> None:
    p = write_image(tmp_path / "a.jpg", smooth_image(RNG, (30, 40, 3), np.uint8))
    info = read_header(str(p))
    assert (info.format, info.shape, info.dtype) == ("jpeg", (30, 40, 3), "uint8")
    np.testing.assert_array_equal(read_image(str(p), "jpeg"), np.asarray(Image.open(p)))


def test_tiff_planar_channels_come_last(tmp_path: Path) -> None:
    a = smooth_image(RNG, (12, 10, 3), np.uint8)
    p = tmp_path / "planar.tif"
    tifffile.imwrite(p, np.moveaxis(a, -1, 0), photometric="rgb", planarconfig="separate")
    info = read_header(str(p))
    assert info.shape == (12, 10, 3)
    np.testing.assert_array_equal(read_image(str(p), "tiff"), a)


@pytest.mark.parametrize(
    ("data", "expected_dtype"),
    [
        (np.arange(12 * 9, dtype=np.float32).reshape(12, 9) / 7, np.float32),
        (np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 600, np.uint16),
        (np.arange(12 * 9, dtype=np.int16).reshape(12, 9) - 50, np.float32),
    ],
)
def test_fits_values_and_dtype(tmp_path: Path, data: np.ndarray, expected_dtype: type) -> None:
    p = tmp_path / "a.fits"
    fits.PrimaryHDU(data).writeto(p)
    info = read_header(str(p))
    assert info.ok, info.reason
    assert (info.format, info.shape, info.dtype) == ("fits", (12, 9), np.dtype(expected_dtype).name)
    out = read_image(str(p), "fits")
    assert out.dtype == expected_dtype
    np.testing.assert_array_equal(out, data.astype(expected_dtype))


def _truncated(src: Callable[[Path], Path], keep: float) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        good = src(d)
        data = good.read_bytes()
        bad = d / f"trunc{good.suffix}"
        bad.write_bytes(data[: int(len(data) * keep)])
        return bad

    return make


def _jpeg(d: Path) -> Path:
    return write_image(d / "g.jpg", smooth_image(RNG, (64, 64, 3), np.uint8))


def _png(d: Path) -> Path:
    return write_image(d / "g.png", smooth_image(RNG, (64, 64, 3), np.uint8))


def _tiff(d: Path) -> Path:
    return write_image(d / "g.tif", smooth_image(RNG, (64, 64), np.uint16))


def _fits(d: Path) -> Path:
    p = d / "g.fits"
    fits.PrimaryHDU(np.ones((64, 64), np.float32)).writeto(p)
    return p


def _png16_rgb(d: Path) -> Path:
    # Pillow cannot write 16-bit RGB PNG; build one by hand with zlib.
    import struct
    import zlib

    h, w = 4, 5
    raw = b"".join(b"\x00" + bytes(w * 6) for _ in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    p = d / "rgb16.png"
    p.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return p


def _zero_bytes(d: Path) -> Path:
    (d / "zero.jpg").write_bytes(b"")
    return d / "zero.jpg"


def _text_named_jpg(d: Path) -> Path:
    (d / "t.jpg").write_text("hello, not an image")
    return d / "t.jpg"


def _stack_tiff(d: Path) -> Path:
    p = d / "stack.tif"
    tifffile.imwrite(p, np.zeros((5, 8, 8), np.uint8), metadata={"axes": "ZYX"})
    return p


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_zero_bytes, "empty file (0 bytes)"),
        (_text_named_jpg, "not an image"),
        (_truncated(_jpeg, 0.5), "truncated JPEG"),
        (_truncated(_png, 0.6), "truncated PNG"),
        (_truncated(_tiff, 0.5), "truncated TIFF"),
        (_truncated(_fits, 0.6), "truncated FITS"),
        (_png16_rgb, "16-bit colour PNG"),
        (_stack_tiff, "only single 2-D images"),
    ],
    ids=["zero-bytes", "text", "jpeg", "png", "tiff", "fits", "png16-rgb", "tiff-stack"],
)
def test_bad_files_get_a_reason_not_a_crash(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    info = read_header(str(path))
    assert not info.ok
    assert reason in info.reason


def test_decode_error_is_a_pipeline_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.png"
    good = _png(tmp_path).read_bytes()
    # Corrupt the compressed data but keep the IEND chunk: the header check passes, decoding fails.
    middle = len(good) // 2
    p.write_bytes(good[:middle] + bytes(200) + good[middle + 200 :])
    assert read_header(str(p)).ok
    with pytest.raises(ImageDecodeError, match="cannot decode PNG"):
        read_image(str(p), "png")


def test_sniff_ignores_the_suffix() -> None:
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_format(b"SIMPLE  =                    T") == "fits"
    assert sniff_format(b"GIF89a") is None
