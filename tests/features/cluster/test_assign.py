"""Sample-then-assign: rows beyond the fitted sample join their nearest fitted cluster."""

from __future__ import annotations

import dask.array as da
import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs

from pipeline.features.cluster.assign import assign_nearest, fit_sample
from pipeline.features.cluster.density import fit_dbscan
from tests.conftest import raise_if_dask_computes


def test_sample_is_seeded_and_everything_below_the_size() -> None:
    x = np.arange(100.0).reshape(50, 2)
    whole = fit_sample(x, 50, seed=0)
    assert not whole.sampled and whole.rows.tolist() == list(range(50))
    a, b = fit_sample(da.from_array(x, chunks=7), 20, seed=1), fit_sample(x, 20, seed=1)
    assert a.sampled and a.rows.tolist() == b.rows.tolist()
    np.testing.assert_array_equal(a.data, x[a.rows])


def test_dbscan_assignment_labels_rows_by_the_nearest_core_point_within_eps() -> None:
    x, _ = make_blobs(3000, 4, centers=3, cluster_std=0.5, random_state=0)
    x = np.vstack([x, [[50.0, 50, 50, 50]]])  # a far outlier
    sample = fit_sample(x, 600, seed=0)
    fit = fit_dbscan(sample.data, 1.0, 4)
    with raise_if_dask_computes():
        lazy = assign_nearest(
            da.from_array(x, chunks=(777, 4)), fit.core_points, fit.core_labels, 1.0
        )
    labels = lazy.compute()
    np.testing.assert_array_equal(labels, assign_nearest(x, fit.core_points, fit.core_labels, 1.0))
    assert labels[-1] == -1
    # On the full data scikit-learn finds the same three clusters: the assignment agrees with
    # it up to a relabelling for every row both call a member.
    full = DBSCAN(eps=1.0, min_samples=4).fit(x).labels_
    both = (labels >= 0) & (full >= 0)
    assert both.mean() > 0.95
    pairs = set(zip(labels[both].tolist(), full[both].tolist(), strict=True))
    assert len(pairs) == 3


def test_rows_with_nan_get_minus_one() -> None:
    x = np.array([[0.0, 0.0], [np.nan, 0.0], [5.0, 5.0]])
    labels = assign_nearest(x, np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([0, 1]))
    assert labels.tolist() == [0, -1, 1]
