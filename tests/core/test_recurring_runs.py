"""A scheduled job, as a ``DaskJob``'s runner pod runs it: ``pipeline run JOB`` with
``cluster: {kind: address}`` and the scheduler's address in ``DASK_SCHEDULER_ADDRESS``, against
a scheduler and worker on loopback, night after night on a folder that grows.

Each night's run ingests only the new files, analyses only the new images, refits the PCA
and the clustering over all of them (and equals one run over the whole folder), records
what it added; a night with nothing new does nothing and exits 0; a run that finds the last
one still holding the store exits 2 naming it, and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from distributed import Client

from pipeline.core.jobs import parse_job
from pipeline.core.lock import store_lock
from pipeline.core.manifest import load_manifest
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.synth import generate_galaxies

pytestmark = pytest.mark.slow

# The console script the runner pod runs (the image's entry point).
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
DASK = str(Path(sys.executable).with_name("dask"))

JOB = """\
name: nightly
store: {store}
seed: 0
cluster: {{kind: address, worker_timeout: 60}}
input:
  sources: [{src}]
  chunk_mb: 0.1
stages:
  - stage: preprocess
    params: {{cutout_size: 32}}
  - stage: reduce
    params: {{n_components: 3}}
  - stage: kmeans
    params: {{k_range: [1, 4]}}
"""


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and one worker process on loopback, started as a cluster's pods start
    them (``dask scheduler``, ``dask worker``); yields the scheduler's address."""
    folder = tmp_path_factory.mktemp("scheduler")
    file = folder / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--no-dashboard"]
    sched = subprocess.Popen(
        [
            DASK,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--scheduler-file",
            str(file),
            *common,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(file), "--nthreads", "1", *common],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with Client(scheduler_file=str(file), timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            address = client.scheduler.address
        yield address
    finally:
        for proc in (worker, sched):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("galaxies")
    generate_galaxies(out, count=14, seed=5, size=128)
    return out


def _pod(job: Path, address: str | None) -> subprocess.CompletedProcess[str]:
    """``pipeline run JOB`` as the runner pod runs it: the address only in the environment
    (None: not even there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["OMP_NUM_THREADS"] = "1"
    if address is not None:
        env["DASK_SCHEDULER_ADDRESS"] = address
    return subprocess.run(
        [PIPELINE, "run", str(job)],  # exactly the DaskJob's runner: args [run, JOB]
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _arrive(galaxies: Path, inbox: Path, names: list[str]) -> None:
    inbox.mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(galaxies / name, inbox / name)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_nightly_runs_on_a_growing_folder(scheduler: str, galaxies: Path, tmp_path: Path) -> None:
    images = sorted(p.name for p in galaxies.glob("*.jpg"))
    assert len(images) == 14
    inbox, store_dir = tmp_path / "inbox", tmp_path / "run"
    job = tmp_path / "nightly.yaml"
    job.write_text(JOB.format(store=store_dir, src=inbox))
    store = RunStore(str(store_dir))

    # Night 1: 9 images (2 per chunk: the last chunk is half full).
    _arrive(galaxies, inbox, images[:9])
    first = _pod(job, scheduler)
    assert first.returncode == 0, first.stderr
    assert "Job 'nightly' complete" in first.stdout
    (run1,) = load_manifest(store).runs
    assert run1.status == "done" and run1.ran == ["ingest", "preprocess", "reduce", "kmeans"]
    assert run1.added == {"images": 9, "quarantined": 0}

    # Night 2: 5 more arrive. Only they are decoded and analysed; PCA and k-means refit.
    _arrive(galaxies, inbox, images[9:])
    second = _pod(job, scheduler)
    assert second.returncode == 0, second.stderr
    manifest = load_manifest(store)
    run2 = manifest.runs[-1]
    assert len(manifest.runs) == 2 and run2.status == "done"
    assert run2.added == {"images": 5, "quarantined": 0}
    assert run2.counts["ingest"]["images_added"] == 5
    assert run2.counts["ingest"]["images_written"] == 5
    assert run2.counts["preprocess"]["analysed"] == 5
    assert run2.growth["preprocess"] == "new_rows" and run2.growth["reduce"] == "refit"
    assert run2.counts["reduce"]["rows"] == run2.counts["preprocess"]["kept"]
    assert run2.counts["kmeans"]["rows"] == run2.counts["preprocess"]["kept"]

    # The grown store equals one run over the whole folder.
    whole = tmp_path / "whole"
    with Client(scheduler, timeout=30) as client:
        run_job(parse_job(JOB.format(store=whole, src=inbox), "whole.yaml"), client=client)
    with xr.open_zarr(store.zarr_url) as grown, xr.open_zarr(RunStore(str(whole)).zarr_url) as w:
        assert grown.sizes["image"] == 14
        xr.testing.assert_allclose(grown["cutouts"].load(), w["cutouts"].load())
        xr.testing.assert_allclose(abs(grown["reduced"].load()), abs(w["reduced"].load()))
    for table in ("images", "catalog", "clusters"):
        got = pd.read_parquet(store_dir / "tables" / f"{table}.parquet")
        want = pd.read_parquet(whole / "tables" / f"{table}.parquet")
        pd.testing.assert_frame_equal(got, want, check_exact=False)

    # Night 3: nothing new. Nothing runs, no cluster is needed, the store is as it was.
    before = _files(store_dir)
    third = _pod(job, "tcp://127.0.0.1:9")  # no scheduler there: none is contacted
    assert third.returncode == 0, third.stderr
    assert "nothing new" in third.stdout and "kmeans: already complete" in third.stdout
    assert _files(store_dir) == before

    # Night 4: the last run still holds the store. Exit 2, naming it; nothing changes.
    _arrive(galaxies, inbox, [])
    with store_lock(store, "run of job 'nightly' (started yesterday)"):
        locked = _pod(job, scheduler)
    assert locked.returncode == 2
    assert "started yesterday" in locked.stderr and "in use" in locked.stderr
    assert _files(store_dir) == before


def test_no_address_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(store=tmp_path / "run", src=tmp_path / "inbox"))
    make = tmp_path / "inbox"
    make.mkdir()
    generate_galaxies(make, count=2, seed=0, size=64)
    out = _pod(job, None)
    assert out.returncode == 2
    assert "DASK_SCHEDULER_ADDRESS is not set" in out.stderr and "cluster.address" in out.stderr
