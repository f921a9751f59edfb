"""DBSCAN: the eps sweep of the galaxy notebook, run in parallel, and one chosen fit.

scikit-learn's DBSCAN does the clustering; this module spreads a sweep of eps values over the
workers, chooses eps by a stated rule, and labels rows beyond the fitted sample by their
nearest core point (:mod:`pipeline.features.cluster.assign`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from distributed import Client
from sklearn.cluster import DBSCAN

from pipeline.core.progress import ProgressFn, gather_with_progress, no_progress
from pipeline.errors import ParameterError
from pipeline.features.cluster.metrics import internal_scores

__all__ = ["DBSCANFit", "choose_eps", "dbscan_sweep", "fit_dbscan"]

#: eps values per sweep task: enough work per task to outweigh its scheduling.
_EPS_PER_TASK = 8


@dataclass(frozen=True)
class DBSCANFit:
    """DBSCAN fitted on a set of rows.

    Attributes
    ----------
    labels : ndarray of int64, shape (m,)
        -1 is noise.
    core_points : ndarray, shape (c, d)
    core_labels : ndarray of int64, shape (c,)
    eps : float
    """

    labels: np.ndarray
    core_points: np.ndarray
    core_labels: np.ndarray
    eps: float


def fit_dbscan(x: np.ndarray, eps: float, min_samples: int) -> DBSCANFit:
    """scikit-learn's DBSCAN on ``x`` (n, d), keeping what assigning new rows needs."""
    if eps <= 0 or min_samples < 1:
        raise ParameterError(
            f"DBSCAN: eps={eps}, min_samples={min_samples}; expected eps > 0 and min_samples >= 1"
        )
    model = DBSCAN(eps=eps, min_samples=min_samples).fit(x)
    core = model.core_sample_indices_
    labels = model.labels_.astype(np.int64)
    return DBSCANFit(labels, x[core], labels[core], float(eps))


def _sweep_part(
    x: np.ndarray, eps_values: Sequence[float], min_samples: int, silhouette_sample: int, seed: int
) -> list[dict[str, float | int]]:
    rows = []
    for eps in eps_values:
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit(x).labels_
        scores = internal_scores(x, labels, silhouette_sample=silhouette_sample, seed=seed)
        rows.append(
            {
                "eps": float(eps),
                "n_clusters": int(scores["n_clusters"]),
                "n_noise": int(scores["n_noise"]),
                "silhouette": float(scores["silhouette"]),
            }
        )
    return rows


def dbscan_sweep(
    x: np.ndarray,
    eps_values: Sequence[float],
    min_samples: int,
    *,
    silhouette_sample: int = 10_000,
    seed: int = 0,
    client: Client | None = None,
    progress: ProgressFn = no_progress,
) -> pd.DataFrame:
    """Clusters, noise and silhouette for each eps, the eps values run in parallel.

    Parameters
    ----------
    x : ndarray, shape (n, d)
        Sent to the workers once (a sample of features, not pixel data).
    eps_values : sequence of float
    min_samples : int
    silhouette_sample : int
        Rows the silhouette of each eps is computed on (seeded sample above this size).
    seed : int
    client : distributed.Client, optional
        Without one the sweep runs here, serially.

    Returns
    -------
    DataFrame
        ``eps``, ``n_clusters``, ``n_noise``, ``silhouette`` (NaN below two clusters),
        sorted by eps.
    """
    eps_values = sorted(float(e) for e in eps_values)
    if not eps_values or eps_values[0] <= 0:
        raise ParameterError(f"DBSCAN sweep: eps values {eps_values[:3]}...; expected eps > 0")
    groups = [eps_values[i : i + _EPS_PER_TASK] for i in range(0, len(eps_values), _EPS_PER_TASK)]
    if client is None:
        parts = [_sweep_part(x, g, min_samples, silhouette_sample, seed) for g in groups]
    else:
        [data] = client.scatter([x], broadcast=True)
        futures = [
            client.submit(_sweep_part, data, g, min_samples, silhouette_sample, seed, pure=False)
            for g in groups
        ]
        parts = gather_with_progress(client, futures, "dbscan eps sweep", progress)
    return pd.DataFrame([row for part in parts for row in part]).sort_values(
        "eps", ignore_index=True
    )


def choose_eps(sweep: pd.DataFrame, min_clusters: int, max_noise: float, n_rows: int) -> float:
    """The eps with the best silhouette among those giving at least ``min_clusters`` clusters
    and at most ``max_noise`` (a fraction of ``n_rows``) noise.

    The galaxy notebook keeps the sweeps with three or more clusters ("less gave garbage
    results") and then picks by eye; the silhouette makes that choice repeatable, and the noise
    bound keeps it from preferring a few tight clusters with most rows declared noise.

    Raises
    ------
    ParameterError
        If no eps qualifies, with the most clusters any eps gave.
    """
    ok = sweep[
        (sweep["n_clusters"] >= min_clusters)
        & (sweep["n_noise"] <= max_noise * n_rows)
        & sweep["silhouette"].notna()
    ]
    if ok.empty:
        most = int(sweep["n_clusters"].max()) if len(sweep) else 0
        raise ParameterError(
            f"DBSCAN: no eps in [{sweep['eps'].min():g}, {sweep['eps'].max():g}] gives "
            f"{min_clusters} or more clusters with at most {max_noise:.0%} noise (the most "
            f"clusters any eps gave: {most}); see tables/dbscan_sweep.parquet, then widen "
            "`eps_range`, lower `min_clusters`, raise `max_noise`, or set `eps`"
        )
    return float(ok["eps"].to_numpy()[int(np.argmax(ok["silhouette"].to_numpy()))])
