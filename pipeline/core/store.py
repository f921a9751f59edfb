"""The run store: one folder or fsspec URL per run.

Layout::

    <root>/store.zarr        Zarr v3 group that ``xarray.open_zarr`` opens as a labelled Dataset
    <root>/tables/*.parquet  tables documented in :mod:`pipeline.core.tables`
    <root>/manifest.json     job spec, stage records, versions, quarantine (atomic writes)
    <root>/report/           static HTML report
    <root>/_progress/        per-chunk completion markers, one small JSON file per chunk

A :class:`RunStore` is a small picklable value (URL + storage options), so Dask tasks receive
it and open their own arrays: pixel data never passes through the client or the scheduler.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import fsspec
import xarray as xr
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store

from pipeline.errors import StoreError

__all__ = ["ZARR_NAME", "RunStore", "config_key"]

log = logging.getLogger(__name__)

ZARR_NAME = "store.zarr"
MANIFEST_NAME = "manifest.json"
PROGRESS_DIR = "_progress"
LOCK_NAME = ".lock"  # see pipeline.core.lock

#: What a run store's folder holds (and all it may hold before its first run).
STORE_LAYOUT = frozenset(
    {ZARR_NAME, "tables", MANIFEST_NAME, "report", PROGRESS_DIR, "models", LOCK_NAME}
)


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """This process's umask, without changing it for other threads where possible."""
    try:
        # Linux shows it in /proc; os.umask can only read it by setting it.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def _quiet_consolidation() -> Iterator[None]:
    # Consolidated metadata is not (yet) in the Zarr v3 spec; xarray and zarr-python read
    # it, which is all a run store needs.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Consolidated metadata is currently not part", category=UserWarning
        )
        yield


