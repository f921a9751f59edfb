"""Fit on a seeded sample, then label every row from the fitted sample, in parallel.

DBSCAN and agglomerative clustering need all pairwise distances (quadratic time, and for
agglomerative quadratic memory), so above a size they are fitted on a sample and every other
row takes the label of its nearest fitted point: a core point within ``eps`` for DBSCAN, a
cluster centroid (Ward) or sampled point (other linkages) for agglomerative clustering.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
from distributed import Client
from sklearn.metrics import pairwise_distances_argmin_min

__all__ = ["Sample", "assign_nearest", "fit_sample"]

Matrix = np.ndarray | da.Array


@dataclass(frozen=True)
class Sample:
    """The rows a quadratic method is fitted on.

    Attributes
    ----------
    rows : ndarray of int64, shape (m,)
        Positions of the sampled rows in the matrix (sorted); all rows when not sampled.
    data : ndarray, shape (m, d), float64
    sampled : bool
        Whether ``rows`` is a proper subset (the rest is assigned).
    """

    rows: np.ndarray
    data: np.ndarray
    sampled: bool


def fit_sample(x: Matrix, max_size: int, seed: int, client: Client | None = None) -> Sample:
    """All of ``x`` when it has at most ``max_size`` rows, else a seeded sample of that size.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
        Only the sampled rows are read (and brought into memory).
    max_size : int
    seed : int
    client : distributed.Client, optional
        Reads the sampled rows of a dask ``x`` on this client.
    """
    n = x.shape[0]
    if n <= max_size:
        rows = np.arange(n, dtype=np.int64)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_size, replace=False))
    data = x[rows] if len(rows) < n else x
    if isinstance(data, da.Array):
        data = client.compute(data).result() if client is not None else data.compute()
    return Sample(rows, np.asarray(data, dtype=np.float64), len(rows) < n)


def _nearest_block(
    block: np.ndarray, points: np.ndarray, labels: np.ndarray, max_distance: float
) -> np.ndarray:
    x = np.asarray(block, dtype=np.float64)
    out = np.full(x.shape[0], -1, dtype=np.int64)
    finite = np.isfinite(x).all(axis=1)
    if not finite.any() or len(points) == 0:
        return out
    idx, dist = pairwise_distances_argmin_min(x[finite], points)
    found = labels[idx]
    found[dist > max_distance] = -1
    out[finite] = found
    return out


def assign_nearest(
    x: Matrix, points: np.ndarray, labels: np.ndarray, max_distance: float = np.inf
) -> np.ndarray | da.Array:
    """Label each row of ``x`` with the label of its nearest point.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
    points : ndarray, shape (m, d)
    labels : ndarray of int, shape (m,)
    max_distance : float
        Rows farther than this (Euclidean) from every point get -1 (DBSCAN's noise).

    Returns
    -------
    ndarray or lazy dask array, shape (n,), int64
        -1 also for rows with a non-finite value.
    """
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(x, da.Array):
        rows: da.Array = x.rechunk({1: -1}) if x.numblocks[1] != 1 else x
        return da.map_blocks(
            _nearest_block, rows, points, labels, max_distance, drop_axis=1, dtype=np.int64
        )
    return _nearest_block(x, points, labels, max_distance)
