"""What the feature layer contributes to jobs: PCA, the clusterings and the linear probe."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.features import spec, tables

__all__ = ["WORKFLOW"]

_CLUSTER_TABLES = ("tables/clusters.parquet", "tables/cluster_metrics.parquet")

WORKFLOW = Workflow(
    name="features",
    summary="feature matrices of any (image, ...) array: PCA, clustering, linear probes",
    stages=(
        StageDef(
            "reduce",
            spec.ReduceParams,
            "pipeline.features.reduce:run_reduce",
            "PCA of a store array (default: the kept cutouts), streamed from Zarr -> an "
            "(image, component) array named after the step (`reduced` for the step `reduce`), "
            "explained variance, the basis for new data",
            writes=spec.reduce_writes,
            check_job=spec.check_feature_input,
            growth="refit",
        ),
        StageDef(
            "kmeans",
            spec.KMeansParams,
            "pipeline.features.cluster.stages:run_kmeans",
            "k-means (k-means++ on a sample, Lloyd over chunks) with k from the elbow (kneed)",
            writes=_CLUSTER_TABLES,
            check_job=spec.check_feature_input,
            growth="refit",
        ),
        StageDef(
            "dbscan",
            spec.DBSCANParams,
            "pipeline.features.cluster.stages:run_dbscan",
            "DBSCAN with the eps sweep run in parallel; sample-then-assign above a size",
            writes=_CLUSTER_TABLES,
            check_job=spec.check_feature_input,
            growth="refit",
        ),
        StageDef(
            "agglomerative",
            spec.AgglomerativeParams,
            "pipeline.features.cluster.stages:run_agglomerative",
            "Ward/average agglomerative clustering; sample-then-assign above a size",
            writes=_CLUSTER_TABLES,
            check_job=spec.check_feature_input,
            growth="refit",
        ),
        StageDef(
            "som",
            spec.SOMParams,
            "pipeline.features.cluster.stages:run_som",
            "self-organising map (MiniSom, or a batch SOM across workers at scale), U-matrix, "
            "agglomerative clustering of the winners",
            writes=_CLUSTER_TABLES,
            check_job=spec.check_feature_input,
            growth="refit",
        ),
        StageDef(
            "probe",
            spec.ProbeParams,
            "pipeline.features.probe:run_probe",
            "linear probe: logistic regression on frozen features with 10/20/30/all examples "
            "per class over seeds, against the PCA baseline",
            writes=("tables/probe.parquet",),
            check_job=spec.check_probe_inputs,
            growth="refit",
        ),
    ),
    tables=tables.TABLES,
    sections=(
        ReportSection("reduce", 200, "pipeline.features.report:reduce_section"),
        ReportSection("clusters", 210, "pipeline.features.report:clusters_section"),
        ReportSection("probe", 310, "pipeline.features.report:probe_section"),
    ),
)