def config_key(config: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-able configuration (what a resumable task was started with)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunStore:
    """Handle on a run store.

    Parameters
    ----------
    url : str
        A local folder (relative paths are made absolute) or an fsspec URL such as
        ``s3://bucket/runs/galaxies``.
    storage_options : mapping, optional
        Passed to fsspec (credentials, endpoint) for remote URLs.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        url = os.fspath(self.url)
        if not url:
            raise StoreError("the store location is empty: give a folder or an fsspec URL")
        protocol, _, rest = url.partition("://")
        if not rest:
            url = str(Path(url).expanduser().resolve())
        elif protocol == "file":
            url = str(Path(rest).resolve())
        object.__setattr__(self, "url", url.rstrip("/") or "/")

    # -- paths -----------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        """True when the store is a folder on this machine's filesystem."""
        return "://" not in self.url

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem holding the store."""
        if self.is_local:
            return LocalFileSystem()
        fs, _ = fsspec.core.url_to_fs(self.url, **dict(self.storage_options))
        return fs

    def path(self, *parts: str) -> str:
        """Absolute path (or URL path) of ``parts`` inside the store.

        Raises
        ------
        StoreError
            If a part would lead out of the store (``..``, an absolute path): names in a
            store's files and a job's parameters are joined into paths here, and none may
            reach outside it.
        """
        for part in parts:
            pieces = part.replace("\\", "/").split("/")
            if part.startswith(("/", "\\")) or ".." in pieces or "\0" in part:
                raise StoreError(
                    f"{part!r} is not a path inside the run store {self.url}: paths in a store "
                    "are relative and never contain '..'; if a store file names it, the store "
                    "was written by something else: rerun the step that writes it"
                )
        return "/".join([self.url, *parts])

    @property
    def zarr_url(self) -> str:
        """Location of the Zarr v3 group."""
        return self.path(ZARR_NAME)

    def fs_path(self, rel: str) -> str:
        """The path of ``rel`` as the store's fsspec filesystem names it."""
        full = self.path(rel)
        return full if self.is_local else fsspec.core.strip_protocol(full)

    def exists(self, rel: str = "") -> bool:
        """Whether ``rel`` (a file or folder inside the store; the root when empty) exists."""
        return bool(self.fs.exists(self.fs_path(rel)))

    def isdir(self, rel: str = "") -> bool:
        """Whether ``rel`` (the root when empty) is a folder of the store."""
        return bool(self.fs.isdir(self.fs_path(rel)))

    def listdir(self, rel: str) -> list[str]:
        """Names of the files and folders directly in folder ``rel`` of the store, sorted
        (empty when it does not exist)."""
        path = self.fs_path(rel)
        if not self.fs.exists(path):
            return []
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False))

    # -- bytes -----------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        """Read one file of the store."""
        try:
            return bytes(self.fs.cat_file(self.fs_path(rel)))
        except FileNotFoundError as exc:
            raise StoreError(f"{self.path(rel)} does not exist in run store {self.url}") from exc

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write one file atomically: readers see the old content or the new, never half.

        Locally this is a temporary file in the same folder and ``os.replace``; on object
        stores a single PUT is already atomic.
        """
        if self.is_local:
            target = Path(self.path(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                # mkstemp makes the file private (0600); the store's files get what any file
                # the user writes gets: 0666 less their umask.
                os.fchmod(fd, 0o666 & ~_umask())
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            self.fs.pipe_file(self.fs_path(rel), data)

    def read_json(self, rel: str) -> Any:
        """Read a JSON file of the store."""
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        """Write a JSON file of the store atomically (sorted keys, so output is stable)."""
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def remove(self, rel: str) -> None:
        """Remove a file or folder of the store if it exists."""
        p = self.fs_path(rel)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=True)

    def _marker_dir(self, task: str) -> str:
        return f"{PROGRESS_DIR}/{task}"

    def mark_done(self, task: str, key: int, payload: Mapping[str, Any]) -> None:
        """Record that chunk ``key`` of ``task`` is completely written.

        A marker is written after the chunk's data, so a chunk without a marker is redone on
        resume. Markers are needed because Zarr skips empty chunks by default: a missing chunk
        file does not mean "not written".
        """
        self.write_json(f"{self._marker_dir(task)}/{key:08d}.json", dict(payload))

    def _markers(self, task: str, suffix: str) -> dict[int, dict[str, Any]]:
        d = self.fs_path(self._marker_dir(task))
        if not self.fs.exists(d):
            return {}
        out: dict[int, dict[str, Any]] = {}
        for p in self.fs.ls(d, detail=False):
            name = str(p).rsplit("/", 1)[-1]
            if name.endswith(suffix) and not name.startswith("."):
                out[int(name[: -len(suffix)])] = json.loads(self.fs.cat_file(p))
        return out

    def done_markers(self, task: str) -> dict[int, dict[str, Any]]:
        """The markers of ``task``, keyed by chunk index."""
        return self._markers(task, ".json")

    def _part_path(self, task: str, key: int) -> str:
        return f"{self._marker_dir(task)}/{key:08d}.part"

    def mark_partial(self, task: str, key: int, stop: int, payload: Mapping[str, Any]) -> None:
        """Turn chunk ``key``'s marker into a partial one: written up to ``stop`` (exclusive,
        along the first dimension), with ``payload`` reported for that part.

        For a chunk that was the last, partly filled one of an array that has since grown:
        the rest of it is written later, and its full marker then replaces this one.
        """
        self.write_json(self._part_path(task, key), {"stop": int(stop), "payload": dict(payload)})
        self.remove(f"{self._marker_dir(task)}/{key:08d}.json")

    def partial_markers(self, task: str) -> dict[int, dict[str, Any]]:
        """The partial markers of ``task`` (see :meth:`mark_partial`), keyed by chunk index."""
        return self._markers(task, ".part")

    def partial_marker(self, task: str, key: int) -> dict[str, Any] | None:
        """Chunk ``key``'s partial marker, or None."""
        rel = self._part_path(task, key)
        return dict(self.read_json(rel)) if self.exists(rel) else None

    def remove_partial(self, task: str, key: int) -> None:
        """Forget chunk ``key``'s partial marker (once its full marker is written)."""
        self.remove(self._part_path(task, key))

    def clear_markers(self, task: str) -> None:
        """Forget every marker of ``task`` (before redoing it from scratch)."""
        self.remove(self._marker_dir(task))

    def _task_config(self, task: str) -> str:
        return f"{PROGRESS_DIR}/{task}-config.json"

    def task_matches(self, task: str, key: str, array: str) -> bool:
        """Whether ``array`` exists and was last started by ``task`` with configuration ``key``.

        Then the chunks with markers are reusable; otherwise the task starts over.
        """
        path = self._task_config(task)
        return (
            self.has_array(array) and self.exists(path) and self.read_json(path).get("key") == key
        )

    def task_info(self, task: str) -> dict[str, Any]:
        """What :meth:`record_task` recorded for ``task`` (empty if nothing)."""
        path = self._task_config(task)
        return dict(self.read_json(path)) if self.exists(path) else {}

    def task_key(self, task: str) -> str:
        """The configuration key ``task`` last started with ("" if none)."""
        path = self._task_config(task)
        return str(self.read_json(path).get("key", "")) if self.exists(path) else ""

    def reset_task(self, task: str, arrays: Sequence[str]) -> None:
        """Forget ``task``'s markers and configuration and delete the ``arrays`` it writes."""
        self.clear_markers(task)
        self.remove(self._task_config(task))
        for name in arrays:
            self.remove(f"{ZARR_NAME}/{name}")

    def record_task(self, task: str, key: str, **info: Any) -> None:
        """Record the configuration ``key`` ``task`` started with, after creating its arrays."""
        self.write_json(self._task_config(task), {"key": key, **info})

    # -- zarr / xarray -----------------------------------------------------------------------
    def zarr_store(self) -> Store:
        """A zarr store object for ``store.zarr`` (local or fsspec)."""
        if self.is_local:
            return zarr.storage.LocalStore(self.zarr_url)
        return zarr.storage.FsspecStore.from_url(
            self.zarr_url, storage_options=dict(self.storage_options)
        )

    def open_array(self, name: str, mode: str = "r+") -> zarr.Array:
        """Open one array of ``store.zarr``.

        Raises
        ------
        StoreError
            If the array does not exist.
        """
        try:
            return zarr.open_array(self.zarr_store(), path=name, mode=mode)
        except (FileNotFoundError, KeyError, zarr.errors.ArrayNotFoundError) as exc:
            raise StoreError(
                f"array {name!r} is not in {self.zarr_url}; run the stage that writes it first "
                "(e.g. `pipeline ingest` for 'images')"
            ) from exc

    def has_array(self, name: str) -> bool:
        """Whether ``store.zarr`` holds an array called ``name``."""
        return self.exists(f"{ZARR_NAME}/{name}/zarr.json")

    def open_dataset(self) -> xr.Dataset:
        """Open ``store.zarr`` as a labelled, lazily loaded :class:`xarray.Dataset`.

        Raises
        ------
        StoreError
            If the store holds no Zarr group yet.
        """
        if not self.exists(f"{ZARR_NAME}/zarr.json"):
            raise StoreError(
                f"{self.zarr_url} does not exist: ingest a collection first "
                f"(`pipeline ingest SOURCES --store {self.url}`)"
            )
        return xr.open_zarr(
            self.zarr_url, consolidated=True, storage_options=dict(self.storage_options) or None
        )

    def write_template(
        self, ds: xr.Dataset, encoding: Mapping[str, Any], *, mode: Literal["w", "w-", "a"] = "w-"
    ) -> None:
        """Create the arrays of ``ds`` (metadata and eager coordinates) without writing data.

        ``mode="a"`` adds the variables of ``ds`` to an existing group (or creates it).
        Dask-backed variables are created empty; tasks later fill them region by region, each
        writing whole chunks. Metadata is consolidated so that a plain
        ``xarray.open_zarr(path)`` opens the store quickly and without a fallback warning.
        """
        with _quiet_consolidation():
            ds.to_zarr(
                self.zarr_url,
                mode=mode,
                compute=False,
                zarr_format=3,
                consolidated=True,
                encoding=dict(encoding),
                storage_options=dict(self.storage_options) or None,
            )

    def consolidate(self) -> None:
        """Rewrite ``store.zarr``'s consolidated metadata (after arrays changed shape)."""
        with _quiet_consolidation():
            zarr.consolidate_metadata(self.zarr_store())

    def remove_zarr(self) -> None:
        """Delete ``store.zarr`` (only on an explicit overwrite)."""
        self.remove(ZARR_NAME)
