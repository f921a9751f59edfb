"""Waiting on a long task while relaying its events (the training stages' progress)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from distributed import Client, get_worker

from pipeline.compute.events import wait_relaying


def _publishing(topic: str, n: int, fail: bool) -> int:
    worker = get_worker()
    for i in range(n):
        worker.log_event(topic, {"step": i})
        time.sleep(0.3)  # several poll intervals: events arrive while the client waits
    if fail:
        raise RuntimeError("task failed on purpose")
    return n * 10


def _publish_late(topic: str, dask_worker: Any) -> None:
    dask_worker.log_event(topic, {"step": 99})


def test_events_are_relayed_in_order_and_the_result_returned(client: Client) -> None:
    seen: list[dict[str, Any]] = []
    result = wait_relaying(
        client,
        "test-events-ok",
        lambda: client.submit(_publishing, "test-events-ok", 4, False, pure=False),
        seen.append,
        poll_s=0.1,
    )
    assert result == 40
    # Events published before the result are relayed; the last may race the result.
    steps = [e["step"] for e in seen]
    assert steps == list(range(len(steps)))
    assert len(steps) >= 3


def test_a_failing_task_raises_and_ends_the_subscription(client: Client) -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(RuntimeError, match="on purpose"):
        wait_relaying(
            client,
            "test-events-fail",
            lambda: client.submit(_publishing, "test-events-fail", 2, True, pure=False),
            seen.append,
            poll_s=0.1,
        )
    assert [e["step"] for e in seen] == [0, 1]
    # The subscription ended: a later event on the topic reaches no handler.
    client.run(_publish_late, "test-events-fail")
    time.sleep(0.3)
    assert all(e["step"] != 99 for e in seen)
