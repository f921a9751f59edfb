"""The cluster stages: k-means (elbow), DBSCAN (eps sweep), agglomerative, SOM.

Each reads a feature matrix from the store (by default ``reduced``, the PCA components of the
kept images), labels every row, scores the clustering on the space it clustered, compares it
with a known label column when one is named, and writes its column of
``tables/clusters.parquet`` and its row of ``tables/cluster_metrics.parquet``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import dask.array as da
import numpy as np
import pandas as pd
from distributed import Client
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core.artifacts import save_arrays
from pipeline.core.progress import ProgressFn, no_progress
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.features.cluster.assign import assign_nearest, fit_sample
from pipeline.features.cluster.density import choose_eps, dbscan_sweep, fit_dbscan
from pipeline.features.cluster.hierarchy import Linkage, fit_agglomerative
from pipeline.features.cluster.kmeans import fit_kmeans, kmeans_elbow, predict_kmeans
from pipeline.features.cluster.metrics import agreement_scores, internal_scores
from pipeline.features.cluster.results import write_cluster_labels, write_cluster_metrics
from pipeline.features.cluster.som import (
    distance_map,
    grid_shape,
    quantization_error,
    train_batch_som,
    train_minisom,
    winners,
)
from pipeline.features.matrix import (
    FeatureMatrix,
    RowSelection,
    compute_rows,
    open_matrix,
    row_labels,
)

__all__ = [
    "AgglomerativeParams",
    "DBSCANParams",
    "KMeansParams",
    "SOMParams",
    "run_agglomerative",
    "run_dbscan",
    "run_kmeans",
    "run_som",
]

log = logging.getLogger(__name__)

#: Above this size the features are scored on a seeded sample rather than loaded whole.
_SCORE_MAX_BYTES = 1 << 30


class ClusterInput(BaseModel):
    """What every cluster stage reads and how it is scored.

    Attributes
    ----------
    input : str
        Store array to cluster, ``image`` first (``reduced``: PCA components).
    rows : {"kept", "all"}
        ``kept``: the images the catalog kept (all rows when there is no catalog).
    label_column : str, optional
        A known class per image (a column of the ``images``, ``catalog`` or ``sources``
        table) to report ARI and NMI against.
    silhouette_sample : int
        Above this many rows the silhouette uses a seeded sample of this size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = "reduced"
    rows: RowSelection = "kept"
    label_column: str | None = None
    silhouette_sample: int = Field(10_000, ge=10)


class KMeansParams(ClusterInput):
    """Parameters of the ``kmeans`` stage (defaults from the k-means lab, seed 003).

    ``k`` unset: fit every k in ``k_range`` (inclusive) and take the elbow (kneed's Kneedle).
    """

    k: int | None = Field(None, ge=1)
    k_range: tuple[int, int] = (1, 10)
    n_init: int = Field(3, ge=1)
    max_iter: int = Field(300, ge=1)
    tol: float = Field(1e-4, ge=0)
    init_sample: int = Field(100_000, ge=10)
    sensitivity: float = Field(1.0, gt=0, description="Kneedle's S")

    @model_validator(mode="after")
    def _range(self) -> KMeansParams:
        lo, hi = self.k_range
        if not 1 <= lo < hi:
            raise ValueError(
                f"k_range {list(self.k_range)}: expected [low, high] with 1 <= low < high"
            )
        return self


class SampledFit(ClusterInput):
    """Shared by the quadratic methods: above ``max_fit_size`` rows, fit on a seeded sample
    and assign the rest to the nearest fitted cluster."""

    max_fit_size: int = Field(10_000, ge=10)


class DBSCANParams(SampledFit):
    """Parameters of the ``dbscan`` stage (defaults from the galaxy notebook, seed 000).

    ``eps`` unset: sweep ``eps_range`` = [start, stop) by ``eps_step`` in parallel and take
    the eps with the best silhouette among those with at least ``min_clusters`` clusters and
    at most ``max_noise`` of the rows as noise.
    """

    eps: float | None = Field(None, gt=0)
    eps_range: tuple[float, float] = (0.5, 10.0)
    eps_step: float = Field(0.05, gt=0)
    min_samples: int = Field(4, ge=1)
    min_clusters: int = Field(3, ge=1)
    max_noise: float = Field(0.25, ge=0, le=1, description="largest noise share the rule accepts")

    def eps_values(self) -> list[float]:
        """The swept eps values."""
        lo, hi = self.eps_range
        return [float(v) for v in np.round(np.arange(lo, hi, self.eps_step), 10)]


