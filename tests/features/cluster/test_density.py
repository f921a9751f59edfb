"""DBSCAN: the parallel eps sweep, the eps rule, and equality with scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs

from pipeline.errors import ParameterError
from pipeline.features.cluster.density import choose_eps, dbscan_sweep, fit_dbscan


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    x, _ = make_blobs(400, 5, centers=4, cluster_std=0.6, random_state=0)
    return x


def test_fit_equals_sklearn_and_keeps_the_core_points(blobs: np.ndarray) -> None:
    fit = fit_dbscan(blobs, 1.2, 4)
    ref = DBSCAN(eps=1.2, min_samples=4).fit(blobs)
    np.testing.assert_array_equal(fit.labels, ref.labels_)
    np.testing.assert_array_equal(fit.core_points, blobs[ref.core_sample_indices_])


def test_sweep_on_the_cluster_equals_the_serial_sweep_and_sklearn(
    blobs: np.ndarray, client: Client
) -> None:
    eps = np.arange(0.5, 3.0, 0.25)
    parallel = dbscan_sweep(blobs, eps, 4, client=client)
    serial = dbscan_sweep(blobs, eps, 4)
    pd.testing.assert_frame_equal(parallel, serial)
    for row in parallel.itertuples():
        labels = DBSCAN(eps=row.eps, min_samples=4).fit(blobs).labels_
        assert row.n_clusters == len(set(labels) - {-1})
        assert row.n_noise == int((labels == -1).sum())


def test_eps_rule_takes_the_best_silhouette_with_enough_clusters_and_little_noise() -> None:
    sweep = pd.DataFrame(
        {
            "eps": [0.5, 1.0, 1.5, 2.0],
            "n_clusters": [6, 4, 3, 1],
            "n_noise": [80, 10, 5, 0],
            "silhouette": [0.9, 0.6, 0.7, np.nan],
        }
    )
    # 0.5 has the best silhouette but 80% noise; 1.5 beats 1.0.
    assert choose_eps(sweep, min_clusters=3, max_noise=0.25, n_rows=100) == 1.5
    with pytest.raises(ParameterError, match="5 or more clusters"):
        choose_eps(sweep, min_clusters=5, max_noise=0.25, n_rows=100)


def test_bad_eps_is_refused() -> None:
    with pytest.raises(ParameterError, match="eps=0"):
        fit_dbscan(np.zeros((5, 2)), 0, 4)
