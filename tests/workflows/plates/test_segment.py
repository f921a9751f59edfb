"""Spheroid segmentation and per-image QC, judged on the synthetic plate generator's truth."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from functools import cache

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.errors import ParameterError
from pipeline.synth.plates import RenderedWell, render_example
from pipeline.workflows.plates.measure import measure_spheroid
from pipeline.workflows.plates.segment import (
    SegmentResult,
    flag_out_of_focus,
    segment_spheroid,
    to_gray,
)
from pipeline.workflows.plates.segment_spec import SegmentParams

#: Intact spheroids (no fault, efficacy below the explosion threshold) over the treatment
#: window: (seed, efficacy, day).
INTACT = [
    (0, 0.0, 7),
    (1, 0.0, 10),
    (2, 0.1, 8),
    (3, 0.2, 9),
    (4, 0.3, 10),
    (5, 0.4, 7),
    (6, 0.5, 8),
    (7, 0.6, 10),
    (8, 0.15, 9),
    (9, 0.45, 10),
    (10, 0.55, 9),
    (11, 0.05, 8),
]


@cache
def _well(
    seed: int, efficacy: float = 0.0, day: int = 10, fault: str = "", **kw: object
) -> RenderedWell:
    return render_example(seed, efficacy=efficacy, day=day, fault=fault, **kw)  # type: ignore[arg-type]


@cache
def _segmented(
    seed: int, efficacy: float = 0.0, day: int = 10, fault: str = "", **kw: object
) -> SegmentResult:
    return segment_spheroid(_well(seed, efficacy, day, fault, **kw).image)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def test_intact_spheroids_match_the_generator_masks() -> None:
    ious = []
    for seed, efficacy, day in INTACT:
        well = _well(seed, efficacy, day)
        result = _segmented(seed, efficacy, day)
        assert result.labels.shape == well.image.shape and result.labels.dtype == np.uint8
        assert set(np.unique(result.labels)) <= {0, 1, 2}
        assert result.ok, (seed, efficacy, day)
        ious.append(_iou(result.labels == 1, well.mask == 1))
    assert min(ious) >= 0.9, ious
    assert np.mean(ious) >= 0.97, ious


def test_full_resolution_refinement_matches_a_1024_px_mask() -> None:
    well = render_example(21, size=1024, efficacy=0.3, day=9)
    result = segment_spheroid(well.image)
    assert result.ok
    assert _iou(result.labels == 1, well.mask == 1) >= 0.95


def test_an_image_that_does_not_divide_into_the_processing_scale() -> None:
    well = render_example(22, size=512, efficacy=0.2, day=8)
    image, mask = well.image[:501, 3:510], well.mask[:501, 3:510]
    result = segment_spheroid(image)
    assert result.labels.shape == image.shape
    assert _iou(result.labels == 1, mask == 1) >= 0.95


def test_a_1024_px_image_segments_fast() -> None:
    image = render_example(23, size=1024, efficacy=0.1, day=10).image
    segment_spheroid(image)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        segment_spheroid(image)
        times.append(time.perf_counter() - t0)
    # ~0.06 s on one core; the bound leaves room for a busy test machine.
    assert min(times) < 0.5, times


@pytest.mark.parametrize("fault", ["empty_well", "touches_edge", "multiple_bodies"])
@pytest.mark.parametrize("seed", [31, 32, 33])
def test_per_image_faults_are_flagged_and_only_them(fault: str, seed: int) -> None:
    efficacy = 0.85 if seed == 33 else 0.3  # one exploded well among them
    result = _segmented(seed, efficacy, 10, fault, edge=seed == 32)
    flags = {
        "empty_well": result.empty_well,
        "touches_edge": result.touches_edge,
        "multiple_bodies": result.multiple_bodies,
    }
    assert flags == {k: k == fault for k in flags}
    assert not result.ok


def test_an_empty_well_has_no_labels_and_no_focus_score() -> None:
    result = _segmented(31, 0.3, 10, "empty_well", edge=False)
    assert not result.labels.any()
    assert math.isnan(result.focus_score)


def test_a_spheroid_cut_by_the_border_keeps_its_visible_part() -> None:
    well = _well(31, 0.3, 10, "touches_edge", edge=False)
    result = _segmented(31, 0.3, 10, "touches_edge", edge=False)
    spheroid = result.labels == 1
    border = np.concatenate([spheroid[0], spheroid[-1], spheroid[:, 0], spheroid[:, -1]])
    assert border.any()
    assert _iou(spheroid, well.mask == 1) >= 0.9


def test_both_bodies_of_a_multiple_bodies_well_are_labelled() -> None:
    well = _well(31, 0.3, 10, "multiple_bodies", edge=False)
    result = _segmented(31, 0.3, 10, "multiple_bodies", edge=False)
    assert _iou(result.labels == 1, well.mask == 1) >= 0.9


def test_debris_of_an_exploded_spheroid_is_its_own_label() -> None:
    well = _well(41, 0.95, 10)
    assert well.exploded
    result = _segmented(41, 0.95, 10)
    assert result.ok
    assert _iou(result.labels == 1, well.mask == 1) >= 0.75
    debris = result.labels == 2
    assert np.count_nonzero(debris & (well.mask == 2)) >= 0.5 * np.count_nonzero(debris)
    out = measure_spheroid(well.image, result.labels)
    assert out["Debris_FragmentCount"] >= 5
    truth = measure_spheroid(well.image, well.mask)
    assert out["Debris_SpreadRadius"] == pytest.approx(truth["Debris_SpreadRadius"], rel=0.25)


def test_out_of_focus_images_are_outliers_of_their_plate() -> None:
    sharp = [_segmented(*case).focus_score for case in INTACT]
    blurred = [_segmented(s, 0.3, 9, "out_of_focus").focus_score for s in (51, 52)]
    scores = np.array([*sharp[:6], blurred[0], *sharp[6:], blurred[1]])
    truth = np.zeros(len(scores), bool)
    truth[[6, len(scores) - 1]] = True
    assert np.array_equal(flag_out_of_focus(scores), truth)
    # The blurred images are still segmented; only their focus gives them away.
    assert not _segmented(51, 0.3, 9, "out_of_focus").empty_well


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # one low outlier among ordinary scatter
        ([1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.01], [0, 0, 0, 0, 0, 0, 1]),
        # a sharp outlier is not out of focus
        ([1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 100.0], [0] * 7),
        # empty wells (NaN) are never flagged and do not count
        ([1.0, math.nan, 0.9, 1.1, 1.05, 0.001, math.nan], [0, 0, 0, 0, 0, 1, 0]),
        # most scores equal: the mean deviation still finds the outlier
        ([2.0, 2.0, 2.0, 2.0, 2.0, 1.9, 0.02], [0, 0, 0, 0, 0, 0, 1]),
        # all equal: nothing to flag
        ([3.0] * 5, [0] * 5),
    ],
)
def test_flag_out_of_focus_uses_a_robust_z_score(scores: list[float], expected: list[int]) -> None:
    assert flag_out_of_focus(np.array(scores)).tolist() == [bool(e) for e in expected]


def test_flag_out_of_focus_threshold_is_a_parameter() -> None:
    # log scores: median -0.025, MAD 0.075 (sigma 0.111): the last one's z is -5.2
    scores = np.exp([0.0, 0.1, -0.1, 0.05, -0.05, -0.6])
    assert flag_out_of_focus(scores, SegmentParams(focus_z=4.0)).tolist() == [0] * 5 + [1]
    assert not flag_out_of_focus(scores, SegmentParams(focus_z=6.0)).any()


def test_too_few_focus_scores_flag_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.workflows.plates.segment"):
        flags = flag_out_of_focus(np.array([1.0, 0.001, math.nan]))
    assert not flags.any() and flags.shape == (3,)
    assert "too few" in caplog.text


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda im: im, id="uint16"),
        pytest.param(lambda im: (im >> 8).astype(np.uint8), id="uint8"),
        pytest.param(lambda im: im.astype(np.float32) / 65535, id="float32"),
        pytest.param(lambda im: im.astype(np.float64) * 3.7, id="float64-any-scale"),
        pytest.param(lambda im: np.repeat(im[..., None], 3, axis=-1), id="rgb"),
        pytest.param(lambda im: im[..., None], id="one-channel"),
    ],
)
def test_dtypes_and_channels_give_the_same_segmentation(convert: object) -> None:
    well = _well(3, 0.2, 9)
    reference = _segmented(3, 0.2, 9).labels
    result = segment_spheroid(convert(well.image))  # type: ignore[operator]
    assert _iou(result.labels == 1, reference == 1) >= 0.99


def test_an_8_bit_acquisition_is_segmented_as_well() -> None:
    well = render_example(61, efficacy=0.25, day=9, bit_depth=8)
    assert well.image.dtype == np.uint8
    assert _iou(segment_spheroid(well.image).labels == 1, well.mask == 1) >= 0.95


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(np.full((128, 128), 40000, np.uint16), id="constant"),
        pytest.param(np.zeros((64, 96), np.uint8), id="black"),
        pytest.param(
            np.random.default_rng(0).normal(0.7, 0.01, (200, 200)).astype(np.float32),
            id="noise",
        ),
    ],
)
def test_an_all_background_image_is_an_empty_well(image: np.ndarray) -> None:
    result = segment_spheroid(image)
    assert result.empty_well and not result.touches_edge and not result.multiple_bodies
    assert not result.labels.any() and result.labels.shape == image.shape
    assert math.isnan(result.focus_score)


def test_gray_conversion_scales_integers_by_their_dtype() -> None:
    assert to_gray(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    assert to_gray(np.array([[-32768, 32767]], np.int16)).tolist() == [[0.0, 1.0]]
    assert to_gray(np.array([[2.5]])).tolist() == [[2.5]]
    assert to_gray(np.array([[0, 65535]], np.uint16)).dtype == np.float32


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 64, 64)), "neither"),
        (np.zeros(64), "neither"),
        (np.zeros((8, 64)), "too small"),
        (np.full((64, 64), np.nan), "NaN"),
    ],
)
def test_bad_images_raise_parameter_errors(image: np.ndarray, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        segment_spheroid(image)


@pytest.mark.parametrize(
    "bad",
    [
        {"centre_radius": 0},
        {"min_darkness": 1.0},
        {"processing_size": 16},
        {"threshold_method": "mean"},
        {"focus_z": -1},
        {"no_such_parameter": 1},
    ],
)
def test_segment_params_reject_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SegmentParams.model_validate(bad)


def test_segment_params_are_frozen_and_complete() -> None:
    params = SegmentParams()
    with pytest.raises(ValidationError):
        params.focus_z = 1.0  # type: ignore[misc]
    doc = SegmentParams.__doc__ or ""
    assert all(f"{name} :" in doc for name in SegmentParams.model_fields), "Attributes"


def test_the_parameter_module_imports_nothing_heavy() -> None:
    code = (
        "import sys\nimport pipeline.workflows.plates.segment_spec\n"
        "print(' '.join(m for m in ('numpy', 'scipy', 'skimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
