"""The one resumable chunk-task loop: a chunk is written whole by one task, its marker after
it, a rerun writes only the chunks without a marker, and a new configuration starts over."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

from pipeline.core.chunks import chunk_bounds, collect_rows, prepare_array, run_chunks, write_block
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
