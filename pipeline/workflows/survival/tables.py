"""Tables of the survival workflow.

Times in these tables are in the job's ``time_unit`` (the ``cohort`` stage's; default years),
not in the clinical table's duration unit. Patient identifiers appear only in ``cohort``,
``validation_cohort``, ``patient_phenotypes`` and ``validation_phenotypes``; never in the report.
"""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

_PATIENT_ROWS = {
    "patient": "patient identifier: the `id` column, else `row <n>`",
    "row": "data row of the source table (1 = the first row after the header)",
    "duration": "follow-up time, in the `time_unit` of the cohort stage",
    "event": "1 = the event (e.g. death) was observed at `duration`, 0 = censored there",
}

_KM_SUMMARY = {
    "group_column": "the covariate the patients were grouped by (`all` for the whole cohort)",
    "group": "the group (category label, or for a numeric covariate its interval)",
    "n": "patients in the group",
    "events": "events observed in the group",
    "median": "Kaplan-Meier median survival time (time_unit); inf when the curve stays above 0.5",
    "median_lower": "lower bound of the median's confidence interval (time_unit)",
    "median_upper": "upper bound (time_unit; inf when not reached)",
}
_KM_TIMES = {
    "group_column": "as in the summary table",
    "group": "as in the summary table",
    "time": "the time point (time_unit), e.g. 1, 3, 5 years",
    "survival": "Kaplan-Meier survival probability at `time`",
    "survival_lower": "lower bound of its confidence interval (log(-log) transform)",
    "survival_upper": "upper bound",
    "at_risk": "patients still at risk at `time`",
}
_KM_CURVES = {
    "group_column": "as in the summary table",
    "group": "as in the summary table",
    "time": "event or censoring time (time_unit); the first row of a group is time 0",
    "survival": "Kaplan-Meier estimate just after `time`",
    "survival_lower": "lower bound of the pointwise confidence interval",
    "survival_upper": "upper bound",
    "at_risk": "patients at risk just before `time`",
    "events": "events at `time`",
    "censored": "patients censored at `time`",
}
_LOGRANK = {
    "group_column": "as in the summary table",
    "test": "`multivariate` (all groups at once) or `pairwise`",
    "group_a": "first group of a pairwise test (empty for multivariate)",
    "group_b": "second group of a pairwise test (empty for multivariate)",
    "statistic": "log-rank chi-squared statistic",
    "df": "degrees of freedom",
    "p": "p-value (pairwise p-values are not adjusted for multiple comparisons)",
}
_COX_TERMS = {
    "covariate": "model term: a numeric covariate, or `name[level]` for a category against "
    "the reference level",
    "variable": "the covariate of the clinical table the term belongs to",
    "coef": "log hazard ratio (per unit of a numeric covariate)",
    "hr": "hazard ratio exp(coef)",
    "hr_lower": "lower bound of the hazard ratio's 95% confidence interval (by `alpha`)",
    "hr_upper": "upper bound",
    "se": "standard error of coef",
    "p": "Wald test p-value of the term",
}


def _km_tables(prefix: str, what: str) -> tuple[TableSchema, ...]:
    return (
        TableSchema(
            f"{prefix}km_summary",
            f"One row per group of each grouping ({what}): size, events, median survival.",
            _KM_SUMMARY,
        ),
        TableSchema(
            f"{prefix}km_times",
            f"One row per group and chosen time point ({what}): survival with its CI.",
            _KM_TIMES,
        ),
        TableSchema(
            f"{prefix}km_curves",
            f"The Kaplan-Meier curves ({what}): one row per distinct time of each group.",
            _KM_CURVES,
        ),
        TableSchema(
            f"{prefix}logrank",
            f"Log-rank tests between the groups of each grouping ({what}).",
            _LOGRANK,
        ),
    )


TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        "cohort",
        "One row per patient of the development cohort that the analysis uses (stage "
        "`cohort`), after validation and the missing-value policy; covariate columns follow "
        "(categories as their labels).",
        _PATIENT_ROWS,
        open_columns=True,
    ),
    TableSchema(
        "validation_cohort",
        "One row per patient of the external cohort (stage `validate_external`), as `cohort`.",
        _PATIENT_ROWS,
        open_columns=True,
    ),
    TableSchema(
        "cohort_summary",
        "The patient characteristics ('table 1'): one row per numeric covariate and per "
        "category level, for each cohort.",
        {
            "cohort": "`development` or `validation`",
            "covariate": "covariate name",
            "kind": "`numeric` or `categorical`",
            "level": "category label (empty for a numeric covariate)",
            "n": "patients with a value (numeric) or in the level (categorical)",
            "value": "numeric: median; categorical: share of the cohort in the level",
            "q1": "numeric: first quartile (NaN for a level)",
            "q3": "numeric: third quartile (NaN for a level)",
            "missing": "patients missing the covariate in the source table (before the "
            "missing-value policy)",
            "imputed": "patients whose value was imputed (policy `impute`)",
            "unit": "unit of a numeric covariate as the job spec states it",
        },
    ),
    *_km_tables("", "stage `kaplan_meier`, one grouping per `group_by` covariate"),
    TableSchema(
        "cox_univariate",
        "One row per term of the univariate Cox models (one model per covariate).",
        {
            **_COX_TERMS,
            "variable_p": "likelihood-ratio test p-value of the covariate's model (all its terms)",
            "selected": "whether variable_p is below the selection threshold, so the "
            "covariate enters the multivariate model",
            "n": "patients in the model",
            "events": "events in the model",
        },
    ),
    TableSchema(
        "cox_multivariate",
        "One row per term of the multivariate Cox model, with its proportional-hazards check.",
        {
            **_COX_TERMS,
            "ph_statistic": "Schoenfeld-residual test statistic of proportional hazards "
            "(rank-transformed time)",
            "ph_p": "its p-value; small values mean the hazard ratio changes over time",
        },
    ),
    TableSchema(
        "survival_metrics",
        "One row per model figure with its bootstrap confidence interval (stages `cox`, "
        "`phenotypes`, `validate_external`).",
        {
            "analysis": "what was measured: cox_multivariate, phenotypes, ...",
            "cohort": "`development` or `validation`",
            "metric": "concordance (Harrell's C), log_likelihood_ratio_p, ph_global_p, "
            "n_phenotypes, ...",
            "value": "the figure on the whole cohort",
            "lower": "lower bound of the bootstrap percentile interval (NaN if none)",
            "upper": "upper bound (NaN if none)",
            "replicates": "bootstrap replicates behind the interval (0 if none)",
        },
    ),
    TableSchema(
        "phenotype_selection",
        "One row per candidate number of phenotypes k (stage `phenotypes`).",
        {
            "k": "number of phenotypes",
            "silhouette": "mean silhouette of the cut on the patient distance (higher is better)",
            "smallest": "patients in the smallest phenotype",
            "eligible": "whether every phenotype has at least `min_size` of the patients",
            "chosen": "whether this k was chosen (largest silhouette among the eligible)",
            "bootstrap_share": "share of bootstrap replicates that chose this k",
        },
    ),
    TableSchema(
        "phenotypes",
        "The phenotype profiles: one row per phenotype and numeric covariate or category "
        "level (stage `phenotypes`).",
        {
            "phenotype": "phenotype number, 1 = best survival at the horizon",
            "covariate": "covariate name",
            "level": "category label (empty for a numeric covariate)",
            "n": "patients in the phenotype",
            "value": "numeric: mean; categorical: share of the phenotype's patients in the level",
            "sd": "numeric: standard deviation (NaN for a level)",
            "overall": "the same figure for the whole cohort, for comparison",
        },
    ),
    TableSchema(
        "patient_phenotypes",
        "One row per development patient: the phenotype hierarchical clustering gave.",
        {"patient": "patient identifier (as in `cohort`)", "phenotype": "phenotype number"},
    ),
    *_km_tables("phenotype_", "stage `phenotypes`, grouped by phenotype"),
    TableSchema(
        "classifier_metrics",
        "One row per model, target and metric of the cross-validated classifiers (stage "
        "`classify_phenotypes`).",
        {
            "model": "decision_tree or random_forest (features -> target), or "
            "phenotype_decision_tree / phenotype_random_forest (features -> predicted "
            "phenotype -> that phenotype's survival at the horizon)",
            "target": "`phenotype`, or `survival_<horizon>` (alive at the horizon)",
            "metric": "accuracy, macro_f1, or roc_auc (survival target only)",
            "mean": "mean over the cross-validation folds",
            "sd": "standard deviation over the folds",
            "folds": "folds scored",
            "n": "patients scored (for the survival target: those whose status at the "
            "horizon is known)",
        },
    ),
    TableSchema(
        "classifier_confusion",
        "Cross-validated confusion matrices: one row per model, target, true and predicted class.",
        {
            "model": "as in classifier_metrics",
            "target": "as in classifier_metrics",
            "true": "true class",
            "predicted": "predicted class (out of fold)",
            "count": "patients",
        },
    ),
    TableSchema(
        "classifier_importance",
        "Impurity-based feature importances of the classifiers, mean over the folds.",
        {
            "model": "decision_tree or random_forest",
            "target": "as in classifier_metrics",
            "feature": "model feature (a numeric covariate or `name[level]`)",
            "importance": "mean decrease in impurity, normalised to sum to 1 per model",
            "sd": "standard deviation over the folds",
        },
    ),
    TableSchema(
        "validation_phenotypes",
        "One row per external patient: the phenotype the trained classifier predicts.",
        {
            "patient": "patient identifier (as in `validation_cohort`)",
            "phenotype": "predicted phenotype number",
        },
    ),
    *_km_tables("validation_", "stage `validate_external`, grouped by predicted phenotype"),
)
