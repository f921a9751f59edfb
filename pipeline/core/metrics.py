"""The pipeline's own Prometheus metrics, served by the scheduler's ``/metrics`` beside Dask's.

The Dask dashboard serves ``/metrics`` from ``prometheus_client``'s default registry in the
scheduler's process. A run registers :class:`PipelineMetrics` on its scheduler (once: the
plugin is idempotent, so the counters of a long-lived scheduler add up over runs) and the
runner reports each stage's start and end there as a small event (``Client.log_event``,
topic :data:`TOPIC`): no work, data or files pass this way. The plugin turns the events into:

========================================  =======  ==========================================
``pipeline_stage_running``                gauge    1 while a stage runs (labels job, stage)
``pipeline_stage_runs_total``             counter  stage runs ended, by ``status`` done/failed
``pipeline_stage_seconds_total``          counter  seconds spent in a stage, over its runs
``pipeline_stage_last_seconds``           gauge    the stage's last run's duration
``pipeline_rows_processed_total``         counter  rows (images, objects, patients) processed
``pipeline_images_ingested_total``        counter  images decoded into the store
``pipeline_images_quarantined``           gauge    files the last ingest set aside
``pipeline_stage_count``                  gauge    every count of the stage's last run (label
                                                   ``count``), as the manifest records them
========================================  =======  ==========================================

Reporting never fails a run: a scheduler that cannot load this module (one without the
project installed) only loses the metrics, with a warning.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import SchedulerPlugin

if TYPE_CHECKING:
    from distributed import Client, Scheduler

__all__ = ["TOPIC", "PipelineMetrics", "enable_metrics", "report_stage", "rows_processed"]

log = logging.getLogger(__name__)

#: The event topic stage reports travel on.
TOPIC = "pipeline.stage"

# The count that says how many rows a stage processed, in order of preference: the items it
# worked on this time (a grown collection's new rows), else all of them.
_ROW_COUNTS = ("images_written", "analysed", "segmented", "cropped", "rows", "images", "objects")


def rows_processed(counts: Mapping[str, Any]) -> int:
    """The rows a stage processed, from its counts (0 when none says)."""
    for key in _ROW_COUNTS:
        if isinstance(counts.get(key), int | float):
            return int(counts[key])
    return 0


class _State:
    """The metrics' values, updated from events; read by the collector."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[tuple[str, str], int] = {}
        self.runs: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.last_seconds: dict[tuple[str, str], float] = {}
        self.rows: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.ingested: defaultdict[str, int] = defaultdict(int)
        self.quarantined: dict[str, int] = {}
        self.counts: dict[tuple[str, str, str], float] = {}

    def update(self, msg: Mapping[str, Any]) -> None:
        job, stage, event = str(msg.get("job", "")), str(msg["stage"]), msg["event"]
        key = (job, stage)
        with self.lock:
            if event == "start":
                self.running[key] = 1
                return
            self.running[key] = 0
            self.runs[(job, stage, "done" if event == "done" else "failed")] += 1
            seconds = float(msg.get("seconds", 0.0))
            self.seconds[key] += seconds
            self.last_seconds[key] = seconds
            counts = dict(msg.get("counts") or {})
            if event != "done":
                return
            self.rows[key] += rows_processed(counts)
            # By the stage the step runs (ingest, ingest_plates...), whatever the step's name.
            if str(msg.get("kind", stage)).startswith("ingest"):
                if "images_written" in counts:
                    self.ingested[job] += int(counts["images_written"])
                if "quarantined" in counts:
                    self.quarantined[job] = int(counts["quarantined"])
            for name, value in counts.items():
                if isinstance(value, int | float):
                    self.counts[(job, stage, name)] = float(value)


