"""Seeded bootstrap replicates run as parallel Dask tasks.

Each replicate has its own seed, spawned from the job's seed (``numpy.random.SeedSequence``),
so the results do not depend on how the replicates are batched into tasks or on which worker
runs them: the same job gives the same intervals on one core or on a cluster. The inputs are
small (a cohort's durations, events and covariates), so they are scattered once and every task
works on the worker's copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from distributed import Client

from pipeline.core.progress import ProgressFn, gather_with_progress, no_progress

__all__ = ["percentile_interval", "replicate_seeds", "run_replicates"]

log = logging.getLogger(__name__)


def replicate_seeds(seed: int, n: int, *, stream: int = 0) -> list[int]:
    """``n`` independent replicate seeds derived from ``seed``.

    ``stream`` separates uses of the same job seed (e.g. concordance vs phenotype count), so
    they do not resample the same patients.
    """
    children = np.random.SeedSequence([seed, stream]).spawn(n)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def _batch(func: Callable[[Any, int], Any], payload: Any, seeds: Sequence[int]) -> list[Any]:
    return [func(payload, s) for s in seeds]


def run_replicates(
    client: Client | None,
    func: Callable[[Any, int], Any],
    payload: Any,
    seeds: Sequence[int],
    *,
    per_task: int = 25,
    progress: ProgressFn = no_progress,
    label: str = "bootstrap",
) -> list[Any]:
    """``[func(payload, s) for s in seeds]``, in batches of ``per_task`` as Dask tasks.

    Parameters
    ----------
    client : distributed.Client, optional
        Where to run; None runs in this process (tests, tiny jobs).
    func : callable
        A module-level function ``func(payload, seed) -> result`` (it must pickle).
    payload : object
        The data every replicate reads; scattered once to the workers.
    seeds : sequence of int
        One per replicate (:func:`replicate_seeds`).
    per_task : int
        Replicates per task: enough that a task outweighs its scheduling cost.
    progress : ProgressFn
        Told of each finished task, under ``label``.

    Returns
    -------
    list
        The results in the order of ``seeds``.
    """
    if client is None or not seeds:
        return _batch(func, payload, seeds)
    # One future for the whole payload, under a fresh key: with content-hashed keys a second
    # bootstrap of the same data (a rerun, a repeat) reuses the key of data the scheduler is
    # still releasing, and its tasks fail with "lost dependencies".
    data = client.scatter([payload], broadcast=True, hash=False)[0]
    batches = [list(seeds[i : i + per_task]) for i in range(0, len(seeds), per_task)]
    futures = [client.submit(_batch, func, data, b, pure=False) for b in batches]
    log.info("%d bootstrap replicates of %s in %d tasks", len(seeds), func.__name__, len(batches))
    out: list[Any] = []
    for part in gather_with_progress(client, futures, label, progress):
        out.extend(part)
    return out


def percentile_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """The bootstrap percentile interval ``[alpha/2, 1 - alpha/2]`` of ``values``.

    NaN results (a replicate where the figure is undefined) are left out; an interval with no
    finite value is ``(nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
