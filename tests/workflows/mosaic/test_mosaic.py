"""Tiled source detection in mosaics against whole-image detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from astropy.io import fits
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import StoreError
from pipeline.imaging.detect import detect_blobs
from pipeline.io.mosaic import ingest_mosaic
from pipeline.io.spec import MosaicParams
from pipeline.synth.mosaic import hubble_deep_field_gray
from pipeline.workflows.mosaic.sources import detect_sources
from pipeline.workflows.mosaic.spec import SourceParams
from tests.io.test_mosaic import mosaic_field


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 700 x 900 mosaic as FITS (float32) with its truth."""
    return mosaic_field(tmp_path_factory)


@pytest.mark.parametrize("tile", [200, 256, 333])
def test_sources_equal_whole_image_detection(
    client: Client, tmp_path: Path, field: Path, tile: int
) -> None:
    store = RunStore(str(tmp_path / "run"))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(field), tile=tile))
    params = SourceParams(method="log", cutout_size=24, cutouts_per_chunk=50)
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


def test_detect_without_a_mosaic_is_refused(client: Client, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ingest_mosaic"):
        detect_sources(RunContext(RunStore(str(tmp_path / "run")), client), SourceParams())
