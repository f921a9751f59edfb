"""What a run survives, each checked against a clean run of the same job: the client killed
mid-stage, a worker killed mid-stage on a loopback cluster, a full disk. (``kill -9`` of an
ingest is in ``tests/io/test_ingest.py``.)"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import xarray as xr
from distributed import Client

from pipeline.core.jobs import parse_job
from pipeline.core.manifest import load_manifest
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.errors import StageError
from pipeline.synth import generate_galaxies
from tests.conftest import REPO

JOB = """\
name: survive
store: {store}
seed: 0
cluster: {cluster}
input:
  sources: [{src}/manifest.csv]
  chunk_mb: 0.1
stages:
  - stage: preprocess
    params: {{cutout_size: 64}}
  - stage: reduce
    params: {{n_components: 5}}
"""
LOCAL = "{kind: local, workers: 1, threads_per_worker: 1, dashboard_address: ':0'}"


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 small generated galaxies: 24 chunks of 2 images, so a stage is killable mid-way."""
    out = tmp_path_factory.mktemp("galaxies")
    generate_galaxies(out, count=48, seed=0, size=128)
    return out


@pytest.fixture(scope="module")
def clean(galaxies: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The job run once, uninterrupted."""
    store = tmp_path_factory.mktemp("clean") / "run"
    spec = JOB.format(store=store, cluster=LOCAL, src=galaxies)
    run_job(parse_job(spec, "clean.yaml"))
    return store


def assert_same_outputs(store: Path, clean: Path) -> None:
    """Every array and table of ``store`` equals the clean run's."""
    got, want = RunStore(str(store)), RunStore(str(clean))
    with got.open_dataset() as a, want.open_dataset() as b:
        assert sorted(a.variables) == sorted(b.variables)
        xr.testing.assert_identical(a.load(), b.load())
    tables = sorted(p.name for p in (clean / "tables").glob("*.parquet"))
    assert tables == sorted(p.name for p in (store / "tables").glob("*.parquet"))
    for name in tables:
        pd.testing.assert_frame_equal(
            pd.read_parquet(store / "tables" / name), pd.read_parquet(clean / "tables" / name)
        )
    stages = {n: r.status for n, r in load_manifest(got).stages.items()}
    assert stages == {"ingest": "done", "preprocess": "done", "reduce": "done"}


def _wait_for(markers: Path, at_least: int, alive: Callable[[], bool], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline and alive():
        n = len(list(markers.glob("*.json"))) if markers.exists() else 0
        if n >= at_least:
            break
        time.sleep(0.01)
    return n


@pytest.mark.slow
def test_killing_the_client_mid_stage_then_rerunning_equals_a_clean_run(
    galaxies: Path, clean: Path, tmp_path: Path
) -> None:
    store = tmp_path / "run"
    spec = tmp_path / "job.yaml"
    spec.write_text(JOB.format(store=store, cluster=LOCAL, src=galaxies))
    argv = [sys.executable, "-m", "pipeline", "run", str(spec), "-q"]
    # Its own session: the kill takes the client and the local cluster's processes with it.
    proc = subprocess.Popen(
        argv, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    done = _wait_for(store / "_progress" / "preprocess", 2, lambda: proc.poll() is None, 180)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 24, f"could not kill mid-stage ({done} of 24 chunks done)"
    assert load_manifest(RunStore(str(store))).stages["preprocess"].status == "running"

    rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "taking over the lock" not in rerun.stderr or "no longer running" in rerun.stderr
    assert_same_outputs(store, clean)


WORKER_ARGS = ("worker", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--no-nanny")


def _dask(*args: str) -> subprocess.Popen[bytes]:
    dask_cli = Path(sys.executable).with_name("dask")
    return subprocess.Popen(
        [str(dask_cli), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and two single-threaded worker processes on 127.0.0.1."""
    sched_file = tmp_path / "scheduler.json"
    scheduler = _dask(
        "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
        "--scheduler-file", str(sched_file),
    )  # fmt: skip
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        workers = [_dask(*WORKER_ARGS, "--scheduler-file", str(sched_file)) for _ in range(2)]
        procs += workers
        with Client(address) as c:
            c.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


@pytest.mark.slow
def test_killing_a_worker_mid_stage_still_finishes_equal_to_a_clean_run(
    galaxies: Path,
    clean: Path,
    tmp_path: Path,
    loopback: tuple[str, list[subprocess.Popen[bytes]]],
) -> None:
    address, workers = loopback
    store = tmp_path / "run"
    job = parse_job(
        JOB.format(store=store, cluster=f"{{address: '{address}'}}", src=galaxies), "w.yaml"
    )
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["summary"] = run_job(job)
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    done = _wait_for(store / "_progress" / "preprocess", 2, thread.is_alive, 180)
    workers[0].send_signal(signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in result, result
    assert 2 <= done < 24, f"the worker was not killed mid-stage ({done} of 24 chunks done)"
    assert workers[0].wait(timeout=10) == -signal.SIGKILL
    assert_same_outputs(store, clean)


def test_a_full_disk_is_recorded_and_a_rerun_after_freeing_space_completes(
    galaxies: Path, clean: Path, tmp_path: Path, client: Client
) -> None:
    store = tmp_path / "run"
    job = parse_job(JOB.format(store=store, cluster=LOCAL, src=galaxies), "full.yaml")
    real = RunStore.write_bytes

    def full(self: RunStore, rel: str, data: bytes) -> None:
        if rel == "tables/catalog.parquet":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path(rel))
        real(self, rel, data)

    with mock.patch.object(RunStore, "write_bytes", full), pytest.raises(StageError):
        run_job(job, client=client)
    record = load_manifest(RunStore(str(store))).stages["preprocess"]
    assert record.status == "failed" and "No space left on device" in (record.error or "")
    assert load_manifest(RunStore(str(store))).stages["ingest"].status == "done"
    summary = run_job(job, client=client)  # space freed
    assert summary.skipped == ["ingest"] and summary.ran == ["preprocess", "reduce"]
    assert_same_outputs(store, clean)
