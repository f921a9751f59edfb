"""Mosaic ingest against whole-file reads: tiled, resumable, colour to gray, bad files named."""

from __future__ import annotations

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
from pipeline.io.mosaic import check_mosaic, ingest_mosaic, read_rows
from pipeline.io.spec import MosaicParams
from pipeline.synth.mosaic import generate_mosaic


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
    assert counts == {"height": 700, "width": 900, "tiles": 12, "bands_written": 3}
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


def test_missing_or_bad_sources_stop_before_work(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(InputError, match="does not exist"):
        check_mosaic(store, MosaicParams(source=str(tmp_path / "nope.fits")))
    (tmp_path / "bad.fits").write_text("not an image")
    with pytest.raises(InputError, match=r"bad\.fits"):
        check_mosaic(store, MosaicParams(source=str(tmp_path / "bad.fits")))
    assert not store.exists("store.zarr")