class _Collector:
    """A ``prometheus_client`` collector over every live plugin's state in this process."""

    def __init__(self) -> None:
        self.plugins: weakref.WeakSet[PipelineMetrics] = weakref.WeakSet()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stage_labels = ["job", "stage"]
        running = GaugeMetricFamily(
            "pipeline_stage_running", "1 while the stage runs", labels=stage_labels
        )
        runs = CounterMetricFamily(
            "pipeline_stage_runs", "stage runs ended, by status", labels=[*stage_labels, "status"]
        )
        seconds = CounterMetricFamily(
            "pipeline_stage_seconds", "seconds spent in the stage", labels=stage_labels
        )
        last = GaugeMetricFamily(
            "pipeline_stage_last_seconds", "the stage's last run's duration", labels=stage_labels
        )
        rows = CounterMetricFamily(
            "pipeline_rows_processed", "rows the stage processed", labels=stage_labels
        )
        ingested = CounterMetricFamily(
            "pipeline_images_ingested", "images decoded into the store", labels=["job"]
        )
        quarantined = GaugeMetricFamily(
            "pipeline_images_quarantined", "files the last ingest set aside", labels=["job"]
        )
        counts = GaugeMetricFamily(
            "pipeline_stage_count",
            "the counts of the stage's last run",
            labels=[*stage_labels, "count"],
        )
        for plugin in list(self.plugins):
            state = plugin.state
            with state.lock:
                for key, v in state.running.items():
                    running.add_metric(list(key), v)
                for rkey, n in state.runs.items():
                    runs.add_metric(list(rkey), n)
                for key, s in state.seconds.items():
                    seconds.add_metric(list(key), s)
                for key, s in state.last_seconds.items():
                    last.add_metric(list(key), s)
                for key, n in state.rows.items():
                    rows.add_metric(list(key), n)
                for job, n in state.ingested.items():
                    ingested.add_metric([job], n)
                for job, n in state.quarantined.items():
                    quarantined.add_metric([job], n)
                for ckey, value in state.counts.items():
                    counts.add_metric(list(ckey), value)
        yield from (running, runs, seconds, last, rows, ingested, quarantined, counts)


# prometheus_client's registry is one per process, as is the scheduler it serves; several
# schedulers in one process (tests, notebooks) share this collector, each plugin its state.
_COLLECTOR = _Collector()
_REGISTERED = threading.Lock()
_registered = [False]


def _register_collector() -> None:
    with _REGISTERED:
        if _registered[0]:
            return
        from prometheus_client import REGISTRY

        REGISTRY.register(_COLLECTOR)
        _registered[0] = True


class PipelineMetrics(SchedulerPlugin):
    """A scheduler plugin keeping the pipeline's stage metrics for ``/metrics``."""

    name = "pipeline-metrics"
    idempotent = True  # a later run keeps the counters of the runs before it

    def __init__(self) -> None:
        self.state = _State()

    async def start(self, scheduler: Scheduler) -> None:
        try:
            _register_collector()
        except ImportError:
            log.warning("prometheus_client is not installed: no pipeline metrics at /metrics")
            return
        _COLLECTOR.plugins.add(self)

    async def close(self) -> None:
        _COLLECTOR.plugins.discard(self)

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == TOPIC and isinstance(msg, Mapping) and "stage" in msg:
            self.state.update(msg)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # sent to the scheduler fresh: the lock does not pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = _State()


def enable_metrics(client: Client) -> bool:
    """Register :class:`PipelineMetrics` on ``client``'s scheduler (once per scheduler).

    Returns
    -------
    bool
        False when the scheduler could not take it (logged; the run goes on without).
    """
    try:
        client.register_plugin(PipelineMetrics())
    except Exception as exc:  # a scheduler without the project installed, or an old one
        log.warning(
            "pipeline metrics unavailable on the scheduler (%s: %s)", type(exc).__name__, exc
        )
        return False
    return True


def report_stage(client: Client | None, job: str, stage: str, event: str, **fields: Any) -> None:
    """Tell the scheduler's metrics that ``stage`` of ``job`` started, is done or failed.

    Parameters
    ----------
    client : distributed.Client or None
    job, stage : str
    event : {"start", "done", "failed"}
    **fields
        ``kind`` (the stage the step runs, when its name is another), and ``seconds`` and
        ``counts`` (a mapping of numbers) when it ended.
    """
    if client is None:
        return
    try:
        client.log_event(TOPIC, {"job": job, "stage": stage, "event": event, **fields})
    except Exception as exc:  # metrics never fail a run
        log.debug("could not report stage %s to the scheduler: %s", stage, exc)
