"""One run at a time per store: a lock file ``<store>/.lock`` naming its holder.

Two runs writing one store at once would interleave chunks and manifests (a stage recorded
done while its array is half written, or the other run's spec). So a run holds the lock for
its whole length, and a second run waits for it (``wait`` seconds) or stops with the holder's
details.

How the lock is held depends on where the store lives:

* **Local disks** (and NFS v4): ``flock`` on ``.lock``. The kernel releases it when the
  holding process ends, ``kill -9`` included, so a lock left by a killed run is never held:
  the next run takes it over and logs whose it was. The file is removed on release, and a
  waiter checks that the file it locked is still the one at ``.lock`` (the holder may have
  removed it in the meantime).
* **Object stores** (and filesystems without ``flock``): a lease. The holder writes
  ``.lock`` with an expiry and renews it every third of ``ttl`` from a background thread. A
  lease past its expiry, or one whose holder ran on this host under a process id that is no
  longer running, is stale and taken over. Creation is a conditional write where the
  filesystem has one (fsspec ``mode="create"``: local, memory, S3 and GCS): of two runs
  creating the lock at once, one fails. Taking over a stale lease deletes it only if it is
  still the stale one, then creates; a read-back after a short settle confirms the lease.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.core.manifest import now_iso
from pipeline.core.store import LOCK_NAME, RunStore
from pipeline.errors import StoreError, StoreLockedError

__all__ = ["LOCK_NAME", "LockHolder", "LockState", "lock_state", "store_lock"]

log = logging.getLogger(__name__)

#: How long a lease on an object store lasts without renewal (s): a run killed without
#: releasing its lease blocks the store this long at most.
DEFAULT_TTL = 120.0


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a store's lock."""

    host: str
    pid: int
    user: str
    started: str
    command: str
    token: str
    expires: float | None = None  # leases only: epoch seconds

    def describe(self) -> str:
        """One line for messages: who, where, since when, doing what."""
        return (
            f"{self.user}@{self.host} pid {self.pid} since {self.started} "
            f"({self.command or 'a pipeline run'})"
        )

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockHolder | None:
        """The holder a lock file names (None if the file is empty or not ours)."""
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class LockState:
    """What ``pipeline status`` says about a store's lock."""

    holder: LockHolder | None
    held: bool

    def describe(self) -> str:
        if self.holder is None:
            return "not locked"
        if self.held:
            return f"held by {self.holder.describe()}"
        return (
            f"left by {self.holder.describe()}, which is no longer running; the next run "
            "takes it over"
        )


def _me(command: str, ttl: float | None) -> LockHolder:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return LockHolder(
        host=socket.gethostname(),
        pid=os.getpid(),
        user=user,
        started=now_iso(),
        command=command,
        token=uuid.uuid4().hex,
        expires=None if ttl is None else time.time() + ttl,
    )


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _lease_stale(holder: LockHolder | None) -> bool:
    if holder is None:
        return True
    if holder.host == socket.gethostname() and not _pid_running(holder.pid):
        return True
    return holder.expires is not None and time.time() > holder.expires


# -- local: flock --------------------------------------------------------------------------------


def _local_root(store: RunStore) -> tuple[Path, bool]:
    """The store's folder, created if missing; and whether it was created here."""
    root = Path(store.url)
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(
            f"store {store.url} is a file, not a folder: give a folder for the run store"
        ) from None
    except NotADirectoryError:
        raise StoreError(
            f"store {store.url} is under a file, not a folder: give a path whose parents are "
            "folders"
        ) from None
    except PermissionError:
        raise StoreError(
            f"store {store.url} cannot be created (permission denied): give a folder you can write"
        ) from None
    if not root.is_dir():
        raise StoreError(f"store {store.url} is not a folder: give a folder for the run store")
    return root, created


def _open_lock_file(path: Path, store: RunStore) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        raise StoreError(
            f"store {store.url} is read-only here (cannot create {path.name}): give a folder "
            "you can write, or copy the store"
        ) from None
    except OSError as exc:
        raise StoreError(f"store {store.url}: cannot create its lock file: {exc}") from None


def _read_fd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_turn(
    store: RunStore,
    holder: LockHolder | None,
    deadline: float,
    wait: float,
    poll: float,
    announced: bool,
) -> bool:
    """Sleep ``poll`` before the next try (saying so once), or raise once ``wait`` is over.

    Returns
    -------
    bool
        True: the wait has been announced.

    Raises
    ------
    StoreLockedError
        Past the deadline, naming ``holder``.
    """
    if time.monotonic() >= deadline:
        raise StoreLockedError(store.url, holder.describe() if holder else None)
    if not announced:
        log.warning(
            "store %s is in use by %s; waiting up to %.0f s",
            store.url,
            holder.describe() if holder else "another run",
            wait,
        )
    time.sleep(poll)
    return True


def _flock_acquire(store: RunStore, path: Path, me: LockHolder, wait: float, poll: float) -> int:
    """Lock ``path`` with ``flock`` and write ``me`` into it; the open file descriptor."""
    import fcntl  # POSIX only; the caller falls back to a lease where it is missing

    deadline, announced = time.monotonic() + wait, False
    while True:
        # The holder may have removed the store folder it made for a run that wrote nothing.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_file(path, store)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = LockHolder.from_bytes(_read_fd(fd))
            os.close(fd)
            announced = _wait_turn(store, holder, deadline, wait, poll, announced)
            continue
        except BaseException:
            os.close(fd)
            raise
        # The holder removes the file before releasing it: a lock on a removed file is no lock.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = LockHolder.from_bytes(_read_fd(fd))
        if previous is not None:
            log.warning(
                "store %s: taking over the lock left by %s, which is no longer running",
                store.url,
                previous.describe(),
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, me.to_bytes())
        os.fsync(fd)
    except BaseException:
        _flock_release(path, fd)
        raise
    return fd


