"""The ``efficacy`` stage: drug-efficacy ranking from learned spheroid representations.

Document 001's methods, on tables and a small ``(image, feature)`` array (no pixels):

- **Method 1** (:mod:`~pipeline.workflows.plates.timeseries`): a time-series model of
  untreated spheroids, trained only on untreated wells, predicts each well's target-day
  representation from its input days (by default rolled out from the first, the treatment
  day: the untreated course); a well's score is the deviation of its actual
  target-day representation from that prediction (L2 and cosine). Every untreated well is
  scored by a model that did not see it (cross-validation), and those scores are the null.
- **Ranking** (:mod:`~pipeline.workflows.plates.ranking`): per treatment the median score
  over replicate wells and plates, a bootstrap interval, a robust z and an empirical p
  against the null; per drug a four-parameter logistic dose response
  (:mod:`~pipeline.workflows.plates.dose_response`).
- **Morphology baseline**: the same ranking from part 1's normalised profiles alone.
- **Method 2** (:mod:`~pipeline.workflows.plates.explosion`): intact vs exploded, intact
  wells ranked by a deterioration percentage learned from a viability read-out (on the
  representation's change from the treatment day by default).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.workflows.plates.dose_response import fit_four_pl
from pipeline.workflows.plates.efficacy_spec import (
    DOSE_RESPONSE_TABLE,
    EFFICACY_MODELS_TABLE,
    EFFICACY_MORPHOLOGY_TABLE,
    EFFICACY_TABLE,
    EFFICACY_WELLS_TABLE,
    EfficacyParams,
)
from pipeline.workflows.plates.explosion import (
    explosion_measures,
    fit_deterioration,
    method2_order,
    read_readout,
)
from pipeline.workflows.plates.ranking import (
    TREATMENT_KEYS,
    empirical_p,
    rank_treatments,
    robust_z,
    z_prime,
)
from pipeline.workflows.plates.representations import well_day_means, well_series
from pipeline.workflows.plates.spec import (
    CROPS_TABLE,
    PROFILES_NORMALIZED_TABLE,
    PROFILES_TABLE,
)
from pipeline.workflows.plates.timeseries import deviation, fit_best

__all__ = ["run_efficacy", "score_wells"]

log = logging.getLogger(__name__)

_PLATE_MAP = {
    "Metadata_Plate": "plate",
    "Metadata_Well": "well",
    "Metadata_Treatment": "treatment",
    "Metadata_Concentration": "concentration",
    "Metadata_Unit": "unit",
    "Metadata_Group": "plate_group",
}


def _require(store: RunStore, table: str, stage: str) -> pd.DataFrame:
    if not store.exists(f"tables/{table}.parquet"):
        raise StoreError(f"{store.url} has no {table} table: put a {stage} step before efficacy")
    return read_table(store, table)


def _plate_map(profiles: pd.DataFrame) -> pd.DataFrame:
    """One row per plate and well: its treatment, concentration, unit and group."""
    present = [c for c in _PLATE_MAP if c in profiles]
    wells = profiles[present].drop_duplicates(["Metadata_Plate", "Metadata_Well"])
    wells = wells.rename(columns=_PLATE_MAP)
    for column, default in (
        ("treatment", ""),
        ("concentration", 0.0),
        ("unit", ""),
        ("plate_group", ""),
    ):
        if column not in wells:
            wells[column] = default
    wells["concentration"] = wells["concentration"].astype(np.float64)
    return wells.reset_index(drop=True)


def score_wells(
    means: pd.DataFrame,
    plate_map: pd.DataFrame,
    params: EfficacyParams,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Method 1: every well's deviation from the untreated time-series model.

    Parameters
    ----------
    means : DataFrame
        Per plate, well and day representations (:func:`well_day_means`).
    plate_map : DataFrame
        ``plate``, ``well``, ``treatment``, ``concentration``, ``unit``, ``plate_group``.
    params : EfficacyParams
    seed : int

    Returns
    -------
    wells : DataFrame
        One row per well with every day: the plate map, ``control``, ``score_l2``,
        ``score_cosine``, ``score`` (``params.metric``), ``z``, ``p`` and ``fold`` (the CV
        fold a control well was held out in, -1 for the others).
    models : DataFrame
        The cross-validation table of the candidate models (``selected`` marks the best).
    readout_features : numpy.ndarray, shape (n_wells, n_features)
        What method 2's deterioration model reads (``params.readout_features``): the
        target-day representations, or their change from the first input day.
    """
    series = well_series(means, params.input_days, params.target_day)
    wells = series.wells.merge(plate_map, on=["plate", "well"], how="left", validate="1:1")
    control = (wells["plate_group"] == params.control_group).to_numpy()
    n_control = int(control.sum())
    if n_control < 3:
        groups = sorted(set(wells["plate_group"].dropna().astype(str)))
        raise ParameterError(
            f"only {n_control} {params.control_group!r} well(s) have an image on every day "
            f"{[*params.input_days, params.target_day]}; the time-series model needs at "
            f"least 3 (groups here: {groups}): set efficacy.control_group to the untreated "
            "group, or check the QC failures"
        )
    predictor, cv = fit_best(
        series.inputs[control], series.target[control], params.timeseries, seed
    )
    predicted = predictor.predict(series.inputs)
    predicted[control] = cv.oof
    wells["control"] = control
    wells["score_l2"] = deviation(series.target, predicted, "l2")
    wells["score_cosine"] = deviation(series.target, predicted, "cosine")
    wells["score"] = wells[f"score_{params.metric}"]
    null = wells.loc[control, "score"].to_numpy(np.float64)
    wells["z"] = robust_z(wells["score"].to_numpy(np.float64), null)
    wells["p"] = empirical_p(wells["score"].to_numpy(np.float64), null)
    fold = np.full(len(wells), -1, dtype=np.int64)
    fold[control] = cv.fold_of
    wells["fold"] = fold
    models = cv.table.copy()
    models["selected"] = models["model"] == cv.best
    log.info(
        "efficacy: %s selected over %s by %d-fold CV on %d control wells",
        cv.best,
        list(models["model"]),
        int(models["folds"].iloc[0]),
        n_control,
    )
    if params.readout_features == "change":
        return wells, models, series.target - series.inputs[:, 0]
    return wells, models, series.target


