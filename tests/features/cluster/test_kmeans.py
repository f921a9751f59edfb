"""k-means over chunks against scikit-learn's KMeans on the same data."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from distributed import Client
from kneed import KneeLocator
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from pipeline.errors import ParameterError
from pipeline.features.cluster.kmeans import find_elbow, fit_kmeans, kmeans_elbow, predict_kmeans
from tests.conftest import raise_if_dask_computes


@pytest.fixture(scope="module")
def overlapping() -> np.ndarray:
    x, _ = make_blobs(3000, 6, centers=6, cluster_std=2.5, random_state=1)
    return x


def test_inertia_within_one_percent_of_sklearn_with_matched_restarts(
    overlapping: np.ndarray,
) -> None:
    ours = fit_kmeans(overlapping, 6, n_init=5, seed=0)
    ref = KMeans(6, n_init=5, random_state=0).fit(overlapping)
    assert abs(ours.inertia - ref.inertia_) / ref.inertia_ < 0.01
    assert ours.converged


def test_well_separated_blobs_get_the_true_labels_up_to_permutation() -> None:
    x, truth = make_blobs(2000, 4, centers=5, cluster_std=0.5, random_state=3)
    fit = fit_kmeans(x, 5, n_init=3, seed=0)
    ref = KMeans(5, n_init=3, random_state=0).fit(x)
    labels = predict_kmeans(x, fit.centers)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert adjusted_rand_score(ref.labels_, labels) == 1.0


def test_dask_chunks_cutting_through_clusters_give_the_numpy_result(
    overlapping: np.ndarray, client: Client
) -> None:
    ref = fit_kmeans(overlapping, 4, n_init=2, seed=7)
    chunked = da.from_array(overlapping, chunks=((700, 1100, 1, 1199), (6,)))
    fit = fit_kmeans(chunked, 4, n_init=2, seed=7, client=client)
    np.testing.assert_allclose(fit.centers, ref.centers, rtol=1e-10)
    assert fit.inertia == pytest.approx(ref.inertia, rel=1e-10)


def test_predict_is_lazy_and_marks_rows_with_nan() -> None:
    x = np.array([[0.0, 0.0], [10.0, 10.0], [np.nan, 1.0], [9.0, 11.0]])
    centers = np.array([[0.0, 0.0], [10.0, 10.0]])
    with raise_if_dask_computes():
        lazy = predict_kmeans(da.from_array(x, chunks=2), centers)
    assert lazy.compute().tolist() == [0, 1, -1, 1]
    assert predict_kmeans(x, centers).tolist() == [0, 1, -1, 1]


def test_rows_with_nan_are_left_out_of_the_fit() -> None:
    x, _ = make_blobs(500, 3, centers=3, cluster_std=0.3, random_state=0)
    with_nan = np.vstack([x, np.full((20, 3), np.nan)])
    a = fit_kmeans(x, 3, seed=0, init_sample=10_000)
    b = fit_kmeans(with_nan, 3, seed=0, init_sample=10_000)
    assert b.inertia == pytest.approx(a.inertia, rel=1e-6)


def test_elbow_finds_the_number_of_blobs_as_kneed_does_on_sklearn_inertia(
    client: Client,
) -> None:
    x, _ = make_blobs(3000, 5, centers=4, cluster_std=1.0, random_state=1)
    elbow = kmeans_elbow(da.from_array(x, chunks=700), range(1, 10), n_init=2, client=client)
    ref = [KMeans(k, n_init=2, random_state=0).fit(x).inertia_ for k in range(1, 10)]
    knee = KneeLocator(list(range(1, 10)), ref, curve="convex", direction="decreasing").elbow
    assert elbow.k == knee == 4 and elbow.rule == "kneedle"
    # No worse than scikit-learn's by more than 1% at any k (lower is better).
    assert all(a <= 1.01 * b for a, b in zip(elbow.inertias, ref, strict=True))
    assert elbow.ks == list(range(1, 10))
    assert all(a >= b for a, b in zip(elbow.inertias, elbow.inertias[1:], strict=False))
    assert elbow.best().k == 4


def test_elbow_falls_back_to_the_sharpest_bend_without_a_knee() -> None:
    assert find_elbow([1, 2, 3, 4, 5], [10.0, 5.0, 4.0, 3.5, 3.2]) == (2, "kneedle")
    k, rule = find_elbow([2, 3, 4, 5], [10.0, 8.0, 6.0, 4.0])  # a straight line: no knee
    assert rule == "max_curvature" and k in (3, 4)


def test_same_seed_same_result(overlapping: np.ndarray) -> None:
    a = fit_kmeans(overlapping, 5, seed=3)
    b = fit_kmeans(overlapping, 5, seed=3)
    np.testing.assert_array_equal(a.centers, b.centers)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k = 0"),
        ({"k": 50}, "k = 50 but the data has only 20"),
        ({"k": 2, "n_init": 0}, "n_init=0"),
    ],
)
def test_bad_parameters_name_the_value(kwargs: dict[str, int], match: str) -> None:
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ParameterError, match=match):
        fit_kmeans(x, **kwargs)


def test_predict_with_the_wrong_feature_count_says_so() -> None:
    with pytest.raises(ParameterError, match="3 feature"):
        predict_kmeans(np.zeros((4, 3)), np.zeros((2, 5)))
