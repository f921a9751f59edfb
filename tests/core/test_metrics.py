"""``/metrics`` on the scheduler: Dask's metrics and the pipeline's own, scraped as
Prometheus scrapes them, on a local cluster with worker processes."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from prometheus_client.parser import text_string_to_metric_families

from pipeline.core.jobs import parse_job
from pipeline.core.metrics import PipelineMetrics, rows_processed
from pipeline.core.runner import run_job
from pipeline.errors import StageError
from tests.conftest import make_folder

pytestmark = pytest.mark.slow

JOB = """\
name: {name}
store: {store}
input:
  sources: [{src}]
  mode: gray
stages:
  - stage: reduce
    params: {{input: images, n_components: 2}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as lc,
        Client(lc) as client,
    ):
        yield client


def _scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = client.dashboard_link.replace("/status", "/metrics")
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


def test_metrics_show_each_stage_with_dasks_own(cluster: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 6, shape=(16, 12))
    store = tmp_path / "run"
    job = parse_job(JOB.format(name="night", store=store, src=tmp_path / "in"), "night.yaml")
    run_job(job, client=cluster)
    metrics = _scrape(cluster)
    # Dask's own, which the dashboard serves only with prometheus_client installed.
    assert any(name.startswith("dask_scheduler_") for name, _ in metrics)
    labels = {"job": "night", "stage": "ingest"}
    assert _get(metrics, "pipeline_stage_runs_total", status="done", **labels) == 1
    assert _get(metrics, "pipeline_stage_running", **labels) == 0
    assert _get(metrics, "pipeline_stage_seconds_total", **labels) > 0
    assert _get(metrics, "pipeline_images_ingested_total", job="night") == 6
    assert _get(metrics, "pipeline_images_quarantined", job="night") == 0
    assert _get(metrics, "pipeline_rows_processed_total", job="night", stage="reduce") == 6
    assert (
        _get(metrics, "pipeline_stage_count", count="components", job="night", stage="reduce") == 2
    )

    # The stages' tasks are grouped in Dask spans named after the job and the stage.
    spans = cluster.run_on_scheduler(
        lambda dask_scheduler: {s.name for s in dask_scheduler.extensions["spans"].spans.values()}
    )
    assert {("night", "ingest"), ("night", "reduce")} <= spans

    # A second run on the same scheduler adds up; a failing stage is counted as failed.
    make_folder(tmp_path / "in2", 4, shape=(16, 12))
    bad = JOB.format(name="night", store=tmp_path / "run2", src=tmp_path / "in2").replace(
        "n_components: 2", "n_components: 9"
    )
    with pytest.raises(StageError):
        run_job(parse_job(bad, "bad.yaml"), client=cluster)
    metrics = _scrape(cluster)
    assert _get(metrics, "pipeline_stage_runs_total", status="done", **labels) == 2
    assert _get(metrics, "pipeline_images_ingested_total", job="night") == 10
    reduce = {"job": "night", "stage": "reduce"}
    assert _get(metrics, "pipeline_stage_runs_total", status="failed", **reduce) == 1
    assert _get(metrics, "pipeline_stage_running", **reduce) == 0


def test_the_plugin_travels_to_the_scheduler_without_its_state() -> None:
    import pickle

    plugin = PipelineMetrics()
    plugin.log_event("pipeline.stage", {"job": "j", "stage": "s", "event": "start"})
    copy = pickle.loads(pickle.dumps(plugin))
    assert copy.state.running == {} and plugin.state.running == {("j", "s"): 1}


@pytest.mark.parametrize(
    ("counts", "rows"),
    [
        ({"images": 10, "images_written": 3}, 3),  # a grown collection: only the new rows
        ({"rows": 7, "components": 2}, 7),
        ({"clusters": 3}, 0),
    ],
)
def test_rows_processed_prefers_the_rows_done_this_time(counts: dict, rows: int) -> None:
    assert rows_processed(counts) == rows


def test_images_ingested_count_by_the_stage_whatever_the_steps_name() -> None:
    plugin = PipelineMetrics()
    done = {"event": "done", "seconds": 1.0, "counts": {"images_written": 4, "quarantined": 1}}
    plugin.log_event(
        "pipeline.stage", {"job": "j", "stage": "plates_in", "kind": "ingest_plates", **done}
    )
    plugin.log_event(
        "pipeline.stage", {"job": "j", "stage": "ingestion_like", "kind": "reduce", **done}
    )
    assert plugin.state.ingested == {"j": 4} and plugin.state.quarantined == {"j": 1}
