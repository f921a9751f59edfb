"""Cross-matching detections to a reference catalog, and completeness / purity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ParameterError
from pipeline.imaging.crossmatch import (
    Match,
    completeness_purity,
    match_positions,
    overall_scores,
    sky_offsets_arcsec,
)


def brute_force(det: np.ndarray, ref: np.ndarray, radius: float) -> set[tuple[int, int]]:
    """Greedy one-to-one matching over all pairs, by (distance, det row, ref row)."""
    pairs = []
    for i in range(len(det)):
        for j in range(len(ref)):
            d = math.hypot(det[i, 0] - ref[j, 0], det[i, 1] - ref[j, 1])
            if d <= radius:
                pairs.append((d, i, j))
    used_i: set[int] = set()
    used_j: set[int] = set()
    out = set()
    for _, i, j in sorted(pairs):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            out.add((i, j))
    return out


def pairs_of(match: Match) -> set[tuple[int, int]]:
    return set(zip(match.det_index.tolist(), match.ref_index.tolist(), strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_match_equals_brute_force_on_random_points(seed: int) -> None:
    rng = np.random.default_rng(seed)
    det = rng.uniform(0, 50, size=(80, 2))
    ref = rng.uniform(0, 50, size=(60, 2))
    match = match_positions(det, ref, 4.0)
    assert pairs_of(match) == brute_force(det, ref, 4.0)
    assert match.n_matched > 10  # dense enough that conflicts really occur


@settings(max_examples=60, deadline=None)
@given(
    det=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12),
    ref=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12),
    radius=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]),
)
def test_match_is_one_to_one_maximal_and_equals_brute_force(
    det: list[tuple[int, int]], ref: list[tuple[int, int]], radius: float
) -> None:
    # Integer grid points: many exact ties, duplicates and pairs right at the radius.
    det_xy = np.array(det, dtype=float).reshape(-1, 2)
    ref_xy = np.array(ref, dtype=float).reshape(-1, 2)
    match = match_positions(det_xy, ref_xy, radius)
    assert pairs_of(match) == brute_force(det_xy, ref_xy, radius)
    assert len(set(match.det_index.tolist())) == match.n_matched
    assert len(set(match.ref_index.tolist())) == match.n_matched
    assert (match.distance <= radius).all()
    assert match.det_matched.sum() == match.ref_matched.sum() == match.n_matched
    # Maximal: no unmatched detection is within the radius of an unmatched reference.
    for i in np.flatnonzero(~match.det_matched):
        for j in np.flatnonzero(~match.ref_matched):
            assert np.hypot(*(det_xy[i] - ref_xy[j])) > radius


def test_greedy_gives_a_reference_to_the_closer_detection() -> None:
    ref = np.array([[10.0, 10.0]])
    det = np.array([[12.0, 10.0], [10.5, 10.0]])  # the second is closer
    match = match_positions(det, ref, 3.0)
    assert match.det_index.tolist() == [1]
    assert match.ref_index.tolist() == [0]
    assert match.distance.tolist() == [0.5]
    assert match.det_matched.tolist() == [False, True]
    assert match.ref_of_det.tolist() == [-1, 0]
    assert match.det_of_ref.tolist() == [1]


def test_greedy_is_global_not_first_come() -> None:
    # Detection 0 is nearest to ref 1, but ref 1's nearest detection is 1, closer still:
    # pairs are accepted by distance, so det 0 falls back to ref 0.
    det = np.array([[0.0, 0.0], [1.8, 0.0]])
    ref = np.array([[-1.5, 0.0], [1.9, 0.0]])
    match = match_positions(det, ref, 2.0)
    assert pairs_of(match) == {(0, 0), (1, 1)}


def test_equal_distances_are_broken_by_row_order() -> None:
    det = np.array([[0.0, 0.0], [2.0, 0.0]])
    ref = np.array([[1.0, 0.0]])  # exactly 1 from both detections
    assert pairs_of(match_positions(det, ref, 1.5)) == {(0, 0)}


def test_radius_is_inclusive() -> None:
    det = np.array([[0.0, 0.0]])
    ref = np.array([[3.0, 4.0]])  # exactly 5 away
    assert match_positions(det, ref, 5.0).n_matched == 1
    assert match_positions(det, ref, 4.999).n_matched == 0


def test_coincident_points_match_at_distance_zero() -> None:
    xy = np.array([[5.0, 5.0], [7.0, 7.0]])
    match = match_positions(xy, xy.copy(), 1.0)
    assert pairs_of(match) == {(0, 0), (1, 1)}
    assert match.distance.tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("det", "ref"),
    [
        (np.zeros((0, 2)), np.zeros((0, 2))),
        (np.zeros((0, 2)), np.ones((3, 2))),
        ([], [[1.0, 1.0]]),
        (np.ones((2, 2)), np.zeros((0, 2))),
    ],
)
def test_empty_inputs_match_nothing(det: object, ref: object) -> None:
    match = match_positions(det, ref, 1.0)  # type: ignore[arg-type]
    n_det = len(det)  # type: ignore[arg-type]
    n_ref = len(ref)  # type: ignore[arg-type]
    assert match.n_matched == 0
    assert match.det_index.dtype == np.intp and match.distance.dtype == np.float64
    assert match.det_matched.shape == (n_det,) and not match.det_matched.any()
    assert match.ref_matched.shape == (n_ref,) and not match.ref_matched.any()
    scores = overall_scores(match)
    assert scores["n_matched"] == 0 and math.isnan(scores["median_distance"])


def test_non_finite_positions_match_nothing() -> None:
    det = np.array([[np.nan, 0.0], [1.0, 1.0]])
    ref = np.array([[1.0, 1.0], [0.0, np.inf]])
    match = match_positions(det, ref, 2.0)
    assert pairs_of(match) == {(1, 0)}
    assert match.det_matched.tolist() == [False, True]


@pytest.mark.parametrize("radius", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_radius_is_a_parameter_error(radius: float) -> None:
    with pytest.raises(ParameterError, match=r"matching radius is .*expected a finite number"):
        match_positions(np.zeros((1, 2)), np.zeros((1, 2)), radius)


def test_bad_shape_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match=r"det_xy has shape \(3, 3\); expected \(n, 2\)"):
        match_positions(np.zeros((3, 3)), np.zeros((1, 2)), 1.0)


def test_sky_offsets_small_angles() -> None:
    one = 1.0 / 3600.0
    out = sky_offsets_arcsec([10.0, 10.0 + one, 10.0], [20.0, 20.0, 20.0 + one], 10.0, 20.0)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out[0], [0.0, 0.0], atol=1e-12)
    # 1 arcsec in dec is 1 arcsec north; 1 arcsec in RA is cos(dec) arcsec east (and a
    # micro-arcsecond north: the parallel of constant dec curves on the tangent plane).
    np.testing.assert_allclose(out[2], [0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(out[1], [math.cos(math.radians(20.0)), 0.0], atol=1e-5)


@pytest.mark.parametrize("dec0", [-60.0, 0.0, 45.0, 80.0])
def test_sky_offsets_distances_are_angular_separations(dec0: float) -> None:
    rng = np.random.default_rng(1)
    ra = 150.0 + rng.uniform(-0.05, 0.05, 20) / math.cos(math.radians(dec0))
    dec = dec0 + rng.uniform(-0.05, 0.05, 20)
    xy = sky_offsets_arcsec(ra, dec, 150.0, dec0)
    # Separation from the tangent point: exactly the radius of its gnomonic offset, tan(c).
    r = np.radians(np.hypot(xy[:, 0], xy[:, 1]) / 3600.0)
    a, d, d0 = np.radians(ra - 150.0), np.radians(dec), math.radians(dec0)
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a)
    np.testing.assert_allclose(np.arctan(r), np.arccos(np.clip(cos_c, -1, 1)), atol=1e-9)


def test_sky_offsets_cross_the_ra_wrap() -> None:
    one = 1.0 / 3600.0
    out = sky_offsets_arcsec([359.0 + 1.0 - one, one], [0.0, 0.0], 0.0, 0.0)
    np.testing.assert_allclose(out, [[-1.0, 0.0], [1.0, 0.0]], atol=1e-6)


def test_sky_offsets_of_the_far_hemisphere_are_nan() -> None:
    out = sky_offsets_arcsec([180.0, 0.0], [0.0, 0.0], 0.0, 0.0)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()


def test_sky_matching_in_arcsec() -> None:
    ref_ra, ref_dec = np.array([30.0, 30.01]), np.array([-5.0, -5.0])
    det_ra = ref_ra + np.array([0.5, 3.0]) / 3600.0 / math.cos(math.radians(-5.0))
    xy_ref = sky_offsets_arcsec(ref_ra, ref_dec, 30.005, -5.0)
    xy_det = sky_offsets_arcsec(det_ra, ref_dec, 30.005, -5.0)
    match = match_positions(xy_det, xy_ref, 1.0)
    assert pairs_of(match) == {(0, 0)}
    np.testing.assert_allclose(match.distance, [0.5], atol=1e-4)


def test_completeness_purity_counts_by_hand() -> None:
    ref_mag = [18.2, 18.4, 18.7, 19.9, np.nan]
    ref_matched = [True, True, False, False, True]
    det_mag = [18.1, 18.3, 19.6, 19.7, 20.2]
    det_matched = [True, True, False, True, False]
    table = completeness_purity(ref_mag, ref_matched, det_mag, det_matched)
    assert list(table.columns) == [
        "mag_lo",
        "mag_hi",
        "n_reference",
        "n_recovered",
        "completeness",
        "n_detected",
        "n_true",
        "purity",
    ]
    assert table["mag_lo"].tolist() == [18.0, 18.5, 19.0, 19.5, 20.0]
    assert table["mag_hi"].tolist() == [18.5, 19.0, 19.5, 20.0, 20.5]
    assert table["n_reference"].tolist() == [2, 1, 0, 1, 0]
    assert table["n_recovered"].tolist() == [2, 0, 0, 0, 0]
    assert table["n_detected"].tolist() == [2, 0, 0, 2, 1]
    assert table["n_true"].tolist() == [2, 0, 0, 1, 0]
    np.testing.assert_array_equal(table["completeness"], [1.0, 0.0, np.nan, 0.0, np.nan])
    np.testing.assert_array_equal(table["purity"], [1.0, np.nan, np.nan, 0.5, 0.0])


def test_completeness_purity_with_given_edges_and_width() -> None:
    table = completeness_purity([20.0, 21.0, 22.0], [True, False, True], [21.0], [False],
                                bins=[20.0, 21.0, 22.0])  # fmt: skip
    # numpy.histogram's convention: [lo, hi), the last bin closed.
    assert table["n_reference"].tolist() == [1, 2]
    assert table["n_recovered"].tolist() == [1, 1]
    assert table["n_detected"].tolist() == [0, 1]
    wide = completeness_purity([20.2, 21.9], [True, False], [], [], bins=1.0)
    assert wide["mag_lo"].tolist() == [20.0, 21.0]
    assert wide["completeness"].tolist() == [1.0, 0.0]


def test_completeness_purity_without_finite_magnitudes_is_empty() -> None:
    table = completeness_purity([np.nan], [True], [], [])
    assert len(table) == 0
    assert "completeness" in table.columns
    assert table["n_reference"].dtype == np.int64


def test_completeness_purity_rejects_mismatched_lengths_and_bad_bins() -> None:
    with pytest.raises(ParameterError, match="ref_mag has 2 values but ref_matched 1"):
        completeness_purity([1.0, 2.0], [True], [], [])
    with pytest.raises(ParameterError, match="strictly increasing"):
        completeness_purity([1.0], [True], [], [], bins=[2.0, 1.0])
    with pytest.raises(ParameterError, match="positive bin width"):
        completeness_purity([1.0], [True], [], [], bins=0.0)


def test_overall_scores() -> None:
    det = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [50.0, 50.0]])
    ref = np.array([[0.3, 0.0], [10.0, 0.1], [30.0, 0.0]])
    scores = overall_scores(match_positions(det, ref, 1.0))
    assert scores["n_matched"] == 2
    assert scores["n_detected"] == 4 and scores["n_reference"] == 3
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert scores["median_distance"] == pytest.approx(0.2)
    # Detections left out of the match still count when the caller says so.
    assert overall_scores(match_positions(det, ref, 1.0), n_det=8)["precision"] == 0.25


def test_overall_scores_edge_cases() -> None:
    none = match_positions(np.zeros((2, 2)), np.full((2, 2), 9.0), 1.0)
    assert overall_scores(none)["f1"] == 0.0
    assert math.isnan(overall_scores(match_positions([], [], 1.0))["recall"])
    with pytest.raises(ParameterError, match="n_ref is 0, fewer than the 1 matched pairs"):
        overall_scores(match_positions([[0.0, 0.0]], [[0.0, 0.0]], 1.0), n_ref=0)


def test_match_table_round_trip_with_pandas() -> None:
    # What a stage does: catalogs as DataFrames, ids carried through the pair indices.
    det = pd.DataFrame({"x": [1.0, 5.0], "y": [1.0, 5.0], "number": [7, 8]})
    ref = pd.DataFrame({"x": [5.2, 1.1], "y": [5.0, 0.9], "source_id": ["a", "b"]})
    match = match_positions(det[["x", "y"]], ref[["x", "y"]], 1.0)
    joined = dict(
        zip(
            det["number"].to_numpy()[match.det_index],
            ref["source_id"].to_numpy()[match.ref_index],
            strict=True,
        )
    )
    assert joined == {7: "b", 8: "a"}
