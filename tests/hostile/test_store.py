"""Hostile stores and concurrent runs: one run per store (a lock, taken over when stale), store
paths that cannot be used, folders that are not run stores, paths out of the store, file
permissions, clusters that cannot be reached or have no workers."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from distributed import Client, LocalCluster

from pipeline.cli import main
from pipeline.core.jobs import parse_job
from pipeline.core.lock import LockHolder, lock_state, store_lock
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.errors import StoreError, StoreLockedError
from tests.conftest import REPO, make_folder

SPEC = """\
name: t
store: {store}
input:
  sources: [{src}]
  chunk_mb: 0.002
"""


def _spec(tmp_path: Path, store: Path | None = None) -> Path:
    make_folder(tmp_path / "in", 3)
    spec = tmp_path / "t.yaml"
    spec.write_text(SPEC.format(store=store or tmp_path / "run", src=tmp_path / "in"))
    return spec


def _run(spec: Path, client: Client, *extra: str) -> int:
    return main(["run", str(spec), "--scheduler", client.scheduler.address, "-q", *extra])


def _hold(store: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding ``store``'s lock for ``seconds`` (it prints 'held' once it does)."""
    code = textwrap.dedent(
        f"""
        import time
        from pipeline.core.lock import store_lock
        from pipeline.core.store import RunStore
        with store_lock(RunStore({str(store)!r}), "a test holder"):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    with proc.stdout:  # it prints nothing more: closed here, not left to the garbage collector
        assert proc.stdout.readline().strip() == "held"
    return proc


# -- the lock ------------------------------------------------------------------------------


def test_a_second_run_exits_2_naming_the_holder_and_status_shows_it(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path)
    assert _run(spec, client) == 0
    manifest = (tmp_path / "run" / "manifest.json").read_bytes()
    holder = _hold(tmp_path / "run", 60)
    try:
        capsys.readouterr()
        assert _run(spec, client, "--force", "ingest") == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "a test holder" in err and "--wait" in err
        assert "Traceback" not in err
        # The refused run changed nothing.
        assert (tmp_path / "run" / "manifest.json").read_bytes() == manifest
        assert main(["status", str(tmp_path / "run")]) == 0
        out = capsys.readouterr().out
        assert "Lock: held by" in out and f"pid {holder.pid}" in out and "a test holder" in out
    finally:
        holder.kill()
        holder.wait()


def test_a_run_waits_for_the_holder_when_asked(client: Client, tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    holder = _hold(tmp_path / "run", 2)
    try:
        t0 = time.monotonic()
        summary = run_job(parse_job(spec.read_text()), client=client, lock_wait=60)
        assert summary.ran == ["ingest"]
        assert holder.wait(timeout=30) == 0  # it finished its 2 s before the run could start
        assert time.monotonic() - t0 >= 1.0
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec(tmp_path)
    holder = _hold(tmp_path / "run", 600)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    store = RunStore(str(tmp_path / "run"))
    state = lock_state(store)
    assert state.holder is not None and state.holder.pid == holder.pid and not state.held
    assert "no longer running" in state.describe()
    assert run_job(parse_job(spec.read_text()), client=client).ran == ["ingest"]
    assert f"pid {holder.pid}" in caplog.text and "taking over" in caplog.text
    assert lock_state(store).holder is None  # released: no lock file is left


def test_one_of_two_runs_at_once_gets_the_lock(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    with store_lock(store, "first") as me:
        assert lock_state(store).held and lock_state(store).holder == me
        with pytest.raises(StoreLockedError, match="first"), store_lock(store, "second"):
            pass
    with store_lock(store, "third"):
        pass


@pytest.fixture
def memory_store() -> Iterator[RunStore]:
    store = RunStore(f"memory://pipeline-lock-{os.getpid()}-{time.monotonic_ns()}")
    yield store
    store.remove("")


def test_a_lease_on_an_object_store_excludes_a_second_run(memory_store: RunStore) -> None:
    with store_lock(memory_store, "first", settle=0.0, ttl=30) as me:
        assert me.expires is not None
        assert lock_state(memory_store).held
        with (
            pytest.raises(StoreLockedError, match="first"),
            store_lock(memory_store, "second", settle=0.0),
        ):
            pass
    assert lock_state(memory_store).holder is None


@pytest.mark.parametrize("why", ["expired", "dead process on this host"])
def test_a_stale_lease_is_taken_over(
    memory_store: RunStore, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale = LockHolder(
        host="elsewhere" if why == "expired" else socket.gethostname(),
        pid=int(dead.stdout) if why != "expired" else 1,
        user="someone",
        started="2026-01-01T00:00:00Z",
        command="a killed run",
        token="stale",
        expires=time.time() - 1 if why == "expired" else time.time() + 3600,
    )
    memory_store.fs.pipe_file(memory_store.fs_path(".lock"), stale.to_bytes())
    assert not lock_state(memory_store).held
    with store_lock(memory_store, "new", settle=0.0) as me:
        assert lock_state(memory_store).holder == me
    assert "a killed run" in caplog.text and "taking over" in caplog.text


def test_a_lease_is_renewed_while_the_run_lasts(memory_store: RunStore) -> None:
    with store_lock(memory_store, "long", settle=0.0, ttl=0.6) as me:
        time.sleep(1.5)  # past the first expiry: renewals keep it
        now = lock_state(memory_store)
        assert now.held and now.holder is not None and now.holder.token == me.token
        assert now.holder.expires is not None and me.expires is not None
        assert now.holder.expires > me.expires


# -- store paths that cannot be used --------------------------------------------------------


def _ingest_argv(tmp_path: Path, store: Path, client: Client) -> list[str]:
    make_folder(tmp_path / "in", 3)
    scheduler = ["--scheduler", client.scheduler.address]
    return ["ingest", str(tmp_path / "in"), "--store", str(store), "-q", *scheduler]


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("a file", "is a file"),
        ("under a file", "under a file"),
        ("read-only", "read-only"),
    ],
)
def test_an_unusable_store_path_gives_one_line_and_exit_2(
    client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    fragment: str,
) -> None:
    (tmp_path / "file").write_text("mine")
    store = {
        "a file": tmp_path / "file",
        "under a file": tmp_path / "file" / "run",
        "read-only": tmp_path / "ro",
    }[case]
    real_open = os.open

    def refuse(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    # Tests often run as root, which writes anywhere: a read-only folder is simulated by the
    # error a user would get.
    patch = mock.patch("pipeline.core.lock.os.open", refuse) if case == "read-only" else None
    with patch or mock.patch.dict({}):
        code = main(_ingest_argv(tmp_path, store, client))
    err = capsys.readouterr().err
    assert code == 2, err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_run_store_is_refused_and_left_alone(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str], overwrite: bool
) -> None:
    folder = tmp_path / "documents"
    (folder / "store.zarr").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "store.zarr" / "zarr.json").write_text("{}")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    argv = _ingest_argv(tmp_path, folder, client) + (["--overwrite"] if overwrite else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not a run store" in err and "notes.txt" in err
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("rel", ["../outside", "/etc/passwd", "tables/../../x", "models/\0x"])
def test_no_store_path_leads_out_of_the_store(tmp_path: Path, rel: str) -> None:
    store = RunStore(str(tmp_path / "run"))
    for call in (
        lambda: store.read_bytes(rel),
        lambda: store.write_bytes(rel, b"x"),
        lambda: store.exists(rel),
        lambda: store.remove(rel),
    ):
        with pytest.raises(StoreError, match="not a path inside the run store"):
            call()
    assert not (tmp_path / "outside").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_store_files_get_the_permissions_the_umask_gives(
    client: Client, tmp_path: Path, umask: int
) -> None:
    spec = _spec(tmp_path)
    old = os.umask(umask)
    try:
        run_job(parse_job(spec.read_text()), client=client)
    finally:
        os.umask(old)
    modes = {
        p.relative_to(tmp_path / "run").as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in (tmp_path / "run").rglob("*")
        if p.is_file()
    }
    assert "manifest.json" in modes and "tables/images.parquet" in modes
    assert set(modes.values()) == {0o666 & ~umask}, modes


# -- clusters that cannot be used -----------------------------------------------------------


def test_an_unreachable_scheduler_gives_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path)
    spec.write_text(
        spec.read_text() + "cluster: {address: 'tcp://127.0.0.1:9', connect_timeout: 2}\n"
    )
    t0 = time.monotonic()
    assert main(["run", str(spec), "-q"]) == 2
    assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_scheduler_without_workers_is_waited_for_with_a_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        argv = ["run", str(spec), "--scheduler", empty.scheduler_address, "-q"]
        t0 = time.monotonic()
        assert main([*argv, "--worker-timeout", "1"]) == 2
        assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert "has no workers after 1 s" in err and "Traceback" not in err


def test_a_scheduler_whose_worker_arrives_late_is_used(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        late = threading.Timer(1.0, lambda: cluster.scale(1))
        late.start()
        try:
            text = spec.read_text() + f"cluster: {{address: '{cluster.scheduler_address}'}}\n"
            assert run_job(parse_job(text)).ran == ["ingest"]
        finally:
            late.cancel()


def test_overwrite_never_replaces_a_zarr_store_pipeline_did_not_write(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    import xarray as xr

    folder = tmp_path / "theirs"
    xr.Dataset({"images": (("image", "y", "x"), np.ones((2, 4, 4), np.uint8))}).to_zarr(
        folder / "store.zarr", zarr_format=3, consolidated=False
    )
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert main([*_ingest_argv(tmp_path, folder, client), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not written by pipeline" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
