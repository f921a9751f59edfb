"""Where inference tasks run and how the rows are split among them: pure decisions.

Kept free of a live cluster (as distributed keeps its worker state machine) so that the
rules are tested on plain dicts: the scheduler's worker table in, a decision out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GPU", "gpu_workers", "task_bounds", "task_resources", "training_worker"]

#: Name of the worker resource that marks a GPU worker (``dask worker --resources GPU=1``).
GPU = "GPU"


def gpu_workers(workers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Addresses of the workers that declare at least one ``GPU`` resource.

    Parameters
    ----------
    workers : mapping
        ``client.scheduler_info(n_workers=-1)["workers"]``: address -> worker info, whose
        ``resources`` maps resource names to amounts.

    Returns
    -------
    list of str
        Sorted addresses.
    """
    return sorted(a for a, w in workers.items() if (w.get("resources") or {}).get(GPU, 0) >= 1)


def task_resources(workers: Mapping[str, Mapping[str, Any]]) -> dict[str, float] | None:
    """Resources every inference task asks for: one GPU when any worker has one, else none.

    With GPU workers present, the tasks wait for them rather than run slowly on CPU workers;
    with none, every worker takes tasks on its CPU.
    """
    return {GPU: 1} if gpu_workers(workers) else None


def training_worker(workers: Mapping[str, Mapping[str, Any]]) -> tuple[str, int]:
    """The worker a training run is pinned to, and the CPU threads it may use.

    A GPU worker when there is one (first by address). Otherwise the worker on the host with
    the most threads: training is one task that occupies the cluster, so it may use the
    threads of every worker on its host, which would otherwise idle.

    Returns
    -------
    address : str
    threads : int
        The worker's own threads for a GPU worker, else the sum over its host.

    Raises
    ------
    ValueError
        If there is no worker.
    """
    if not workers:
        raise ValueError("the cluster has no worker")
    gpus = gpu_workers(workers)
    if gpus:
        return gpus[0], int(workers[gpus[0]].get("nthreads", 1))
    per_host: dict[str, int] = {}
    for w in workers.values():
        host = str(w.get("host", ""))
        per_host[host] = per_host.get(host, 0) + int(w.get("nthreads", 1))
    best = max(sorted(per_host), key=lambda h: per_host[h])
    address = min(a for a, w in workers.items() if str(w.get("host", "")) == best)
    return address, per_host[best]


def task_bounds(chunk_rows: Sequence[int], target_rows: int) -> list[tuple[int, int]]:
    """Split rows into tasks of whole chunks, each about ``target_rows`` long.

    A task that covers whole chunks of its input (and of the output, chunked alike) reads and
    writes without touching a neighbour's chunk, so tasks never race on a write.

    Parameters
    ----------
    chunk_rows : sequence of int
        Rows per chunk along ``image``.
    target_rows : int
        Rows a task should hold; a chunk larger than this is a task of its own.

    Returns
    -------
    list of (start, stop)
        Half-open row ranges covering every row, in order.
    """
    bounds: list[tuple[int, int]] = []
    start = stop = 0
    for rows in chunk_rows:
        if stop > start and stop - start + rows > target_rows:
            bounds.append((start, stop))
            start = stop
        stop += rows
    if stop > start:
        bounds.append((start, stop))
    return bounds
