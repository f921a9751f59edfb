"""``manifest.json``: what ran in a run store, with which configuration, and how it went.

The manifest is written only by the client process (the CLI or the runner), always atomically
(see :meth:`pipeline.core.store.RunStore.write_bytes`), so a crash never leaves it half-written.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.core.store import MANIFEST_NAME, RunStore
from pipeline.errors import StoreError

__all__ = [
    "Manifest",
    "QuarantineEntry",
    "RunRecord",
    "StageRecord",
    "load_manifest",
    "now_iso",
    "package_versions",
    "save_manifest",
]

MANIFEST_VERSION = 1

# The packages whose versions decide what a run computes.
_TRACKED_PACKAGES = (
    "pipeline",
    "numpy",
    "dask",
    "distributed",
    "zarr",
    "xarray",
    "pandas",
    "pyarrow",
    "scikit-image",
    "scikit-learn",
    "pillow",
    "tifffile",
    "astropy",
    "torch",
    "pydantic",
)

StageStatus = Literal["running", "done", "failed"]


class QuarantineEntry(BaseModel):
    """One input file set aside, with the reason in one line."""

    model_config = ConfigDict(extra="forbid")

    path: str
    reason: str
    stage: str = "ingest"


class StageRecord(BaseModel):
    """How one stage of a run went."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    config_hash: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: The fingerprint of the stage's inputs outside the store when it ran (stages that
    #: declare ``StageDef.inputs`` only).
    inputs: str | None = None
    status: StageStatus
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    counts: dict[str, int | float] = Field(default_factory=dict)
    error: str | None = None


class RunRecord(BaseModel):
    """One run that did something: when, which steps ran, what it added.

    A run with nothing to do (every step complete, no new input) is not recorded: it leaves
    the store as it was.
    """

    model_config = ConfigDict(extra="forbid")

    started: str
    ended: str | None = None
    status: Literal["running", "done", "failed"] = "running"
    ran: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    #: Each step's declared behaviour on a grown collection (``StageDef.growth``).
    growth: dict[str, str] = Field(default_factory=dict)
    #: What the run added to the store: ``images`` (the collection's growth) and
    #: ``quarantined`` (files newly set aside).
    added: dict[str, int] = Field(default_factory=dict)
    counts: dict[str, dict[str, int | float]] = Field(default_factory=dict)
    error: str | None = None


#: The most runs ``manifest.json`` keeps (a nightly job's last ~16 months).
MAX_RUNS = 500


class Manifest(BaseModel):
    """Everything ``manifest.json`` records."""

    model_config = ConfigDict(extra="forbid")

    manifest_version: int = MANIFEST_VERSION
    job: dict[str, Any] | None = None
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    quarantine: list[QuarantineEntry] = Field(default_factory=list)
    collection: dict[str, Any] | None = None
    #: The runs that did something, oldest first (at most :data:`MAX_RUNS`).
    runs: list[RunRecord] = Field(default_factory=list)


def now_iso() -> str:
    """The current UTC time as an ISO 8601 string (seconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide what a run computes."""
    out = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def load_manifest(store: RunStore) -> Manifest:
    """Read ``manifest.json``; an empty :class:`Manifest` when the store has none yet.

    Raises
    ------
    StoreError
        If the file exists but is not a pipeline manifest.
    """
    if not store.exists(MANIFEST_NAME):
        return Manifest()
    try:
        return Manifest.model_validate(store.read_json(MANIFEST_NAME))
    except (ValueError, ValidationError) as exc:
        raise StoreError(
            f"{store.path(MANIFEST_NAME)} is not a pipeline manifest ({exc}); "
            "point --store at a pipeline run store or at a new folder"
        ) from exc


def save_manifest(store: RunStore, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically, stamping the current package versions."""
    manifest.versions = package_versions()
    store.write_json(MANIFEST_NAME, manifest.model_dump(mode="json"))
