"""Stages: plain functions registered by name, each with a validated parameter model.

A stage is ``func(ctx, params) -> counts``: it reads and writes the run store through
``ctx.store``, computes on ``ctx.client``, logs through ``ctx.log``, and returns the counts the
manifest records (``{"images": 1200, ...}``). It declares the store paths it writes, which the
runner checks before skipping it on resume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from distributed import Client
from pydantic import BaseModel

from pipeline.core.progress import ProgressFn, no_progress
from pipeline.core.store import RunStore
from pipeline.features.cluster.stages import (
    AgglomerativeParams,
    DBSCANParams,
    KMeansParams,
    SOMParams,
    run_agglomerative,
    run_dbscan,
    run_kmeans,
    run_som,
)
from pipeline.features.probe import ProbeParams, run_probe
from pipeline.features.reduce import REDUCED, ReduceParams, run_reduce
from pipeline.io.ingest import IngestParams, check_ingest, ingest_images
from pipeline.io.mosaic import (
    MosaicParams,
    SourceParams,
    check_mosaic,
    detect_sources,
    ingest_mosaic,
)
from pipeline.report.page import ReportParams, write_report
from pipeline.workflows.embed.infer import EMBEDDINGS, EmbedParams, run_embed
from pipeline.workflows.embed.train import TrainEncoderParams, run_train_encoder
from pipeline.workflows.galaxy.catalog import build_catalog
from pipeline.workflows.galaxy.preprocess import GalaxyParams
from pipeline.workflows.survival.classify import ClassifierParams
from pipeline.workflows.survival.phenotypes import PhenotypeParams
from pipeline.workflows.survival.spec import CohortParams
from pipeline.workflows.survival.stages import (
    CoxParams,
    ExternalParams,
    KMParams,
    check_cohort,
    check_cox_job,
    check_external,
    check_kaplan_meier_job,
    check_phenotypes_job,
    run_classify_phenotypes,
    run_cohort,
    run_cox,
    run_kaplan_meier,
    run_phenotypes,
    run_validate_external,
)

__all__ = ["INGEST", "RunContext", "StageDef", "stage_registry"]

#: Name of the stage a job spec's ``input`` section runs.
INGEST = "ingest"


@dataclass
class RunContext:
    """What a stage gets besides its parameters.

    Attributes
    ----------
    store : RunStore
    client : distributed.Client
    log : logging.Logger
    seed : int
        The job's seed; stages derive their random generators from it.
    progress : ProgressFn
    forced : bool
        The step runs because of ``--force``: redo it completely rather than resume.
    step : str
        Name of the job step being run.
    """

    store: RunStore
    client: Client
    log: logging.Logger
    seed: int = 0
    progress: ProgressFn = no_progress
    forced: bool = False
    step: str = ""


@dataclass(frozen=True)
class StageDef:
    """A registered stage.

    Attributes
    ----------
    name : str
    func : callable
        ``func(ctx, params) -> dict[str, int]``.
    params_model : type of pydantic.BaseModel
    writes : tuple of str
        Store paths (relative to the store root) that exist once the stage has completed.
    summary : str
        One line for ``pipeline validate`` and the docs.
    preflight : callable, optional
        ``preflight(store, params)``: cheap checks run for every pending step before any stage
        starts (inputs exist, the store can take the output); raises to stop the run.
    check_job : callable, optional
        ``check_job(params, earlier) -> [(field path, message), ...]``: checks of the step's
        parameters against those of the steps before it in the job (``earlier``: stage name ->
        params of its last step), run when the job spec is validated.
    """

    name: str
    func: Callable[[RunContext, Any], Mapping[str, int]]
    params_model: type[BaseModel]
    writes: tuple[str, ...]
    summary: str
    preflight: Callable[[RunStore, Any], None] | None = None
    check_job: (
        Callable[[Any, Mapping[str, BaseModel]], list[tuple[tuple[str, ...], str]]] | None
    ) = None


def _ingest_stage(ctx: RunContext, params: IngestParams) -> dict[str, int]:
    return ingest_images(
        ctx.store, params, ctx.client, redo=ctx.forced, progress=ctx.progress
    ).counts()


def _preprocess_stage(ctx: RunContext, params: GalaxyParams) -> dict[str, int]:
    return build_catalog(ctx.store, params, ctx.client, redo=ctx.forced, progress=ctx.progress)


def _ingest_mosaic_stage(ctx: RunContext, params: MosaicParams) -> dict[str, int]:
    return ingest_mosaic(ctx.store, params, ctx.client, redo=ctx.forced, progress=ctx.progress)


def _detect_sources_stage(ctx: RunContext, params: SourceParams) -> dict[str, int]:
    return detect_sources(ctx.store, params, ctx.client, redo=ctx.forced, progress=ctx.progress)


def _reduce_stage(ctx: RunContext, params: ReduceParams) -> dict[str, int]:
    return run_reduce(ctx.store, params, ctx.client, seed=ctx.seed)


def _kmeans_stage(ctx: RunContext, params: KMeansParams) -> dict[str, int]:
    return run_kmeans(ctx.store, params, ctx.client, seed=ctx.seed, name=ctx.step or "kmeans")


def _dbscan_stage(ctx: RunContext, params: DBSCANParams) -> dict[str, int]:
    return run_dbscan(
        ctx.store,
        params,
        ctx.client,
        seed=ctx.seed,
        progress=ctx.progress,
        name=ctx.step or "dbscan",
    )


def _agglomerative_stage(ctx: RunContext, params: AgglomerativeParams) -> dict[str, int]:
    return run_agglomerative(
        ctx.store, params, ctx.client, seed=ctx.seed, name=ctx.step or "agglomerative"
    )


def _som_stage(ctx: RunContext, params: SOMParams) -> dict[str, int]:
    return run_som(ctx.store, params, ctx.client, seed=ctx.seed, name=ctx.step or "som")


def _train_encoder_stage(ctx: RunContext, params: TrainEncoderParams) -> dict[str, int]:
    return run_train_encoder(
        ctx.store, params, ctx.client, seed=ctx.seed, redo=ctx.forced, progress=ctx.progress
    )


def _embed_stage(ctx: RunContext, params: EmbedParams) -> dict[str, int]:
    return run_embed(ctx.store, params, ctx.client, progress=ctx.progress)


def _probe_stage(ctx: RunContext, params: ProbeParams) -> dict[str, int]:
    return run_probe(ctx.store, params, ctx.client, seed=ctx.seed)


def _cohort_stage(ctx: RunContext, params: CohortParams) -> dict[str, int]:
    return run_cohort(ctx.store, params)


def _kaplan_meier_stage(ctx: RunContext, params: KMParams) -> dict[str, int]:
    return run_kaplan_meier(ctx.store, params)


def _cox_stage(ctx: RunContext, params: CoxParams) -> dict[str, int]:
    return run_cox(ctx.store, params, ctx.client, seed=ctx.seed, progress=ctx.progress)


def _phenotypes_stage(ctx: RunContext, params: PhenotypeParams) -> dict[str, int]:
    return run_phenotypes(ctx.store, params, ctx.client, seed=ctx.seed, progress=ctx.progress)


def _classify_phenotypes_stage(ctx: RunContext, params: ClassifierParams) -> dict[str, int]:
    return run_classify_phenotypes(ctx.store, params, seed=ctx.seed)


def _validate_external_stage(ctx: RunContext, params: ExternalParams) -> dict[str, int]:
    return run_validate_external(
        ctx.store, params, ctx.client, seed=ctx.seed, progress=ctx.progress
    )


def _report_stage(ctx: RunContext, params: ReportParams) -> dict[str, int]:
    write_report(ctx.store, params, seed=ctx.seed, current_step=ctx.step)
    return {"montage_images": params.montage_images}


def stage_registry() -> dict[str, StageDef]:
    """Every stage a job spec may name, by name."""
    stages = [
        StageDef(
            INGEST,
            _ingest_stage,
            IngestParams,
            ("store.zarr/images/zarr.json", "tables/images.parquet", "tables/quarantine.parquet"),
            "image files -> chunked, labelled Zarr collection (the job's `input` section)",
            preflight=check_ingest,
        ),
        StageDef(
            "preprocess",
            _preprocess_stage,
            GalaxyParams,
            ("store.zarr/cutouts/zarr.json", "tables/catalog.parquet"),
            "galaxy cutouts: find the central galaxy, reject overlaps, stripes and empty "
            "images, align, cut out -> catalog + cutouts",
        ),
        StageDef(
            "ingest_mosaic",
            _ingest_mosaic_stage,
            MosaicParams,
            ("store.zarr/mosaic/zarr.json",),
            "one large FITS/TIFF/PNG/JPEG image -> the tiled `mosaic` array",
            preflight=check_mosaic,
        ),
        StageDef(
            "detect_sources",
            _detect_sources_stage,
            SourceParams,
            ("tables/sources.parquet", "store.zarr/cutouts/zarr.json"),
            "blob detection over the mosaic's tiles (equal to whole-image detection) -> "
            "sources table + aligned cutouts",
        ),
        StageDef(
            "reduce",
            _reduce_stage,
            ReduceParams,
            (
                f"store.zarr/{REDUCED}/zarr.json",
                "tables/explained_variance.parquet",
                "models/pca.npz",
            ),
            "PCA of a store array (default: the kept cutouts), streamed from Zarr -> `reduced` "
            "(image, component), explained variance, the basis for new data",
        ),
        StageDef(
            "kmeans",
            _kmeans_stage,
            KMeansParams,
            ("tables/clusters.parquet", "tables/cluster_metrics.parquet"),
            "k-means (k-means++ on a sample, Lloyd over chunks) with k from the elbow (kneed)",
        ),
        StageDef(
            "dbscan",
            _dbscan_stage,
            DBSCANParams,
            ("tables/clusters.parquet", "tables/cluster_metrics.parquet"),
            "DBSCAN with the eps sweep run in parallel; sample-then-assign above a size",
        ),
        StageDef(
            "agglomerative",
            _agglomerative_stage,
            AgglomerativeParams,
            ("tables/clusters.parquet", "tables/cluster_metrics.parquet"),
            "Ward/average agglomerative clustering; sample-then-assign above a size",
        ),
        StageDef(
            "som",
            _som_stage,
            SOMParams,
            ("tables/clusters.parquet", "tables/cluster_metrics.parquet"),
            "self-organising map (MiniSom, or a batch SOM across workers at scale), U-matrix, "
            "agglomerative clustering of the winners",
        ),
        StageDef(
            "train_encoder",
            _train_encoder_stage,
            TrainEncoderParams,
            ("models/encoder.json", "tables/training_loss.parquet"),
            "SimCLR training of a ResNet encoder on a store array (on a GPU worker if any); "
            "checkpoints resume; per-epoch loss",
        ),
        StageDef(
            "embed",
            _embed_stage,
            EmbedParams,
            (f"store.zarr/{EMBEDDINGS}/zarr.json", "models/embed.json"),
            "encoder features of every image -> `embeddings` (image, feature); tasks run on "
            "GPU workers when the cluster has any, the model loaded once per worker",
        ),
        StageDef(
            "probe",
            _probe_stage,
            ProbeParams,
            ("tables/probe.parquet",),
            "linear probe: logistic regression on frozen features with 10/20/30/all examples "
            "per class over seeds, against the PCA baseline",
        ),
        StageDef(
            "cohort",
            _cohort_stage,
            CohortParams,
            ("tables/cohort.parquet", "tables/cohort_summary.parquet", "models/cohort.json"),
            "clinical table (CSV, Parquet or a lifelines dataset) -> validated cohort: every "
            "bad value listed with its rows before any analysis; missing-value policy",
            preflight=check_cohort,
        ),
        StageDef(
            "kaplan_meier",
            _kaplan_meier_stage,
            KMParams,
            ("tables/km_summary.parquet", "tables/km_curves.parquet", "tables/logrank.parquet"),
            "Kaplan-Meier curves with CIs and at-risk counts, medians, survival at chosen "
            "times, log-rank tests (multivariate and pairwise) per grouping",
            check_job=check_kaplan_meier_job,
        ),
        StageDef(
            "cox",
            _cox_stage,
            CoxParams,
            (
                "tables/cox_univariate.parquet",
                "tables/cox_multivariate.parquet",
                "models/cox.json",
            ),
            "univariate Cox per covariate, multivariate Cox on those with p < threshold, "
            "proportional-hazards check, concordance with a bootstrap CI (Dask tasks)",
            check_job=check_cox_job,
        ),
        StageDef(
            "phenotypes",
            _phenotypes_stage,
            PhenotypeParams,
            (
                "tables/phenotypes.parquet",
                "tables/patient_phenotypes.parquet",
                "tables/phenotype_selection.parquet",
                "models/phenotypes.json",
            ),
            "hierarchical clustering of patients (Gower distance on mixed covariates) into "
            "phenotypes, k by silhouette with a bootstrap CI; profiles; KM per phenotype",
            check_job=check_phenotypes_job,
        ),
        StageDef(
            "classify_phenotypes",
            _classify_phenotypes_stage,
            ClassifierParams,
            (
                "tables/classifier_metrics.parquet",
                "tables/classifier_confusion.parquet",
                "models/phenotype_classifier.pkl",
            ),
            "cross-validated decision tree and random forest recognising the phenotype, "
            "against classifiers of survival at the horizon",
        ),
        StageDef(
            "validate_external",
            _validate_external_stage,
            ExternalParams,
            ("tables/validation_cohort.parquet", "models/validation_cohort.json"),
            "external cohort: validated with the development column map, phenotypes "
            "predicted, KM by predicted phenotype, the Cox model's concordance",
            preflight=check_external,
        ),
        StageDef(
            "report",
            _report_stage,
            ReportParams,
            ("report/index.html",),
            "static HTML report: stages, timings, counts, quarantine, sample montage",
        ),
    ]
    return {s.name: s for s in stages}
