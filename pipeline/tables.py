"""Every table a run store holds, and what each column means: documented once, here.

Tables live at ``<store>/tables/<name>.parquet`` and are plain Parquet that pandas (or any
Arrow reader) opens. :func:`write_table` refuses a frame that lacks a documented column, so
the documentation below cannot drift from what is written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from pipeline.errors import StoreError
from pipeline.store import RunStore

__all__ = ["TABLES", "TableSchema", "read_table", "write_table"]


@dataclass(frozen=True)
class TableSchema:
    """A documented table.

    Parameters
    ----------
    name : str
        File stem under ``tables/``.
    description : str
        What one row is.
    columns : mapping of str to str
        Required columns and their meaning (units where they have one).
    open_columns : bool
        Whether further columns may follow (e.g. user metadata columns).
    """

    name: str
    description: str
    columns: Mapping[str, str]
    open_columns: bool = False


TABLES: Mapping[str, TableSchema] = {
    t.name: t
    for t in (
        TableSchema(
            name="images",
            description="One row per ingested image, in the order of the `image` dimension.",
            columns={
                "image": "position along the `image` dimension of store.zarr (0-based)",
                "image_id": "identifier: the manifest's `image_id` column, else the file "
                "stem, else (stems not unique) the path relative to the sources' common folder",
                "source": "the file the image was read from (absolute path or URL)",
                "height": "height of the source file in pixels, before any resize or pad",
                "width": "width of the source file in pixels, before any resize or pad",
                "channels": "channels of the source file (1 for grayscale)",
                "format": "decoder used: jpeg, png, tiff or fits",
            },
            open_columns=True,  # metadata columns from a CSV/Parquet manifest follow
        ),
        TableSchema(
            name="catalog",
            description="One row per collection image: the galaxy preprocessing's verdict "
            "(stage `preprocess`), in the order of the `image` dimension.",
            columns={
                "image_id": "the image's identifier (as in `images`)",
                "status": "`kept` (its cutout is in `cutouts`) or `rejected`",
                "reason": "why rejected: invalid (unreadable input), non_finite (NaN/inf "
                "pixels), no_galaxy, overlap (a neighbour overlaps the galaxy), stripe "
                "(a dark imaging stripe crosses it); empty when kept",
                "x": "galaxy centre, column (px; the light's centroid when kept)",
                "y": "galaxy centre, row (px)",
                "sigma": "blob scale of the galaxy (px)",
                "radius": "galaxy radius, radius_factor * sigma (px)",
                "angle_deg": "major axis, degrees in [0, 180) counter-clockwise from +x with "
                "y up; the cutout is rotated to bring it along +x",
                "stripe_score": "how well the dark-in-bright pixels of the galaxy's crop lie "
                "on a line, in [0, 1] (rotation-invariant R^2)",
            },
        ),
        TableSchema(
            name="sources",
            description="One row per source detected in the mosaic (stage `detect_sources`), "
            "in the order of the cutouts' `image` dimension.",
            columns={
                "image_id": "source identifier, also the cutouts' `image_id`",
                "y": "row of the blob centre in the mosaic (px)",
                "x": "column of the blob centre in the mosaic (px)",
                "sigma": "blob scale (px)",
                "tile": "the mosaic tile (chunk) whose core holds the centre, `r{row}c{col}`",
                "angle_deg": "major axis of the source's cutout (degrees, as in `catalog`)",
            },
        ),
        TableSchema(
            name="explained_variance",
            description="One row per principal component of the `reduce` stage's PCA.",
            columns={
                "component": "component number (0-based), the `component` index of `reduced`",
                "explained_variance": "variance along the component (unbiased, feature units "
                "squared)",
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
                "silhouette": "silhouette coefficient in [-1, 1] (higher is better), noise "
                "excluded",
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
            name="training_loss",
            description="One row per epoch of the `train_encoder` stage (SimCLR).",
            columns={
                "epoch": "epoch number, from 1",
                "loss": "mean NT-Xent loss over the epoch's batches",
                "lr": "learning rate at the end of the epoch",
                "images": "images seen in the epoch (each gives two augmented views)",
                "seconds": "wall time of the epoch, in seconds",
                "device": "where it trained: cpu, cuda or cuda:N",
                "checkpoint": "file name of the checkpoint saved after the epoch (under "
                "models/), empty if none was saved",
            },
        ),
        TableSchema(
            name="probe",
            description="One row per (features, shots, seed) of the `probe` stage: logistic "
            "regression on frozen features, scored on a held-out stratified test split.",
            columns={
                "features": "store array probed (e.g. `embeddings`, or `reduced` for the PCA "
                "baseline)",
                "shots": "training examples per class (0 = all the training split)",
                "seed": "seed of the split and of the per-class sample",
                "n_train": "training rows used",
                "n_test": "held-out rows scored",
                "accuracy": "fraction of the test rows classified correctly",
                "macro_f1": "F1 averaged over classes with equal weight",
            },
        ),
        TableSchema(
            name="quarantine",
            description="One row per input set aside; the run went on without it.",
            columns={
                "path": "the file (absolute path or URL)",
                "reason": "why, in one line",
                "stage": "the stage that set it aside",
            },
        ),
    )
}


def _schema(name: str) -> TableSchema:
    try:
        return TABLES[name]
    except KeyError:
        raise StoreError(
            f"unknown table {name!r}; documented tables are: {', '.join(sorted(TABLES))}"
        ) from None


def write_table(store: RunStore, name: str, df: pd.DataFrame) -> None:
    """Write ``df`` as ``tables/<name>.parquet``, atomically.

    Raises
    ------
    StoreError
        If ``name`` is not documented in :data:`TABLES`, or ``df`` lacks a documented column,
        or has undocumented ones where the table allows none.
    """
    schema = _schema(name)
    missing = [c for c in schema.columns if c not in df.columns]
    extra = [c for c in df.columns if c not in schema.columns]
    if missing or (extra and not schema.open_columns):
        raise StoreError(
            f"table {name!r}: missing columns {missing}, undocumented columns {extra}; "
            f"document them in pipeline/tables.py"
        )
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    store.write_bytes(f"tables/{name}.parquet", buf.getvalue())


def read_table(store: RunStore, name: str) -> pd.DataFrame:
    """Read ``tables/<name>.parquet`` from ``store``.

    Raises
    ------
    StoreError
        If the table has not been written.
    """
    rel = f"tables/{_schema(name).name}.parquet"
    if not store.exists(rel):
        raise StoreError(f"{store.path(rel)} does not exist; run the stage that writes it first")
    return pd.read_parquet(io.BytesIO(store.read_bytes(rel)))
