"""Clustering of feature matrices (PCA components, embeddings, patient tables) at scale.

The public API::

    from pipeline.features.cluster import fit_kmeans, kmeans_elbow, predict_kmeans  # k-means
    from pipeline.features.cluster import dbscan_sweep, fit_dbscan, fit_agglomerative  # sklearn
    from pipeline.features.cluster import train_minisom, train_batch_som, winners     # SOMs
    from pipeline.features.cluster import run_kmeans, run_dbscan, run_agglomerative, run_som

Each function takes a numpy array or a row-chunked dask array; the quadratic methods fit a
seeded sample above a size and assign the other rows (:mod:`pipeline.features.cluster.assign`).
"""

from pipeline.features.cluster.assign import assign_nearest, fit_sample
from pipeline.features.cluster.density import choose_eps, dbscan_sweep, fit_dbscan
from pipeline.features.cluster.hierarchy import fit_agglomerative
from pipeline.features.cluster.kmeans import (
    ElbowResult,
    KMeansResult,
    find_elbow,
    fit_kmeans,
    kmeans_elbow,
    predict_kmeans,
)
from pipeline.features.cluster.metrics import agreement_scores, internal_scores
from pipeline.features.cluster.som import (
    distance_map,
    grid_shape,
    quantization_error,
    train_batch_som,
    train_minisom,
    winners,
)
from pipeline.features.cluster.stages import (
    AgglomerativeParams,
    DBSCANParams,
    KMeansParams,
    SOMParams,
    run_agglomerative,
    run_dbscan,
    run_kmeans,
    run_som,
)

__all__ = [
    "AgglomerativeParams",
    "DBSCANParams",
    "ElbowResult",
    "KMeansParams",
    "KMeansResult",
    "SOMParams",
    "agreement_scores",
    "assign_nearest",
    "choose_eps",
    "dbscan_sweep",
    "distance_map",
    "find_elbow",
    "fit_agglomerative",
    "fit_dbscan",
    "fit_kmeans",
    "fit_sample",
    "grid_shape",
    "internal_scores",
    "kmeans_elbow",
    "predict_kmeans",
    "quantization_error",
    "run_agglomerative",
    "run_dbscan",
    "run_kmeans",
    "run_som",
    "train_batch_som",
    "train_minisom",
    "winners",
]
