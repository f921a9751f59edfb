"""Every table a run store holds, and what each column means: documented once, here.

Tables live at ``<store>/tables/<name>.parquet`` and are plain Parquet that pandas (or any
Arrow reader) opens. :func:`write_table` refuses a frame that lacks a documented column, so
the documentation below cannot drift from what is written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from pipeline.core.store import RunStore
from pipeline.errors import StoreError

__all__ = ["TABLES", "TableSchema", "read_table", "write_table"]


@dataclass(frozen=True)
class TableSchema:
    """A documented table.

    Parameters
    ----------
    name : str
        File stem under ``tables/``.
    description : str
        What one row is.
    columns : mapping of str to str
        Required columns and their meaning (units where they have one).
    open_columns : bool
        Whether further columns may follow (e.g. user metadata columns).
    """

    name: str
    description: str
    columns: Mapping[str, str]
    open_columns: bool = False


# -- survival (seed 004) ----------------------------------------------------------------------
# Times in these tables are in the job's `time_unit` (the `cohort` stage's; default years), not
# in the clinical table's duration unit. Patient identifiers appear only in `cohort`,
# `validation_cohort`, `patient_phenotypes` and `validation_phenotypes`; never in the report.

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


_SURVIVAL_TABLES: tuple[TableSchema, ...] = (
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


TABLES: Mapping[str, TableSchema] = {
    t.name: t
    for t in (
        TableSchema(
            name="images",
            description="One row per ingested image, in the order of the `image` dimension.",
            columns={
                "image": "position along the `image` dimension of store.zarr (0-based)",
                "image_id": "identifier: the manifest's `image_id` column, else the file "
                "stem, else (stems not unique) the path relative to the sources' common folder",
                "source": "the file the image was read from (absolute path or URL)",
                "height": "height of the source file in pixels, before any resize or pad",
                "width": "width of the source file in pixels, before any resize or pad",
                "channels": "channels of the source file (1 for grayscale)",
                "format": "decoder used: jpeg, png, tiff or fits",
            },
            open_columns=True,  # metadata columns from a CSV/Parquet manifest follow
        ),
        TableSchema(
            name="catalog",
            description="One row per collection image: the galaxy preprocessing's verdict "
            "(stage `preprocess`), in the order of the `image` dimension.",
            columns={
                "image_id": "the image's identifier (as in `images`)",
                "status": "`kept` (its cutout is in `cutouts`) or `rejected`",
                "reason": "why rejected: invalid (unreadable input), non_finite (NaN/inf "
                "pixels), no_galaxy, overlap (a neighbour overlaps the galaxy), stripe "
                "(a dark imaging stripe crosses it); empty when kept",
                "x": "galaxy centre, column (px; the light's centroid when kept)",
                "y": "galaxy centre, row (px)",
                "sigma": "blob scale of the galaxy (px)",
                "radius": "galaxy radius, radius_factor * sigma (px)",
                "angle_deg": "major axis, degrees in [0, 180) counter-clockwise from +x with "
                "y up; the cutout is rotated to bring it along +x",
                "stripe_score": "how well the dark-in-bright pixels of the galaxy's crop lie "
                "on a line, in [0, 1] (rotation-invariant R^2)",
            },
        ),
        TableSchema(
            name="sources",
            description="One row per source detected in the mosaic (stage `detect_sources`), "
            "in the order of the cutouts' `image` dimension.",
            columns={
                "image_id": "source identifier, also the cutouts' `image_id`",
                "y": "row of the blob centre in the mosaic (px)",
                "x": "column of the blob centre in the mosaic (px)",
                "sigma": "blob scale (px)",
                "tile": "the mosaic tile (chunk) whose core holds the centre, `r{row}c{col}`",
                "angle_deg": "major axis of the source's cutout (degrees, as in `catalog`)",
            },
        ),
        TableSchema(
            name="explained_variance",
            description="One row per principal component of the `reduce` stage's PCA.",
            columns={
                "component": "component number (0-based), the `component` index of `reduced`",
                "explained_variance": "variance along the component (unbiased, feature units "
                "squared)",
                "explained_variance_ratio": "share of the total variance of all features",
                "cumulative_ratio": "share explained by this and the preceding components",
            },
        ),
        TableSchema(
            name="clusters",
            description="One row per clustered image (the rows the cluster stages read), "
            "one label column per clustering method; -1 is noise (DBSCAN) or unlabelled.",
            columns={
                "image": "position along the `image` dimension of store.zarr",
                "image_id": "the image's identifier",
            },
            # one column per method that ran: kmeans, dbscan, agglomerative, som, and the SOM
            # winner's grid cell som_row, som_col
            open_columns=True,
        ),
        TableSchema(
            name="cluster_metrics",
            description="One row per clustering method that ran.",
            columns={
                "method": "kmeans, dbscan, agglomerative or som",
                "space": "the features that were clustered and scored (e.g. `reduced` = PCA "
                "components; `som winners` = the SOM grid cell of each row)",
                "n_points": "rows labelled",
                "fit_size": "rows the method was fitted on; the others were assigned to the "
                "nearest fitted cluster when this is smaller than n_points",
                "sampled": "whether the fit used a seeded sample (see fit_size)",
                "n_clusters": "clusters found (noise excluded)",
                "n_noise": "rows labelled -1 (DBSCAN noise)",
                "silhouette": "silhouette coefficient in [-1, 1] (higher is better), noise "
                "excluded",
                "silhouette_n": "rows the silhouette used (a seeded sample above a size)",
                "davies_bouldin": "Davies-Bouldin index (lower is better), noise excluded",
                "calinski_harabasz": "Calinski-Harabasz index (higher is better), noise excluded",
                "label_column": "the known-class column compared with, empty if none",
                "ari": "adjusted Rand index against label_column (1 = identical, ~0 = chance)",
                "nmi": "normalised mutual information against label_column, in [0, 1]",
                "params": "the method's parameters as chosen (JSON), e.g. k or eps",
            },
        ),
        TableSchema(
            name="elbow",
            description="One row per k of each k-means elbow search (one search per kmeans step).",
            columns={
                "method": "the kmeans step that searched (its name in the job: kmeans, or e.g. "
                "kmeans_embeddings)",
                "k": "number of clusters",
                "inertia": "within-cluster sum of squares of the best restart",
                "n_iter": "Lloyd iterations of the best restart",
                "chosen": "whether this k was chosen",
                "rule": "how k was chosen: kneedle (kneed's knee) or max_curvature",
            },
        ),
        TableSchema(
            name="dbscan_sweep",
            description="One row per eps of the DBSCAN sweep (on the fitted rows).",
            columns={
                "eps": "neighbourhood radius, in the units of the clustered features",
                "n_clusters": "clusters found",
                "n_noise": "rows labelled noise",
                "silhouette": "silhouette of the non-noise rows (NaN below two clusters)",
                "chosen": "whether this eps was used for the labels",
            },
        ),
        TableSchema(
            name="training_loss",
            description="One row per epoch of the `train_encoder` stage (SimCLR).",
            columns={
                "epoch": "epoch number, from 1",
                "loss": "mean NT-Xent loss over the epoch's batches",
                "lr": "learning rate at the end of the epoch",
                "images": "images seen in the epoch (each gives two augmented views)",
                "seconds": "wall time of the epoch, in seconds",
                "device": "where it trained: cpu, cuda or cuda:N",
                "checkpoint": "file name of the checkpoint saved after the epoch (under "
                "models/), empty if none was saved",
            },
        ),
        TableSchema(
            name="probe",
            description="One row per (features, shots, seed) of the `probe` stage: logistic "
            "regression on frozen features, scored on a held-out stratified test split.",
            columns={
                "features": "store array probed (e.g. `embeddings`, or `reduced` for the PCA "
                "baseline)",
                "shots": "training examples per class (0 = all the training split)",
                "seed": "seed of the split and of the per-class sample",
                "n_train": "training rows used",
                "n_test": "held-out rows scored",
                "accuracy": "fraction of the test rows classified correctly",
                "macro_f1": "F1 averaged over classes with equal weight",
            },
        ),
        *_SURVIVAL_TABLES,
        TableSchema(
            name="quarantine",
            description="One row per input set aside; the run went on without it.",
            columns={
                "path": "the file (absolute path or URL)",
                "reason": "why, in one line",
                "stage": "the stage that set it aside",
            },
        ),
    )
}


def _schema(name: str) -> TableSchema:
    try:
        return TABLES[name]
    except KeyError:
        raise StoreError(
            f"unknown table {name!r}; documented tables are: {', '.join(sorted(TABLES))}"
        ) from None


def write_table(store: RunStore, name: str, df: pd.DataFrame) -> None:
    """Write ``df`` as ``tables/<name>.parquet``, atomically.

    Raises
    ------
    StoreError
        If ``name`` is not documented in :data:`TABLES`, or ``df`` lacks a documented column,
        or has undocumented ones where the table allows none.
    """
    schema = _schema(name)
    missing = [c for c in schema.columns if c not in df.columns]
    extra = [c for c in df.columns if c not in schema.columns]
    if missing or (extra and not schema.open_columns):
        raise StoreError(
            f"table {name!r}: missing columns {missing}, undocumented columns {extra}; "
            f"document them in pipeline/core/tables.py"
        )
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    store.write_bytes(f"tables/{name}.parquet", buf.getvalue())


def read_table(store: RunStore, name: str) -> pd.DataFrame:
    """Read ``tables/<name>.parquet`` from ``store``.

    Raises
    ------
    StoreError
        If the table has not been written.
    """
    rel = f"tables/{_schema(name).name}.parquet"
    if not store.exists(rel):
        raise StoreError(f"{store.path(rel)} does not exist; run the stage that writes it first")
    return pd.read_parquet(io.BytesIO(store.read_bytes(rel)))
