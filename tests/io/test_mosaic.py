"""Mosaic ingest against whole-file reads: tiled, resumable, colour to gray, bad files named."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from astropy.io import fits
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.errors import InputError
from pipeline.io.mosaic import check_mosaic, ingest_mosaic, mosaic_header, read_rows
from pipeline.io.spec import MosaicParams
from pipeline.synth.mosaic import generate_mosaic
from tests.conftest import fits_claiming, png_claiming


def mosaic_field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 700 x 900 mosaic as FITS (float32) with its truth."""
    path = tmp_path_factory.mktemp("mosaic") / "field.fits"
    generate_mosaic(path, height=700, width=900, seed=5, density=80)
    return path


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 700 x 900 mosaic as FITS (float32) with its truth."""
    return mosaic_field(tmp_path_factory)


@pytest.mark.parametrize("suffix", [".fits", ".tif"])
def test_read_rows_equals_the_whole_file(field: Path, tmp_path: Path, suffix: str) -> None:
    whole = np.asarray(fits.getdata(field))
    path = field
    if suffix == ".tif":
        path = tmp_path / "f.tif"
        tifffile.imwrite(path, (whole * 65535).astype(np.uint16), tile=(256, 256))
        whole = tifffile.imread(path)
    fmt = "fits" if suffix == ".fits" else "tiff"
    assert np.array_equal(read_rows(str(path), fmt, 123, 401), whole[123:401])


def test_ingest_writes_the_file_tiled(client: Client, tmp_path: Path, field: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    counts = ingest_mosaic(RunContext(store, client), MosaicParams(source=str(field), tile=256))
    ds = xr.open_zarr(store.zarr_url)
    assert ds["mosaic"].dims == ("mosaic_y", "mosaic_x")
    assert ds["mosaic"].encoding["chunks"] == (256, 256)
    assert np.array_equal(ds["mosaic"].values, fits.getdata(field))
    assert counts == {"height": 700, "width": 900, "tiles": 12, "bands_written": 3, "hdu": 0}
    # The same mosaic again: nothing to write.
    assert (
        ingest_mosaic(RunContext(store, client), MosaicParams(source=str(field), tile=256))[
            "bands_written"
        ]
        == 0
    )


def test_colour_image_becomes_gray(client: Client, tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (130, 150, 3), dtype=np.uint8)
    path = tmp_path / "c.png"
    from PIL import Image

    Image.fromarray(rgb).save(path)
    store = RunStore(str(tmp_path / "run"))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(path), tile=64))
    mosaic = xr.open_zarr(store.zarr_url)["mosaic"].values
    from skimage.color import rgb2gray

    assert mosaic.dtype == np.uint8
    assert np.abs(mosaic.astype(float) - rgb2gray(rgb) * 255).max() <= 0.5 + 1e-9
    assert mosaic_header(store) is None  # not a FITS file: no header


def test_missing_or_bad_sources_stop_before_work(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(InputError, match="does not exist"):
        check_mosaic(store, MosaicParams(source=str(tmp_path / "nope.fits")))
    (tmp_path / "bad.fits").write_text("not an image")
    with pytest.raises(InputError, match=r"bad\.fits"):
        check_mosaic(store, MosaicParams(source=str(tmp_path / "bad.fits")))
    assert not store.exists("store.zarr")


def _tiff_claiming(path: Path, side: int, compression: str | None) -> Path:
    """An 8 x 8 TIFF in one strip whose tags are patched to claim ``side`` x ``side``."""
    tifffile.imwrite(
        path, np.zeros((8, 8), np.uint8), compression=compression, metadata=None, rowsperstrip=8
    )
    with tifffile.TiffFile(path, mode="r+") as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            page.tags[tag].overwrite(side)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: fits_claiming(d / "m.fits", 100_000, 100_000),
            r"truncated FITS: the header claims 100000 x 100000 \(BITPIX 8\), data bytes "
            r"2,880\.\.10,000,002,880, of a 2,880-byte file",
        ),
        (
            lambda d: _tiff_claiming(d / "m.tif", 60_000, None),
            r"truncated TIFF: the header claims 60000 x 60000 uint8 uncompressed "
            r"\(3,600,000,000 bytes\)",
        ),
        (
            lambda d: _tiff_claiming(d / "m.tif", 60_000, "zlib"),
            r"strips or tiles of 60000 x 60000 = 3,600,000,000 values, each decoded whole.*"
            r"rewrite it tiled",
        ),
        (
            lambda d: png_claiming(d / "m.png", 100_000, 100_000),
            r"claims 100000 x 100000 = 10,000,000,000 pixel values.*decoded whole.*"
            r"tiled TIFF or a FITS",
        ),
    ],
    ids=["fits-absurd-dims", "tiff-uncompressed-absurd-dims", "tiff-one-huge-strip", "png-bomb"],
)
def test_a_header_claiming_absurd_dims_is_an_input_error_before_work(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(InputError, match=message):
        check_mosaic(store, MosaicParams(source=str(path)))
    assert not store.exists("store.zarr")


def test_a_large_banded_mosaic_is_not_held_to_the_per_image_budget(tmp_path: Path) -> None:
    """A local FITS larger than the ingest's budget is fine: it is read band by band."""
    path = tmp_path / "big.fits"
    side = 16_400  # 16400**2 > 2**28
    fits_claiming(path, side, side)
    with path.open("r+b") as fh:  # the data, sparse: the header now tells the truth
        fh.truncate(2880 + -(-(side * side) // 2880) * 2880)
    check_mosaic(RunStore(str(tmp_path / "run")), MosaicParams(source=str(path)))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_mosaic_is_refused_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "m.fits")
    with pytest.raises(InputError, match="not a regular file"):
        check_mosaic(RunStore(str(tmp_path / "run")), MosaicParams(source=str(tmp_path / "m.fits")))


# --- FITS: which HDU, its header, physical values -----------------------------------------


def _ingest(client: Client, tmp_path: Path, path: Path, tile: int = 64) -> tuple[RunStore, dict]:
    store = RunStore(str(tmp_path / "run"))
    counts = ingest_mosaic(RunContext(store, client), MosaicParams(source=str(path), tile=tile))
    return store, counts


def _mosaic(store: RunStore) -> np.ndarray:
    return np.asarray(xr.open_zarr(store.zarr_url)["mosaic"].values)


@pytest.mark.parametrize("table_first", [False, True], ids=["image-ext", "table-then-image"])
def test_an_image_in_an_extension_is_ingested_and_named(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture, table_first: bool
) -> None:
    """A multi-extension file (primary HDU empty) is read from its first image extension."""
    data = np.random.default_rng(1).random((150, 130)).astype(np.float32)
    sci = fits.ImageHDU(data, name="SCI")
    sci.header["CTYPE1"], sci.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    # A table extension also has NAXIS = 2; it is not the image.
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.zeros(3))], name="CAT")
    hdus = [fits.PrimaryHDU(), *([table] if table_first else []), sci]
    path = tmp_path / "mef.fits"
    fits.HDUList(hdus).writeto(path)
    index = len(hdus) - 1

    with caplog.at_level(logging.INFO, logger="pipeline.io.mosaic"):
        store, counts = _ingest(client, tmp_path, path)
    assert counts["hdu"] == index
    assert (counts["height"], counts["width"]) == (150, 130)
    assert np.array_equal(_mosaic(store), data)
    assert f"primary HDU of {path} holds no image; reading extension {index} ('SCI')" in caplog.text
    attrs = store.open_array("mosaic", mode="r").attrs
    assert attrs["fits_hdu"] == {"index": index, "extname": "SCI"}
    text = mosaic_header(store)
    assert text is not None
    header = fits.Header.fromstring(text)
    assert header["EXTNAME"] == "SCI" and header["CTYPE1"] == "RA---TAN"


