"""Training batches streamed from an array's Zarr chunks, shuffled per epoch, and precise
batch-norm statistics: what every training loop (the SimCLR encoder, the supervised baseline,
the segmenter) draws its data with.

Reading single random rows would decode a whole chunk for each; instead each epoch visits
the chunks in a seeded random order, a window of several chunks at a time, shuffles the rows
inside the window and cuts it into batches, reading the next window in a background thread
while the current one trains. A collection that fits in ``cache_bytes`` is read once and
kept in memory across epochs (still reshuffled every epoch).
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "ChunkSource",
    "epoch_batches",
    "precise_batch_norm",
    "steps_per_epoch",
    "window_rows_for",
]


class ChunkSource:
    """The kept rows of an array, chunk by chunk.

    Parameters
    ----------
    read : callable
        ``read(start, stop) -> ndarray`` of rows ``start:stop`` (e.g. a zarr slice).
    chunk_rows : sequence of int
        Rows per chunk along the first axis.
    keep : ndarray of bool, shape (n_rows,)
        Rows to train on.
    row_bytes : int
        Bytes per row once read.
    cache_bytes : int
        Keep every chunk in memory after its first read when the kept rows fit in this.
    """

    def __init__(
        self,
        read: Callable[[int, int], np.ndarray],
        chunk_rows: Sequence[int],
        keep: np.ndarray,
        row_bytes: int,
        cache_bytes: int = 1 << 30,
    ) -> None:
        self._read = read
        ends = np.cumsum(chunk_rows)
        self.bounds = [(int(e - r), int(e)) for r, e in zip(chunk_rows, ends, strict=True)]
        self.keep = np.asarray(keep, dtype=bool)
        counts = [int(self.keep[a:b].sum()) for a, b in self.bounds]
        # Chunks with no kept row are never read.
        self.chunks = [i for i, c in enumerate(counts) if c]
        self.n_rows = int(sum(counts))
        self._cache: dict[int, np.ndarray] | None = (
            {} if self.n_rows * row_bytes <= cache_bytes else None
        )

    def chunk(self, i: int) -> np.ndarray:
        """The kept rows of chunk ``i``, in order."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        a, b = self.bounds[i]
        rows = np.asarray(self._read(a, b))[self.keep[a:b]]
        if self._cache is not None:
            self._cache[i] = rows
        return rows


def epoch_batches(
    source: ChunkSource,
    batch_size: int,
    rng: np.random.Generator,
    *,
    window_rows: int,
) -> Iterator[np.ndarray]:
    """Yield one epoch of shuffled batches of exactly ``batch_size`` rows.

    The last partial batch is dropped (as SimCLR implementations do: a contrastive batch needs
    negatives, and equal batches keep the loss comparable between steps), except that an epoch
    never yields nothing: with fewer rows than ``batch_size`` it yields them all at once.

    Parameters
    ----------
    source : ChunkSource
    batch_size : int
    rng : numpy.random.Generator
        Draws the chunk order and the shuffles: seed it per epoch for a reproducible epoch.
    window_rows : int
        Rows shuffled together (rounded up to whole chunks); bounds the memory in use.

    Yields
    ------
    ndarray, shape (batch_size, ...)
    """
    order = [source.chunks[i] for i in rng.permutation(len(source.chunks))]
    if source.n_rows < batch_size:
        if source.n_rows:
            rows = np.concatenate([source.chunk(i) for i in order])
            yield rows[rng.permutation(len(rows))]
        return
    windows: list[list[int]] = [[]]
    size = 0
    for i in order:
        windows[-1].append(i)
        size += int(source.keep[slice(*source.bounds[i])].sum())
        if size >= window_rows:
            windows.append([])
            size = 0
    windows = [w for w in windows if w]

    def load(window: list[int]) -> np.ndarray:
        return np.concatenate([source.chunk(i) for i in window])

    carry: np.ndarray | None = None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load, windows[0])
        for w in range(len(windows)):
            rows = pending.result()
            if w + 1 < len(windows):
                pending = pool.submit(load, windows[w + 1])
            rows = rows[rng.permutation(len(rows))]
            if carry is not None and len(carry):
                rows = np.concatenate([carry, rows])
            full = (len(rows) // batch_size) * batch_size
            for s in range(0, full, batch_size):
                yield rows[s : s + batch_size]
            carry = rows[full:]


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Batches :func:`epoch_batches` yields for ``n_rows`` kept rows."""
    return max(1, n_rows // batch_size) if n_rows else 0


def window_rows_for(batch_size: int, row_bytes: int, budget_bytes: int = 256 << 20) -> int:
    """Rows shuffled together: at least four batches, else as many as ``budget_bytes`` holds."""
    return max(4 * batch_size, math.ceil(budget_bytes / max(row_bytes, 1)))


def precise_batch_norm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute the batch norms' running statistics of ``model`` for its current weights.

    During training they are a moving average over batches seen with earlier weights (Keras'
    default keeps 99 % of the old value each step, so a short run's statistics lag far behind
    its weights); one pass over ``batches`` in training mode with a cumulative average gives
    the statistics of the network as it is ("precise BN", Wu & Johnson 2021, "Rethinking
    'Batch' in BatchNorm"). The model is left in training mode, with its momenta restored.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable of Tensor
        Unaugmented inputs, on the model's device.
    """
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
