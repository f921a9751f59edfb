"""pipeline: a Dask-native batch system for scientific image collections.

The public API::

    from pipeline import RunStore, IngestParams, ingest_images, load_job, run_job, cluster_client
    from pipeline import GalaxyParams, analyse_galaxy, build_catalog, detect_blobs
    from pipeline import ReduceParams, run_reduce, fit_pca, load_pca, open_matrix
    from pipeline.cluster import fit_kmeans, kmeans_elbow, train_batch_som, ...

Importing computes nothing and touches no file or network.
"""

from pipeline.catalog import build_catalog
from pipeline.detect import detect_blobs
from pipeline.ingest import IngestParams, IngestResult, ingest_images
from pipeline.jobs import Job, load_job, parse_job
from pipeline.manifest import load_manifest
from pipeline.matrix import FeatureMatrix, open_matrix
from pipeline.mosaic import MosaicParams, SourceParams, detect_sources, ingest_mosaic
from pipeline.pca import PCABasis, fit_pca
from pipeline.preprocess import GalaxyParams, GalaxyResult, analyse_galaxy
from pipeline.reduce import ReduceParams, load_pca, run_reduce
from pipeline.report import ReportParams, write_report
from pipeline.runner import RunSummary, run_job
from pipeline.runtime import ClusterConfig, cluster_client
from pipeline.stages import stage_registry
from pipeline.store import RunStore
from pipeline.tables import TABLES, read_table

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
