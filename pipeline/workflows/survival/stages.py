"""The survival workflow's stages (document 004): cohort, Kaplan-Meier, Cox, phenotypes,
phenotype classifier, external validation.

Each stage reads what the earlier ones wrote to the run store (``tables/cohort.parquet`` and
``models/cohort.json`` first of all) and writes its own documented tables. The bootstrap
replicates run as Dask tasks on the job's cluster; everything else is small-table work done in
the stage itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from pipeline.compute.replicates import percentile_interval, replicate_seeds, run_replicates
from pipeline.core.context import RunContext
from pipeline.core.progress import ProgressFn
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.workflows.survival.classify import evaluate_classifiers, predict_phenotype
from pipeline.workflows.survival.cohort import (
    Cohort,
    cohort_from_table,
    load_cohort,
    load_external,
    read_source,
)
from pipeline.workflows.survival.cox import (
    concordance_replicate,
    harrell_c,
    multivariate_cox,
    univariate_cox,
)
from pipeline.workflows.survival.design import design_matrix
from pipeline.workflows.survival.km import KMTables, group_labels, km_tables
from pipeline.workflows.survival.model_files import (
    CLASSIFIER,
    SavedClassifier,
    read_classifier,
    refuse_legacy,
    write_classifier,
)
from pipeline.workflows.survival.phenotypes import (
    cluster_phenotypes,
    coinciding_covariates,
    count_replicate,
    phenotype_profiles,
)
from pipeline.workflows.survival.spec import (
    ClassifierParams,
    CohortParams,
    CohortRecord,
    Covariate,
    CoxParams,
    ExternalParams,
    KMParams,
    PhenotypeParams,
)

__all__ = [
    "COHORT_RECORD",
    "CoxParams",
    "ExternalParams",
    "KMParams",
    "check_cohort",
    "check_external",
    "run_classify_phenotypes",
    "run_cohort",
    "run_cox",
    "run_kaplan_meier",
    "run_phenotypes",
    "run_validate_external",
]

log = logging.getLogger(__name__)

COHORT_RECORD = "models/cohort.json"
VALIDATION_RECORD = "models/validation_cohort.json"
COX_MODEL = "models/cox.json"
PHENOTYPE_RECORD = "models/phenotypes.json"

# Streams of the job seed, so the bootstraps of different stages resample independently.
_STREAM_CONCORDANCE, _STREAM_PHENOTYPES, _STREAM_VALIDATION = 1, 2, 3


# -- store helpers -----------------------------------------------------------------------------


def _record(store: RunStore) -> CohortRecord:
    if not store.exists(COHORT_RECORD):
        raise StoreError(
            f"{store.path(COHORT_RECORD)} does not exist: put a `cohort` stage before the "
            "survival stages in the job"
        )
    return CohortRecord.model_validate(store.read_json(COHORT_RECORD))


def _development(store: RunStore) -> Cohort:
    record = _record(store)
    summary = read_table(store, "cohort_summary")
    return cohort_from_table(
        read_table(store, "cohort"), record, summary[summary["cohort"] == "development"]
    )


def _covariates(record: CohortRecord, names: Sequence[str] | None, what: str) -> list[Covariate]:
    known = {c.name: c for c in record.params.covariates}
    if names is None:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ParameterError(
            f"{what}: {unknown} are not covariates of the cohort (covariates: "
            f"{', '.join(known)}); list them under the cohort stage's covariates first"
        )
    return [known[n] for n in names]


def _replace_rows(store: RunStore, name: str, rows: pd.DataFrame, **keys: str) -> None:
    """Write ``rows`` into table ``name``, replacing the rows that match ``keys`` and keeping
    the others (tables several stages contribute to, e.g. ``survival_metrics``)."""
    rel = f"tables/{name}.parquet"
    if store.exists(rel):
        old = read_table(store, name)
        keep = np.ones(len(old), dtype=bool)
        for col, value in keys.items():
            keep &= (old[col] == value).to_numpy()
        kept = old.loc[~keep].reset_index(drop=True)
        # (concat with an empty frame is deprecated in pandas: skip it)
        rows = kept if rows.empty else pd.concat([kept, rows], ignore_index=True)
    write_table(store, name, rows)


def _write_km(store: RunStore, prefix: str, tables: KMTables) -> None:
    write_table(store, f"{prefix}km_summary", tables.summary)
    write_table(store, f"{prefix}km_times", tables.times)
    write_table(store, f"{prefix}km_curves", tables.curves)
    write_table(store, f"{prefix}logrank", tables.logrank)


_METRIC_COLUMNS = ["analysis", "cohort", "metric", "value", "lower", "upper", "replicates"]


def _metric(
    analysis: str,
    cohort: str,
    metric: str,
    value: float,
    interval: tuple[float, float] = (np.nan, np.nan),
    replicates: int = 0,
) -> dict[str, Any]:
    return {
        "analysis": analysis,
        "cohort": cohort,
        "metric": metric,
        "value": float(value),
        "lower": interval[0],
        "upper": interval[1],
        "replicates": replicates,
    }


def _patient_table(cohort: Cohort) -> pd.DataFrame:
    frame = cohort.frame.copy()
    for cov in cohort.record.params.covariates:
        if cov.kind == "categorical":
            frame[cov.name] = frame[cov.name].astype(str)
    return frame


def _concordance(
    client: Client | None,
    cohort: str,
    frame: pd.DataFrame,
    risk: np.ndarray,
    *,
    seed: int,
    stream: int,
    replicates: int,
    progress: ProgressFn,
) -> dict[str, Any]:
    """The ``survival_metrics`` row of a risk score's concordance with its bootstrap CI."""
    duration, event = frame["duration"].to_numpy(), frame["event"].to_numpy()
    seeds = replicate_seeds(seed, replicates, stream=stream)
    reps = run_replicates(
        client,
        concordance_replicate,
        (duration, event, risk),
        seeds,
        progress=progress,
        label=f"{cohort}: concordance bootstrap",
    )
    c = harrell_c(duration, event, risk)
    return _metric(
        "cox_multivariate", cohort, "concordance", c, percentile_interval(reps), len(seeds)
    )


