"""pipeline: a Dask-native batch system for scientific image collections.

The public API::

    from pipeline import RunStore, RunContext, IngestParams, ingest_images
    from pipeline import load_job, run_job, cluster_client, LocalClusterConfig
    from pipeline import GalaxyParams, analyse_galaxy, build_catalog, detect_blobs
    from pipeline import ReduceParams, run_reduce, fit_pca, load_pca, open_matrix
    from pipeline.features.cluster import fit_kmeans, kmeans_elbow, train_batch_som, ...

The layers are subpackages: ``core`` (store, manifest, tables, jobs, runner, registry),
``io``, ``imaging``, ``compute``, ``features``, ``report``, and one package per workflow under
``workflows``. Importing ``pipeline`` imports none of them: each name below is imported on
first use, so ``import pipeline`` computes nothing, touches no file and loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.lazy import attach

if TYPE_CHECKING:
    from pipeline.core.cluster_config import (
        AddressClusterConfig,
        ClusterConfig,
        LocalClusterConfig,
    )
    from pipeline.core.context import RunContext
    from pipeline.core.jobs import Job, load_job, parse_job
    from pipeline.core.manifest import load_manifest
    from pipeline.core.registry import Workflow, default_registry
    from pipeline.core.runner import RunSummary, run_job
    from pipeline.core.runtime import cluster_client
    from pipeline.core.store import RunStore
    from pipeline.core.tables import documented_tables, read_table
    from pipeline.features.matrix import FeatureMatrix, open_matrix
    from pipeline.features.pca import PCABasis, fit_pca
    from pipeline.features.reduce import load_pca, run_reduce
    from pipeline.features.spec import ReduceParams
    from pipeline.imaging.detect import detect_blobs
    from pipeline.io.ingest import ingest_images
    from pipeline.io.mosaic import ingest_mosaic
    from pipeline.io.spec import IngestParams, MosaicParams
    from pipeline.report.page import write_report
    from pipeline.report.spec import ReportParams
    from pipeline.workflows.galaxy.catalog import build_catalog
    from pipeline.workflows.galaxy.preprocess import GalaxyResult, analyse_galaxy
    from pipeline.workflows.galaxy.spec import GalaxyParams
    from pipeline.workflows.mosaic.sources import detect_sources
    from pipeline.workflows.mosaic.spec import SourceParams

__version__ = "0.1.0"

#: The public names and the modules that define them (imported on first use).
_API = {
    "AddressClusterConfig": "pipeline.core.cluster_config",
    "ClusterConfig": "pipeline.core.cluster_config",
    "LocalClusterConfig": "pipeline.core.cluster_config",
    "RunContext": "pipeline.core.context",
    "Job": "pipeline.core.jobs",
    "load_job": "pipeline.core.jobs",
    "parse_job": "pipeline.core.jobs",
    "load_manifest": "pipeline.core.manifest",
    "Workflow": "pipeline.core.registry",
    "default_registry": "pipeline.core.registry",
    "RunSummary": "pipeline.core.runner",
    "run_job": "pipeline.core.runner",
    "cluster_client": "pipeline.core.runtime",
    "RunStore": "pipeline.core.store",
    "documented_tables": "pipeline.core.tables",
    "read_table": "pipeline.core.tables",
    "FeatureMatrix": "pipeline.features.matrix",
    "open_matrix": "pipeline.features.matrix",
    "PCABasis": "pipeline.features.pca",
    "fit_pca": "pipeline.features.pca",
    "load_pca": "pipeline.features.reduce",
    "run_reduce": "pipeline.features.reduce",
    "ReduceParams": "pipeline.features.spec",
    "detect_blobs": "pipeline.imaging.detect",
    "ingest_images": "pipeline.io.ingest",
    "ingest_mosaic": "pipeline.io.mosaic",
    "IngestParams": "pipeline.io.spec",
    "MosaicParams": "pipeline.io.spec",
    "write_report": "pipeline.report.page",
    "ReportParams": "pipeline.report.spec",
    "build_catalog": "pipeline.workflows.galaxy.catalog",
    "GalaxyResult": "pipeline.workflows.galaxy.preprocess",
    "analyse_galaxy": "pipeline.workflows.galaxy.preprocess",
    "GalaxyParams": "pipeline.workflows.galaxy.spec",
    "detect_sources": "pipeline.workflows.mosaic.sources",
    "SourceParams": "pipeline.workflows.mosaic.spec",
}

__getattr__, __dir__ = attach(__name__, _API)

__all__ = [
    "AddressClusterConfig",
    "ClusterConfig",
    "FeatureMatrix",
    "GalaxyParams",
    "GalaxyResult",
    "IngestParams",
    "Job",
    "LocalClusterConfig",
    "MosaicParams",
    "PCABasis",
    "ReduceParams",
    "ReportParams",
    "RunContext",
    "RunStore",
    "RunSummary",
    "SourceParams",
    "Workflow",
    "__version__",
    "analyse_galaxy",
    "build_catalog",
    "cluster_client",
    "default_registry",
    "detect_blobs",
    "detect_sources",
    "documented_tables",
    "fit_pca",
    "ingest_images",
    "ingest_mosaic",
    "load_job",
    "load_manifest",
    "load_pca",
    "open_matrix",
    "parse_job",
    "read_table",
    "run_job",
    "run_reduce",
    "write_report",
]
