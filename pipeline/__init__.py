"""pipeline: a Dask-native batch system for scientific image collections.

The public API::

    from pipeline import RunStore, IngestParams, ingest_images, load_job, run_job, cluster_client
    from pipeline import GalaxyParams, analyse_galaxy, build_catalog, detect_blobs
    from pipeline import ReduceParams, run_reduce, fit_pca, load_pca, open_matrix
    from pipeline.features.cluster import fit_kmeans, kmeans_elbow, train_batch_som, ...

Importing computes nothing and touches no file or network.
"""

from pipeline.core.jobs import Job, load_job, parse_job
from pipeline.core.manifest import load_manifest
from pipeline.core.registry import stage_registry
from pipeline.core.runner import RunSummary, run_job
from pipeline.core.runtime import ClusterConfig, cluster_client
from pipeline.core.store import RunStore
from pipeline.core.tables import TABLES, read_table
from pipeline.features.matrix import FeatureMatrix, open_matrix
from pipeline.features.pca import PCABasis, fit_pca
from pipeline.features.reduce import ReduceParams, load_pca, run_reduce
from pipeline.imaging.detect import detect_blobs
from pipeline.io.ingest import IngestParams, IngestResult, ingest_images
from pipeline.io.mosaic import MosaicParams, SourceParams, detect_sources, ingest_mosaic
from pipeline.report.page import ReportParams, write_report
from pipeline.workflows.galaxy.catalog import build_catalog
from pipeline.workflows.galaxy.preprocess import GalaxyParams, GalaxyResult, analyse_galaxy

__version__ = "0.1.0"

__all__ = [
    "TABLES",
    "ClusterConfig",
    "FeatureMatrix",
    "GalaxyParams",
    "GalaxyResult",
    "IngestParams",
    "IngestResult",
    "Job",
    "MosaicParams",
    "PCABasis",
    "ReduceParams",
    "ReportParams",
    "RunStore",
    "RunSummary",
    "SourceParams",
    "__version__",
    "analyse_galaxy",
    "build_catalog",
    "cluster_client",
    "detect_blobs",
    "detect_sources",
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
    "stage_registry",
    "write_report",
]
