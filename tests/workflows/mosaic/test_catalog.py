"""The SEP catalog stage: tiled over a cluster, equal to SEP on the whole image, with sky
coordinates, a FITS table, cross-matching, resuming and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import InputError, StoreError
from pipeline.imaging.extraction import extract_whole
from pipeline.imaging.spec import ExtractParams
from pipeline.io.mosaic import ingest_mosaic
from pipeline.io.spec import MosaicParams
from pipeline.io.wcs import read_wcs, sky_to_pixel
from pipeline.synth.mosaic import generate_mosaic
from pipeline.workflows.mosaic.catalog import EXTRACT_TASK
from pipeline.workflows.mosaic.matching import match_sources
from pipeline.workflows.mosaic.sources import detect_sources
from pipeline.workflows.mosaic.spec import MatchParams, SourceParams

# A small halo, so tiles grow it and re-measure objects here as they do on survey fields.
SEP = ExtractParams(halo=8, phot_apertures=(4.0, 10.0))


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 640 x 800 FITS mosaic with a TAN WCS and its truth, dense enough for
    blends and sources cut by every tile boundary."""
    path = tmp_path_factory.mktemp("sep") / "field.fits"
    generate_mosaic(path, height=640, width=800, seed=11, density=320)
    return path


def _run(client: Client, root: Path, source: Path, tile: int, **sep: object) -> RunStore:
    store = RunStore(str(root / "run"))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(source), tile=tile))
    params = SourceParams(sep=SEP.model_copy(update=sep), cutout_size=24, cutouts_per_chunk=64)
    detect_sources(RunContext(store, client), params)
    return store


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["y", "x"]).reset_index(drop=True)


@pytest.mark.parametrize("tile", [128, 200])
def test_tiled_catalog_equals_sep_on_the_whole_image(
    client: Client, tmp_path: Path, field: Path, tile: int
) -> None:
    store = _run(client, tmp_path, field, tile)
    got = _sorted(read_table(store, "sources"))
    whole = _sorted(extract_whole(np.asarray(fits.getdata(field), dtype=np.float32), SEP))
    assert len(whole) > 100
    assert len(got) == len(whole)
    assert (whole["flags"] & 2).any(), "the field has deblended sources"
    for col in whole.columns:
        if whole[col].dtype.kind in "iu":
            assert np.array_equal(got[col].to_numpy(), whole[col].to_numpy()), col
        else:
            np.testing.assert_allclose(got[col], whole[col], rtol=1e-6, atol=1e-9, err_msg=col)
    # Each source belongs to the tile whose core holds its centroid pixel.
    iy, ix = np.floor(got.y + 0.5).astype(int), np.floor(got.x + 0.5).astype(int)
    assert got.tile.tolist() == [f"r{r // tile}c{c // tile}" for r, c in zip(iy, ix, strict=True)]
    np.testing.assert_allclose(got.x_image, got.x + 1)
    # No MAGZERO in the header: zero point 0.
    pos = got.flux_auto > 0
    np.testing.assert_allclose(got.mag_auto[pos], -2.5 * np.log10(got.flux_auto[pos]))


def test_catalog_has_sky_coordinates_and_a_fits_table(
    client: Client, tmp_path: Path, field: Path
) -> None:
    store = _run(client, tmp_path, field, 256)
    src = read_table(store, "sources")
    wcs, text = read_wcs(fits.getheader(field).tostring())
    assert wcs is not None and "0.2 arcsec" in text
    x, y = sky_to_pixel(wcs, src.ra.to_numpy(), src.dec.to_numpy())
    np.testing.assert_allclose(x, src.x, atol=1e-6)
    np.testing.assert_allclose(y, src.y, atol=1e-6)
    table = Table.read(store.path("tables/sources.fits"), hdu="SOURCES")
    assert len(table) == len(src)
    assert str(table["ra"].unit) == "deg"
    np.testing.assert_array_equal(np.asarray(table["flux_auto"]), src.flux_auto.to_numpy())
    assert [str(v) for v in table["image_id"]] == src.image_id.tolist()
    meta = store.read_json("tables/sources_meta.json")
    assert meta["pixel_scale_arcsec"] == pytest.approx(0.2)


def test_match_against_the_truth(client: Client, tmp_path: Path, field: Path) -> None:
    store = _run(client, tmp_path, field, 256)
    counts = match_sources(RunContext(store, client), MatchParams())
    assert counts["recall"] > 0.95
    assert counts["precision"] > 0.98
    summary = store.read_json("tables/source_matches.json")
    assert summary["frame"] == "pixel"  # the truth has pixel positions only
    bins = read_table(store, "source_matches")
    assert bins.n_reference.sum() == summary["n_reference"]
    # The same reference on the sky (ra/dec through the header's WCS) matches the same
    # sources within the same radius (2 px = 0.4 arcsec).
    from pipeline.io.wcs import pixel_to_sky

    truth = pd.read_csv(field.with_name("field_truth.csv"))
    wcs, _ = read_wcs(fits.getheader(field).tostring())
    assert wcs is not None
    ra, dec = pixel_to_sky(wcs, truth.x.to_numpy(), truth.y.to_numpy())
    sky_ref = tmp_path / "sky.csv"
    pd.DataFrame({"ra": ra, "dec": dec, "mag": -2.5 * np.log10(truth.peak)}).to_csv(sky_ref)
    on_sky = match_sources(RunContext(store, client), MatchParams(reference=str(sky_ref)))
    assert store.read_json("tables/source_matches.json")["frame"] == "sky"
    assert on_sky["matched"] == counts["matched"]


