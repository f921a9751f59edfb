"""Tables of the feature stages: PCA, clusterings, linear probes."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="explained_variance",
        description="One row per principal component of the `reduce` stage's PCA.",
        columns={
            "component": "component number (0-based), the `component` index of `reduced`",
            "explained_variance": "variance along the component (unbiased, feature units squared)",
            "explained_variance_ratio": "share of the total variance of all features",
            "cumulative_ratio": "share explained by this and the preceding components",
        },
    ),
    TableSchema(
        name="clusters",
        description="One row per clustered image (the rows the cluster stages read), "
        "one label column per clustering method; -1 is noise (DBSCAN) or unlabelled.",
        columns={
            "image": "position along the `image` dimension of store.zarr",
            "image_id": "the image's identifier",
        },
        # one column per method that ran: kmeans, dbscan, agglomerative, som, and the SOM
        # winner's grid cell som_row, som_col
        open_columns=True,
    ),
    TableSchema(
        name="cluster_metrics",
        description="One row per clustering method that ran.",
        columns={
            "method": "kmeans, dbscan, agglomerative or som",
            "space": "the features that were clustered and scored (e.g. `reduced` = PCA "
            "components; `som winners` = the SOM grid cell of each row)",
            "n_points": "rows labelled",
            "fit_size": "rows the method was fitted on; the others were assigned to the "
            "nearest fitted cluster when this is smaller than n_points",
            "sampled": "whether the fit used a seeded sample (see fit_size)",
            "n_clusters": "clusters found (noise excluded)",
            "n_noise": "rows labelled -1 (DBSCAN noise)",
            "silhouette": "silhouette coefficient in [-1, 1] (higher is better), noise excluded",
            "silhouette_n": "rows the silhouette used (a seeded sample above a size)",
            "davies_bouldin": "Davies-Bouldin index (lower is better), noise excluded",
            "calinski_harabasz": "Calinski-Harabasz index (higher is better), noise excluded",
            "label_column": "the known-class column compared with, empty if none",
            "ari": "adjusted Rand index against label_column (1 = identical, ~0 = chance)",
            "nmi": "normalised mutual information against label_column, in [0, 1]",
            "params": "the method's parameters as chosen (JSON), e.g. k or eps",
        },
    ),
    TableSchema(
        name="elbow",
        description="One row per k of each k-means elbow search (one search per kmeans step).",
        columns={
            "method": "the kmeans step that searched (its name in the job: kmeans, or e.g. "
            "kmeans_embeddings)",
            "k": "number of clusters",
            "inertia": "within-cluster sum of squares of the best restart",
            "n_iter": "Lloyd iterations of the best restart",
            "chosen": "whether this k was chosen",
            "rule": "how k was chosen: kneedle (kneed's knee) or max_curvature",
        },
    ),
    TableSchema(
        name="dbscan_sweep",
        description="One row per eps of the DBSCAN sweep (on the fitted rows).",
        columns={
            "eps": "neighbourhood radius, in the units of the clustered features",
            "n_clusters": "clusters found",
            "n_noise": "rows labelled noise",
            "silhouette": "silhouette of the non-noise rows (NaN below two clusters)",
            "chosen": "whether this eps was used for the labels",
        },
    ),
    TableSchema(
        name="probe",
        description="One row per (features, shots, seed) of the `probe` stage: logistic "
        "regression on frozen features, scored on a held-out stratified test split (with "
        "`group_column`, a group split: no group on both sides, the test fraction "
        "approximate). The `supervised_baseline` table has the same columns and splits.",
        columns={
            "features": "store array probed (e.g. `embeddings`, or `reduced` for the PCA baseline)",
            "shots": "training examples per class (0 = all the training split)",
            "seed": "seed of the split and of the per-class sample",
            "n_train": "training rows used",
            "n_test": "held-out rows scored",
            "accuracy": "fraction of the test rows classified correctly",
            "macro_f1": "F1 averaged over classes with equal weight",
        },
    ),
)
