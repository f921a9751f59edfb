"""Spheroid measures: CellProfiler's names, regionprops' values, known shapes, units."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse
from skimage.measure import regionprops

from pipeline.errors import ParameterError
from pipeline.workflows.plates.measure import (
    AREA_COLUMNS,
    FEATURE_COLUMNS,
    LENGTH_COLUMNS,
    measure_spheroid,
)
from pipeline.workflows.plates.segment_spec import FeatureParams


def _disc(radius: float, size: int = 256, centre: tuple[int, int] = (128, 128)) -> np.ndarray:
    labels = np.zeros((size, size), np.uint8)
    labels[disk(centre, radius, shape=labels.shape)] = 1
    return labels


def _textured(size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536, (size, size), dtype=np.uint16)


def test_columns_are_cellprofiler_names_in_a_fixed_order() -> None:
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    prefixes = {name.split("_", 1)[0] for name in FEATURE_COLUMNS}
    assert prefixes == {"AreaShape", "Intensity", "Location", "Debris"}
    for name in ("AreaShape_FormFactor", "Intensity_IntegratedIntensity", "Location_Center_X"):
        assert name in FEATURE_COLUMNS
    assert set(LENGTH_COLUMNS) <= set(FEATURE_COLUMNS)
    assert set(AREA_COLUMNS) <= set(FEATURE_COLUMNS)
    out = measure_spheroid(_textured(), _disc(40))
    assert tuple(out) == FEATURE_COLUMNS
    assert all(isinstance(v, float) for v in out.values())


def test_measures_equal_regionprops_on_the_same_mask() -> None:
    labels = np.zeros((200, 220), np.uint8)
    labels[ellipse(100, 110, 60, 35, rotation=0.4, shape=labels.shape)] = 1
    labels[30:40, 20:80] = 1  # a second piece: all label-1 pixels are one object
    image = _textured(256)[:200, :220]
    out = measure_spheroid(image, labels)
    ref = regionprops((labels == 1).astype(np.uint8), intensity_image=image / 65535.0)[0]
    values = (image / 65535.0)[labels == 1]
    expected = {
        "AreaShape_Area": ref.area,
        "AreaShape_Perimeter": ref.perimeter,
        "AreaShape_FormFactor": 4 * math.pi * ref.area / ref.perimeter**2,
        "AreaShape_Solidity": ref.solidity,
        "AreaShape_Extent": ref.extent,
        "AreaShape_Eccentricity": ref.eccentricity,
        "AreaShape_EquivalentDiameter": ref.equivalent_diameter_area,
        "AreaShape_MajorAxisLength": ref.axis_major_length,
        "AreaShape_MinorAxisLength": ref.axis_minor_length,
        "AreaShape_MaxFeretDiameter": ref.feret_diameter_max,
        "Intensity_IntegratedIntensity": values.sum(),
        "Intensity_MeanIntensity": ref.intensity_mean,
        "Intensity_StdIntensity": values.std(),
        "Intensity_MinIntensity": ref.intensity_min,
        "Intensity_MaxIntensity": ref.intensity_max,
        "Intensity_MedianIntensity": np.median(values),
        "Location_Center_X": ref.centroid[1],
        "Location_Center_Y": ref.centroid[0],
    }
    for name, value in expected.items():
        assert out[name] == pytest.approx(float(value), rel=1e-9), name


@pytest.mark.parametrize("radius", [20, 50, 90])
def test_a_disc_has_its_textbook_measures(radius: int) -> None:
    out = measure_spheroid(np.full((256, 256), 0.5), _disc(radius))
    assert out["AreaShape_Area"] == pytest.approx(math.pi * radius**2, rel=0.02)
    assert out["AreaShape_EquivalentDiameter"] == pytest.approx(2 * radius, rel=0.01)
    assert out["AreaShape_MajorAxisLength"] == pytest.approx(2 * radius, rel=0.02)
    assert out["AreaShape_MinorAxisLength"] == pytest.approx(2 * radius, rel=0.02)
    assert out["AreaShape_Perimeter"] == pytest.approx(2 * math.pi * radius, rel=0.06)
    # regionprops' 4-connected perimeter is a few percent long on digital circles.
    assert 0.88 < out["AreaShape_FormFactor"] <= 1.05
    assert out["AreaShape_Solidity"] > 0.97
    assert out["AreaShape_Eccentricity"] < 0.1
    assert out["Location_Center_X"] == pytest.approx(128) and out["Location_Center_Y"] == (
        pytest.approx(128)
    )
    assert out["Intensity_MeanIntensity"] == pytest.approx(0.5)
    assert out["Intensity_StdIntensity"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("major", "minor"), [(80, 40), (60, 20)])
def test_an_ellipse_has_its_axis_lengths(major: int, minor: int) -> None:
    labels = np.zeros((256, 256), np.uint8)
    labels[ellipse(128, 128, minor, major, rotation=0.7, shape=labels.shape)] = 1
    out = measure_spheroid(np.zeros((256, 256), np.uint8), labels)
    assert out["AreaShape_MajorAxisLength"] == pytest.approx(2 * major, rel=0.02)
    assert out["AreaShape_MinorAxisLength"] == pytest.approx(2 * minor, rel=0.03)
    expected_ecc = math.sqrt(1 - (minor / major) ** 2)
    assert out["AreaShape_Eccentricity"] == pytest.approx(expected_ecc, abs=0.01)
    assert out["AreaShape_FormFactor"] < 0.9  # an ellipse is less round than a disc


@pytest.mark.parametrize(
    ("dtype", "value", "expected"),
    [
        (np.uint8, 51, 51 / 255),
        (np.uint16, 13107, 13107 / 65535),
        (np.float32, 0.25, 0.25),
        (np.float64, 7.5, 7.5),  # floats are taken as they are, as CellProfiler does
    ],
)
def test_intensity_is_on_the_dtype_scale(dtype: type, value: float, expected: float) -> None:
    labels = _disc(30)
    image: np.ndarray = np.full(labels.shape, value, dtype=dtype)
    out = measure_spheroid(image, labels)
    assert out["Intensity_MeanIntensity"] == pytest.approx(expected, rel=1e-6)
    area = out["AreaShape_Area"]
    assert out["Intensity_IntegratedIntensity"] == pytest.approx(expected * area, rel=1e-6)


def test_rgb_is_measured_as_gray() -> None:
    labels = _disc(30)
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 1] = 255  # pure green: luminance weight 0.7154
    out = measure_spheroid(rgb, labels)
    assert out["Intensity_MeanIntensity"] == pytest.approx(0.7154, abs=1e-3)


def test_pixel_size_scales_lengths_and_areas_only() -> None:
    labels = _disc(40)
    labels[20:30, 120:140] = 2
    labels[200:204, 60:64] = 2
    image = _textured()
    px = measure_spheroid(image, labels)
    s = FeatureParams(pixel_size_um=1.6).pixel_size_um
    assert s is not None
    um = measure_spheroid(image, labels, pixel_size_um=s)
    for name in FEATURE_COLUMNS:
        factor = s if name in LENGTH_COLUMNS else s**2 if name in AREA_COLUMNS else 1.0
        assert um[name] == pytest.approx(px[name] * factor, rel=1e-12), name
    # Location stays in pixels, the image's own coordinates, as CellProfiler keeps it.
    assert "Location_Center_X" not in LENGTH_COLUMNS


def test_debris_measures() -> None:
    labels = _disc(40)
    labels[20:30, 123:133] = 2  # 100 px, 98..108 px above the centre
    labels[128:131, 230:233] = 2  # 9 px, 102..104 px to the right
    out = measure_spheroid(np.zeros(labels.shape), labels)
    assert out["Debris_FragmentCount"] == 2
    assert out["Debris_Area"] == 109
    assert out["Debris_AreaFraction"] == pytest.approx(109 / (109 + out["AreaShape_Area"]))
    assert out["Debris_SpreadRadius"] == pytest.approx(math.hypot(108, 5))
    intact = measure_spheroid(np.zeros(labels.shape), _disc(40))
    assert intact["Debris_FragmentCount"] == 0
    assert intact["Debris_Area"] == 0
    assert intact["Debris_AreaFraction"] == 0
    assert intact["Debris_SpreadRadius"] == 0


def test_no_spheroid_gives_nan_measures_but_counts_debris() -> None:
    labels = np.zeros((64, 64), np.uint8)
    empty = measure_spheroid(np.zeros((64, 64)), labels)
    counted = {"Debris_FragmentCount", "Debris_Area"}
    assert all(math.isnan(v) for k, v in empty.items() if k not in counted)
    assert empty["Debris_FragmentCount"] == 0 and empty["Debris_Area"] == 0
    labels[5:8, 5:8] = 2
    only_debris = measure_spheroid(np.zeros((64, 64)), labels, pixel_size_um=2.0)
    assert only_debris["Debris_Area"] == 36.0  # 9 px of 4 um^2
    assert only_debris["Debris_AreaFraction"] == 1.0
    assert math.isnan(only_debris["Debris_SpreadRadius"])
    assert math.isnan(only_debris["AreaShape_Area"])


def test_a_one_pixel_spheroid_has_no_form_factor() -> None:
    labels = np.zeros((16, 16), np.uint8)
    labels[8, 8] = 1
    out = measure_spheroid(np.zeros((16, 16)), labels)
    assert out["AreaShape_Area"] == 1
    assert math.isnan(out["AreaShape_FormFactor"])


@pytest.mark.parametrize(
    ("image", "labels", "pixel_size", "match"),
    [
        (np.zeros((10, 10)), np.zeros((10, 12)), None, "differ"),
        (np.zeros((10, 10, 2)), np.zeros((10, 10)), None, "neither"),
        (np.zeros((10, 10)), np.zeros((2, 10, 10)), None, "one \\(y, x\\) label image"),
        (np.zeros((10, 10)), np.zeros((10, 10)), 0.0, "positive"),
        (np.zeros((10, 10)), np.zeros((10, 10)), math.nan, "positive"),
    ],
)
def test_bad_inputs_raise_parameter_errors(
    image: np.ndarray, labels: np.ndarray, pixel_size: float | None, match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        measure_spheroid(image, labels, pixel_size_um=pixel_size)
