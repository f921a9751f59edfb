"""The ``preprocess`` stage over a collection equals a serial loop of the per-image steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import xarray as xr
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import StoreError
from pipeline.io.ingest import IngestParams, ingest_images
from pipeline.synth.galaxies import generate_galaxies, load_truth
from pipeline.workflows.galaxy.catalog import CATALOG_COLUMNS, TASK, build_catalog
from pipeline.workflows.galaxy.preprocess import GalaxyParams, analyse_galaxy

SMALL = GalaxyParams(cutout_size=32)


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 generated 128 px cutouts of every kind, as JPEGs."""
    out = tmp_path_factory.mktemp("galaxies")
    generate_galaxies(out, count=20, seed=3, size=128)
    return out


def _ingest(client: Client, store: RunStore, folder: Path, chunk_mb: float = 0.3) -> None:
    # 0.3 MB chunks hold 6 of the 128 x 128 RGB images: 20 images make 4 chunks, the last
    # one short, so chunk boundaries cut through the collection.
    ingest_images(RunContext(store, client), IngestParams(sources=[str(folder)], chunk_mb=chunk_mb))


def test_stage_equals_a_serial_loop(client: Client, tmp_path: Path, galaxies: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    _ingest(client, store, galaxies)
    counts = build_catalog(RunContext(store, client), SMALL)
    ds = xr.open_zarr(store.zarr_url)
    assert ds["images"].encoding["chunks"][0] == 6
    catalog = read_table(store, "catalog")
    assert list(catalog.columns) == list(CATALOG_COLUMNS)
    images = ds["images"].values
    cutouts = ds["cutouts"].values
    assert cutouts.shape == (20, 32, 32) and cutouts.dtype == np.float32
    for i, image_id in enumerate(ds["image_id"].values):
        expected = analyse_galaxy(images[i], SMALL)
        row = catalog.iloc[i]
        assert row.image_id == str(image_id)
        assert (row.status, row.reason) == (expected.status, expected.reason)
        for col in ("x", "y", "sigma", "radius", "angle_deg", "stripe_score"):
            assert np.array_equal(row[col], getattr(expected, col), equal_nan=True), col
        if expected.cutout is None:
            assert not cutouts[i].any()
        else:
            assert np.array_equal(cutouts[i], expected.cutout.astype(np.float32))
    assert counts["images"] == 20
    assert counts["kept"] + counts["rejected"] == 20
    assert counts["kept"] == int((catalog.status == "kept").sum())


def test_rejections_follow_the_truth_on_generated_images(
    client: Client, tmp_path: Path, galaxies: Path
) -> None:
    store = RunStore(str(tmp_path / "run"))
    _ingest(client, store, galaxies)
    build_catalog(RunContext(store, client), GalaxyParams(cutout_size=32, window=20))
    truth = load_truth(galaxies).set_index("image_id")
    catalog = read_table(store, "catalog").set_index("image_id")
    agree = (catalog.reason == truth.loc[catalog.index, "expected_reason"]).mean()
    assert agree >= 0.8


def test_resume_redoes_only_the_missing_chunk(
    client: Client, tmp_path: Path, galaxies: Path
) -> None:
    store = RunStore(str(tmp_path / "run"))
    _ingest(client, store, galaxies)
    build_catalog(RunContext(store, client), SMALL)
    first = read_table(store, "catalog")
    cutouts = xr.open_zarr(store.zarr_url)["cutouts"].values
    # As if the task of chunk 2 had died before its marker: the rerun writes only it.
    store.remove(f"_progress/{TASK}/{2:08d}.json")
    markers = {i: tmp_path / "run" / "_progress" / TASK / f"{i:08d}.json" for i in (0, 1, 3)}
    before = {i: p.stat().st_mtime_ns for i, p in markers.items()}
    build_catalog(RunContext(store, client), SMALL)
    after = {i: p.stat().st_mtime_ns for i, p in markers.items()}
    assert before == after
    assert set(store.done_markers(TASK)) == {0, 1, 2, 3}
    pd.testing.assert_frame_equal(read_table(store, "catalog"), first)
    assert np.array_equal(xr.open_zarr(store.zarr_url)["cutouts"].values, cutouts)


def test_new_parameters_replace_the_cutouts(client: Client, tmp_path: Path, galaxies: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    _ingest(client, store, galaxies)
    build_catalog(RunContext(store, client), SMALL)
    build_catalog(RunContext(store, client), GalaxyParams(cutout_size=16))
    ds = xr.open_zarr(store.zarr_url)
    assert ds["cutouts"].shape == (20, 16, 16)
    assert ds["images"].shape[0] == 20  # the collection is untouched


def test_nan_bearing_float_tiffs_are_rejected_not_fatal(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rows, cols = np.mgrid[:96, :96]
    galaxy = (0.05 + 0.8 * np.exp(-((rows - 48) ** 2 + (cols - 47) ** 2 / 4) / 50)).astype(
        np.float32
    )
    broken = galaxy.copy()
    broken[10, 10] = np.nan
    tifffile.imwrite(folder / "a.tif", galaxy)
    tifffile.imwrite(folder / "b.tif", broken)
    tifffile.imwrite(folder / "c.tif", np.zeros_like(galaxy))
    store = RunStore(str(tmp_path / "run"))
    _ingest(client, store, folder)
    counts = build_catalog(RunContext(store, client), SMALL)
    catalog = read_table(store, "catalog").set_index("image_id")
    assert catalog.loc["a", "status"] == "kept"
    assert catalog.loc["b", "reason"] == "non_finite"
    assert catalog.loc["c", "reason"] == "no_galaxy"
    assert counts["rejected_non_finite"] == 1


def test_a_store_without_a_collection_is_refused(client: Client, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ingest"):
        build_catalog(RunContext(RunStore(str(tmp_path / "empty")), client), SMALL)
