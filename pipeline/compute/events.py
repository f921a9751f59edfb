"""Wait for one long task on the cluster while relaying the events it publishes.

A training task runs for minutes on one worker; it reports progress by publishing small
dicts on a topic (``distributed.Worker.log_event``), never pixel data or weights. The client
subscribes before submitting, so no event is missed, and relays each to a callback while it
waits; an interrupt (Ctrl-C, a failed stage) cancels the task so that it does not keep the
worker, and the subscription always ends.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future, get_worker

from pipeline.compute.dispatch import task_resources, training_worker

__all__ = ["TrainingPlacement", "run_relayed", "training_placement", "wait_relaying"]


@dataclass(frozen=True)
class TrainingPlacement:
    """Where a training task runs: the worker, the CPU threads it may use, and the resources
    it asks for (one GPU when the cluster has GPU workers)."""

    address: str
    threads: int
    resources: dict[str, float] | None


def training_placement(client: Client) -> TrainingPlacement:
    """The worker a training task goes to (:func:`~pipeline.compute.dispatch.training_worker`)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    address, threads = training_worker(workers)
    return TrainingPlacement(address, threads, task_resources(workers))


def _publishing(func: Callable[..., Any], topic: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, report=..., **kwargs)`` on a worker, publishing each report on
    ``topic``."""
    worker = get_worker()

    def publish(row: dict[str, Any]) -> None:
        worker.log_event(topic, row)

    return func(*args, report=publish, **kwargs)


def run_relayed(
    client: Client,
    func: Callable[..., Any],
    *args: Any,
    placement: TrainingPlacement,
    topic: str,
    key: str,
    on_event: Callable[[dict[str, Any]], None],
    **kwargs: Any,
) -> Any:
    """Run ``func(*args, report=publish, **kwargs)`` as one task at ``placement`` and return its
    result, relaying what it reports to ``on_event`` (:func:`wait_relaying`).

    ``func`` is a module-level function taking a ``report`` callable; its other arguments are
    small (names, parameters, row masks), never pixels or weights.
    """

    def submit() -> Future:
        return client.submit(
            _publishing,
            func,
            topic,
            *args,
            workers=[placement.address],
            allow_other_workers=True,
            resources=placement.resources,
            pure=False,
            key=key,
            **kwargs,
        )

    return wait_relaying(client, topic, submit, on_event)


def wait_relaying(
    client: Client,
    topic: str,
    submit: Callable[[], Future],
    on_event: Callable[[dict[str, Any]], None],
    poll_s: float = 0.5,
) -> Any:
    """Submit a task that publishes on ``topic`` and return its result, relaying its events.

    Parameters
    ----------
    client : distributed.Client
    topic : str
        The topic the task publishes on; unique to this task.
    submit : callable
        Submits the task (``client.submit(...)``) and returns its future; called once, after
        the subscription starts.
    on_event : callable
        Called on the client's thread with each event's message (a dict), in order.
    poll_s : float, default 0.5
        How often (s) the events are relayed while the task runs.

    Returns
    -------
    object
        The task's result. Events that arrive after it are not relayed: the caller reports
        the final state from the result.
    """
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    client.subscribe_topic(topic, lambda event: events.put(event[1]))
    try:
        future = submit()
        try:
            while True:
                try:
                    return future.result(timeout=poll_s)
                except FutureTimeout:
                    pass
                finally:
                    while not events.empty():
                        on_event(events.get())
        except BaseException:
            client.cancel([future])
            raise
    finally:
        client.unsubscribe_topic(topic)
