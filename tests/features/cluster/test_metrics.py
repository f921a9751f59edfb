"""Cluster scores equal scikit-learn's, with noise left out and a seeded silhouette sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from pipeline.features.cluster.metrics import agreement_scores, internal_scores


def test_scores_equal_sklearn_without_the_noise() -> None:
    x, labels = make_blobs(300, 4, centers=3, random_state=0)
    noisy = labels.copy()
    noisy[:30] = -1
    s = internal_scores(x, noisy, silhouette_sample=10_000, seed=0)
    member = noisy >= 0
    assert s["n_clusters"] == 3 and s["n_noise"] == 30 and s["silhouette_n"] == 270
    assert s["silhouette"] == pytest.approx(silhouette_score(x[member], noisy[member]))
    assert s["davies_bouldin"] == pytest.approx(davies_bouldin_score(x[member], noisy[member]))
    assert s["calinski_harabasz"] == pytest.approx(
        calinski_harabasz_score(x[member], noisy[member])
    )


def test_silhouette_uses_a_seeded_sample_above_the_size() -> None:
    x, labels = make_blobs(500, 4, centers=3, random_state=0)
    a = internal_scores(x, labels, silhouette_sample=100, seed=3)
    b = internal_scores(x, labels, silhouette_sample=100, seed=3)
    assert a["silhouette_n"] == 100 and a["silhouette"] == b["silhouette"]


def test_one_cluster_has_no_scores() -> None:
    s = internal_scores(np.zeros((5, 2)), np.zeros(5, dtype=int), silhouette_sample=10, seed=0)
    assert s["n_clusters"] == 1 and math.isnan(s["silhouette"])


def test_agreement_counts_noise_as_a_group() -> None:
    truth = np.array(["a", "a", "b", "b"])
    labels = np.array([0, -1, 1, 1])
    assert agreement_scores(labels, truth)["ari"] == pytest.approx(
        adjusted_rand_score(truth, labels)
    )
    assert agreement_scores(np.array([5, 5, 2, 2]), truth) == {"ari": 1.0, "nmi": 1.0}