def _phenotype_groups(labels: np.ndarray, k: int) -> pd.Series:
    """Phenotype numbers as an ordered categorical of "1".."k" (KM tables keep that order)."""
    return pd.Series(
        pd.Categorical([str(v) for v in labels], categories=[str(i) for i in range(1, k + 1)])
    )


# -- cohort ------------------------------------------------------------------------------------


def check_cohort(store: RunStore, params: CohortParams) -> None:
    """Preflight of the ``cohort`` stage: the whole table is validated before any stage runs.

    Raises
    ------
    CohortError
        Listing every problem of the table with its rows.
    """
    load_cohort(params)


def run_cohort(ctx: RunContext, params: CohortParams) -> dict[str, int]:
    """Load and validate the development cohort; write ``cohort``, ``cohort_summary`` and
    ``models/cohort.json``.

    Returns
    -------
    dict
        Counts: patients, events, filtered_out, dropped_missing.
    """
    store = ctx.store
    cohort = load_cohort(params)
    write_table(store, "cohort", _patient_table(cohort))
    write_table(store, "cohort_summary", cohort.summary)
    store.write_json(COHORT_RECORD, cohort.record.model_dump(mode="json"))
    rec = cohort.record
    return {
        "patients": rec.n,
        "events": rec.events,
        "filtered_out": rec.filtered_out,
        "dropped_missing": rec.dropped_missing,
    }


# -- Kaplan-Meier ------------------------------------------------------------------------------


def run_kaplan_meier(ctx: RunContext, params: KMParams) -> dict[str, int]:
    """Kaplan-Meier curves and log-rank tests by each ``group_by`` covariate.

    Returns
    -------
    dict
        Counts: groupings, groups.
    """
    store = ctx.store
    cohort = _development(store)
    record = cohort.record
    if params.group_by is None:
        covs = [c for c in record.params.covariates if c.kind == "categorical"]
    else:
        covs = _covariates(record, params.group_by, "kaplan_meier.group_by")
    stray = sorted(set(params.cuts) - {c.name for c in covs if c.kind == "numeric"})
    if stray:
        raise ParameterError(
            f"kaplan_meier.cuts names {stray}, which are not numeric covariates in group_by; "
            "add them to group_by or remove their cuts"
        )
    frame = cohort.frame
    duration = frame["duration"].to_numpy()
    event = frame["event"].to_numpy()
    parts = []
    if params.overall:
        parts.append(
            km_tables(duration, event, None, "all", times=params.times, alpha=params.alpha)
        )
    for cov in covs:
        groups = group_labels(frame[cov.name], params.cuts.get(cov.name))
        parts.append(
            km_tables(duration, event, groups, cov.name, times=params.times, alpha=params.alpha)
        )
    if not parts:
        raise ParameterError(
            "kaplan_meier has nothing to do: the cohort has no categorical covariate and "
            "group_by is empty; list covariates in group_by (numeric ones are split at the "
            "median) or set overall: true"
        )
    tables = KMTables.concat(parts)
    _write_km(store, "", tables)
    return {"groupings": len(parts), "groups": len(tables.summary)}