def _morphology(store: RunStore, wells: pd.DataFrame, params: EfficacyParams) -> np.ndarray:
    """The morphology baseline's score of each well: the norm of its target-day robust
    z-scores (against the plate's untreated wells) over ``params.morphology``."""
    normalized = _require(store, PROFILES_NORMALIZED_TABLE, "spheroid_profiles")
    missing = [c for c in params.morphology if c not in normalized]
    if missing:
        raise ParameterError(
            f"efficacy.morphology names column(s) {missing} that spheroid_profiles_normalized "
            "lacks; pick from its feature columns, e.g. AreaShape_Area_ChangeRatio"
        )
    day = normalized[normalized["Metadata_Day"] == params.target_day]
    z = day.set_index(["Metadata_Plate", "Metadata_Well"])[params.morphology]
    keys = pd.MultiIndex.from_frame(wells[["plate", "well"]])
    values = z.reindex(keys).to_numpy(np.float64)
    return np.sqrt(np.sum(values**2, axis=1))


def _dose_responses(wells: pd.DataFrame, control: pd.DataFrame) -> pd.DataFrame:
    """A four-parameter logistic fit of score against concentration per drug."""
    rows: list[dict[str, Any]] = []
    for (drug, unit), part in wells.groupby(["treatment", "unit"], sort=True):
        part = part[np.isfinite(part["score"])]
        fit = fit_four_pl(
            part["concentration"].to_numpy(np.float64), part["score"].to_numpy(np.float64)
        )
        rows.append(
            {
                "treatment": drug,
                "unit": unit,
                "concentrations": int(part["concentration"].nunique()),
                "wells": len(part),
                "bottom": fit.bottom,
                "top": fit.top,
                "ec50": fit.ec50,
                "hill": fit.hill,
                "rmse": fit.rmse,
                "converged": bool(fit.converged),
                "status": fit.status,
                "control_score": float(np.median(control["score"])) if len(control) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _majority(values: pd.Series) -> str:
    return "exploded" if values.mean() >= 0.5 else "intact"


def run_efficacy(ctx: RunContext, params: EfficacyParams) -> dict[str, int | float]:
    """Rank the plates' treatments by efficacy (methods 1 and 2, morphology baseline).

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds the representation array, ``tables/spheroid_crops``,
        ``spheroid_profiles`` and ``spheroid_profiles_normalized``; it receives
        ``tables/efficacy``, ``efficacy_wells``, ``efficacy_morphology``,
        ``efficacy_models`` and ``dose_response`` (documented with the other tables).
        ``ctx.client`` runs the bootstrap replicates; ``ctx.seed`` seeds everything.
    params : EfficacyParams

    Returns
    -------
    dict
        ``wells`` scored, ``treatments``, ``controls``, ``incomplete`` wells left out,
        ``exploded`` wells, ``readout_wells``, ``z_prime`` (score, positive control vs
        untreated; NaN without a positive control) and ``deterioration_cv_spearman``.

    Raises
    ------
    StoreError
        If an input is missing (naming the step that writes it).
    ParameterError
        If the data cannot support the models (too few control wells, days not imaged).
    InputError
        If the viability read-out is missing or malformed.
    """
    store, seed = ctx.store, ctx.seed
    if not store.has_array(params.representation):
        raise StoreError(
            f"{store.url} has no array {params.representation!r}: put train_encoder and embed "
            "steps (input: spheroid_crops) before efficacy, or set efficacy.representation"
        )
    crops = _require(store, CROPS_TABLE, "spheroid_crops")
    profiles = _require(store, PROFILES_TABLE, "spheroid_profiles")
    readout = read_readout(params.readout) if params.readout is not None else None
    values = np.asarray(store.open_array(params.representation, mode="r")[:], dtype=np.float64)
    means = well_day_means(values.reshape(len(values), -1), crops)
    plate_map = _plate_map(profiles)

    wells, models, readout_features = score_wells(means, plate_map, params, seed)
    control = wells["control"].to_numpy(bool)
    null = wells.loc[control, "score"].to_numpy(np.float64)

    # Morphology baseline: the same ranking from the profiles alone.
    wells["morphology_score"] = _morphology(store, wells, params)
    morph_null = wells.loc[control, "morphology_score"].to_numpy(np.float64)
    wells["morphology_z"] = robust_z(wells["morphology_score"].to_numpy(np.float64), morph_null)

    # Method 2.
    day = profiles[profiles["Metadata_Day"] == params.target_day]
    debris = explosion_measures(day, params.explosion)
    wells = wells.merge(debris, on=["plate", "well"], how="left", validate="1:1")
    wells["exploded"] = wells["exploded"].fillna(False).astype(bool)
    wells["viability"] = np.nan
    wells["deterioration_measured"] = np.nan
    wells["deterioration_pct"] = np.nan
    det_cv = math.nan
    if readout is not None:
        joined = wells[["plate", "well"]].merge(readout, on=["plate", "well"], how="left")
        wells["viability"] = joined["viability"].to_numpy(np.float64)
        model = fit_deterioration(
            readout_features,
            wells["viability"].to_numpy(np.float64),
            wells["plate"].to_numpy(str),
            control,
            alphas=params.readout_alphas,
            seed=seed,
        )
        wells["deterioration_measured"] = model.measured
        wells["deterioration_pct"] = model.predicted
        det_cv = model.cv_spearman
        models = pd.concat(
            [
                models,
                pd.DataFrame(
                    [
                        {
                            "model": f"deterioration ridge(alpha={model.alpha:g})",
                            "mse": math.nan,
                            "mse_persistence": math.nan,
                            "folds": min(5, model.trained),
                            "selected": True,
                            "spearman": model.cv_spearman,
                            "wells": model.trained,
                        }
                    ]
                ),
            ],
            ignore_index=True,
        )
    wells["group"] = np.where(wells["exploded"], "exploded", "intact")
    treated = wells[~control].copy()
    treated["method2_rank"] = method2_order(
        treated["exploded"].to_numpy(bool),
        treated["deterioration_pct"].to_numpy(np.float64),
        treated["explosion"].to_numpy(np.float64),
    )
    wells["method2_rank"] = (
        pd.Series(treated["method2_rank"], index=treated.index).reindex(wells.index).astype("Int64")
    )

    extra = {
        "score_l2": "score_l2",
        "score_cosine": "score_cosine",
        "deterioration_pct": "deterioration_pct",
        "explosion": "explosion",
    }
    ranking = rank_treatments(
        treated,
        null,
        extra=extra,
        n_boot=params.bootstrap,
        seed=seed,
        confidence=params.confidence,
        client=ctx.client,
        progress=ctx.progress,
    )
    groups = treated.groupby(list(TREATMENT_KEYS), sort=True)["exploded"].agg(_majority)
    ranking["group"] = [
        groups.loc[tuple(k)] for k in ranking[list(TREATMENT_KEYS)].itertuples(index=False)
    ]
    ranking["metric"] = params.metric
    # Method 2 per treatment: intact ones by median deterioration, exploded ones after them.
    ranking["method2_rank"] = method2_order(
        (ranking["group"] == "exploded").to_numpy(),
        ranking["deterioration_pct"].to_numpy(np.float64),
        ranking["explosion"].to_numpy(np.float64),
    )
    morph = rank_treatments(
        treated,
        morph_null,
        score="morphology_score",
        n_boot=params.bootstrap,
        seed=seed,
        confidence=params.confidence,
        client=ctx.client,
        progress=ctx.progress,
    )
    dose = _dose_responses(treated, wells[control])

    positive = wells.loc[wells["plate_group"] == params.positive_group, "score"].to_numpy(
        np.float64
    )
    zp = z_prime(positive, null)
    columns = [
        "plate",
        "well",
        "treatment",
        "concentration",
        "unit",
        "plate_group",
        "control",
        "fold",
        "score",
        "score_l2",
        "score_cosine",
        "z",
        "p",
        "morphology_score",
        "morphology_z",
        "group",
        "exploded",
        "explosion",
        "debris_fraction",
        "debris_fragments",
        "debris_reach",
        "viability",
        "deterioration_measured",
        "deterioration_pct",
        "method2_rank",
    ]
    write_table(store, EFFICACY_WELLS_TABLE, wells[columns])
    write_table(store, EFFICACY_TABLE, ranking)
    write_table(store, EFFICACY_MORPHOLOGY_TABLE, morph)
    write_table(store, EFFICACY_MODELS_TABLE, models)
    write_table(store, DOSE_RESPONSE_TABLE, dose)
    log.info(
        "efficacy: %d treatments ranked from %d wells (%d untreated); Z' %.2f",
        len(ranking),
        len(wells),
        int(control.sum()),
        zp,
    )
    return {
        "wells": len(wells),
        "treatments": len(ranking),
        "controls": int(control.sum()),
        "incomplete": int(len(plate_map) - len(wells)),
        "exploded": int(treated["exploded"].sum()),
        "readout_wells": int(np.isfinite(wells["viability"]).sum()),
        "z_prime": round(zp, 4) if math.isfinite(zp) else math.nan,
        "deterioration_cv_spearman": round(det_cv, 4) if math.isfinite(det_cv) else math.nan,
    }
