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
from typing import Any

from distributed import Client, Future

__all__ = ["wait_relaying"]


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
