"""Cluster quality: internal scores on the space that was clustered, and agreement with a
known label column when there is one."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

__all__ = ["agreement_scores", "internal_scores"]


def internal_scores(
    x: np.ndarray, labels: np.ndarray, *, silhouette_sample: int, seed: int
) -> dict[str, float | int]:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz of a clustering.

    Noise (label -1) is left out of the scores, as it belongs to no cluster.

    Parameters
    ----------
    x : ndarray, shape (n, d)
        The features that were clustered.
    labels : ndarray of int, shape (n,)
    silhouette_sample : int
        Above this many rows the silhouette (quadratic) is computed on a seeded sample of
        this size; the other two scores always use every row.
    seed : int

    Returns
    -------
    dict
        ``n_clusters``, ``n_noise``, ``silhouette``, ``silhouette_n`` (rows it used),
        ``davies_bouldin``, ``calinski_harabasz``; scores are NaN where undefined (fewer than
        two clusters, or every point its own cluster).
    """
    labels = np.asarray(labels)
    member = labels >= 0
    xs, ls = x[member], labels[member]
    k = len(np.unique(ls))
    out: dict[str, float | int] = {
        "n_clusters": k,
        "n_noise": int((~member).sum()),
        "silhouette": math.nan,
        "silhouette_n": 0,
        "davies_bouldin": math.nan,
        "calinski_harabasz": math.nan,
    }
    if not 2 <= k < len(ls):
        return out
    n_sil = min(len(ls), silhouette_sample)
    sample = None if n_sil == len(ls) else n_sil
    out["silhouette"] = float(silhouette_score(xs, ls, sample_size=sample, random_state=seed))
    out["silhouette_n"] = n_sil
    out["davies_bouldin"] = float(davies_bouldin_score(xs, ls))
    out["calinski_harabasz"] = float(calinski_harabasz_score(xs, ls))
    return out


def agreement_scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Adjusted Rand index and normalised mutual information against known classes.

    Every row counts, DBSCAN's noise as one more group: leaving it out would reward
    a clustering for declaring hard rows noise.
    """
    return {
        "ari": float(adjusted_rand_score(truth, labels)),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
    }
