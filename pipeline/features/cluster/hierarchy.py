"""Agglomerative clustering (scikit-learn), and how rows beyond a fitted sample join it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from pipeline.errors import ParameterError

__all__ = ["AgglomerativeFit", "Linkage", "fit_agglomerative"]

Linkage = Literal["ward", "average", "complete", "single"]


@dataclass(frozen=True)
class AgglomerativeFit:
    """Agglomerative clustering of a set of rows.

    Attributes
    ----------
    labels : ndarray of int64, shape (m,)
    anchors : ndarray, shape (a, d)
        What other rows are assigned to: the cluster centroids for Ward linkage (Ward merges
        by centroid distance), the fitted rows themselves for the other linkages.
    anchor_labels : ndarray of int64, shape (a,)
    """

    labels: np.ndarray
    anchors: np.ndarray
    anchor_labels: np.ndarray

    @property
    def n_clusters(self) -> int:
        """Number of clusters found."""
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def fit_agglomerative(
    x: np.ndarray,
    *,
    linkage: Linkage = "ward",
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
) -> AgglomerativeFit:
    """scikit-learn's AgglomerativeClustering on ``x`` (m, d).

    Exactly one of ``n_clusters`` and ``distance_threshold`` is given (the galaxy notebook
    uses Ward with ``distance_threshold=100``).
    """
    if (n_clusters is None) == (distance_threshold is None):
        raise ParameterError(
            f"agglomerative: n_clusters={n_clusters}, distance_threshold={distance_threshold}; "
            "give exactly one of them"
        )
    if n_clusters is not None and not 1 <= n_clusters <= len(x):
        raise ParameterError(
            f"agglomerative: n_clusters={n_clusters} for {len(x)} row(s); expected 1 to {len(x)}"
        )
    if len(x) < 2:
        raise ParameterError(f"agglomerative: {len(x)} row(s); need at least 2 to cluster")
    model = AgglomerativeClustering(
        n_clusters=n_clusters, linkage=linkage, distance_threshold=distance_threshold
    ).fit(x)
    labels = model.labels_.astype(np.int64)
    if linkage == "ward":
        k = int(labels.max()) + 1
        counts = np.bincount(labels, minlength=k)[:, None]
        sums = np.zeros((k, x.shape[1]))
        np.add.at(sums, labels, x)
        return AgglomerativeFit(labels, sums / counts, np.arange(k, dtype=np.int64))
    return AgglomerativeFit(labels, x, labels)
