"""A store array seen as a feature matrix: one row per image, the rest flattened.

The reduce and cluster stages serve every workflow (galaxy cutouts, plate embeddings, patient
tables): they take ``(rows, features)`` from here and know nothing of what the rows are. The
rows are the images the catalog kept (when a catalog of the same length exists), else all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
import pandas as pd
from distributed import Client

from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import ParameterError, StoreError

__all__ = ["FeatureMatrix", "RowSelection", "compute_rows", "open_matrix", "row_labels"]

#: ``kept``: the rows the galaxy catalog kept (all rows when the store has no catalog);
#: ``all``: every row.
RowSelection = Literal["kept", "all"]

#: Tables a label column is looked up in, in this order; each has one row per image.
_LABEL_TABLES = ("images", "catalog", "sources")


@dataclass(frozen=True)
class FeatureMatrix:
    """Selected rows of a store array, flattened to features.

    Attributes
    ----------
    data : dask array, shape (n_rows, n_features)
        Lazy: reading it streams the array's Zarr chunks.
    positions : ndarray of int64, shape (n_rows,)
        Each row's position along the array's first dimension (``image``).
    image_ids : list of str
        Each row's ``image_id``.
    n_total : int
        Length of the array's first dimension.
    array : str
        Name of the store array.
    """

    data: da.Array
    positions: np.ndarray
    image_ids: list[str]
    n_total: int
    array: str

    @property
    def n_rows(self) -> int:
        """Number of selected rows."""
        return len(self.positions)


def _kept_positions(store: RunStore, n_total: int) -> np.ndarray | None:
    if not store.exists("tables/catalog.parquet"):
        return None
    catalog = read_table(store, "catalog")
    if len(catalog) != n_total:
        return None  # the catalog describes another dimension (e.g. mosaic sources)
    return np.flatnonzero(catalog["status"].to_numpy() == "kept")


def open_matrix(store: RunStore, array: str, rows: RowSelection = "kept") -> FeatureMatrix:
    """Open ``store.zarr/<array>`` as a lazy ``(rows, features)`` matrix.

    Parameters
    ----------
    store : RunStore
    array : str
        A store array whose first dimension is ``image`` (``cutouts``, ``images``,
        ``reduced``, ``embeddings``); further dimensions are flattened, C order.
    rows : {"kept", "all"}

    Returns
    -------
    FeatureMatrix

    Raises
    ------
    StoreError
        If the array is missing or has no ``image`` dimension.
    ParameterError
        If no row is selected.
    """
    if not store.has_array(array):
        raise StoreError(
            f"array {array!r} is not in {store.zarr_url}; run the stage that writes it first "
            "(`preprocess` writes cutouts, `reduce` writes reduced)"
        )
    ds = store.open_dataset()
    var = ds[array]
    if var.dims[0] != "image":
        raise StoreError(
            f"array {array!r} has dimensions {var.dims}; a feature matrix needs `image` first"
        )
    n_total = var.shape[0]
    data = var.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data))
    n_features = math.prod(var.shape[1:])
    data = data.reshape(n_total, n_features) if data.ndim != 2 else data
    positions = _kept_positions(store, n_total) if rows == "kept" else None
    if positions is None:
        positions = np.arange(n_total, dtype=np.int64)
    elif len(positions) < n_total:
        data = data[positions]
    if len(positions) == 0:
        raise ParameterError(
            f"no rows of {array!r} to use: the catalog kept no image. Loosen the preprocess "
            "parameters, or set `rows: all`"
        )
    ids = [str(v) for v in ds["image_id"].values[positions]] if "image_id" in ds else []
    if not ids:
        ids = [str(p) for p in positions]
    return FeatureMatrix(data, positions.astype(np.int64), ids, n_total, array)


def row_labels(store: RunStore, column: str, positions: np.ndarray) -> np.ndarray:
    """The values of a label column (e.g. a known class) for the given image positions.

    The column is looked up in the ``images``, ``catalog`` and ``sources`` tables, in that
    order (``images`` holds the metadata columns of an ingest manifest).

    Raises
    ------
    ParameterError
        If no table has the column, naming the columns there are.
    """
    seen: list[str] = []
    for name in _LABEL_TABLES:
        if not store.exists(f"tables/{name}.parquet"):
            continue
        table: pd.DataFrame = read_table(store, name)
        if column in table.columns:
            values = table[column].to_numpy()
            return np.asarray([str(v) for v in values[positions]], dtype=object)
        seen += [str(c) for c in table.columns]
    raise ParameterError(
        f"label column {column!r} is in none of the tables {list(_LABEL_TABLES)} of "
        f"{store.url}; columns there: {sorted(set(seen))}. Ingest with a manifest that has "
        "the column, or leave `label_column` unset"
    )


def compute_rows(x: Any, client: Client | None) -> np.ndarray:
    """``x`` as a numpy array: a dask array is computed on ``client`` (or locally without one).

    For results small enough to hold here (labels, features of a sample, embeddings).
    """
    if isinstance(x, da.Array):
        return np.asarray(client.compute(x).result() if client is not None else x.compute())
    return np.asarray(x)