# -- Cox ---------------------------------------------------------------------------------------


def run_cox(ctx: RunContext, params: CoxParams) -> dict[str, int]:
    """Univariate Cox screening, the multivariate model, its PH check and concordance.

    Returns
    -------
    dict
        Counts: screened, selected, terms.
    """
    store, client, seed, progress = ctx.store, ctx.client, ctx.seed, ctx.progress
    cohort = _development(store)
    record, frame = cohort.record, cohort.frame
    covs = _covariates(record, params.covariates, "cox.covariates")
    forced = _covariates(record, params.include, "cox.include")
    uni = univariate_cox(
        frame, covs, threshold=params.threshold, alpha=params.alpha, penalizer=params.penalizer
    )
    write_table(store, "cox_univariate", uni)
    chosen = set(uni.loc[uni["selected"], "variable"]) | {c.name for c in forced}
    selected = [c for c in record.params.covariates if c.name in chosen]
    metrics: list[dict[str, Any]] = []
    if selected:
        terms, fit = multivariate_cox(
            frame, selected, alpha=params.alpha, penalizer=params.penalizer
        )
        risk = fit.fitter.predict_log_partial_hazard(fit.design).to_numpy()
        metrics += [
            _concordance(
                client,
                "development",
                frame,
                risk,
                seed=seed,
                stream=_STREAM_CONCORDANCE,
                replicates=params.bootstrap,
                progress=progress,
            ),
            _metric("cox_multivariate", "development", "log_likelihood_ratio_p", fit.lr_p),
        ]
        model = {
            "threshold": params.threshold,
            "alpha": params.alpha,
            "penalizer": params.penalizer,
            "selected": [c.name for c in selected],
            "terms": terms["covariate"].tolist(),
            "coef": terms["coef"].tolist(),
        }
    else:
        log.warning(
            "no covariate has a univariate p below %g: the multivariate model is not fitted",
            params.threshold,
        )
        terms = pd.DataFrame(
            columns=[
                "covariate",
                "variable",
                "coef",
                "hr",
                "hr_lower",
                "hr_upper",
                "se",
                "p",
                "ph_statistic",
                "ph_p",
            ]
        )
        model = {
            "threshold": params.threshold,
            "alpha": params.alpha,
            "penalizer": params.penalizer,
            "selected": [],
            "terms": [],
            "coef": [],
        }
    write_table(store, "cox_multivariate", terms)
    _replace_rows(
        store,
        "survival_metrics",
        pd.DataFrame(metrics, columns=_METRIC_COLUMNS),
        analysis="cox_multivariate",
        cohort="development",
    )
    store.write_json(COX_MODEL, model)
    return {"screened": len(covs), "selected": len(selected), "terms": len(terms)}


# -- phenotypes --------------------------------------------------------------------------------


