"""The one resumable chunk-task loop: a chunk is written whole by one task, its marker after
it, a rerun writes only the chunks without a marker, and a new configuration starts over."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

from pipeline.core.chunks import (
    chunk_bounds,
    chunk_ranges,
    collect_rows,
    prepare_array,
    resize_dimension,
    run_chunks,
    write_block,
)
from pipeline.core.store import RunStore
from pipeline.errors import StoreError

N, PER_CHUNK = 10, 4


def square_chunk(
    store: RunStore, index: int, start: int, stop: int, fail_at: int
) -> dict[str, Any]:
    """A chunk task: write rows start..stop of `squares` as their index squared.

    Chunk ``fail_at`` fails, once the other chunks have finished (or after a second, when
    they run one after the other here): then no task is still writing when the run stops.
    """
    if index == fail_at:
        deadline = time.monotonic() + 1.0
        while len(store.done_markers("squares")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError(f"chunk {index} fails")
    block = np.arange(start, stop, dtype=np.float32)[:, None] ** 2 * np.ones((1, 3), np.float32)
    write_block(store, "squares", start, block)
    return {"rows": [{"start": start, "n": stop - start}]}


def _prepare(store: RunStore, config: dict[str, Any] | None = None) -> set[int]:
    return prepare_array(
        store,
        task="squares",
        name="squares",
        dims=("item", "col"),
        shape=(N, 3),
        chunks=(PER_CHUNK, 3),
        dtype=np.float32,
        config=config or {"power": 2},
        attrs={"description": "squares"},
    )


def _args(fail_at: int = -1) -> dict[int, tuple[Any, ...]]:
    return {i: (s, e, fail_at) for i, (s, e) in enumerate(chunk_bounds(N, PER_CHUNK))}


@pytest.mark.parametrize("use_client", [True, False])
def test_a_failed_run_resumes_with_the_chunks_it_lacks(
    client: Client, tmp_path: Path, use_client: bool
) -> None:
    store = RunStore(str(tmp_path / "run"))
    assert _prepare(store) == set()
    with pytest.raises(RuntimeError, match="chunk 1 fails"):
        run_chunks(store, client if use_client else None, "squares", square_chunk, _args(1))
    done = set(store.done_markers("squares"))
    assert 1 not in done and done <= {0, 2}
    assert _prepare(store) == done  # the same configuration keeps what was written
    seen: list[tuple[str, int, int]] = []
    markers = run_chunks(
        store,
        client if use_client else None,
        "squares",
        square_chunk,
        _args(),
        progress=lambda label, k, n: seen.append((label, k, n)),
    )
    assert sorted(markers) == [0, 1, 2]
    assert seen[0] == ("squares", 0, 3 - len(done)) and seen[-1][1] == seen[-1][2]
    expected = np.arange(N, dtype=np.float32)[:, None] ** 2 * np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(store.open_array("squares", mode="r")[:], expected)
    assert [r["n"] for r in collect_rows(store, "squares", 3)] == [4, 4, 2]


def test_another_configuration_starts_over(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    _prepare(store)
    run_chunks(store, None, "squares", square_chunk, _args())
    assert _prepare(store) == {0, 1, 2}
    assert _prepare(store, {"power": 3}) == set() and store.done_markers("squares") == {}
    with pytest.raises(StoreError, match=r"chunks \[0, 1, 2\] of 3 are not written"):
        collect_rows(store, "squares", 3)


def test_an_array_of_another_length_along_a_shared_dimension_is_refused(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    _prepare(store)
    with pytest.raises(StoreError, match=r"'other' of 7 along `item`, but .* has 10 there"):
        prepare_array(
            store, task="other", name="other", dims=("item",), shape=(7,), chunks=(4,),
            dtype=np.float32, config={},
        )  # fmt: skip
    with pytest.raises(StoreError, match=r"would define a new one\. Use a run store of its own"):
        prepare_array(
            store, task="other", name="other", dims=("item",), shape=(10,), chunks=(4,),
            dtype=np.float32, config={}, coords={"label": ["a"] * 10},
        )  # fmt: skip


def _prepare_grown(store: RunStore, n: int, config: dict[str, Any] | None = None) -> set[int]:
    return prepare_array(
        store, task="squares", name="squares", dims=("item", "col"), shape=(n, 3),
        chunks=(PER_CHUNK, 3), dtype=np.float32, config=config or {"power": 2}, grow=True,
    )  # fmt: skip


def _ranged_args(store: RunStore, n: int) -> dict[int, tuple[Any, ...]]:
    ranges = chunk_ranges(store, "squares", n, PER_CHUNK)
    return {i: (s, e, -1) for i, (s, e) in enumerate(ranges)}


@pytest.mark.parametrize("use_client", [True, False])
def test_a_grown_array_keeps_its_chunks_and_writes_only_the_new_items(
    client: Client, tmp_path: Path, use_client: bool
) -> None:
    store = RunStore(str(tmp_path / "run"))
    _prepare_grown(store, N)
    run_chunks(store, client if use_client else None, "squares", square_chunk, _args())
    # 10 items in chunks of 4: the last chunk holds 2. Five more items arrive.
    assert _prepare_grown(store, 15) == {0, 1}
    assert store.open_array("squares").shape == (15, 3)
    assert chunk_ranges(store, "squares", 15, PER_CHUNK) == [(0, 4), (4, 8), (10, 12), (12, 15)]
    markers = run_chunks(
        store, client if use_client else None, "squares", square_chunk, _ranged_args(store, 15)
    )
    assert sorted(markers) == [0, 1, 2, 3] and store.partial_markers("squares") == {}
    expected = np.arange(15, dtype=np.float32)[:, None] ** 2 * np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(store.open_array("squares", mode="r")[:], expected)
    # The grown chunk's rows: its first part's, then the new part's.
    assert collect_rows(store, "squares", 4)[2:4] == [{"start": 8, "n": 2}, {"start": 10, "n": 2}]
    assert _prepare_grown(store, 15) == {0, 1, 2, 3}
    # Growing again: chunk 3 (3 of 4 items) is partial; from 16, a chunk boundary, none is.
    assert _prepare_grown(store, 16) == {0, 1, 2}
    assert chunk_ranges(store, "squares", 16, PER_CHUNK)[3] == (15, 16)
    run_chunks(store, None, "squares", square_chunk, _ranged_args(store, 16))
    assert _prepare_grown(store, 18) == {0, 1, 2, 3}
    assert chunk_ranges(store, "squares", 18, PER_CHUNK)[4] == (16, 18)


def test_growth_with_another_configuration_starts_over(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    _prepare_grown(store, N)
    run_chunks(store, None, "squares", square_chunk, _args())
    assert _prepare_grown(store, 15, {"power": 3}) == set()
    assert store.done_markers("squares") == {} and store.partial_markers("squares") == {}
    # Without grow=True a longer array starts over too.
    _prepare_grown(store, 15)
    assert _prepare(store) == set()


def test_resize_dimension_resizes_every_array_along_it(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    _prepare(store)
    prepare_array(
        store, task="flags", name="flags", dims=("item",), shape=(N,), chunks=(PER_CHUNK,),
        dtype=bool, config={},
    )  # fmt: skip
    run_chunks(store, None, "squares", square_chunk, _args())
    assert resize_dimension(store, "item", 13) == ["flags", "squares"]
    ds = store.open_dataset()  # the consolidated metadata is current
    assert ds.sizes["item"] == 13 and ds["flags"].shape == (13,)
    np.testing.assert_array_equal(ds["squares"].values[:N, 0], np.arange(N) ** 2)
    assert np.isnan(ds["squares"].values[N:]).all()  # its fill value, until written
    assert resize_dimension(store, "item", 13) == []
