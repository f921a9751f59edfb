"""Dispatch decisions on plain worker tables (no cluster): which resources tasks ask for,
where training goes, and how rows are split into chunk-aligned tasks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.compute.dispatch import gpu_workers, task_bounds, task_resources, training_worker


def _w(host: str, nthreads: int, **resources: float) -> dict[str, Any]:
    return {"host": host, "nthreads": nthreads, "resources": resources}


MIXED = {
    "tcp://10.0.0.2:1": _w("10.0.0.2", 4),
    "tcp://10.0.0.3:1": _w("10.0.0.3", 1, GPU=1),
    "tcp://10.0.0.3:2": _w("10.0.0.3", 1, GPU=1),
}
CPU_ONLY = {
    "tcp://10.0.0.2:1": _w("10.0.0.2", 2),
    "tcp://10.0.0.2:2": _w("10.0.0.2", 2),
    "tcp://10.0.0.9:1": _w("10.0.0.9", 3),
}


def test_tasks_ask_for_a_gpu_only_when_a_worker_has_one() -> None:
    assert gpu_workers(MIXED) == ["tcp://10.0.0.3:1", "tcp://10.0.0.3:2"]
    assert task_resources(MIXED) == {"GPU": 1}
    assert gpu_workers(CPU_ONLY) == [] and task_resources(CPU_ONLY) is None
    # A worker declaring another resource (or GPU=0) is not a GPU worker.
    assert task_resources({"a": _w("h", 1, MEMORY=1e9), "b": _w("h", 1, GPU=0)}) is None


def test_training_goes_to_a_gpu_worker_or_to_the_host_with_most_threads() -> None:
    assert training_worker(MIXED) == ("tcp://10.0.0.3:1", 1)
    # Two workers of 2 threads on one host beat one worker of 3 elsewhere: 4 threads there.
    assert training_worker(CPU_ONLY) == ("tcp://10.0.0.2:1", 4)
    with pytest.raises(ValueError, match="no worker"):
        training_worker({})


def test_task_bounds_group_whole_chunks() -> None:
    assert task_bounds([8, 8, 8, 8, 4], 16) == [(0, 16), (16, 32), (32, 36)]
    assert task_bounds([8, 8, 8], 1) == [(0, 8), (8, 16), (16, 24)]  # a chunk is the minimum
    assert task_bounds([100], 16) == [(0, 100)]
    assert task_bounds([], 16) == []


@given(
    chunks=st.lists(st.integers(1, 50), min_size=1, max_size=30),
    target=st.integers(1, 200),
)
def test_task_bounds_cover_every_row_once_on_chunk_boundaries(
    chunks: list[int], target: int
) -> None:
    bounds = task_bounds(chunks, target)
    edges = {0}
    for c in chunks:
        edges.add(max(edges) + c)
    assert [a for a, _ in bounds] == [0, *[b for _, b in bounds[:-1]]]  # contiguous
    assert (bounds[-1][1] if bounds else 0) == sum(chunks)
    for a, b in bounds:
        assert a in edges and b in edges  # whole chunks: no two tasks write one chunk
        assert b - a <= target or all(not (a < e < b) for e in edges)  # over only if one chunk
