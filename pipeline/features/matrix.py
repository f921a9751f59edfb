"""A store array seen as a feature matrix: one row per image, the rest flattened.

The feature stages serve every workflow (galaxy cutouts, plate embeddings, patient tables):
they take ``(rows, features)`` from here and know nothing of what the rows are. Which rows is
the stage's ``rows`` parameter (:data:`~pipeline.features.spec.RowSelection`): all of them,
or those of a table where a condition holds. Labels (a known class per row) come from any
table of the store with one row per image.

This layer also decides, once per stage, where the matrix lives while the stage iterates over
it (:func:`place`): persisted in the workers' memory when it fits there, else streamed from
its Zarr chunks on every pass.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from distributed import Client

from pipeline.core.store import RunStore
from pipeline.errors import ParameterError, StoreError
from pipeline.features.spec import RowSelection, TableRows

__all__ = [
    "FeatureMatrix",
    "compute_rows",
    "fits_in_memory",
    "open_matrix",
    "place",
    "row_labels",
    "select_rows",
]

log = logging.getLogger(__name__)

#: ``rows: kept``: the images the galaxy catalog kept, where the store has a catalog.
_KEPT = TableRows(table="catalog", where="status == kept", optional=True)

#: Share of the workers' memory a persisted matrix may take.
_MEMORY_SHARE = 0.5

#: Rows of a persisted matrix are regrouped into blocks of about this size. Every pass over
#: the matrix is one task per block plus their sums: the blocks the store's chunks give (a few
#: hundred KB of features each) make a pass cost ~150 ms of scheduling, fixed-size blocks
#: ~30 ms (measured: an elbow search k = 1..10 on 1,504 x 25 rows, 28 passes, took 4.4 s on
#: the chunks and 0.9 s on one block). The size is fixed, not taken from the cluster, so the
#: sums, and the results, are the same whatever the number of workers.
_PLACED_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class FeatureMatrix:
    """Selected rows of a store array, flattened to features.

    Attributes
    ----------
    data : dask array, shape (n_rows, n_features)
        Lazy (reading it streams the array's Zarr chunks) or, after :func:`place`, persisted
        on the workers.
    positions : ndarray of int64, shape (n_rows,)
        Each row's position along the array's first dimension (``image``).
    image_ids : list of str
        Each row's ``image_id``.
    n_total : int
        Length of the array's first dimension.
    array : str
        Name of the store array.
    persisted : bool
        Whether ``data`` is held in the workers' memory.
    """

    data: da.Array
    positions: np.ndarray
    image_ids: list[str]
    n_total: int
    array: str
    persisted: bool = False

    @property
    def n_rows(self) -> int:
        """Number of selected rows."""
        return len(self.positions)


def _table_positions(table: pd.DataFrame, n_total: int) -> np.ndarray | None:
    """Each table row's position along ``image``, or None if the table describes another
    dimension (no ``image`` column and another length)."""
    if "image" in table.columns:
        return table["image"].to_numpy(dtype=np.int64)
    if len(table) == n_total:
        return np.arange(n_total, dtype=np.int64)
    return None


def select_rows(store: RunStore, rows: RowSelection, n_total: int) -> np.ndarray:
    """Positions (along ``image``) of the rows ``rows`` selects, sorted.

    Parameters
    ----------
    store : RunStore
    rows : RowSelection
    n_total : int
        Length of the array's ``image`` dimension.

    Returns
    -------
    ndarray of int64

    Raises
    ------
    ParameterError
        If the table, its column or its rows do not fit (not for an ``optional`` selection
        whose table is absent or describes another dimension).
    """
    if rows == "all":
        return np.arange(n_total, dtype=np.int64)
    sel = _KEPT if rows == "kept" else rows
    assert isinstance(sel, TableRows)
    if not store.exists(f"tables/{sel.table}.parquet"):
        if sel.optional:
            return np.arange(n_total, dtype=np.int64)
        raise ParameterError(
            f"rows: table {sel.table!r} is not in {store.path('tables')}; run the stage that "
            "writes it first, or choose another table (or `rows: all`)"
        )
    table = _read(store, sel.table)
    positions = _table_positions(table, n_total)
    if positions is None:
        if sel.optional:
            return np.arange(n_total, dtype=np.int64)  # e.g. a catalog of another collection
        raise ParameterError(
            f"rows: table {sel.table!r} has {len(table)} rows and no `image` column, but the "
            f"array has {n_total} rows; choose a table with one row per image"
        )
    column, value = sel.condition()
    if column not in table.columns:
        raise ParameterError(
            f"rows: table {sel.table!r} has no column {column!r} (columns: "
            f"{', '.join(map(str, table.columns))}); fix `where`"
        )
    values = table[column]
    if value is not None:
        mask = values.astype(str).to_numpy() == value
    elif values.dtype == bool:
        mask = values.to_numpy()
    else:
        raise ParameterError(
            f"rows: column {column!r} of table {sel.table!r} is {values.dtype}, not boolean; "
            f"write `where: {column} == <value>`"
        )
    picked = positions[mask]
    if len(picked) and (picked.min() < 0 or picked.max() >= n_total):
        raise ParameterError(
            f"rows: table {sel.table!r} names image positions outside 0..{n_total - 1}; it "
            "describes another collection"
        )
    return np.unique(picked)


def _read(store: RunStore, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A table of the store, documented or not (e.g. a user's own table of selections)."""
    return pd.read_parquet(io.BytesIO(store.read_bytes(f"tables/{name}.parquet")), columns=columns)


def _columns(store: RunStore, name: str) -> list[str]:
    """The column names of a table, read from its Parquet footer only."""
    import pyarrow.parquet as pq

    with store.fs.open(store.path(f"tables/{name}.parquet"), "rb") as fh:
        return list(pq.read_schema(fh).names)


def open_matrix(store: RunStore, array: str, rows: RowSelection = "kept") -> FeatureMatrix:
    """Open ``store.zarr/<array>`` as a lazy ``(rows, features)`` matrix.

    Parameters
    ----------
    store : RunStore
    array : str
        A store array whose first dimension is ``image`` (``cutouts``, ``images``,
        ``reduced``, ``embeddings``); further dimensions are flattened, C order.
    rows : RowSelection

    Returns
    -------
    FeatureMatrix

    Raises
    ------
    StoreError
        If the array is missing or has no ``image`` dimension.
    ParameterError
        If no row is selected, or the selection does not fit the array.
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
    positions = select_rows(store, rows, n_total)
    if len(positions) < n_total:
        data = data[positions]
    if len(positions) == 0:
        raise ParameterError(
            f"no rows of {array!r} to use: `rows` ({_describe(rows)}) selects none. Loosen the "
            "stage that chose them (e.g. the preprocess parameters), or set `rows: all`"
        )
    ids = [str(v) for v in ds["image_id"].values[positions]] if "image_id" in ds else []
    if not ids:
        ids = [str(p) for p in positions]
    return FeatureMatrix(data, positions.astype(np.int64), ids, n_total, array)


def _describe(rows: RowSelection) -> str:
    if isinstance(rows, TableRows):
        return f"table {rows.table} where {rows.where}"
    return str(rows)


def fits_in_memory(nbytes: float, client: Client | None) -> bool:
    """Whether ``nbytes`` take at most half the memory of ``client``'s workers."""
    if client is None:
        return False
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    limit = sum(float(w.get("memory_limit") or 0) for w in workers)
    return 0 < nbytes <= _MEMORY_SHARE * limit


def place(m: FeatureMatrix, client: Client | None) -> FeatureMatrix:
    """The matrix where a stage that passes over it many times should read it.

    Persisted on ``client``'s workers, in blocks of a fixed size, when it takes at most half
    their memory (every later pass, e.g. each Lloyd iteration of an elbow search, then reads
    worker memory); otherwise left lazy, so that each pass streams the Zarr chunks and
    nothing has to fit.
    """
    if m.persisted or not fits_in_memory(m.data.nbytes, client):
        return m
    assert client is not None
    n, d = m.data.shape
    row_bytes = max(1, d * m.data.dtype.itemsize)
    rows = max(1, min(n, _PLACED_BLOCK_BYTES // row_bytes))
    data = client.persist(m.data.rechunk((rows, -1)))
    log.debug("%s: %d x %d persisted on the workers in blocks of %d rows", m.array, n, d, rows)
    return replace(m, data=data, persisted=True)


def row_labels(store: RunStore, column: str, positions: np.ndarray, n_total: int) -> np.ndarray:
    """The values of a label column (e.g. a known class) for the given image positions.

    Parameters
    ----------
    store : RunStore
    column : str
        ``table.column``, or a column name looked up in every table of the store with one
        row per image (an ``image`` column, or exactly ``n_total`` rows), ``images`` first.
    positions : ndarray of int
        Positions along ``image``.
    n_total : int
        Length of the ``image`` dimension.

    Returns
    -------
    ndarray of object (str)

    Raises
    ------
    ParameterError
        If no such table has the column (naming the columns there are), if two do
        (``table.column`` then says which), or a position has no row.
    """
    table_name, dot, col = column.rpartition(".")
    names = [table_name] if dot else _image_tables(store)
    col = col if dot else column
    found: list[tuple[str, pd.DataFrame, np.ndarray]] = []
    seen: set[str] = set()
    for name in names:
        if not store.exists(f"tables/{name}.parquet"):
            continue
        columns = _columns(store, name)
        if col not in columns:
            seen.update(columns)
            continue
        table = _read(store, name, [c for c in (col, "image") if c in columns])
        where = _table_positions(table, n_total)
        if where is not None:
            found.append((name, table, where))
    if not found:
        where_text = f"table {table_name!r}" if dot else "the tables with one row per image"
        raise ParameterError(
            f"label column {column!r} is not in {where_text} of {store.url}; columns there: "
            f"{sorted(seen)}. Ingest with a manifest that has the column, or leave "
            "`label_column` unset"
        )
    if len(found) > 1 and found[0][0] != "images":
        raise ParameterError(
            f"label column {column!r} is in the tables {[f[0] for f in found]}; say which "
            f"with `table.column`, e.g. {found[0][0]}.{col}"
        )
    name, table, where = found[0]
    index = pd.Series(np.arange(len(table)), index=where)
    missing = np.setdiff1d(positions, where)
    if len(missing):
        raise ParameterError(
            f"label column {column!r}: table {name!r} has no row for image positions "
            f"{missing[:5].tolist()}; it describes other images"
        )
    values = table[col].to_numpy()[index.loc[positions].to_numpy()]
    return np.asarray([str(v) for v in values], dtype=object)


def _image_tables(store: RunStore) -> list[str]:
    """The store's tables, ``images`` first (it holds an ingest manifest's metadata)."""
    names = [n[: -len(".parquet")] for n in store.listdir("tables") if n.endswith(".parquet")]
    return sorted(names, key=lambda n: n != "images")


def compute_rows(x: Any, client: Client | None) -> np.ndarray:
    """``x`` as a numpy array: a dask array is computed on ``client`` (or locally without one).

    For results small enough to hold here (labels, features of a sample, embeddings).
    """
    if isinstance(x, da.Array):
        return np.asarray(client.compute(x).result() if client is not None else x.compute())
    return np.asarray(x)
