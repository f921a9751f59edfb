"""Probing and decoding image files: every format round-trips; every bad file gets a reason."""

from __future__ import annotations

import math
import os
import re
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


# -- hostile files: non-regular files, pixel budget, multi-page TIFF ----------------------------


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe.png")
    return d / "pipe.png"


def _directory(d: Path) -> Path:
    (d / "dir.png").mkdir()
    return d / "dir.png"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_fifo, "FIFO (named pipe)"),
        (_directory, "directory"),
        (lambda d: Path(os.devnull), "character device"),
    ],
    ids=["fifo", "directory", "device"],
)
def test_only_regular_files_are_opened(
    tmp_path: Path, make: Callable[[Path], Path], kind: str
) -> None:
    path = str(make(tmp_path))
    info = read_header(path)  # a FIFO would block here if it were opened
    assert info.reason.startswith(f"not a regular file but a {kind}"), info.reason
    assert path in info.reason
    with pytest.raises(ImageDecodeError, match=re.escape(f"not a regular file but a {kind}")):
        read_image(path, "png")


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    a = smooth_image(RNG, (9, 7), np.uint8)
    target = write_image(tmp_path / "real" / "a.png", a)
    (tmp_path / "link.png").symlink_to(target)
    info = read_header(str(tmp_path / "link.png"))
    assert info.ok, info.reason
    np.testing.assert_array_equal(read_image(str(tmp_path / "link.png"), "png"), a)


@pytest.mark.parametrize(
    ("suffix", "shape", "claim"),
    [
        (".png", (30, 40, 3), "PNG header claims 30 x 40 x 3 = 3,600"),
        (".png", (30, 40), "PNG header claims 30 x 40 = 1,200"),
        (".jpg", (30, 40, 3), "JPEG header claims 30 x 40 x 3 = 3,600"),
        (".tif", (30, 40), "TIFF header claims 30 x 40 = 1,200"),
        (".fits", (30, 40), "FITS header claims 30 x 40 = 1,200"),
    ],
)
def test_the_budget_is_checked_from_the_header_of_every_format(
    tmp_path: Path, suffix: str, shape: tuple[int, ...], claim: str
) -> None:
    a = smooth_image(RNG, shape, np.uint8)
    path = tmp_path / f"a{suffix}"
    if suffix == ".fits":
        fits.PrimaryHDU(a).writeto(path)
    else:
        write_image(path, a)
    assert read_header(str(path), max_pixels=math.prod(shape)).ok
    info = read_header(str(path), max_pixels=1000)
    assert claim in info.reason, info.reason
    assert "over the budget of 1,000 per image" in info.reason
    assert "input.max_pixels" in info.reason
    # Decoding checks the header again: a file changed since its header was read is refused.
    with pytest.raises(ImageDecodeError, match="over the budget of 1,000"):
        read_image(str(path), sniff_format(path.read_bytes()[:16]) or "", max_pixels=1000)


def test_the_jpeg_frame_header_is_found_past_app_segments_and_in_progressive_files(
    tmp_path: Path,
) -> None:
    a = smooth_image(RNG, (33, 47, 3), np.uint8)
    p = tmp_path / "p.jpg"
    exif = Image.Exif()
    exif[0x010E] = "x" * 3000  # a large APP1 segment before the frame header
    Image.fromarray(a).save(p, progressive=True, exif=exif, icc_profile=bytes(5000))
    info = read_header(str(p))
    assert (info.shape, info.format) == ((33, 47, 3), "jpeg"), info.reason
    assert "33 x 47 x 3" in read_header(str(p), max_pixels=10).reason


def _tiff_pages(d: Path, pages: list[np.ndarray], separate: bool = True) -> Path:
    p = d / "pages.tif"
    if separate:
        for i, page in enumerate(pages):
            tifffile.imwrite(p, page, append=i > 0)
    else:
        tifffile.imwrite(p, np.stack(pages))
    return p


@pytest.mark.parametrize(
    ("pages", "separate", "reason"),
    [
        (
            [np.zeros((8, 8), np.uint8), np.zeros((4, 6), np.uint8)],
            True,
            "multi-page TIFF whose pages differ: page 1 is 8 x 8 uint8, page 2 is 4 x 6 uint8",
        ),
        (
            [np.zeros((8, 8), np.uint8)] * 2 + [np.zeros((8, 8), np.float32)],
            True,
            "page 1 is 8 x 8 uint8, page 3 is 8 x 8 float32 (3 pages)",
        ),
        # Pages that agree keep today's behaviour: a stack is not one image...
        ([np.zeros((8, 8), np.uint8)] * 5, False, "only single 2-D images"),
        # ... nor are same-size pages written as separate series (never page 1 alone).
        ([np.zeros((8, 8), np.uint8)] * 2, True, "stored as 2 series"),
    ],
    ids=["shape", "dtype", "stack", "series"],
)
def test_a_multi_page_tiff_is_never_cut_to_its_first_page(
    tmp_path: Path, pages: list[np.ndarray], separate: bool, reason: str
) -> None:
    p = _tiff_pages(tmp_path, pages, separate)
    info = read_header(str(p))
    assert reason in info.reason, info.reason
    with pytest.raises(ImageDecodeError, match="TIFF"):
        read_image(str(p), "tiff")


def test_a_reduced_resolution_preview_page_is_not_a_second_image(tmp_path: Path) -> None:
    a = smooth_image(RNG, (16, 16), np.uint8)
    p = tmp_path / "preview.tif"
    tifffile.imwrite(p, a)
    tifffile.imwrite(p, a[::4, ::4], append=True, subfiletype=1)  # FILETYPE.REDUCEDIMAGE
    info = read_header(str(p))
    assert info.ok and info.shape == (16, 16), info.reason
    np.testing.assert_array_equal(read_image(str(p), "tiff"), a)


def test_pillows_bomb_error_is_a_reason_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no budget of ours, Pillow's own limit stands; its refusal becomes a reason."""
    p = write_image(tmp_path / "a.png", smooth_image(RNG, (20, 20), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 400 pixels is over twice this
    info = read_header(str(p), max_pixels=None)
    assert "decompression bomb" in info.reason, info.reason
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        read_image(str(p), "png", max_pixels=None)
    assert read_header(str(p)).ok  # our budget (the default) raises Pillow's for the open
    assert Image.MAX_IMAGE_PIXELS == 10
