"""Recognising the phenotype of new patients, compared with predicting survival directly.

Hierarchical clustering (stage ``phenotypes``) groups the development patients into
phenotypes; a phenotype is useful at the bedside only if a new patient's phenotype can be
recognised from the covariates. This module (stage ``classify_phenotypes``) cross-validates a
shallow decision tree (readable by a clinician) and a random forest on two targets:

``phenotype``
    the phenotype clustering gave each patient;
``survival_<h>``
    whether the patient is alive at the horizon ``h`` (e.g. ``survival_3y``), scored two ways
    on the same test patients of each fold:

    * *direct*: ``decision_tree`` / ``random_forest`` learn the status from the covariates;
    * *phenotype route* (the thesis's method): ``phenotype_decision_tree`` /
      ``phenotype_random_forest`` predict the patient's phenotype, and the predicted
      probability of being alive is that phenotype's Kaplan-Meier survival at the horizon,
      estimated on the training patients of the fold.

The phenotype models refitted on every patient are what external validation applies to a
new cohort (:func:`predict_phenotype`).

Class labels are text in every output frame: a phenotype as its number (``"2"``), the
status at the horizon as ``"died"`` (0) or ``"alive"`` (1), so that a confusion table reads
without a legend.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

from pipeline.errors import ParameterError
from pipeline.workflows.survival.spec import ClassifierParams

__all__ = [
    "STATUS_LABELS",
    "ClassifierParams",
    "ClassifierResult",
    "evaluate_classifiers",
    "predict_phenotype",
    "survival_status",
    "survival_target",
]

logger = logging.getLogger(__name__)

#: Text of the status classes in the confusion and prediction frames.
STATUS_LABELS: dict[int, str] = {0: "died", 1: "alive"}

_UNIT_LETTER = {"years": "y", "months": "m", "weeks": "w", "days": "d"}

# Phenotype-route model names (the `model` column) -> the phenotype classifier they use.
_ROUTE = {"phenotype_decision_tree": "decision_tree", "phenotype_random_forest": "random_forest"}


@dataclass(frozen=True)
class ClassifierResult:
    """What :func:`evaluate_classifiers` measured and fitted.

    Attributes
    ----------
    metrics : pandas.DataFrame
        ``classifier_metrics`` rows (see :mod:`pipeline.core.tables`).
    confusion : pandas.DataFrame
        ``classifier_confusion`` rows: every (true, predicted) cell, zeros included.
    importance : pandas.DataFrame
        ``classifier_importance`` rows, by model and target, most important feature first.
    models : dict of str to estimator
        ``"decision_tree"`` and ``"random_forest"`` fitted on all patients to predict the
        phenotype (with ``feature_names_in_`` = ``features``).
    features : list of str
        The design columns the models take, in order.
    phenotype_survival : dict of int to float
        Phenotype -> Kaplan-Meier survival at the horizon on all patients.
    predictions : pandas.DataFrame
        The out-of-fold predictions behind the metrics, one row per model and scored patient:
        ``index`` (the patient's label in ``X.index``), ``fold`` (1-based), ``model``,
        ``target``, ``true``, ``predicted`` (text, as in ``confusion``) and ``probability``
        (survival target: the predicted probability of being alive at the horizon; NaN for
        the phenotype target). Not a stored table: for calibration plots and checks.
    """

    metrics: pd.DataFrame
    confusion: pd.DataFrame
    importance: pd.DataFrame
    models: dict[str, Any]
    features: list[str]
    phenotype_survival: dict[int, float]
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


def survival_target(horizon: float, time_unit: str = "years") -> str:
    """Name of the survival target, the horizon written compactly with its unit.

    ``survival_target(3, "years") == "survival_3y"``; ``survival_target(2.5) ==
    "survival_2.5y"``; ``survival_target(36, "months") == "survival_36m"``.
    """
    if time_unit not in _UNIT_LETTER:
        raise ParameterError(
            f"time unit {time_unit!r} is not one of {sorted(_UNIT_LETTER)}; use one of them"
        )
    number = np.format_float_positional(float(horizon), trim="-")
    return f"survival_{number}{_UNIT_LETTER[time_unit]}"


def survival_status(duration: np.ndarray, event: np.ndarray, horizon: float) -> np.ndarray:
    """Whether each patient is alive at the horizon: 1.0 alive, 0.0 died, NaN unknown.

    The boundary follows the Kaplan-Meier estimate, whose survival at ``h`` is P(T > h) and
    so counts an event at exactly ``h`` as a death: the phenotype route's probability and
    this status then measure the same thing.

    * died (0.0): an event at or before the horizon (``event == 1`` and ``duration <= h``);
    * alive (1.0): followed beyond the horizon (``duration > h``), or censored exactly at it
      (last seen alive at ``h``);
    * unknown (NaN): censored before the horizon — the patient left follow-up alive and may
      or may not have died by ``h``.

    Parameters
    ----------
    duration : array, shape (n_patients,)
        Follow-up time, in the horizon's unit.
    event : array, shape (n_patients,)
        1 if the event (death) was observed at ``duration``, 0 if censored.
    horizon : float
        The time the status is taken at.

    Returns
    -------
    numpy.ndarray of float64, shape (n_patients,)
    """
    d = np.asarray(duration, dtype=np.float64)
    e = np.asarray(event)
    if d.shape != e.shape or d.ndim != 1:
        raise ParameterError(
            f"duration has shape {d.shape} and event {e.shape}; both must be 1-D, one value "
            "per patient"
        )
    died = (e == 1) & (d <= horizon)
    alive = ~died & (d >= horizon)
    status = np.full(d.shape, np.nan)
    status[died] = 0.0
    status[alive] = 1.0
    return status


def _tree(params: ClassifierParams, seed: int) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(
        max_depth=params.tree_max_depth,
        min_samples_leaf=params.min_samples_leaf,
        random_state=seed,
    )


def _forest(params: ClassifierParams, seed: int) -> RandomForestClassifier:
    # n_jobs=1: the stage runs inside a Dask task, whose worker already owns the cores, and a
    # single thread keeps the fit reproducible and cheap to reason about.
    return RandomForestClassifier(
        n_estimators=params.forest_trees,
        max_depth=params.forest_max_depth,
        min_samples_leaf=params.min_samples_leaf,
        random_state=seed,
        n_jobs=1,
    )


def _models(params: ClassifierParams, seed: int) -> dict[str, Any]:
    return {"decision_tree": _tree(params, seed), "random_forest": _forest(params, seed)}


def _check_inputs(
    X: pd.DataFrame, phenotype: np.ndarray, duration: np.ndarray, event: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as arrays (float X, int phenotype, float duration, int event), checked."""
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        raise ParameterError(
            "X must be a design matrix (pandas DataFrame, one column per feature) with at "
            "least one column; build it with pipeline.workflows.survival.design.design_matrix"
        )
    n = len(X)
    arrays = {"phenotype": phenotype, "duration": duration, "event": event}
    wrong = {k: np.shape(v) for k, v in arrays.items() if np.shape(v) != (n,)}
    if wrong:
        raise ParameterError(
            f"X has {n} rows but {wrong} have other shapes; pass one value per row of X"
        )
    non_numeric = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if non_numeric:
        raise ParameterError(
            f"design columns {non_numeric} are not numeric; build X with design_matrix, which "
            "one-hot codes categories"
        )
    values = X.to_numpy(dtype=np.float64)
    finite = np.isfinite(values).all(axis=0)
    bad = [str(c) for c, ok in zip(X.columns, finite, strict=True) if not ok]
    if bad:
        raise ParameterError(
            f"design columns {bad} hold missing or infinite values; apply the cohort's "
            "missing-value policy (drop or impute) first"
        )
    pheno = np.asarray(phenotype)
    if not np.issubdtype(pheno.dtype, np.integer):
        as_float = pheno.astype(np.float64)
        if not (np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()):
            raise ParameterError("phenotype labels must be whole numbers (1, 2, ...)")
        pheno = as_float.astype(np.int64)
    dur = np.asarray(duration, dtype=np.float64)
    if not (np.isfinite(dur).all() and (dur >= 0).all()):
        raise ParameterError("durations must be finite and non-negative")
    evt = np.asarray(event)
    if not np.isin(evt, (0, 1)).all():
        raise ParameterError("event must be 0 (censored) or 1 (event observed)")
    return values, pheno.astype(np.int64), dur, evt.astype(np.int64)


def _km_at(
    duration: np.ndarray, event: np.ndarray, phenotype: np.ndarray, horizon: float
) -> dict[int, float]:
    """Phenotype -> Kaplan-Meier survival at ``horizon`` of its patients among those given."""
    out: dict[int, float] = {}
    for p in np.unique(phenotype):
        mask = phenotype == p
        kmf = KaplanMeierFitter().fit(duration[mask], event_observed=event[mask])
        out[int(p)] = float(kmf.survival_function_at_times(horizon).iloc[0])
    return out


class _Scores:
    """Collects the per-fold figures of one target and turns them into the output rows."""

    def __init__(self, target: str, labels: list[str]) -> None:
        self.target = target
        self.labels = labels  # the classes as text, in confusion-matrix order
        self.metrics: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.importance: dict[str, list[np.ndarray]] = defaultdict(list)
        self.predictions: list[pd.DataFrame] = []
        self.n = 0

    def add(
        self,
        model: str,
        fold: int,
        index: pd.Index,
        true: np.ndarray,
        pred: np.ndarray,
        text: dict[int, str],
        proba: np.ndarray | None = None,
    ) -> None:
        scores = self.metrics[model]
        scores["accuracy"].append(float(accuracy_score(true, pred)))
        # Macro-F1 over the same, full set of classes in every fold so the folds' figures are
        # comparable; a class never predicted has no precision, counted as an F1 of 0
        # (zero_division=0) instead of a warning.
        scores["macro_f1"].append(
            float(f1_score(true, pred, labels=sorted(text), average="macro", zero_division=0))
        )
        if proba is not None:
            scores["roc_auc"].append(float(roc_auc_score(true, proba)))
        self.predictions.append(
            pd.DataFrame(
                {
                    "index": index,
                    "fold": fold,
                    "model": model,
                    "target": self.target,
                    "true": [text[int(v)] for v in true],
                    "predicted": [text[int(v)] for v in pred],
                    "probability": np.nan if proba is None else proba,
                }
            )
        )

    def metric_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for model, scores in self.metrics.items():
            for metric, values in scores.items():
                rows.append(
                    {
                        "model": model,
                        "target": self.target,
                        "metric": metric,
                        "mean": float(np.mean(values)),
                        # Sample sd (ddof=1): the folds are a sample of the possible splits.
                        "sd": float(np.std(values, ddof=1)),
                        "folds": len(values),
                        "n": self.n,
                    }
                )
                logger.info(
                    "%s -> %s: %s %.3f (sd %.3f, %d folds, %d patients)",
                    model,
                    self.target,
                    metric,
                    rows[-1]["mean"],
                    rows[-1]["sd"],
                    len(values),
                    self.n,
                )
        return rows

    def confusion_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        preds = pd.concat(self.predictions, ignore_index=True)
        for model, part in preds.groupby("model", sort=False):
            counts = part.groupby(["true", "predicted"]).size()
            # Every cell, zeros included, so that the matrix is complete when pivoted.
            for t in self.labels:
                for p in self.labels:
                    rows.append(
                        {
                            "model": model,
                            "target": self.target,
                            "true": t,
                            "predicted": p,
                            "count": int(counts.get((t, p), 0)),
                        }
                    )
        return rows

    def importance_rows(self, features: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for model, per_fold in self.importance.items():
            stack = np.vstack(per_fold)
            mean = stack.mean(axis=0)
            sd = stack.std(axis=0, ddof=1)
            # Each fit's importances sum to 1 unless its tree is a single leaf (all zeros);
            # renormalise so the mean sums to 1 as the table promises.
            total = mean.sum()
            if total > 0:
                mean, sd = mean / total, sd / total
            order = np.argsort(-mean, kind="stable")
            rows.extend(
                {
                    "model": model,
                    "target": self.target,
                    "feature": features[i],
                    "importance": float(mean[i]),
                    "sd": float(sd[i]),
                }
                for i in order
            )
        return rows


def _phenotype_cv(
    values: np.ndarray,
    pheno: np.ndarray,
    index: pd.Index,
    params: ClassifierParams,
    seed: int,
) -> _Scores:
    """Cross-validate the phenotype classifiers (target ``phenotype``)."""
    classes, counts = np.unique(pheno, return_counts=True)
    if len(classes) < 2:
        raise ParameterError(
            f"all {len(pheno)} patients are in phenotype {classes[0]}; a classifier needs at "
            "least two phenotypes (lower min_size or widen k in the phenotypes stage)"
        )
    small = int(np.argmin(counts))
    if counts[small] < params.folds:
        raise ParameterError(
            f"phenotype {classes[small]} has {counts[small]} patients, fewer than the "
            f"{params.folds} cross-validation folds (every fold needs one of each phenotype); "
            f"set classify_phenotypes folds to at most {counts[small]}, or raise the phenotypes "
            "stage's min_size so that no phenotype is this small"
        )
    text = {int(c): str(int(c)) for c in classes}
    scores = _Scores("phenotype", list(text.values()))
    scores.n = len(pheno)
    logger.info(
        "phenotype target: %d patients, %d phenotypes, %d folds",
        len(pheno),
        len(classes),
        params.folds,
    )
    skf = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(skf.split(values, pheno), start=1):
        for name, model in _models(params, seed).items():
            model.fit(values[train], pheno[train])
            pred = model.predict(values[test])
            scores.add(name, fold, index[test], pheno[test], pred, text)
            scores.importance[name].append(np.asarray(model.feature_importances_))
    return scores


def _survival_cv(
    values: np.ndarray,
    pheno: np.ndarray,
    duration: np.ndarray,
    event: np.ndarray,
    index: pd.Index,
    params: ClassifierParams,
    seed: int,
    target: str,
    time_unit: str,
) -> _Scores:
    """Cross-validate direct and phenotype-route survival prediction (target ``target``)."""
    status = survival_status(duration, event, params.horizon)
    # Only patients whose status at the horizon is known are scored: a patient censored
    # before it may be alive or dead, so counting them either way would bias every metric
    # (as 'alive' it flatters models that predict survival).
    known = np.flatnonzero(~np.isnan(status))
    y = status[known].astype(np.int64)
    n_died, n_alive = int((y == 0).sum()), int((y == 1).sum())
    if min(n_died, n_alive) < params.folds:
        raise ParameterError(
            f"at the horizon {params.horizon:g} {time_unit}, {n_died} patients are known to have "
            f"died and {n_alive} to be alive ({len(status) - len(known)} censored earlier, status "
            f"unknown); each of the {params.folds} folds needs patients of both; set a shorter "
            "horizon (classify_phenotypes horizon) or fewer folds"
        )
    scores = _Scores(target, [STATUS_LABELS[0], STATUS_LABELS[1]])
    scores.n = len(known)
    logger.info(
        "%s target: %d patients with known status (%d died, %d alive, %d unknown), %d folds",
        target,
        len(known),
        n_died,
        n_alive,
        len(status) - len(known),
        params.folds,
    )
    everyone = np.arange(len(status))
    skf = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=seed)
    for fold, (train_k, test_k) in enumerate(skf.split(known.reshape(-1, 1), y), start=1):
        test = known[test_k]
        y_test = y[test_k]
        # Direct route: learn the status, so only training patients with a known status.
        for name, model in _models(params, seed).items():
            model.fit(values[known[train_k]], y[train_k])
            alive_col = list(model.classes_).index(1)
            proba = model.predict_proba(values[test])[:, alive_col]
            pred = model.predict(values[test])
            scores.add(name, fold, index[test], y_test, pred, STATUS_LABELS, proba)
            scores.importance[name].append(np.asarray(model.feature_importances_))
        # Phenotype route: the phenotype and the Kaplan-Meier curves need no status at the
        # horizon, so every patient outside the test fold trains them (censored ones too, as
        # in the final models); only the test patients are held out.
        train = np.setdiff1d(everyone, test)
        km = _km_at(duration[train], event[train], pheno[train], params.horizon)
        for route, base in _ROUTE.items():
            model = _models(params, seed)[base]
            model.fit(values[train], pheno[train])
            predicted_phenotype = model.predict(values[test])
            proba = np.array([km[int(p)] for p in predicted_phenotype])
            pred = (proba >= 0.5).astype(np.int64)
            scores.add(route, fold, index[test], y_test, pred, STATUS_LABELS, proba)
    return scores


def evaluate_classifiers(
    X: pd.DataFrame,
    phenotype: np.ndarray,
    duration: np.ndarray,
    event: np.ndarray,
    params: ClassifierParams,
    *,
    seed: int,
    time_unit: str = "years",
) -> ClassifierResult:
    """Cross-validate phenotype and survival classifiers; fit the final phenotype models.

    Deterministic for a given ``seed``: the folds are shuffled with it and every model's
    ``random_state`` is it.

    Parameters
    ----------
    X : pandas.DataFrame, shape (n_patients, n_features)
        The design matrix (:func:`~.design.design_matrix`): numeric, finite.
    phenotype : array of int, shape (n_patients,)
        The phenotype clustering gave each patient.
    duration : array of float, shape (n_patients,)
        Follow-up time in ``time_unit``.
    event : array of int, shape (n_patients,)
        1 death observed, 0 censored.
    params : ClassifierParams
    seed : int
        Seeds the fold shuffling and the models.
    time_unit : {"years", "months", "weeks", "days"}
        Unit of ``duration`` and ``params.horizon``; names the survival target.

    Returns
    -------
    ClassifierResult

    Raises
    ------
    ParameterError
        If a phenotype has fewer patients than folds, fewer patients than folds are known to
        have died or to be alive at the horizon, or the inputs do not fit together.
    """
    target = survival_target(params.horizon, time_unit)
    values, pheno, dur, evt = _check_inputs(X, phenotype, duration, event)
    features = [str(c) for c in X.columns]
    index = X.index

    by_target = [
        _phenotype_cv(values, pheno, index, params, seed),
        _survival_cv(values, pheno, dur, evt, index, params, seed, target, time_unit),
    ]
    metrics = pd.DataFrame(
        [r for s in by_target for r in s.metric_rows()],
        columns=["model", "target", "metric", "mean", "sd", "folds", "n"],
    )
    confusion = pd.DataFrame(
        [r for s in by_target for r in s.confusion_rows()],
        columns=["model", "target", "true", "predicted", "count"],
    )
    importance = pd.DataFrame(
        [r for s in by_target for r in s.importance_rows(features)],
        columns=["model", "target", "feature", "importance", "sd"],
    )
    predictions = pd.concat([p for s in by_target for p in s.predictions], ignore_index=True)

    # The saved models see every patient; fitted on a frame so that they carry their feature
    # names and refuse a table whose columns are in another order.
    frame = pd.DataFrame(values, columns=features, index=index)
    models = _models(params, seed)
    for model in models.values():
        model.fit(frame, pheno)
    survival = _km_at(dur, evt, pheno, params.horizon)
    logger.info(
        "final phenotype models fitted on %d patients; survival at %s by phenotype: %s",
        len(pheno),
        target,
        {p: round(s, 3) for p, s in survival.items()},
    )
    return ClassifierResult(
        metrics=metrics,
        confusion=confusion,
        importance=importance,
        models=models,
        features=features,
        phenotype_survival=survival,
        predictions=predictions,
    )


def predict_phenotype(
    models: dict[str, Any], features: list[str], X: pd.DataFrame, which: str
) -> np.ndarray:
    """The phenotype the model ``which`` assigns to each row of ``X``.

    Parameters
    ----------
    models : dict of str to estimator
        :attr:`ClassifierResult.models`.
    features : list of str
        :attr:`ClassifierResult.features`; ``X`` is reordered to them, extra columns ignored.
    X : pandas.DataFrame, shape (n_patients, >= n_features)
        Design matrix of the new patients, built with the development cohort's covariates.
    which : str
        ``"random_forest"`` or ``"decision_tree"``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_patients,)

    Raises
    ------
    ParameterError
        If ``which`` is not a fitted model, ``X`` lacks a feature (named), or holds missing
        values.
    """
    if which not in models:
        raise ParameterError(f"no fitted model {which!r}; the models are {sorted(models)}")
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise ParameterError(
            f"the table lacks the model features {missing}; give it the development cohort's "
            "covariates (rename columns with `columns:`) and build it with design_matrix and "
            "the development covariates, so every category level has its column"
        )
    data = X.loc[:, list(features)].astype(np.float64)
    bad = [str(c) for c in features if not np.isfinite(data[c].to_numpy()).all()]
    if bad:
        raise ParameterError(
            f"features {bad} hold missing or infinite values; apply the missing-value policy first"
        )
    return np.asarray(models[which].predict(data), dtype=np.int64)
