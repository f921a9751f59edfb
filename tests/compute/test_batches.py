"""Training batches streamed from chunks: every kept row once per epoch, shuffled, seeded."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.compute.batches import ChunkSource, epoch_batches, steps_per_epoch


def _source(n: int, chunk: int, keep: np.ndarray, cache_bytes: int = 1 << 30) -> tuple:
    reads: list[tuple[int, int]] = []
    rows = np.arange(n)

    def read(a: int, b: int) -> np.ndarray:
        reads.append((a, b))
        return rows[a:b]

    chunks = [min(chunk, n - s) for s in range(0, n, chunk)]
    return ChunkSource(read, chunks, keep, row_bytes=8, cache_bytes=cache_bytes), reads


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 120),
    chunk=st.integers(1, 40),
    batch=st.integers(2, 33),
    window=st.integers(1, 80),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_an_epoch_yields_kept_rows_at_most_once_in_full_batches(
    n: int, chunk: int, batch: int, window: int, seed: int, data: st.DataObject
) -> None:
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    source, _ = _source(n, chunk, keep)
    batches = list(epoch_batches(source, batch, np.random.default_rng(seed), window_rows=window))
    seen = np.concatenate(batches) if batches else np.array([], dtype=int)
    kept = np.flatnonzero(keep)
    assert len(np.unique(seen)) == len(seen)  # no row twice
    assert set(seen.tolist()) <= set(kept.tolist())  # only kept rows
    if len(kept) >= batch:
        assert all(len(b) == batch for b in batches)
        assert len(batches) == steps_per_epoch(len(kept), batch)
        assert len(kept) - len(seen) < batch  # only the last partial batch is dropped
    else:
        assert sorted(seen.tolist()) == kept.tolist()  # a small set is one batch


def test_epochs_are_shuffled_reproducibly() -> None:
    source, _ = _source(100, 10, np.ones(100, bool))

    def order(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return np.concatenate(list(epoch_batches(source, 10, rng, window_rows=30))).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != list(range(100))


def test_chunks_without_kept_rows_are_never_read_and_small_sets_are_read_once() -> None:
    keep = np.zeros(50, bool)
    keep[10:20] = True
    source, reads = _source(50, 10, keep)
    for epoch in range(3):
        list(epoch_batches(source, 4, np.random.default_rng(epoch), window_rows=8))
    assert reads == [(10, 20)]  # cached after the first epoch, the empty chunks skipped
    big, big_reads = _source(50, 10, np.ones(50, bool), cache_bytes=100)
    for epoch in range(2):
        list(epoch_batches(big, 4, np.random.default_rng(epoch), window_rows=8))
    assert len(big_reads) == 10  # too big to cache: every chunk read each epoch