def test_match_needs_a_reference(client: Client, tmp_path: Path, field: Path) -> None:
    lonely = tmp_path / "lonely.fits"
    lonely.write_bytes(field.read_bytes())  # no truth table beside it
    store = _run(client, tmp_path, lonely, 256)
    with pytest.raises(InputError, match="no `reference` given"):
        match_sources(RunContext(store, client), MatchParams())


def test_a_killed_run_resumes_by_tile(client: Client, tmp_path: Path, field: Path) -> None:
    store = _run(client, tmp_path, field, 200)
    first = read_table(store, "sources")
    store.remove(f"_progress/{EXTRACT_TASK}/00000003.json")
    seen: list[tuple[str, int, int]] = []
    params = SourceParams(sep=SEP, cutout_size=24, cutouts_per_chunk=64)
    detect_sources(RunContext(store, client, progress=lambda *a: seen.append(a)), params)
    assert max(t for label, _, t in seen if label == "extract") == 1
    assert all(label != "sky" for label, _, _ in seen)
    pd.testing.assert_frame_equal(read_table(store, "sources"), first)


def test_blank_regions_are_masked_not_detected(client: Client, tmp_path: Path, field: Path) -> None:
    data = np.asarray(fits.getdata(field), dtype=np.float32).copy()
    data[100:300, 150:420] = np.nan  # a blank stripe between survey exposures
    path = tmp_path / "blank.fits"
    fits.writeto(path, data, fits.getheader(field))
    store = _run(client, tmp_path, path, 256)
    src = read_table(store, "sources")
    inside = (src.y > 102) & (src.y < 297) & (src.x > 152) & (src.x < 417)
    assert not inside.any()
    assert len(src) > 100
    assert store.open_array("sky_mesh", mode="r").attrs["n_filled"] > 0


def test_unparseable_wcs_warns_and_keeps_pixels(
    client: Client, tmp_path: Path, field: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = fits.getheader(field)
    header["CTYPE1"] = "RA---XXX"
    path = tmp_path / "badwcs.fits"
    fits.writeto(path, np.asarray(fits.getdata(field)), header)
    with caplog.at_level(logging.WARNING):
        store = _run(client, tmp_path, path, 256)
    assert any("cannot be parsed" in r.getMessage() for r in caplog.records)
    src = read_table(store, "sources")
    assert len(src) > 100 and src.ra.isna().all()
    meta = store.read_json("tables/sources_meta.json")
    assert "pixel coordinates only" in meta["wcs"]


def test_blob_catalog_is_not_matched(client: Client, tmp_path: Path, field: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    ingest_mosaic(RunContext(store, client), MosaicParams(source=str(field), tile=256))
    detect_sources(RunContext(store, client), SourceParams(method="log", cutout_size=16))
    assert "sigma" in read_table(store, "sources").columns
    with pytest.raises(StoreError, match="method: sep"):
        match_sources(RunContext(store, client), MatchParams())


def _section(store: RunStore) -> str:
    from pipeline.core.manifest import load_manifest
    from pipeline.report.context import ReportContext
    from pipeline.report.figures import plain_text
    from pipeline.report.spec import ReportParams
    from pipeline.workflows.mosaic.report import sources_section

    with plain_text():
        html = sources_section(ReportContext(store, load_manifest(store), ReportParams()))
    assert html is not None
    return html


def test_report_shows_the_catalog_and_the_matches(
    client: Client, tmp_path: Path, field: Path
) -> None:
    store = _run(client, tmp_path, field, 256)
    match_sources(RunContext(store, client), MatchParams())
    html = _section(store)
    assert "celestial WCS RA---TAN" in html and "tables/sources.fits" in html
    assert "Completeness and purity" in html and "recall" in html
    for name in ("mosaic", "magnitudes", "completeness", "background", "deblended"):
        assert store.exists(f"report/{name}.png"), name


def test_report_says_when_there_are_no_sky_coordinates(
    client: Client, tmp_path: Path, field: Path
) -> None:
    path = tmp_path / "nowcs.fits"
    fits.writeto(path, np.asarray(fits.getdata(field)))  # a bare header
    store = _run(client, tmp_path, path, 256)
    assert "no WCS in the FITS header: pixel coordinates only" in _section(store)


def test_cutouts_are_centred_and_turned_by_theta(
    client: Client, tmp_path: Path, field: Path
) -> None:
    import xarray as xr

    store = _run(client, tmp_path, field, 256)
    src = read_table(store, "sources")
    cuts = xr.open_zarr(store.zarr_url)["cutouts"]
    assert [str(v) for v in cuts["image_id"].values] == src.image_id.tolist()
    long = np.flatnonzero((src.elongation > 2.0).to_numpy() & (src["flags"] == 0).to_numpy())
    assert long.size >= 5
    yy, xx = np.mgrid[0:24, 0:24] - 11.5
    centred = aligned = 0
    for k in long:
        img = np.asarray(cuts[k]) - np.median(cuts[k])
        img = np.where(img > 0.3 * img.max(), img, 0.0)  # the source's bright part
        w = img / img.sum()
        cy, cx = (w * yy).sum(), (w * xx).sum()
        centred += abs(cy) < 1.0 and abs(cx) < 1.0  # on SEP's centroid
        # The light's major axis lies along +x: more spread in x than in y.
        aligned += (w * (xx - cx) ** 2).sum() > 2.0 * (w * (yy - cy) ** 2).sum()
    # A bright neighbour inside a cutout can pull its light off the axis: most, not all.
    assert centred >= 0.85 * long.size
    assert aligned >= 0.85 * long.size
