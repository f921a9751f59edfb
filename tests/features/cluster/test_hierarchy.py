"""Agglomerative clustering equals scikit-learn's; its anchors serve assignment."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import make_blobs

from pipeline.errors import ParameterError
from pipeline.features.cluster.hierarchy import fit_agglomerative


@pytest.mark.parametrize(
    ("linkage", "cut"),
    [
        ("ward", {"distance_threshold": 20.0}),
        ("average", {"n_clusters": 3}),
        ("ward", {"n_clusters": 5}),
    ],
)
def test_labels_equal_sklearn(linkage: str, cut: dict[str, float]) -> None:
    x, _ = make_blobs(300, 6, centers=4, cluster_std=1.5, random_state=4)
    fit = fit_agglomerative(x, linkage=linkage, **cut)  # type: ignore[arg-type]
    full_cut = {"n_clusters": None, **cut}
    ref = AgglomerativeClustering(linkage=linkage, **full_cut).fit(x)  # type: ignore[arg-type]
    np.testing.assert_array_equal(fit.labels, ref.labels_)


def test_ward_anchors_are_the_cluster_centroids() -> None:
    x, _ = make_blobs(200, 3, centers=3, random_state=0)
    fit = fit_agglomerative(x, n_clusters=3)
    for k in range(3):
        np.testing.assert_allclose(fit.anchors[k], x[fit.labels == k].mean(axis=0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_clusters": 2, "distance_threshold": 1.0}, "exactly one"),
        ({}, "exactly one"),
        ({"n_clusters": 50}, "n_clusters=50"),
    ],
)
def test_bad_cuts_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        fit_agglomerative(np.random.default_rng(0).normal(size=(10, 2)), **kwargs)  # type: ignore[arg-type]
