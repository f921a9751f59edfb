"""Behaviour of the synthetic galaxy-cutout generator that tests and demos rely on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from pipeline.synth import (
    GALAXY_CLASSES,
    TRUTH_COLUMNS,
    GalaxyFractions,
    generate_galaxies,
    load_truth,
    render_galaxy_image,
)

# Far above smoothed sky noise (sigma <= 5 counts before smoothing) but well below
# the galaxy cores, so the thresholded source is the galaxy body.
DETECT_ABOVE_SKY = 25.0


def _gray(image: np.ndarray) -> np.ndarray:
    return np.asarray(np.asarray(image, dtype=np.float64).mean(axis=2))


def _central_source(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky-subtracted smoothed light and the mask of the source nearest the centre."""
    gray = _gray(image)
    smooth = ndimage.gaussian_filter(gray, sigma=1.0)
    light = smooth - np.median(gray)
    labels, n = ndimage.label(light > DETECT_ABOVE_SKY)
    assert n >= 1, "no source detected at all"
    size = gray.shape[0]
    rows, cols = np.indices(gray.shape)
    dist = np.hypot(rows - (size - 1) / 2, cols - (size - 1) / 2)
    dist[labels == 0] = np.inf
    central = labels == labels.flat[int(np.argmin(dist))]
    return light, central


def _centroid(light: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(light.shape)
    w = np.where(mask, light, 0.0)
    return float((w * cols).sum() / w.sum()), float((w * rows).sum() / w.sum())


def _orientation_deg(light: np.ndarray, mask: np.ndarray) -> float:
    """Second-moment major-axis angle, CCW from +x with y pointing up the image."""
    x0, y0 = _centroid(light, mask)
    rows, cols = np.indices(light.shape)
    w = np.where(mask, light, 0.0)
    dx = cols - x0
    dy_up = y0 - rows
    cxx = (w * dx * dx).sum()
    cyy = (w * dy_up * dy_up).sum()
    cxy = (w * dx * dy_up).sum()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy)) % 180.0


