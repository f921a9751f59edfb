"""Mosaic ingest and tiled source detection against whole-image reads and detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import xarray as xr
from astropy.io import fits
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import InputError, StoreError
from pipeline.imaging.detect import detect_blobs
from pipeline.io.mosaic import check_mosaic, ingest_mosaic, read_rows
from pipeline.io.spec import MosaicParams
from pipeline.synth.mosaic import generate_mosaic, hubble_deep_field_gray
from pipeline.workflows.mosaic.sources import detect_sources
from pipeline.workflows.mosaic.spec import SourceParams


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 700 x 900 mosaic as FITS (float32) with its truth."""
    path = tmp_path_factory.mktemp("mosaic") / "field.fits"
    generate_mosaic(path, height=700, width=900, seed=5, density=80)
    return path


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


@pytest.mark.parametrize("tile", [200, 256, 333])
def test_sources_equal_whole_image_detection(
    client: Client, tmp_path: Path, field: Path, tile: int
) -> None:
    store = RunStore(str(tmp_path / "run"))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(field), tile=tile))
    params = SourceParams(cutout_size=24, cutouts_per_chunk=50)
    counts = detect_sources(RunContext(store, client), params)
    sources = read_table(store, "sources")
    whole = detect_blobs(np.asarray(fits.getdata(field)), "log", threshold=0.05, max_sigma=15)
    assert len(whole) > 30
    key = ["y", "x", "sigma"]
    got = sources[key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, whole.sort_values(key).reset_index(drop=True))
    # Each source belongs to the tile whose core holds its centre.
    expected_tile = [
        f"r{int(y) // tile}c{int(x) // tile}" for y, x in zip(sources.y, sources.x, strict=True)
    ]
    assert sources.tile.tolist() == expected_tile
    ds = xr.open_zarr(store.zarr_url)
    assert ds["cutouts"].shape == (len(sources), 24, 24)
    assert [str(v) for v in ds["image_id"].values] == sources.image_id.tolist()
    assert counts["sources"] == len(sources)


def test_hubble_deep_field_through_the_stages(client: Client, tmp_path: Path) -> None:
    gray = hubble_deep_field_gray().astype(np.float32)
    path = tmp_path / "hdf.fits"
    fits.writeto(path, gray)
    store = RunStore(str(tmp_path / "run"))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(path), tile=300))
    params = SourceParams(method="doh", threshold=0.004, max_sigma=30, cutout_size=16)
    detect_sources(RunContext(store, client), params)
    sources = read_table(store, "sources")
    whole = detect_blobs(gray, "doh", threshold=0.004, max_sigma=30)
    key = ["y", "x", "sigma"]
    assert np.array_equal(
        sources[key].sort_values(key).to_numpy(), whole.sort_values(key).to_numpy()
    )


def test_mosaic_cutouts_cannot_share_a_collection_store(
    client: Client, tmp_path: Path, field: Path
) -> None:
    from pipeline.io.ingest import IngestParams, ingest_images
    from tests.conftest import make_folder

    make_folder(tmp_path / "imgs", 3)
    store = RunStore(str(tmp_path / "run"))
    ingest_images(RunContext(store, client), IngestParams(sources=[str(tmp_path / "imgs")]))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(field), tile=256))
    with pytest.raises(StoreError, match="store of its own"):
        detect_sources(RunContext(store, client), SourceParams())


def test_missing_or_bad_sources_stop_before_work(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(InputError, match="does not exist"):
        check_mosaic(store, MosaicParams(source=str(tmp_path / "nope.fits")))
    (tmp_path / "bad.fits").write_text("not an image")
    with pytest.raises(InputError, match=r"bad\.fits"):
        check_mosaic(store, MosaicParams(source=str(tmp_path / "bad.fits")))
    assert not store.exists("store.zarr")


def test_detect_without_a_mosaic_is_refused(client: Client, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ingest_mosaic"):
        detect_sources(RunContext(RunStore(str(tmp_path / "run")), client), SourceParams())
