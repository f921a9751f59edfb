"""Runtime: cluster configuration, and the same job on `local` and on a remote scheduler."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.core.cluster_config import (
    AddressClusterConfig,
    LocalClusterConfig,
    parse_cluster_config,
)
from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.runtime import cluster_client
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import ClusterError
from tests.conftest import make_folder


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"address": "10.0.0.1:8786"}, "must start with tcp:// or tls://"),
        ({"address": "tls://h:1"}, "needs tls_ca_file, tls_cert and tls_key"),
        ({"address": "tcp://h:1", "tls_ca_file": "ca.pem"}, "not tls://"),
        ({"workers": 0}, "greater than or equal to 1"),
        ({"kind": "kubernetes"}, "image\n  Field required"),
        ({"kind": "cloud"}, "does not match any of the expected tags"),
    ],
)
def test_bad_cluster_configs_say_what_to_fix(config: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        parse_cluster_config(config)


def test_tls_files_are_checked_when_connecting_not_when_parsing() -> None:
    """A job written for a pod (certificates mounted there) validates on a laptop."""
    config = parse_cluster_config(
        {"address": "tls://h:1", "tls_ca_file": "/no/ca", "tls_cert": "/no/c", "tls_key": "/no/k"}
    )
    assert isinstance(config, AddressClusterConfig) and config.kind == "address"
    with (
        pytest.raises(ClusterError, match=r"cluster.tls_ca_file: TLS file /no/ca does not exist"),
        cluster_client(config),
    ):
        pass


def test_local_cluster_sized_as_asked_with_performance_report(tmp_path: Path) -> None:
    cfg = LocalClusterConfig(
        workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    )
    report = tmp_path / "perf.html"
    with cluster_client(cfg, performance_report_path=str(report)) as client:
        info = client.scheduler_info()
        assert len(info["workers"]) == 1
        assert next(iter(info["workers"].values()))["nthreads"] == 2
        assert client.submit(sum, [1, 2]).result() == 3
        assert client.dashboard_link
    assert report.exists() and "Dask Performance Report" in report.read_text()


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    """Start `dask scheduler` or `dask worker` from this interpreter's environment."""
    dask_cli = Path(sys.executable).with_name("dask")
    return subprocess.Popen(
        [str(dask_cli), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.slow
def test_same_job_on_local_and_on_a_loopback_scheduler_gives_identical_outputs(
    tmp_path: Path,
) -> None:
    make_folder(tmp_path / "in", 30, shape=(40, 40, 3), suffix=".jpg")
    spec = """\
name: t
store: {store}
cluster: {cluster}
input:
  sources: [{src}]
  chunk_mb: 0.02
stages:
  - stage: report
"""
    sched_file = tmp_path / "scheduler.json"
    procs = [
        _start(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(sched_file),
            ]
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = pd.read_json(sched_file, typ="series")["address"]
        procs += [
            _start(
                [
                    "worker",
                    "--scheduler-file",
                    str(sched_file),
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ]
            )
            for _ in range(2)
        ]
        remote = f"{{kind: address, address: '{address}'}}"
        local = "{kind: local, workers: 2, threads_per_worker: 1, dashboard_address: ':0'}"
        for name, cluster in (("remote", remote), ("local", local)):
            job = parse_job(
                spec.format(store=tmp_path / name, cluster=cluster, src=tmp_path / "in"),
                f"{name}.yaml",
            )
            summary = run_job(job)
            assert summary.ran == ["ingest", "report"]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)

    def tree(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    assert tree(tmp_path / "remote" / "store.zarr") == tree(tmp_path / "local" / "store.zarr")
    for table in ("images", "quarantine"):
        pd.testing.assert_frame_equal(
            read_table(RunStore(str(tmp_path / "remote")), table),
            read_table(RunStore(str(tmp_path / "local")), table),
        )


def test_local_workers_keep_chunk_buffers_instead_of_refaulting_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    # distributed lets a variable already in this process's environment win over the config
    # (and a plain LocalCluster started earlier in the process leaves its 64 KiB there).
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    cfg = LocalClusterConfig(workers=1, threads_per_worker=1, dashboard_address=":0")
    with cluster_client(cfg) as client:
        environ = client.run(lambda: dict(os.environ))
    (worker_env,) = environ.values()
    assert worker_env["MALLOC_TRIM_THRESHOLD_"] == str(2**27)
    assert worker_env["MALLOC_MMAP_THRESHOLD_"] == str(2**27)
    assert worker_env["OMP_NUM_THREADS"] == "1"  # distributed's own settings are kept


def test_a_malloc_threshold_set_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    cfg = LocalClusterConfig(workers=1, threads_per_worker=1, dashboard_address=":0")
    with cluster_client(cfg) as client:
        environ = client.run(lambda: dict(os.environ))
    (worker_env,) = environ.values()
    assert worker_env["MALLOC_TRIM_THRESHOLD_"] == "1048576"


def test_an_address_left_out_is_taken_from_the_operators_variable() -> None:
    from pipeline.core.cluster_config import AddressClusterConfig
    from pipeline.core.runtime import scheduler_address

    pod = {"DASK_SCHEDULER_ADDRESS": "tcp://pipeline-scheduler.surveys.svc.cluster.local:8786"}
    assert scheduler_address(AddressClusterConfig(), pod) == pod["DASK_SCHEDULER_ADDRESS"]
    # One given in the spec wins.
    given = AddressClusterConfig(address="tcp://10.0.0.5:8786")
    assert scheduler_address(given, pod) == "tcp://10.0.0.5:8786"
    with pytest.raises(ClusterError, match=r"DASK_SCHEDULER_ADDRESS is not set.*cluster\.address"):
        scheduler_address(AddressClusterConfig(), {})
    with pytest.raises(ClusterError, match=r"DASK_SCHEDULER_ADDRESS 'sched:8786' must start"):
        scheduler_address(AddressClusterConfig(), {"DASK_SCHEDULER_ADDRESS": "sched:8786"})