def _flock_release(path: Path, fd: int) -> None:
    # Removed while still locked, so a waiter that opened it sees it is gone (see above).
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


def _flock_state(path: Path) -> LockState:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return LockState(None, held=False)
    try:
        holder = LockHolder.from_bytes(_read_fd(fd))
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return LockState(holder, held=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return LockState(holder, held=False)
    finally:
        os.close(fd)


# -- object stores: a lease ------------------------------------------------------------------------


def _read_lease(store: RunStore) -> LockHolder | None:
    try:
        return LockHolder.from_bytes(store.read_bytes(LOCK_NAME))
    except StoreError:
        return None


def _create_lease(store: RunStore, holder: LockHolder) -> bool:
    """Create the lock file unless it exists (conditionally where the filesystem can)."""
    path = store.fs_path(LOCK_NAME)
    try:
        store.fs.pipe_file(path, holder.to_bytes(), mode="create")
        return True
    except FileExistsError:
        return False
    except (NotImplementedError, TypeError, ValueError):
        # No conditional write here: check, write, and let the read-back settle races.
        if store.fs.exists(path):
            return False
        store.fs.pipe_file(path, holder.to_bytes())
        return True


@contextlib.contextmanager
def _lease(
    store: RunStore, me: LockHolder, ttl: float, wait: float, poll: float, settle: float
) -> Iterator[LockHolder]:
    deadline, announced = time.monotonic() + wait, False
    while True:
        if _create_lease(store, me):
            time.sleep(settle)
            if (mine := _read_lease(store)) is not None and mine.token == me.token:
                break
            continue  # another run's write won the race
        holder = _read_lease(store)
        if _lease_stale(holder):
            # Delete only the stale lease just read, never one a faster run just created.
            again = _read_lease(store)
            if again == holder:
                if holder is not None:
                    log.warning(
                        "store %s: taking over the lock left by %s (expired or no longer running)",
                        store.url,
                        holder.describe(),
                    )
                store.remove(LOCK_NAME)
            continue
        announced = _wait_turn(store, holder, deadline, wait, poll, announced)

    stop = threading.Event()
    current = [me]

    def renew() -> None:
        while not stop.wait(ttl / 3):
            now = _read_lease(store)
            if now is None or now.token != me.token:
                log.error(
                    "store %s: this run's lock was taken by %s; stop one of the runs",
                    store.url,
                    now.describe() if now else "nobody (it was removed)",
                )
                return
            current[0] = LockHolder(**{**asdict(me), "expires": time.time() + ttl})
            store.fs.pipe_file(store.fs_path(LOCK_NAME), current[0].to_bytes())

    thread = threading.Thread(target=renew, name="pipeline-store-lease", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join()
        now = _read_lease(store)
        if now is not None and now.token == me.token:
            store.remove(LOCK_NAME)


# -- public --------------------------------------------------------------------------------------


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def store_lock(
    store: RunStore,
    command: str = "",
    *,
    wait: float = 0.0,
    poll: float = 1.0,
    ttl: float = DEFAULT_TTL,
    settle: float = 0.5,
) -> Iterator[LockHolder]:
    """Hold ``store``'s lock for the length of the block.

    Parameters
    ----------
    store : RunStore
        Local folders are created if missing (their parents must be folders).
    command : str
        What the run does (shown to anyone who finds the store locked).
    wait : float
        Seconds to wait for another run to finish; 0 stops at once.
    poll : float
        Seconds between tries while waiting.
    ttl : float
        Lease length on object stores (s); renewed every ``ttl / 3``.
    settle : float
        Object stores: seconds between creating the lease and reading it back.

    Yields
    ------
    LockHolder
        This run's entry in the lock file.

    Raises
    ------
    StoreLockedError
        If another run holds the lock after ``wait`` seconds (it names the holder).
    StoreError
        If the store path is a file, under a file, or read-only.
    """
    if store.is_local and _has_flock():
        root, created = _local_root(store)
        path, me = root / LOCK_NAME, _me(command, None)
        fd: int | None
        try:
            fd = _flock_acquire(store, path, me, wait, poll)
        except StoreError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.info("store %s: no flock on this filesystem (%s); using a lease", store.url, exc)
            fd = None
        if fd is not None:
            try:
                yield me
            finally:
                _flock_release(path, fd)
                if created:
                    # A run that stopped before writing anything leaves no empty store behind.
                    with contextlib.suppress(OSError):
                        root.rmdir()
            return
    with _lease(store, _me(command, ttl), ttl, wait, poll, settle) as lease:
        yield lease


def lock_state(store: RunStore) -> LockState:
    """Whether ``store`` is locked now, and by whom (or who left a lock behind)."""
    if store.is_local and _has_flock():
        return _flock_state(Path(store.url) / LOCK_NAME)
    holder = _read_lease(store)
    return LockState(holder, held=holder is not None and not _lease_stale(holder))
