"""A store array as a feature matrix: rows chosen by any table, labels from any table with
one row per image, and the matrix persisted on the workers only when it fits."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client

from pipeline.core.store import RunStore
from pipeline.errors import ParameterError
from pipeline.features.matrix import fits_in_memory, open_matrix, place, row_labels
from pipeline.features.spec import KMeansParams, TableRows

N = 10


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    """An array of 10 rows (chunks of 4, cut through by every selection below) and tables."""
    s = RunStore(str(tmp_path / "run"))
    values = np.arange(N * 6, dtype=np.float32).reshape(N, 2, 3)
    ds = xr.Dataset(
        {"feat": (("image", "a", "b"), da.from_array(values, chunks=(4, 2, 3)))},
        coords={"image_id": ("image", np.asarray([f"id{i}" for i in range(N)], dtype=object))},
    )
    s.write_template(ds, {"feat": {"chunks": (4, 2, 3)}}, mode="a")
    s.open_array("feat")[:] = values
    s.fs.makedirs(s.path("tables"), exist_ok=True)
    # One row per image, in order, no `image` column (as the galaxy catalog).
    pd.DataFrame(
        {"status": ["kept", "rejected"] * 5, "flag": [True, False, True] + [False] * 7}
    ).to_parquet(s.path("tables/catalog.parquet"))
    # A table of some images, by position (as the cluster labels): a user's own selection.
    pd.DataFrame({"image": [7, 2, 5], "pick": [True, True, False], "klass": ["x", "y", "z"]}
                 ).to_parquet(s.path("tables/mine.parquet"))  # fmt: skip
    # The ingest's table: one row per image with an `image` column and metadata.
    pd.DataFrame({"image": np.arange(N), "klass": [f"c{i % 3}" for i in range(N)]}).to_parquet(
        s.path("tables/images.parquet")
    )
    return s


@pytest.mark.parametrize(
    ("rows", "positions"),
    [
        ("all", list(range(N))),
        ("kept", [0, 2, 4, 6, 8]),
        (TableRows(table="catalog", where="status == kept"), [0, 2, 4, 6, 8]),
        (TableRows(table="catalog", where="flag"), [0, 2]),
        (TableRows(table="mine", where="pick"), [2, 7]),
        (TableRows(table="mine", where="klass == 'z'"), [5]),
    ],
)
def test_rows_of_any_table_select_the_same_rows_as_numpy(
    store: RunStore, rows: object, positions: list[int]
) -> None:
    m = open_matrix(store, "feat", rows)  # type: ignore[arg-type]
    values = np.arange(N * 6, dtype=np.float32).reshape(N, 6)
    assert m.positions.tolist() == positions
    assert m.image_ids == [f"id{i}" for i in positions]
    np.testing.assert_array_equal(m.data.compute(), values[positions])


def test_kept_means_every_row_where_the_store_has_no_catalog(store: RunStore) -> None:
    store.remove("tables/catalog.parquet")
    assert open_matrix(store, "feat", "kept").n_rows == N


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (TableRows(table="nope", where="x"), "table 'nope' is not in"),
        (TableRows(table="catalog", where="missing"), "has no column 'missing'"),
        (
            TableRows(table="catalog", where="status"),
            "not boolean; write `where: status == <value>`",
        ),
        (TableRows(table="catalog", where="status == gone"), "selects none"),
    ],
)
def test_a_selection_that_does_not_fit_says_why(
    store: RunStore, rows: TableRows, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        open_matrix(store, "feat", rows)


def test_rows_are_validated_in_the_job_spec() -> None:
    params = KMeansParams.model_validate({"rows": {"table": "catalog", "where": "status == kept"}})
    assert params.rows == TableRows(table="catalog", where="status == kept")
    assert KMeansParams().model_dump()["rows"] == "kept"  # old specs keep their config hash
    with pytest.raises(ValueError, match="give a boolean column"):
        KMeansParams.model_validate({"rows": {"table": "catalog", "where": "status =="}})


def test_labels_come_from_any_table_with_one_row_per_image(store: RunStore) -> None:
    positions = np.array([2, 5, 7])
    # `images` first; `mine` has the column too, but `images` wins unless the table is named.
    assert row_labels(store, "klass", positions, N).tolist() == ["c2", "c2", "c1"]
    assert row_labels(store, "mine.klass", positions, N).tolist() == ["y", "z", "x"]
    assert row_labels(store, "status", positions, N).tolist() == ["kept", "rejected", "rejected"]
    with pytest.raises(ParameterError, match="no row for image positions \\[0\\]"):
        row_labels(store, "mine.klass", np.array([0, 2]), N)
    with pytest.raises(ParameterError, match="label column 'species' is not in"):
        row_labels(store, "species", positions, N)


def test_two_tables_with_the_label_column_must_be_told_apart(store: RunStore) -> None:
    store.remove("tables/images.parquet")
    pd.DataFrame({"klass": ["q"] * N}).to_parquet(store.path("tables/catalog.parquet"))
    with pytest.raises(ParameterError, match=r"say which with `table\.column`, e\.g\. catalog\."):
        row_labels(store, "klass", np.array([2]), N)


def test_the_matrix_is_persisted_only_when_it_fits_the_workers(
    store: RunStore, client: Client
) -> None:
    m = open_matrix(store, "feat", "all")
    placed = place(m, client)
    assert placed.persisted and not m.persisted
    np.testing.assert_array_equal(placed.data.compute(), m.data.compute())
    assert place(m, None) is m  # no cluster: left to stream
    memory = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
    assert fits_in_memory(memory * 0.4, client) and not fits_in_memory(memory * 0.6, client)
