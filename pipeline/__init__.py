"""pipeline: a Dask-native batch system for scientific image collections.

The public API, importable from ``pipeline`` directly::

    from pipeline import RunStore, IngestParams, ingest, load_job, run_job, cluster_client

Submodules load on first use, so ``import pipeline`` stays cheap (the CLI starts fast and no
work happens at import time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "RunStore": "pipeline.store",
    "IngestParams": "pipeline.ingest",
    "IngestResult": "pipeline.ingest",
    "ingest": "pipeline.ingest",
    "ClusterConfig": "pipeline.runtime",
    "cluster_client": "pipeline.runtime",
    "Job": "pipeline.jobs",
    "load_job": "pipeline.jobs",
    "parse_job": "pipeline.jobs",
    "run_job": "pipeline.runner",
    "RunSummary": "pipeline.runner",
    "ReportParams": "pipeline.report",
    "write_report": "pipeline.report",
    "TABLES": "pipeline.tables",
    "read_table": "pipeline.tables",
    "load_manifest": "pipeline.manifest",
    "stage_registry": "pipeline.stages",
}

__all__ = [
    "TABLES",
    "ClusterConfig",
    "IngestParams",
    "IngestResult",
    "Job",
    "ReportParams",
    "RunStore",
    "RunSummary",
    "__version__",
    "cluster_client",
    "ingest",
    "load_job",
    "load_manifest",
    "parse_job",
    "read_table",
    "run_job",
    "stage_registry",
    "write_report",
]

if TYPE_CHECKING:
    from pipeline.ingest import IngestParams, IngestResult, ingest
    from pipeline.jobs import Job, load_job, parse_job
    from pipeline.manifest import load_manifest
    from pipeline.report import ReportParams, write_report
    from pipeline.runner import RunSummary, run_job
    from pipeline.runtime import ClusterConfig, cluster_client
    from pipeline.stages import stage_registry
    from pipeline.store import RunStore
    from pipeline.tables import TABLES, read_table


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return list(__all__)
