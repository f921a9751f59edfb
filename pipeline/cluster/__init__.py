"""Clustering of feature matrices (PCA components, embeddings, patient tables) at scale.

The public API::

    from pipeline.cluster import fit_kmeans, kmeans_elbow, predict_kmeans   # chunked k-means
    from pipeline.cluster import dbscan_sweep, fit_dbscan, fit_agglomerative  # via scikit-learn
    from pipeline.cluster import train_minisom, train_batch_som, winners     # SOMs
    from pipeline.cluster import run_kmeans, run_dbscan, run_agglomerative, run_som  # stages

Each function takes a numpy array or a row-chunked dask array; the quadratic methods fit a
seeded sample above a size and assign the other rows (:mod:`pipeline.cluster.assign`).
"""

from pipeline.cluster.assign import assign_nearest, fit_sample
from pipeline.cluster.density import choose_eps, dbscan_sweep, fit_dbscan
from pipeline.cluster.hierarchy import fit_agglomerative
from pipeline.cluster.kmeans import (
    ElbowResult,
    KMeansResult,
    find_elbow,
    fit_kmeans,
    kmeans_elbow,
    predict_kmeans,
)
from pipeline.cluster.metrics import agreement_scores, internal_scores
from pipeline.cluster.som import (
    distance_map,
    grid_shape,
    quantization_error,
    train_batch_som,
    train_minisom,
    winners,
)
from pipeline.cluster.stages import (
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