def run_phenotypes(ctx: RunContext, params: PhenotypeParams) -> dict[str, int]:
    """Hierarchical clustering into phenotypes, their profiles and survival, and the bootstrap
    interval of the phenotype count.

    Returns
    -------
    dict
        Counts: phenotypes, patients, smallest.
    """
    store, client, seed, progress = ctx.store, ctx.client, ctx.seed, ctx.progress
    cohort = _development(store)
    record, frame = cohort.record, cohort.frame
    covs = _covariates(record, params.covariates, "phenotypes.covariates")
    result, distances = cluster_phenotypes(frame, covs, params)
    seeds = replicate_seeds(seed, params.bootstrap, stream=_STREAM_PHENOTYPES)
    counts = run_replicates(
        client,
        count_replicate,
        (distances, params.linkage, params.k_range, params.min_size),
        seeds,
        progress=progress,
        label="phenotypes: count bootstrap",
    )
    ks = np.asarray(counts, dtype=np.float64)
    selection = result.selection.assign(
        bootstrap_share=[float(np.mean(ks == k)) if ks.size else np.nan for k in result.selection.k]
    )
    write_table(store, "phenotype_selection", selection)
    labels = result.labels
    write_table(store, "phenotypes", phenotype_profiles(frame, record.params.covariates, labels))
    write_table(
        store,
        "patient_phenotypes",
        pd.DataFrame({"patient": frame["patient"].to_numpy(), "phenotype": labels}),
    )
    groups = _phenotype_groups(labels, result.k)
    km = km_tables(
        frame["duration"].to_numpy(),
        frame["event"].to_numpy(),
        groups,
        "phenotype",
        times=params.times,
        alpha=params.alpha,
    )
    _write_km(store, "phenotype_", km)
    sil = float(selection.loc[selection["chosen"], "silhouette"].iloc[0])
    metrics = [
        _metric(
            "phenotypes",
            "development",
            "n_phenotypes",
            result.k,
            percentile_interval(counts),
            len(seeds),
        ),
        _metric("phenotypes", "development", "silhouette", sil),
    ]
    multi = km.logrank[km.logrank["test"] == "multivariate"]
    if len(multi):
        metrics.append(_metric("phenotypes", "development", "logrank_p", multi["p"].iloc[0]))
    _replace_rows(
        store,
        "survival_metrics",
        pd.DataFrame(metrics),
        analysis="phenotypes",
        cohort="development",
    )
    coincide = coinciding_covariates(frame, covs, labels)
    if coincide:
        log.warning(
            "the phenotypes coincide with the levels of %s: each phenotype holds one level. "
            "Under Gower's distance a category mismatch weighs as much as a numeric covariate's "
            "whole range; give it a weight below 1 (phenotypes.weights) for phenotypes that "
            "say more than the category does",
            ", ".join(coincide),
        )
    store.write_json(
        PHENOTYPE_RECORD,
        {
            "coincides_with": coincide,
            "weights": params.weights,
            "k": result.k,
            "distance": result.distance,
            "linkage": params.linkage,
            "criterion": "silhouette",
            "min_size": params.min_size,
            "horizon": params.horizon,
            "time_unit": record.params.time_unit,
            "replicates": len(seeds),
            "covariates": [c.name for c in covs],
        },
    )
    sizes = np.bincount(labels)[1:]
    return {"phenotypes": result.k, "patients": int(labels.size), "smallest": int(sizes.min())}


# -- phenotype classifier ----------------------------------------------------------------------


def run_classify_phenotypes(ctx: RunContext, params: ClassifierParams) -> dict[str, int]:
    """Cross-validated decision tree and random forest recognising the phenotypes, against
    classifiers of survival at the horizon; the final models for the external cohort.

    Returns
    -------
    dict
        Counts: patients, features, folds.
    """
    store, seed = ctx.store, ctx.seed
    cohort = _development(store)
    record, frame = cohort.record, cohort.frame
    assigned = read_table(store, "patient_phenotypes")
    if (
        len(assigned) != len(frame)
        or not (assigned["patient"].to_numpy() == frame["patient"].to_numpy()).all()
    ):
        raise StoreError(
            "tables/patient_phenotypes.parquet does not match tables/cohort.parquet: rerun the "
            "phenotypes stage (pipeline run JOB --force phenotypes)"
        )
    x = design_matrix(frame, record.params.covariates)
    result = evaluate_classifiers(
        x,
        assigned["phenotype"].to_numpy(),
        frame["duration"].to_numpy(),
        frame["event"].to_numpy(),
        params,
        seed=seed,
        time_unit=record.params.time_unit,
    )
    write_table(store, "classifier_metrics", result.metrics)
    write_table(store, "classifier_confusion", result.confusion)
    write_table(store, "classifier_importance", result.importance)
    # Models as skops and plain data as JSON, never a pickle: a store may come from anyone.
    write_classifier(
        store,
        result.models,
        result.features,
        result.phenotype_survival,
        predict_with=params.predict_with,
        horizon=params.horizon,
        time_unit=record.params.time_unit,
    )
    return {"patients": len(frame), "features": x.shape[1], "folds": params.folds}


# -- external validation -----------------------------------------------------------------------


def check_external(store: RunStore, params: ExternalParams) -> None:
    """Preflight of ``validate_external``: the table is readable; once the development cohort
    exists, it is validated in full against its column map.

    Raises
    ------
    CohortError
    """
    if store.exists(COHORT_RECORD):
        load_external(params, _record(store))
    else:
        read_source(params)