def test_primary_hdu_is_recorded_with_no_extname(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "p.fits"
    fits.PrimaryHDU(np.ones((70, 80), np.float32)).writeto(path)
    store, counts = _ingest(client, tmp_path, path)
    assert counts["hdu"] == 0
    assert store.open_array("mosaic", mode="r").attrs["fits_hdu"] == {"index": 0, "extname": None}
    text = mosaic_header(store)
    assert text is not None and fits.Header.fromstring(text)["NAXIS1"] == 80


def test_bscale_and_bzero_give_physical_values(client: Client, tmp_path: Path) -> None:
    raw = np.random.default_rng(2).integers(-32768, 32767, (100, 90), dtype=np.int16, endpoint=True)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 100.0  # written as given, raw stays raw
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    store, _ = _ingest(client, tmp_path, path)
    mosaic = _mosaic(store)
    assert mosaic.dtype == np.float32
    assert np.array_equal(mosaic, raw.astype(np.float64) * 0.5 + 100.0)
    assert np.array_equal(read_rows(str(path), "fits", 10, 20), mosaic[10:20])


@pytest.mark.parametrize(
    ("bzero", "blank"),
    [(0, -999), (32768, 7232)],
    ids=["int16", "uint16"],
)
def test_blank_pixels_become_nan(client: Client, tmp_path: Path, bzero: int, blank: int) -> None:
    """BLANK (a stored integer) marks undefined pixels: NaN, not a value to detect."""
    raw = np.random.default_rng(3).integers(0, 3000, (120, 100)).astype(np.int16)
    raw[40:60, 10:30] = blank
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BZERO"], hdu.header["BSCALE"], hdu.header["BLANK"] = bzero, 1, blank
    path = tmp_path / "blank.fits"
    hdu.writeto(path)
    store, _ = _ingest(client, tmp_path, path)
    mosaic = _mosaic(store)
    assert mosaic.dtype == np.float32  # uint16 cannot hold NaN
    assert np.array_equal(np.isnan(mosaic), raw == blank)
    good = raw != blank
    assert np.array_equal(mosaic[good], raw[good].astype(np.float64) + bzero)


def test_unscaled_uint16_stays_uint16(client: Client, tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 65536, (80, 70)).astype(np.uint16)
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(data).writeto(path)  # BITPIX 16, BZERO 32768
    store, _ = _ingest(client, tmp_path, path)
    mosaic = _mosaic(store)
    assert mosaic.dtype == np.uint16
    assert np.array_equal(mosaic, data)


def test_a_nan_region_in_float_data_survives(client: Client, tmp_path: Path) -> None:
    data = np.random.default_rng(5).random((200, 150)).astype(np.float32)
    data[:30] = np.nan  # an edge outside the survey's footprint
    data[100:140, 60:90] = np.nan  # a masked star
    path = tmp_path / "nan.fits"
    fits.PrimaryHDU(data).writeto(path)
    store, _ = _ingest(client, tmp_path, path)
    mosaic = _mosaic(store)
    assert np.array_equal(np.isnan(mosaic), np.isnan(data))
    assert np.array_equal(mosaic, data, equal_nan=True)


def test_a_three_plane_fits_becomes_gray(client: Client, tmp_path: Path) -> None:
    """NAXIS3 <= 4 planes are colour: rows are cut along y, not along the planes."""
    from skimage.color import rgb2gray

    rgb = np.random.default_rng(6).integers(0, 256, (90, 110, 3), dtype=np.uint8)
    path = tmp_path / "rgb.fits"
    fits.PrimaryHDU(np.moveaxis(rgb, -1, 0)).writeto(path)
    store, counts = _ingest(client, tmp_path, path)
    mosaic = _mosaic(store)
    assert (counts["height"], counts["width"]) == (90, 110)
    assert mosaic.dtype == np.uint8
    assert np.abs(mosaic.astype(float) - rgb2gray(rgb) * 255).max() <= 0.5 + 1e-9
