"""Writing clusterings to the run store: one label column per method, one metrics row per
method. Each stage replaces only its own column and row, so the methods can run (and rerun)
in any order."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, table_schema, write_table
from pipeline.features.matrix import FeatureMatrix

__all__ = ["write_cluster_labels", "write_cluster_metrics"]

log = logging.getLogger(__name__)


def write_cluster_labels(
    store: RunStore, matrix: FeatureMatrix, columns: Mapping[str, np.ndarray]
) -> None:
    """Set ``columns`` (one value per matrix row) in ``tables/clusters.parquet``.

    Columns of other methods are kept while they label the same rows; if the rows changed
    (e.g. the catalog was redone), they are dropped, because they describe other images.
    """
    base = pd.DataFrame({"image": matrix.positions, "image_id": matrix.image_ids})
    if store.exists("tables/clusters.parquet"):
        old = read_table(store, "clusters")
        same = len(old) == len(base) and (old["image"].to_numpy() == base["image"].to_numpy()).all()
        if same:
            base = old
        else:
            stale = [c for c in old.columns if c not in base.columns]
            log.warning("clusters: rows changed; dropping the stale columns %s", stale)
    for name, values in columns.items():
        base[name] = np.asarray(values)
    write_table(store, "clusters", base)


def write_cluster_metrics(store: RunStore, row: Mapping[str, Any]) -> None:
    """Replace the row of ``row["method"]`` in ``tables/cluster_metrics.parquet``."""
    new = {c: row.get(c, math.nan) for c in table_schema("cluster_metrics").columns}
    table = pd.DataFrame([new])
    if store.exists("tables/cluster_metrics.parquet"):
        old = read_table(store, "cluster_metrics")
        old = old[old["method"] != row["method"]]
        table = pd.concat([old, table], ignore_index=True) if len(old) else table
    order = ["kmeans", "dbscan", "agglomerative", "som"]
    rank = {m: i for i, m in enumerate(order)}
    table = table.sort_values("method", key=lambda s: s.map(lambda m: rank.get(m, 99)))
    write_table(store, "cluster_metrics", table.reset_index(drop=True))
