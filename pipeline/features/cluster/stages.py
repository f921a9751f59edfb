"""The cluster stages: k-means (elbow), DBSCAN (eps sweep), agglomerative, SOM.

Each reads a feature matrix from the store (by default ``reduced``, the PCA components of the
kept images), labels every row, scores the clustering on the space it clustered, compares it
with a known label column when one is named, and writes its column of
``tables/clusters.parquet`` and its row of ``tables/cluster_metrics.parquet``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from distributed import Client

from pipeline.core.artifacts import save_arrays
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.features.cluster.assign import assign_nearest, fit_sample
from pipeline.features.cluster.density import choose_eps, dbscan_sweep, fit_dbscan
from pipeline.features.cluster.hierarchy import fit_agglomerative
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
from pipeline.features.matrix import FeatureMatrix, compute_rows, open_matrix, place, row_labels
from pipeline.features.spec import (
    AgglomerativeParams,
    ClusterInput,
    DBSCANParams,
    KMeansParams,
    Linkage,
    SOMParams,
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


def _open(
    store: RunStore, params: ClusterInput, client: Client | None
) -> tuple[FeatureMatrix, np.ndarray | None]:
    """The feature matrix, where the stage's passes read it (:func:`place`), and the known
    labels; both are checked before any clustering runs."""
    m = open_matrix(store, params.input, params.rows)
    truth = (
        row_labels(store, params.label_column, m.positions, m.n_total)
        if params.label_column
        else None
    )
    return place(m, client), truth


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


def run_kmeans(ctx: RunContext, params: KMeansParams) -> dict[str, int]:
    """k-means on the store's feature matrix, with k from the elbow unless ``params.k``.

    Writes the step's column of ``tables/clusters.parquet`` (``kmeans`` by default), its rows
    of ``tables/elbow.parquet`` (elbow search only), ``models/<step>.npz`` (centres, for
    :func:`predict_kmeans`) and its metrics row.
    """
    store, client, seed, name = ctx.store, ctx.client, ctx.seed, ctx.step_name("kmeans")
    m, truth = _open(store, params, client)
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


def run_dbscan(ctx: RunContext, params: DBSCANParams) -> dict[str, int]:
    """DBSCAN on the store's feature matrix, eps from the sweep unless ``params.eps``.

    Writes the step's column (``dbscan`` by default), ``tables/dbscan_sweep.parquet`` (sweep
    only) and its metrics row.
    """
    store, client, seed, name = ctx.store, ctx.client, ctx.seed, ctx.step_name("dbscan")
    progress = ctx.progress
    m, truth = _open(store, params, client)
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


def run_agglomerative(ctx: RunContext, params: AgglomerativeParams) -> dict[str, int]:
    """Agglomerative clustering of the store's feature matrix (sample-then-assign above
    ``max_fit_size`` rows). Writes the step's column (``agglomerative`` by default) and its
    metrics row."""
    store, client, seed = ctx.store, ctx.client, ctx.seed
    name = ctx.step_name("agglomerative")
    m, truth = _open(store, params, client)
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


def run_som(ctx: RunContext, params: SOMParams) -> dict[str, int]:
    """A self-organising map of the store's feature matrix, then agglomerative clustering of
    each row's winning grid cell, as the galaxy notebook does.

    Writes the ``som``, ``som_row`` and ``som_col`` columns, ``models/som.npz`` (weights,
    U-matrix) and the metrics row (scored on the winners' grid coordinates, the space that
    was clustered).
    """
    store, client, seed, name = ctx.store, ctx.client, ctx.seed, ctx.step_name("som")
    m, truth = _open(store, params, client)
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
