"""Progress of long work, reported to whoever renders it.

Library code never prints: it calls a :data:`ProgressFn` with ``(label, done, total)`` and the
CLI draws a bar (or nothing, with ``--quiet``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["ProgressFn", "compute_with_progress", "gather_with_progress", "no_progress"]

log = logging.getLogger(__name__)

#: ``progress(label, done, total)``; called once with ``done == 0`` before work starts.
ProgressFn = Callable[[str, int, int], None]


def no_progress(label: str, done: int, total: int) -> None:
    """A :data:`ProgressFn` that reports nothing."""


def gather_with_progress(
    client: Client, futures: Sequence[Future], label: str, progress: ProgressFn
) -> list[Any]:
    """Wait for ``futures`` as they complete, reporting progress, and return their results.

    Results come back in the order of ``futures``. On the first failed future the others are
    cancelled and its exception is raised: work already written by finished tasks stays.
    """
    from distributed import as_completed

    total = len(futures)
    progress(label, 0, total)
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * total
    done = 0
    try:
        for fut in as_completed(futures):
            if fut.status == "error":
                fut.result()  # raises the task's exception with its traceback
            results[position[fut.key]] = fut.result()
            done += 1
            progress(label, done, total)
    except BaseException:
        client.cancel(list(futures))
        raise
    log.debug("%s: %d task(s) done", label, total)
    return results


def compute_with_progress(
    client: Client | None, items: Sequence[Any], label: str, progress: ProgressFn
) -> list[Any]:
    """Compute Dask collections (e.g. delayed tasks) on ``client``, reporting each as it ends.

    Without a client they are computed here, one after the other (small work in tests and
    notebooks). Results come back in the order of ``items``.
    """
    if client is not None:
        return gather_with_progress(client, client.compute(list(items)), label, progress)
    progress(label, 0, len(items))
    results = []
    for done, item in enumerate(items, 1):
        results.append(item.compute(scheduler="sync"))
        progress(label, done, len(items))
    return results
