"""What the survival workflow contributes: six stages over clinical tables, their tables and
the report's survival section."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.survival import checks, spec, tables

__all__ = ["WORKFLOW"]

_STAGES = "pipeline.workflows.survival.stages"

WORKFLOW = Workflow(
    name="survival",
    summary="clinical tables: Kaplan-Meier, Cox, patient phenotypes, classifiers, validation",
    stages=(
        StageDef(
            "cohort",
            spec.CohortParams,
            f"{_STAGES}:run_cohort",
            "clinical table (CSV, Parquet or a lifelines dataset) -> validated cohort: every "
            "bad value listed with its rows before any analysis; missing-value policy",
            writes=("tables/cohort.parquet", "tables/cohort_summary.parquet", "models/cohort.json"),
            preflight=f"{_STAGES}:check_cohort",
        ),
        StageDef(
            "kaplan_meier",
            spec.KMParams,
            f"{_STAGES}:run_kaplan_meier",
            "Kaplan-Meier curves with CIs and at-risk counts, medians, survival at chosen "
            "times, log-rank tests (multivariate and pairwise) per grouping",
            writes=(
                "tables/km_summary.parquet",
                "tables/km_curves.parquet",
                "tables/logrank.parquet",
            ),
            check_job=checks.check_kaplan_meier_job,
        ),
        StageDef(
            "cox",
            spec.CoxParams,
            f"{_STAGES}:run_cox",
            "univariate Cox per covariate, multivariate Cox on those with p < threshold, "
            "proportional-hazards check, concordance with a bootstrap CI (Dask tasks)",
            writes=(
                "tables/cox_univariate.parquet",
                "tables/cox_multivariate.parquet",
                "models/cox.json",
            ),
            check_job=checks.check_cox_job,
        ),
        StageDef(
            "phenotypes",
            spec.PhenotypeParams,
            f"{_STAGES}:run_phenotypes",
            "hierarchical clustering of patients (Gower distance on mixed covariates) into "
            "phenotypes, k by silhouette with a bootstrap CI; profiles; KM per phenotype",
            writes=(
                "tables/phenotypes.parquet",
                "tables/patient_phenotypes.parquet",
                "tables/phenotype_selection.parquet",
                "models/phenotypes.json",
            ),
            check_job=checks.check_phenotypes_job,
        ),
        StageDef(
            "classify_phenotypes",
            spec.ClassifierParams,
            f"{_STAGES}:run_classify_phenotypes",
            "cross-validated decision tree and random forest recognising the phenotype, "
            "against classifiers of survival at the horizon",
            writes=(
                "tables/classifier_metrics.parquet",
                "tables/classifier_confusion.parquet",
                "models/phenotype_classifier.skops",
                "models/classifier.json",
            ),
        ),
        StageDef(
            "validate_external",
            spec.ExternalParams,
            f"{_STAGES}:run_validate_external",
            "external cohort: validated with the development column map, phenotypes "
            "predicted, KM by predicted phenotype, the Cox model's concordance",
            writes=("tables/validation_cohort.parquet", "models/validation_cohort.json"),
            preflight=f"{_STAGES}:check_external",
        ),
    ),
    tables=tables.TABLES,
    sections=(
        ReportSection("survival", 400, "pipeline.workflows.survival.report:survival_section"),
    ),
)
