"""Behaviour of the synthetic survey-mosaic generator that tests and demos rely on."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from astropy.io import fits
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.feature import blob_log

from pipeline.io.wcs import pixel_scale_arcsec, pixel_to_sky, read_wcs, sky_to_pixel
from pipeline.synth.galaxies import GALAXY_CLASSES
from pipeline.synth.mosaic import (
    MOSAIC_CRVAL_DEG,
    MOSAIC_NOISE_SIGMA,
    MOSAIC_SKY_LEVEL,
    MOSAIC_TRUTH_COLUMNS,
    generate_mosaic,
    hubble_deep_field_gray,
    load_mosaic_truth,
    render_mosaic,
)

# Non-square, and not a multiple of any tile size used below, so that swapped axes
# and edge tiles show up.
HEIGHT, WIDTH = 300, 410
# A crowded field so that a small image still holds enough sources to test.
DENSE: dict[str, Any] = {"density": 400.0, "star_fraction": 0.5}


def _assemble(height: int, width: int, **kwargs: Any) -> np.ndarray:
    """The whole image from render_mosaic, checking the tiles tile it exactly once."""
    image = np.full((height, width), np.nan, dtype=np.float32)
    tile = kwargs.get("tile", 1024)
    expected_origins = [(r, c) for r in range(0, height, tile) for c in range(0, width, tile)]
    origins = []
    for row0, col0, pixels in render_mosaic(height=height, width=width, **kwargs):
        assert pixels.dtype == np.float32
        assert pixels.shape == (min(tile, height - row0), min(tile, width - col0))
        image[row0 : row0 + pixels.shape[0], col0 : col0 + pixels.shape[1]] = pixels
        origins.append((row0, col0))
    assert origins == expected_origins  # row-major, as TIFF tiles are stored
    return image


def _isolated(truth: pd.DataFrame, shape: tuple[int, int], min_sep: float) -> np.ndarray:
    """Mask of sources with no other source centre within ``min_sep`` px, off the edge."""
    xy = truth[["x", "y"]].to_numpy()
    dist, _ = cKDTree(xy).query(xy, k=2)
    height, width = shape
    inside = (xy[:, 0] > 6) & (xy[:, 0] < width - 7) & (xy[:, 1] > 6) & (xy[:, 1] < height - 7)
    return np.asarray((dist[:, 1] > min_sep) & inside)


@pytest.fixture(scope="module")
def dense_field(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, pd.DataFrame]:
    path = tmp_path_factory.mktemp("dense") / "field.fits"
    truth = generate_mosaic(path, height=512, width=640, seed=0, **DENSE)
    return np.asarray(fits.getdata(path), dtype=np.float64), truth


# --- determinism and tiling -----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".fits", ".tif"])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, suffix: str) -> None:
    kwargs: dict[str, Any] = {"height": HEIGHT, "width": WIDTH, "tile": 128, **DENSE}
    generate_mosaic(tmp_path / "a" / f"m{suffix}", seed=7, **kwargs)
    generate_mosaic(tmp_path / "b" / f"m{suffix}", seed=7, **kwargs)
    generate_mosaic(tmp_path / "c" / f"m{suffix}", seed=8, **kwargs)
    a, b, c = ((tmp_path / d / f"m{suffix}").read_bytes() for d in "abc")
    assert a == b
    assert a != c
    truth_a, truth_b = ((tmp_path / d / "m_truth.csv").read_bytes() for d in "ab")
    assert truth_a == truth_b


def test_pixels_do_not_depend_on_tile_size(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"seed": 3, **DENSE}
    reference = _assemble(HEIGHT, WIDTH, tile=64, **kwargs)
    assert not np.isnan(reference).any()
    for tile in (100, 1024):
        assert np.array_equal(_assemble(HEIGHT, WIDTH, tile=tile, **kwargs), reference)

    # The files follow suit: FITS bytes do not change, TIFF pixels do not change.
    for tile in (64, 1024):
        generate_mosaic(tmp_path / f"t{tile}.fits", height=HEIGHT, width=WIDTH, tile=tile, **kwargs)
        generate_mosaic(tmp_path / f"t{tile}.tif", height=HEIGHT, width=WIDTH, tile=tile, **kwargs)
    assert (tmp_path / "t64.fits").read_bytes() == (tmp_path / "t1024.fits").read_bytes()
    assert np.array_equal(
        tifffile.imread(tmp_path / "t64.tif"), tifffile.imread(tmp_path / "t1024.tif")
    )


def test_large_mosaic_streams_without_allocating_the_image() -> None:
    tiles = render_mosaic(height=20_000, width=20_000, seed=0, tile=64)
    tracemalloc.start()
    try:
        row0, col0, first = next(tiles)
        row0_b, col0_b, _ = next(tiles)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (row0, col0, first.shape) == (0, 0, (64, 64))
    assert (row0_b, col0_b) == (0, 64)
    # One band of 64 full rows (10 MB in float64) plus stamps, far below the 1.6 GB
    # that the float32 image would take.
    assert peak < 64e6


# --- truth ------------------------------------------------------------------------------


def test_truth_table_is_written_next_to_the_image_and_reads_back(tmp_path: Path) -> None:
    image = tmp_path / "out" / "field.tiff"
    truth = generate_mosaic(image, height=HEIGHT, width=WIDTH, seed=1, tile=64, **DENSE)
    csv_path = tmp_path / "out" / "field_truth.csv"
    assert csv_path.is_file()
    assert list(truth.columns) == list(MOSAIC_TRUTH_COLUMNS)
    for loaded in (load_mosaic_truth(image), load_mosaic_truth(csv_path)):
        pd.testing.assert_frame_equal(loaded, truth)

    # Poisson count around density * area, with 5 sigma of slack.
    expected = DENSE["density"] * HEIGHT * WIDTH / 1e6
    assert abs(len(truth) - expected) < 5 * math.sqrt(expected)
    assert truth["source_id"].tolist() == [f"{i:06d}" for i in range(len(truth))]
    assert set(truth["kind"]) == {"galaxy", "star"}
    stars = truth[truth["kind"] == "star"]
    galaxies = truth[truth["kind"] == "galaxy"]
    assert (stars["galaxy_class"] == "star").all()
    assert set(galaxies["galaxy_class"]) <= set(GALAXY_CLASSES)

    assert truth["x"].between(0, WIDTH - 1).all()
    assert truth["y"].between(0, HEIGHT - 1).all()
    assert truth["peak"].between(0.1, 0.9).all()
    assert stars["sigma"].between(1.0, 2.0).all()
    assert stars["angle_deg"].isna().all()
    assert (stars["ellipticity"] == 0).all()
    r_e_per_sigma = math.sqrt(2 * math.log(2))
    np.testing.assert_allclose(stars["r_e"], r_e_per_sigma * stars["sigma"])
    assert galaxies["r_e"].between(2.0, 12.0).all()
    assert galaxies["angle_deg"].between(0, 180, inclusive="left").all()
    np.testing.assert_allclose(
        galaxies["sigma"], galaxies["r_e"] * np.sqrt(1 - galaxies["ellipticity"]) / r_e_per_sigma
    )


def test_empty_field_gives_empty_truth_table(tmp_path: Path) -> None:
    truth = generate_mosaic(tmp_path / "sky.fits", height=64, width=64, seed=0, density=1e-3)
    assert truth.empty
    loaded = load_mosaic_truth(tmp_path / "sky.fits")
    assert list(loaded.columns) == list(MOSAIC_TRUTH_COLUMNS)
    assert loaded.empty
    sky = np.asarray(fits.getdata(tmp_path / "sky.fits"), dtype=np.float64)
    assert abs(float(sky.mean()) - MOSAIC_SKY_LEVEL) < 0.002
    assert abs(float(sky.std()) - MOSAIC_NOISE_SIGMA) < 0.001


def test_truth_positions_and_peaks_match_the_image(
    dense_field: tuple[np.ndarray, pd.DataFrame],
) -> None:
    image, truth = dense_field
    smooth = ndimage.gaussian_filter(image, 1.0)
    isolated = truth[_isolated(truth, image.shape, min_sep=40.0)]
    assert (isolated["kind"] == "star").sum() >= 5
    assert (isolated["kind"] == "galaxy").sum() >= 8
    for src in isolated.to_dict("records"):
        row, col = round(src["y"]), round(src["x"])
        # Stars on the raw image; galaxies lightly smoothed, as their flat discs let
        # noise move the brightest raw pixel.
        light = image if src["kind"] == "star" else smooth
        window = light[row - 3 : row + 4, col - 3 : col + 4]
        dr, dc = np.unravel_index(int(np.argmax(window)), window.shape)
        assert math.hypot(row - 3 + dr - src["y"], col - 3 + dc - src["x"]) <= 1.5, src["source_id"]
        if src["kind"] == "star":
            # The pixel nearest the centre holds sky + the PSF sampled there.
            d2 = (row - src["y"]) ** 2 + (col - src["x"]) ** 2
            expected = MOSAIC_SKY_LEVEL + src["peak"] * math.exp(-d2 / (2 * src["sigma"] ** 2))
            assert abs(image[row, col] - expected) < 5 * MOSAIC_NOISE_SIGMA, src["source_id"]


def test_galaxy_angles_follow_the_y_up_convention(
    dense_field: tuple[np.ndarray, pd.DataFrame],
) -> None:
    image, truth = dense_field
    light = ndimage.gaussian_filter(image, 1.0) - MOSAIC_SKY_LEVEL
    isolated = truth[_isolated(truth, image.shape, min_sep=40.0)]
    # Clearly flattened and well above the noise; the round n=4 bulge of a mildly
    # flattened disc_bulge galaxy can dominate the moments of its faint disc.
    flat = isolated[
        (isolated["ellipticity"] >= 0.4) & (isolated["r_e"] >= 3) & (isolated["peak"] >= 0.2)
    ]
    assert len(flat) >= 2
    for src in flat.to_dict("records"):
        half = math.ceil(3 * src["r_e"])
        r0, c0 = max(0, round(src["y"]) - half), max(0, round(src["x"]) - half)
        window = light[r0 : round(src["y"]) + half + 1, c0 : round(src["x"]) + half + 1]
        # Second moments of the connected light around the centre, so that a
        # neighbour's wings in the window do not pull the axis.
        labels, _ = ndimage.label(window > 3 * MOSAIC_NOISE_SIGMA)
        own = labels == labels[round(src["y"]) - r0, round(src["x"]) - c0]
        weight = np.where(own, window, 0.0)
        rows, cols = np.indices(weight.shape)
        dx = cols + c0 - src["x"]
        dy_up = src["y"] - (rows + r0)
        angle = 0.5 * math.atan2(
            2 * (weight * dx * dy_up).sum(), (weight * (dx * dx - dy_up * dy_up)).sum()
        )
        diff = abs(math.degrees(angle) % 180 - src["angle_deg"]) % 180
        assert min(diff, 180 - diff) < 10, src["source_id"]


def test_most_sources_separated_but_a_few_blended(tmp_path: Path) -> None:
    truth = generate_mosaic(tmp_path / "m.fits", height=1500, width=1500, seed=2, density=120)
    xy = truth[["x", "y"]].to_numpy()
    r_e = truth["r_e"].to_numpy()
    dist, idx = cKDTree(xy).query(xy, k=2)
    # Nearest-neighbour separation in units of the summed half-light radii.
    sep = dist[:, 1] / (r_e + r_e[idx[:, 1]])
    # Placement keeps centres 2.5 (r_e_i + r_e_j) apart except for deliberate blends
    # (both members of a pair count here).
    assert np.median(sep) > 4
    blended = np.mean(sep < 2.5)
    assert 0.02 < blended < 0.25


def test_blob_log_finds_most_sources(tmp_path: Path) -> None:
    path = tmp_path / "m.fits"
    truth = generate_mosaic(path, height=768, width=768, seed=4, density=150)
    image = np.asarray(fits.getdata(path), dtype=np.float64)
    blobs = blob_log(image, min_sigma=1, max_sigma=15, threshold=0.05)
    dist, _ = cKDTree(blobs[:, :2]).query(truth[["y", "x"]].to_numpy())
    recall = np.mean(dist <= np.maximum(3.0, truth["r_e"].to_numpy()))
    assert recall > 0.8
    # Noise alone gives no detections: every blob lies on a source.
    to_truth, _ = cKDTree(truth[["y", "x"]].to_numpy()).query(blobs[:, :2])
    assert np.all(to_truth < 20)


# --- files --------------------------------------------------------------------------------


def test_fits_and_tiff_hold_the_same_image(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"height": HEIGHT, "width": WIDTH, "seed": 5, "tile": 128, **DENSE}
    truth_fits = generate_mosaic(tmp_path / "field.fits", **kwargs)
    truth_tiff = generate_mosaic(tmp_path / "field.tif", **kwargs)
    pd.testing.assert_frame_equal(truth_fits, truth_tiff)

    with fits.open(tmp_path / "field.fits") as hdul:
        header = hdul[0].header
        data = np.asarray(hdul[0].data)
    assert data.shape == (HEIGHT, WIDTH)
    assert data.dtype.kind == "f" and data.dtype.itemsize == 4
    assert header["SKYLEVEL"] == MOSAIC_SKY_LEVEL
    assert header["NSOURCES"] == len(truth_fits)
    # Row order in the file is the numpy row order: the rendered image, exactly.
    assert np.array_equal(data, _assemble(HEIGHT, WIDTH, seed=5, tile=128, **DENSE))
    assert data.min() >= 0.0 and data.max() <= 1.0
    assert abs(float(np.median(data)) - MOSAIC_SKY_LEVEL) < 0.005

    with tifffile.TiffFile(tmp_path / "field.tif") as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert page.is_tiled
        assert (page.tilelength, page.tilewidth) == (128, 128)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        counts = page.asarray()
    assert counts.shape == (HEIGHT, WIDTH)
    assert counts.dtype == np.uint16
    # uint16 counts are round(value * 65535).
    assert np.abs(counts / 65535.0 - data).max() <= 0.5 / 65535 + 1e-7


def test_fits_mosaic_has_a_tan_wcs_and_the_same_pixels_without(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"height": HEIGHT, "width": WIDTH, "seed": 6, "tile": 128, **DENSE}
    truth = generate_mosaic(tmp_path / "sky.fits", **kwargs)
    generate_mosaic(tmp_path / "plain.fits", wcs=False, **kwargs)
    with fits.open(tmp_path / "sky.fits") as hdul:
        header, data = hdul[0].header, np.asarray(hdul[0].data)
    assert np.array_equal(data, fits.getdata(tmp_path / "plain.fits"))
    assert "CTYPE1" not in fits.getheader(tmp_path / "plain.fits")

    wcs, description = read_wcs(header.tostring(), source="sky.fits")
    assert wcs is not None, description
    assert "RA---TAN" in description and "ICRS" in description
    assert pixel_scale_arcsec(wcs) == pytest.approx(0.2, rel=1e-9)
    assert header["CD1_1"] < 0 < header["CD2_2"]  # east to the left, north up (FITS view)
    # The image centre, in 0-based numpy pixels, is the reference position.
    ra0, dec0 = pixel_to_sky(wcs, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)
    assert (float(ra0), float(dec0)) == pytest.approx(MOSAIC_CRVAL_DEG, abs=1e-10)

    x, y = truth["x"].to_numpy(), truth["y"].to_numpy()
    ra, dec = pixel_to_sky(wcs, x, y)
    back_x, back_y = sky_to_pixel(wcs, ra, dec)
    np.testing.assert_allclose(back_x, x, atol=1e-8, rtol=0)
    np.testing.assert_allclose(back_y, y, atol=1e-8, rtol=0)
    # Neighbouring truth positions are 0.2" per pixel apart on the sky.
    sep_px = np.hypot(x[1] - x[0], y[1] - y[0])
    cos_dec = math.cos(math.radians(MOSAIC_CRVAL_DEG[1]))
    sep_arcsec = 3600 * np.hypot((ra[1] - ra[0]) * cos_dec, dec[1] - dec[0])
    assert sep_arcsec == pytest.approx(0.2 * sep_px, rel=1e-4)


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"height": 63}, "height"),
        ({"height": 100.0}, "height"),
        ({"width": True}, "width"),
        ({"width": 10}, "width"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"density": 0}, "density"),
        ({"density": -5.0}, "density"),
        ({"density": float("nan")}, "density"),
        ({"density": float("inf")}, "density"),
        ({"density": "60"}, "density"),
        ({"star_fraction": -0.1}, "star_fraction"),
        ({"star_fraction": 1.5}, "star_fraction"),
        ({"star_fraction": float("nan")}, "star_fraction"),
        ({"tile": 32}, "tile"),
        ({"tile": 128.0}, "tile"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    tmp_path: Path, overrides: dict[str, Any], name: str
) -> None:
    kwargs: dict[str, Any] = {"height": 64, "width": 64, "seed": 0, **overrides}
    with pytest.raises(ValueError, match=name):
        render_mosaic(**kwargs)
    with pytest.raises(ValueError, match=name):
        generate_mosaic(tmp_path / "m.fits", **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("file_name", ["m.png", "m.fit", "m"])
def test_unknown_suffix_is_rejected(tmp_path: Path, file_name: str) -> None:
    suffix = Path(file_name).suffix
    with pytest.raises(ValueError, match=rf"\.fits.*\.tiff.*got '{suffix}'"):
        generate_mosaic(tmp_path / file_name, height=64, width=64, seed=0)
    assert not list(tmp_path.iterdir())


def test_tiff_tile_must_be_a_multiple_of_16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tile must be a multiple of 16"):
        generate_mosaic(tmp_path / "m.tif", height=64, width=64, seed=0, tile=100)
    # FITS has no tiles, so any tile >= 64 is fine there.
    generate_mosaic(tmp_path / "m.fits", height=64, width=64, seed=0, tile=100)


# --- real survey image ------------------------------------------------------------------


def test_hubble_deep_field_gray_is_a_dark_sky_image_in_unit_range() -> None:
    image = hubble_deep_field_gray()
    assert image.shape == (872, 1000)
    assert image.dtype == np.float64
    assert image.min() >= 0.0 and image.max() <= 1.0
    # Mostly dark sky with bright sources, like a survey field.
    assert np.median(image) < 0.1 < image.max()