class AgglomerativeParams(SampledFit):
    """Parameters of the ``agglomerative`` stage (notebook: Ward, distance threshold 100).

    Give ``n_clusters`` to cut the tree at a number of clusters instead of a distance.
    """

    linkage: Linkage = "ward"
    n_clusters: int | None = Field(None, ge=1)
    distance_threshold: float | None = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _one_cut(self) -> AgglomerativeParams:
        if self.n_clusters is not None and "distance_threshold" not in self.model_fields_set:
            object.__setattr__(self, "distance_threshold", None)
        if (self.n_clusters is None) == (self.distance_threshold is None):
            raise ValueError("give exactly one of n_clusters and distance_threshold")
        return self


class SOMParams(SampledFit):
    """Parameters of the ``som`` stage (defaults from the galaxy notebook, seed 000).

    The map has ``int(10*sqrt(n))`` nodes per side (the notebook's size) up to ``max_side``,
    or ``side``. Up to ``minisom_max_rows`` rows MiniSom trains it as the notebook does; above,
    a batch SOM whose updates are per-chunk sums combined across the workers. The winners'
    grid cells are then clustered with agglomerative clustering (notebook: average linkage,
    distance threshold 100).
    """

    method: Literal["auto", "minisom", "batch"] = "auto"
    side: int | None = Field(None, ge=2)
    max_side: int = Field(100, ge=2)
    sigma: float = Field(50.0, gt=0)
    learning_rate: float = Field(0.1, gt=0)
    iterations: int = Field(1000, ge=1)
    epochs: int = Field(10, ge=1)
    minisom_max_rows: int = Field(50_000, ge=1)
    cluster_linkage: Linkage = "average"
    cluster_threshold: float | None = Field(100.0, gt=0)
    cluster_n: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_cut(self) -> SOMParams:
        if self.cluster_n is not None and "cluster_threshold" not in self.model_fields_set:
            object.__setattr__(self, "cluster_threshold", None)
        if (self.cluster_n is None) == (self.cluster_threshold is None):
            raise ValueError("give exactly one of cluster_n and cluster_threshold")
        return self


# -- shared steps -------------------------------------------------------------------------