def _validate_phenotypes(
    store: RunStore,
    frame: pd.DataFrame,
    record: CohortRecord,
    params: ExternalParams,
    saved: SavedClassifier,
) -> tuple[list[dict[str, Any]], int]:
    """Predicted phenotypes of the external patients and their KM tables; log-rank row."""
    x = design_matrix(frame, record.params.covariates)
    predicted = predict_phenotype(saved.models, saved.features, x, saved.predict_with)
    write_table(
        store,
        "validation_phenotypes",
        pd.DataFrame({"patient": frame["patient"].to_numpy(), "phenotype": predicted}),
    )
    duration = frame["duration"].to_numpy()
    event = frame["event"].to_numpy()
    found = int(np.unique(predicted).size)
    if found >= 2:
        groups: pd.Series | None = _phenotype_groups(predicted, len(saved.phenotype_survival))
    else:
        log.warning("the external cohort was predicted into one phenotype only: no log-rank")
        groups = None
    km = km_tables(duration, event, groups, "phenotype", times=params.times, alpha=params.alpha)
    _write_km(store, "validation_", km)
    multi = km.logrank[km.logrank["test"] == "multivariate"]
    rows = (
        [_metric("phenotypes", "validation", "logrank_p", multi["p"].iloc[0])] if len(multi) else []
    )
    return rows, found


def run_validate_external(ctx: RunContext, params: ExternalParams) -> dict[str, int]:
    """Apply the trained phenotype classifier and the Cox model to an external cohort.

    Either may be missing from the job (no ``classify_phenotypes``, or no covariate passed the
    Cox screen); the stage validates what there is.

    Returns
    -------
    dict
        Counts: patients, events, phenotypes (predicted, distinct; 0 without a classifier).

    Raises
    ------
    StoreError
        If the job has neither a phenotype classifier nor a multivariate Cox model to validate,
        or the store holds an older version's pickled classifier (never loaded).
    CheckpointError
        If the classifier file is unreadable or holds a type outside the trusted list.
    """
    store, client, seed, progress = ctx.store, ctx.client, ctx.seed, ctx.progress
    record = _record(store)
    # Loaded before anything is written, so a refused file leaves the store as it was. An
    # older version's pickle is refused, not skipped: validating the Cox model alone would
    # silently drop the phenotypes.
    refuse_legacy(store)
    saved = read_classifier(store) if store.exists(CLASSIFIER) else None
    model = store.read_json(COX_MODEL) if store.exists(COX_MODEL) else None
    has_cox = bool(model and model["terms"])
    has_classifier = saved is not None
    if not (has_cox or has_classifier):
        raise StoreError(
            "validate_external has nothing to validate: no phenotype classifier "
            f"({CLASSIFIER}) and no multivariate Cox model ({COX_MODEL}); put "
            "classify_phenotypes and/or cox before it in the job"
        )
    cohort = load_external(params, record)
    frame = cohort.frame
    write_table(store, "validation_cohort", _patient_table(cohort))
    _replace_rows(store, "cohort_summary", cohort.summary, cohort="validation")
    store.write_json(VALIDATION_RECORD, cohort.record.model_dump(mode="json"))

    metrics: list[dict[str, Any]] = []
    found = 0
    if saved is not None:
        metrics, found = _validate_phenotypes(store, frame, record, params, saved)
    else:
        # Tables of an earlier run with a classifier would describe another model.
        for name in ("phenotypes", "km_summary", "km_times", "km_curves", "logrank"):
            store.remove(f"tables/validation_{name}.parquet")
    if has_cox and model is not None:
        chosen = [c for c in record.params.covariates if c.name in set(model["selected"])]
        design = design_matrix(frame, chosen)[model["terms"]]
        risk = design.to_numpy() @ np.asarray(model["coef"], dtype=np.float64)
        metrics.append(
            _concordance(
                client,
                "validation",
                frame,
                risk,
                seed=seed,
                stream=_STREAM_VALIDATION,
                replicates=params.bootstrap,
                progress=progress,
            )
        )
    # Replace every validation row: a figure the models no longer give must not linger.
    _replace_rows(
        store,
        "survival_metrics",
        pd.DataFrame(metrics, columns=_METRIC_COLUMNS),
        cohort="validation",
    )
    event = frame["event"].to_numpy()
    return {"patients": len(frame), "events": int(event.sum()), "phenotypes": found}