def _angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def _read_jpeg(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --- determinism and files -------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = generate_galaxies(tmp_path / "a", count=6, seed=7, size=96)
    b = generate_galaxies(tmp_path / "b", count=6, seed=7, size=96)
    pd.testing.assert_frame_equal(a, b)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "truth.csv" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    generate_galaxies(tmp_path / "a", count=3, seed=1, size=96)
    generate_galaxies(tmp_path / "b", count=3, seed=2, size=96)
    for name in ("000000.jpg", "000001.jpg", "000002.jpg"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes()


def test_image_does_not_depend_on_count(tmp_path: Path) -> None:
    none = GalaxyFractions(overlap=0.0, stripe=0.0, no_galaxy=0.0)
    small = generate_galaxies(tmp_path / "a", count=2, seed=3, size=96, fractions=none)
    large = generate_galaxies(tmp_path / "b", count=5, seed=3, size=96, fractions=none)
    pd.testing.assert_frame_equal(small, large.iloc[:2])
    for name in small["file"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_files_and_truth_table_layout(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    frame = generate_galaxies(out, count=4, seed=0, size=80)
    assert list(frame.columns) == list(TRUTH_COLUMNS)
    assert list(frame["image_id"]) == ["000000", "000001", "000002", "000003"]
    assert list(frame["file"]) == [f"{i}.jpg" for i in frame["image_id"]]
    for name in frame["file"]:
        with Image.open(out / name) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB"
            assert im.size == (80, 80)
    pd.testing.assert_frame_equal(load_truth(out), frame)
    pd.testing.assert_frame_equal(load_truth(out / "truth.csv"), frame)


def test_fractions_are_honoured_exactly(tmp_path: Path) -> None:
    fractions = GalaxyFractions(overlap=0.2, stripe=0.15, no_galaxy=0.1)
    frame = generate_galaxies(tmp_path / "g", count=20, seed=5, size=64, fractions=fractions)
    on_disk = load_truth(tmp_path / "g")
    for table in (frame, on_disk):
        counts = table["kind"].value_counts().to_dict()
        assert counts == {"overlap": 4, "stripe": 3, "no_galaxy": 2, "normal": 11}
        normal = table["kind"] == "normal"
        assert (table.loc[normal, "expected_status"] == "kept").all()
        assert (table.loc[normal, "expected_reason"] == "").all()
        assert (table.loc[~normal, "expected_status"] == "rejected").all()
        assert (table.loc[~normal, "expected_reason"] == table.loc[~normal, "kind"]).all()
        no_gal = table["kind"] == "no_galaxy"
        assert (table.loc[no_gal, "galaxy_class"] == "none").all()
        assert table.loc[no_gal, ["x", "y", "angle_deg"]].isna().all().all()
        assert table.loc[~no_gal, "galaxy_class"].isin(GALAXY_CLASSES).all()
        assert table.loc[~no_gal, ["x", "y", "radius_px"]].notna().all().all()
    # Kinds are shuffled, not laid out in blocks.
    assert list(frame["kind"]) != sorted(frame["kind"])


def test_fraction_rounding_never_exceeds_count(tmp_path: Path) -> None:
    fractions = GalaxyFractions(overlap=0.5, stripe=0.5, no_galaxy=0.0)
    frame = generate_galaxies(tmp_path, count=3, seed=0, size=64, fractions=fractions)
    assert len(frame) == 3
    assert set(frame["kind"]) <= {"overlap", "stripe"}


# --- the image content agrees with the truth -------------------------------------


def test_galaxy_centroid_matches_truth_in_written_jpegs(tmp_path: Path) -> None:
    none = GalaxyFractions(overlap=0.0, stripe=0.0, no_galaxy=0.0)
    frame = generate_galaxies(tmp_path, count=12, seed=11, size=128, fractions=none)
    rows = zip(frame["file"], frame["x"].to_numpy(float), frame["y"].to_numpy(float), strict=True)
    for name, true_x, true_y in rows:
        light, central = _central_source(_read_jpeg(tmp_path / name))
        x, y = _centroid(light, central)
        assert math.hypot(x - true_x, y - true_y) < 1.5, name


@pytest.mark.parametrize("seed", range(12))
def test_elongated_orientation_follows_documented_convention(seed: int) -> None:
    rng = np.random.default_rng(seed)
    image, truth = render_galaxy_image(rng, size=256, galaxy_class="elongated", kind="normal")
    light, central = _central_source(image)
    x, y = _centroid(light, central)
    assert math.hypot(x - float(truth["x"]), y - float(truth["y"])) < 1.0
    measured = _orientation_deg(light, central)
    assert _angle_diff(measured, float(truth["angle_deg"])) < 3.0, (measured, truth)
    assert 0.6 <= float(truth["ellipticity"]) <= 0.85
    assert 0.0 <= float(truth["angle_deg"]) < 180.0


def test_angle_convention_is_counter_clockwise_with_y_up() -> None:
    # Find a galaxy tilted near 45 deg: its light must lie top-right / bottom-left.
    for seed in range(200):
        rng = np.random.default_rng(seed)
        image, truth = render_galaxy_image(rng, size=128, galaxy_class="elongated", kind="normal")
        if abs(float(truth["angle_deg"]) - 45.0) < 10.0:
            break
    else:  # pragma: no cover
        pytest.fail("no galaxy near 45 degrees")
    light, central = _central_source(image)
    rows, cols = np.indices(light.shape)
    w = np.where(central, light, 0.0)
    dx = cols - float(truth["x"])
    drow = rows - float(truth["y"])
    # Up-right (dx > 0, drow < 0) and down-left quadrants hold most of the light.
    along = w[(dx * drow) < 0].sum()
    across = w[(dx * drow) > 0].sum()
    assert along > 2 * across


@pytest.mark.parametrize("galaxy_class", GALAXY_CLASSES)
def test_rendered_image_shape_and_truth(galaxy_class: str) -> None:
    image, truth = render_galaxy_image(
        np.random.default_rng(0), size=100, galaxy_class=galaxy_class, kind="normal"
    )
    assert image.shape == (100, 100, 3)
    assert image.dtype == np.uint8
    assert truth["galaxy_class"] == galaxy_class
    assert truth["expected_status"] == "kept"
    assert truth["expected_reason"] == ""
    centre = 99 / 2
    assert math.hypot(float(truth["x"]) - centre, float(truth["y"]) - centre) <= 15 * 100 / 424
    assert 8 * 100 / 424 - 1e-9 <= float(truth["radius_px"]) <= 25 * 100 / 424 + 1e-9
    # Light sits where truth says: the galaxy centre is brighter than the sky.
    gray = _gray(image)
    assert gray[round(float(truth["y"])), round(float(truth["x"]))] > np.median(gray) + 50


NEAR_BLACK = 10


def _inside_truth_ellipse(truth: dict[str, str | float], shape: tuple[int, ...]) -> np.ndarray:
    """Pixels whose elliptical radius from the truth geometry is below ``radius_px``."""
    rows, cols = np.indices(shape[:2])
    angle = math.radians(float(truth["angle_deg"]))
    dx = cols - float(truth["x"])
    dy_up = float(truth["y"]) - rows
    u = dx * math.cos(angle) + dy_up * math.sin(angle)
    v = (dy_up * math.cos(angle) - dx * math.sin(angle)) / (1 - float(truth["ellipticity"]))
    return np.asarray(np.hypot(u, v) < float(truth["radius_px"]))


def _near_black(image: np.ndarray) -> np.ndarray:
    return np.asarray(image.max(axis=2) <= NEAR_BLACK)


@pytest.mark.parametrize("seed", range(9))
def test_stripe_kind_has_black_line_across_galaxy(seed: int) -> None:
    galaxy_class = GALAXY_CLASSES[seed % 3]
    size = 256
    striped, truth = render_galaxy_image(
        np.random.default_rng(seed), size=size, galaxy_class=galaxy_class, kind="stripe"
    )
    assert truth["expected_reason"] == "stripe"
    assert truth["expected_status"] == "rejected"
    # Near-black pixels lie inside the galaxy itself, where the light is bright.
    assert (_near_black(striped) & _inside_truth_ellipse(truth, striped.shape)).sum() >= 3

    # The same generator state without the stripe gives the clean scene, so the
    # stripe is exactly the changed pixels.
    clean, clean_truth = render_galaxy_image(
        np.random.default_rng(seed), size=size, galaxy_class=galaxy_class, kind="normal"
    )
    for key in ("x", "y", "angle_deg", "radius_px", "ellipticity", "galaxy_class"):
        assert clean_truth[key] == truth[key]
    changed = np.any(striped != clean, axis=2)
    assert striped[changed].max() <= NEAR_BLACK
    clean_light = _gray(clean) - np.median(_gray(clean))
    assert (changed & (clean_light > 40)).sum() >= 4, "stripe misses the bright galaxy"
    # One straight line running across the whole cutout.
    coords = np.argwhere(changed).astype(float)
    minor, major = np.linalg.eigvalsh(np.cov(coords.T))
    assert major > 100 * minor
    assert math.sqrt(12 * major) > 0.9 * size  # length of a uniform segment
    assert math.sqrt(12 * minor) < 3.5  # 1-3 px wide


@pytest.mark.parametrize("seed", range(9))
def test_normal_kind_has_no_black_pixels_on_galaxy(seed: int) -> None:
    image, truth = render_galaxy_image(
        np.random.default_rng(seed),
        size=256,
        galaxy_class=GALAXY_CLASSES[seed % 3],
        kind="normal",
    )
    inside = _inside_truth_ellipse(truth, image.shape)
    assert inside.sum() > 0
    assert not (_near_black(image) & inside).any()


@pytest.mark.parametrize("seed", range(6))
def test_no_galaxy_kind_has_no_bright_central_source(seed: int) -> None:
    size = 128
    image, truth = render_galaxy_image(
        np.random.default_rng(seed), size=size, galaxy_class="none", kind="no_galaxy"
    )
    assert truth["galaxy_class"] == "none"
    assert truth["expected_reason"] == "no_galaxy"
    assert all(math.isnan(float(truth[k])) for k in ("x", "y", "angle_deg", "radius_px"))
    gray = _gray(image)
    light = ndimage.gaussian_filter(gray, sigma=1.5) - np.median(gray)
    rows, cols = np.indices(gray.shape)
    # Radius reachable by a normal galaxy's centre plus its effective radius.
    centre_zone = np.hypot(rows - (size - 1) / 2, cols - (size - 1) / 2) < 40 * size / 424
    assert light[centre_zone].max() < 10
    # Field objects still exist elsewhere, so the cutout is not blank.
    assert gray.max() > np.median(gray) + 20


@pytest.mark.parametrize("seed", range(9))
def test_overlap_kind_adds_bright_galaxy_overlapping_central(seed: int) -> None:
    galaxy_class = GALAXY_CLASSES[seed % 3]
    size = 256
    blended, truth = render_galaxy_image(
        np.random.default_rng(seed), size=size, galaxy_class=galaxy_class, kind="overlap"
    )
    assert truth["expected_reason"] == "overlap"
    assert truth["expected_status"] == "rejected"
    # The same generator state without the companion gives the clean scene.
    clean, clean_truth = render_galaxy_image(
        np.random.default_rng(seed), size=size, galaxy_class=galaxy_class, kind="normal"
    )
    for key in ("x", "y", "angle_deg", "radius_px", "ellipticity", "galaxy_class"):
        assert clean_truth[key] == truth[key]
    companion = ndimage.gaussian_filter(_gray(blended) - _gray(clean), sigma=1.0)
    central = ndimage.gaussian_filter(_gray(clean) - np.median(_gray(clean)), sigma=1.0)
    # Bright: comparable to a galaxy, not a faint background smudge.
    assert companion.max() > 40
    # A separate galaxy: its peak is off the central galaxy's centre.
    row, col = np.unravel_index(int(np.argmax(companion)), companion.shape)
    assert math.hypot(col - float(truth["x"]), row - float(truth["y"])) >= 2.5
    # Overlapping: both galaxies are clearly visible in the same pixels.
    assert ((companion > DETECT_ABOVE_SKY) & (central > DETECT_ABOVE_SKY)).sum() >= 3
    # ... so that a detector sees one blended source holding both peaks.
    _, source = _central_source(blended)
    assert source[row, col]
    assert source[round(float(truth["y"])), round(float(truth["x"]))]


@pytest.mark.parametrize("seed", range(6))
def test_normal_central_source_is_single_galaxy(seed: int) -> None:
    image, truth = render_galaxy_image(
        np.random.default_rng(seed),
        size=256,
        galaxy_class=GALAXY_CLASSES[seed % 3],
        kind="normal",
    )
    light, central = _central_source(image)
    masked = np.where(central, light, 0.0)
    peaks = (masked == ndimage.maximum_filter(masked, size=5)) & (masked > 60)
    assert ndimage.label(peaks)[1] == 1
    # Stars and background galaxies stay outside the galaxy's visible disc.
    rows, cols = np.indices(light.shape)
    extent = np.hypot(cols - float(truth["x"]), rows - float(truth["y"]))[central].max()
    assert extent < 3 * float(truth["radius_px"])


# --- argument validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"overlap": -0.1}, r"overlap.*\[0, 1\].*-0\.1"),
        ({"stripe": 1.5}, r"stripe.*\[0, 1\].*1\.5"),
        ({"no_galaxy": float("nan")}, r"no_galaxy.*\[0, 1\].*nan"),
        ({"overlap": 0.6, "stripe": 0.6}, r"\[0, 1\].*1\.2"),
    ],
)
def test_invalid_fractions_raise_value_error(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GalaxyFractions(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count": 0}, r"count.*>= 1.*got 0"),
        ({"size": 32}, r"size.*>= 64.*got 32"),
        ({"seed": -1}, r"seed.*>= 0.*got -1"),
        ({"quality": 0}, r"quality.*\[1, 100\].*got 0"),
    ],
)
def test_invalid_generate_arguments_raise_value_error(
    tmp_path: Path, kwargs: dict[str, int], match: str
) -> None:
    args: dict[str, Any] = {"count": 2, "seed": 0, "size": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_galaxies(tmp_path / "out", **args)
    assert not list(tmp_path.glob("out/*.jpg"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 10}, r"size.*>= 64.*got 10"),
        ({"galaxy_class": "spiral"}, r"galaxy_class.*'spiral'"),
        ({"kind": "blurry"}, r"kind.*'blurry'"),
        ({"galaxy_class": "none", "kind": "normal"}, r"galaxy_class.*'none'"),
    ],
)
def test_invalid_render_arguments_raise_value_error(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"size": 64, "galaxy_class": "round", "kind": "normal", **kwargs}
    with pytest.raises(ValueError, match=match):
        render_galaxy_image(np.random.default_rng(0), **args)  # type: ignore[arg-type]