def _scoring_features(
    m: FeatureMatrix, seed: int, client: Client | None
) -> tuple[np.ndarray, np.ndarray]:
    """The clustered features (all rows, or a seeded sample if too large) and their rows."""
    nbytes = m.n_rows * m.data.shape[1] * 8
    if nbytes <= _SCORE_MAX_BYTES:
        return compute_rows(m.data, client), np.arange(m.n_rows)
    size = max(10, _SCORE_MAX_BYTES // (m.data.shape[1] * 8))
    rows = np.sort(np.random.default_rng(seed).choice(m.n_rows, size=size, replace=False))
    return compute_rows(m.data[rows], client), rows


def _open(store: RunStore, params: ClusterInput) -> tuple[FeatureMatrix, np.ndarray | None]:
    """The feature matrix and the known labels, both checked before any clustering runs."""
    m = open_matrix(store, params.input, params.rows)
    truth = row_labels(store, params.label_column, m.positions) if params.label_column else None
    return m, truth


def _finish(
    store: RunStore,
    params: ClusterInput,
    method: str,
    m: FeatureMatrix,
    truth: np.ndarray | None,
    labels: np.ndarray,
    *,
    space: str,
    features: np.ndarray,
    feature_rows: np.ndarray,
    fit_size: int,
    chosen: dict[str, Any],
    seed: int,
    extra_columns: dict[str, np.ndarray] | None = None,
) -> dict[str, int]:
    labels = np.asarray(labels, dtype=np.int64)
    write_cluster_labels(store, m, {method: labels, **(extra_columns or {})})
    scores = internal_scores(
        features, labels[feature_rows], silhouette_sample=params.silhouette_sample, seed=seed
    )
    row: dict[str, Any] = {
        "method": method,
        "space": space,
        "n_points": m.n_rows,
        "fit_size": fit_size,
        "sampled": fit_size < m.n_rows,
        **scores,
        "n_clusters": len(set(labels.tolist()) - {-1}),
        "n_noise": int((labels == -1).sum()),
        "label_column": params.label_column or "",
        "params": json.dumps(chosen, sort_keys=True),
    }
    if truth is not None:
        row.update(agreement_scores(labels, truth))
    write_cluster_metrics(store, row)
    log.info(
        "%s: %d cluster(s), %d noise, silhouette %.3f, ARI %s",
        method,
        row["n_clusters"],
        row["n_noise"],
        row["silhouette"],
        f"{row['ari']:.3f}" if "ari" in row else "n/a",
    )
    return {"rows": m.n_rows, "clusters": int(row["n_clusters"]), "noise": int(row["n_noise"])}


def _space(m: FeatureMatrix) -> str:
    return f"{m.array} ({m.data.shape[1]} features)"


def _sample_fit_labels(
    sample_rows: np.ndarray, sample_labels: np.ndarray, assigned: Any, client: Client | None
) -> np.ndarray:
    """Assigned labels for every row, with the fitted rows keeping their own fit labels."""
    labels = compute_rows(assigned, client).astype(np.int64)
    labels[sample_rows] = sample_labels
    return labels


def _write_elbow(store: RunStore, name: str, rows: pd.DataFrame | None) -> None:
    """Replace step ``name``'s rows of ``tables/elbow.parquet`` (remove them if ``rows`` is
    None), keeping other kmeans steps' searches."""
    old = read_table(store, "elbow") if store.exists("tables/elbow.parquet") else None
    # A table from before steps were named has no `method` column: it is superseded.
    old = old[old["method"] != name] if old is not None and "method" in old.columns else None
    parts = [t for t in (old, rows) if t is not None and len(t)]
    if parts:
        write_table(store, "elbow", pd.concat(parts, ignore_index=True))
    else:
        store.remove("tables/elbow.parquet")


# -- the stages ---------------------------------------------------------------------------


def run_kmeans(
    store: RunStore,
    params: KMeansParams,
    client: Client | None,
    *,
    seed: int = 0,
    name: str = "kmeans",
) -> dict[str, int]:
    """k-means on the store's feature matrix, with k from the elbow unless ``params.k``.

    Writes the ``kmeans`` column of ``tables/clusters.parquet``, ``tables/elbow.parquet``
    (elbow search only), ``models/kmeans.npz`` (centres, for :func:`predict_kmeans`) and the
    metrics row.
    """
    m, truth = _open(store, params)
    opts: dict[str, Any] = {
        "n_init": params.n_init,
        "max_iter": params.max_iter,
        "tol": params.tol,
        "seed": seed,
        "init_sample": params.init_sample,
        "client": client,
    }
    if params.k is None:
        lo, hi = params.k_range
        hi = min(hi, m.n_rows)
        elbow = kmeans_elbow(m.data, range(lo, hi + 1), sensitivity=params.sensitivity, **opts)
        fit = elbow.best()
        _write_elbow(
            store,
            name,
            pd.DataFrame(
                {
                    "method": name,
                    "k": elbow.ks,
                    "inertia": elbow.inertias,
                    "n_iter": [f.n_iter for f in elbow.fits],
                    "chosen": [k == elbow.k for k in elbow.ks],
                    "rule": elbow.rule,
                }
            ),
        )
        chosen: dict[str, Any] = {"k": elbow.k, "rule": elbow.rule, "n_init": params.n_init}
    else:
        fit = fit_kmeans(m.data, params.k, **opts)
        chosen = {"k": params.k, "n_init": params.n_init}
        _write_elbow(store, name, None)
    labels = compute_rows(predict_kmeans(m.data, fit.centers), client)
    save_arrays(store, name, {"centers": fit.centers}, input=params.input, inertia=fit.inertia)
    features, rows = _scoring_features(m, seed, client)
    return _finish(
        store,
        params,
        name,
        m,
        truth,
        labels,
        space=_space(m),
        features=features,
        feature_rows=rows,
        fit_size=m.n_rows,
        chosen={**chosen, "inertia": fit.inertia, "converged": fit.converged},
        seed=seed,
    )


def run_dbscan(
    store: RunStore,
    params: DBSCANParams,
    client: Client | None,
    *,
    seed: int = 0,
    progress: ProgressFn = no_progress,
    name: str = "dbscan",
) -> dict[str, int]:
    """DBSCAN on the store's feature matrix, eps from the sweep unless ``params.eps``.

    Writes the ``dbscan`` column, ``tables/dbscan_sweep.parquet`` (sweep only) and the
    metrics row.
    """
    m, truth = _open(store, params)
    sample = fit_sample(m.data, params.max_fit_size, seed, client)
    if params.eps is None:
        sweep = dbscan_sweep(
            sample.data,
            params.eps_values(),
            params.min_samples,
            silhouette_sample=params.silhouette_sample,
            seed=seed,
            client=client,
            progress=progress,
        )
        # The sweep table is written before the choice, so a failed rule can be inspected.
        sweep["chosen"] = False
        write_table(store, "dbscan_sweep", sweep)
        eps = choose_eps(sweep, params.min_clusters, params.max_noise, len(sample.rows))
        sweep["chosen"] = np.isclose(sweep["eps"], eps)
        write_table(store, "dbscan_sweep", sweep)
    else:
        eps = params.eps
        store.remove("tables/dbscan_sweep.parquet")
    fit = fit_dbscan(sample.data, eps, params.min_samples)
    if sample.sampled:
        assigned = assign_nearest(m.data, fit.core_points, fit.core_labels, max_distance=eps)
        labels = _sample_fit_labels(sample.rows, fit.labels, assigned, client)
    else:
        labels = fit.labels
    features, rows = _scoring_features(m, seed, client)
    return _finish(
        store,
        params,
        name,
        m,
        truth,
        labels,
        space=_space(m),
        features=features,
        feature_rows=rows,
        fit_size=len(sample.rows),
        chosen={"eps": eps, "min_samples": params.min_samples},
        seed=seed,
    )


def _agglomerate(
    x: np.ndarray | da.Array,
    *,
    max_fit_size: int,
    linkage: Linkage,
    n_clusters: int | None,
    distance_threshold: float | None,
    seed: int,
    client: Client | None,
) -> tuple[np.ndarray, int]:
    sample = fit_sample(x, max_fit_size, seed, client)
    fit = fit_agglomerative(
        sample.data, linkage=linkage, n_clusters=n_clusters, distance_threshold=distance_threshold
    )
    if not sample.sampled:
        return fit.labels, len(sample.rows)
    assigned = assign_nearest(x, fit.anchors, fit.anchor_labels)
    return _sample_fit_labels(sample.rows, fit.labels, assigned, client), len(sample.rows)


def run_agglomerative(
    store: RunStore,
    params: AgglomerativeParams,
    client: Client | None,
    *,
    seed: int = 0,
    name: str = "agglomerative",
) -> dict[str, int]:
    """Agglomerative clustering of the store's feature matrix (sample-then-assign above
    ``max_fit_size`` rows). Writes the ``agglomerative`` column and the metrics row."""
    m, truth = _open(store, params)
    labels, fit_size = _agglomerate(
        m.data,
        max_fit_size=params.max_fit_size,
        linkage=params.linkage,
        n_clusters=params.n_clusters,
        distance_threshold=params.distance_threshold,
        seed=seed,
        client=client,
    )
    features, rows = _scoring_features(m, seed, client)
    chosen = {
        "linkage": params.linkage,
        "n_clusters": params.n_clusters,
        "distance_threshold": params.distance_threshold,
    }
    return _finish(
        store,
        params,
        name,
        m,
        truth,
        labels,
        space=_space(m),
        features=features,
        feature_rows=rows,
        fit_size=fit_size,
        chosen=chosen,
        seed=seed,
    )


def run_som(
    store: RunStore,
    params: SOMParams,
    client: Client | None,
    *,
    seed: int = 0,
    name: str = "som",
) -> dict[str, int]:
    """A self-organising map of the store's feature matrix, then agglomerative clustering of
    each row's winning grid cell, as the galaxy notebook does.

    Writes the ``som``, ``som_row`` and ``som_col`` columns, ``models/som.npz`` (weights,
    U-matrix) and the metrics row (scored on the winners' grid coordinates, the space that
    was clustered).
    """
    m, truth = _open(store, params)
    shape = grid_shape(m.n_rows, params.side, params.max_side)
    method = params.method
    if method == "auto":
        method = "minisom" if m.n_rows <= params.minisom_max_rows else "batch"
    if method == "minisom":
        data = compute_rows(m.data, client).astype(np.float64)
        weights = train_minisom(
            data,
            shape,
            sigma=params.sigma,
            learning_rate=params.learning_rate,
            iterations=params.iterations,
            seed=seed,
        )
        x: np.ndarray | da.Array = data
    else:
        x = m.data
        weights = train_batch_som(
            x,
            shape,
            sigma=min(params.sigma, max(shape) / 2),
            epochs=params.epochs,
            seed=seed,
            client=client,
        )
    cells = compute_rows(winners(x, weights), client).astype(np.int64)
    qe = float(quantization_error(x, weights))
    save_arrays(
        store,
        name,
        {"weights": weights, "distance_map": distance_map(weights)},
        method=method,
        quantization_error=qe,
        input=params.input,
    )
    labels, fit_size = _agglomerate(
        cells.astype(np.float64),
        max_fit_size=params.max_fit_size,
        linkage=params.cluster_linkage,
        n_clusters=params.cluster_n,
        distance_threshold=params.cluster_threshold,
        seed=seed,
        client=client,
    )
    chosen = {
        "method": method,
        "grid": list(shape),
        "quantization_error": qe,
        "cluster_linkage": params.cluster_linkage,
        "cluster_threshold": params.cluster_threshold,
        "cluster_n": params.cluster_n,
    }
    return _finish(
        store,
        params,
        name,
        m,
        truth,
        labels,
        space=f"som winners (grid cells of a {shape[0]}x{shape[1]} map of {_space(m)})",
        features=cells.astype(np.float64),
        feature_rows=np.arange(m.n_rows),
        fit_size=fit_size,
        chosen=chosen,
        seed=seed,
        extra_columns={f"{name}_row": cells[:, 0], f"{name}_col": cells[:, 1]},
    )
