"""The phenotype classifier in the run store: fitted models as skops, plain data as JSON.

``classify_phenotypes`` writes ``models/phenotype_classifier.skops`` (the fitted decision tree
and random forest) and ``models/classifier.json`` (features, the model to predict with, the
horizon, Kaplan-Meier survival per phenotype); ``validate_external`` reads them back.

A store is data that anyone may hand over, so the models are never pickled: unpickling runs
whatever code the file names. The skops format (``skops.io``) rebuilds scikit-learn objects from
a schema and refuses, before building anything, every type that is neither in its own
safe list nor in :data:`TRUSTED_TYPES`. Stores of older versions hold
``models/phenotype_classifier.pkl``; it is never opened, and validation asks for a refit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError, StoreError

__all__ = [
    "CLASSIFIER",
    "CLASSIFIER_RECORD",
    "LEGACY_CLASSIFIER",
    "MODEL_CLASSES",
    "TRUSTED_TYPES",
    "SavedClassifier",
    "dump_models",
    "load_models",
    "read_classifier",
    "refuse_legacy",
    "write_classifier",
]

log = logging.getLogger(__name__)

CLASSIFIER = "models/phenotype_classifier.skops"
CLASSIFIER_RECORD = "models/classifier.json"
#: Where versions before the skops format pickled the models: never loaded.
LEGACY_CLASSIFIER = "models/phenotype_classifier.pkl"

#: The types a fitted decision tree or random forest holds beyond those skops trusts by default
#: (estimators, numpy arrays and scalars, builtin containers): exactly what
#: ``skops.io.get_untrusted_types`` lists for the models ``evaluate_classifiers`` fits (bare
#: estimators, no pipeline). ``Tree`` is scikit-learn's compiled tree structure, rebuilt from
#: its arrays. Widen this only after checking a new type cannot run code when built.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)

#: The models a classifier file holds, by name, and their exact classes.
MODEL_CLASSES: dict[str, type] = {
    "decision_tree": DecisionTreeClassifier,
    "random_forest": RandomForestClassifier,
}

_RERUN = "rerun classify_phenotypes (pipeline run JOB --force classify_phenotypes)"


@dataclass(frozen=True)
class SavedClassifier:
    """The phenotype classifier as ``classify_phenotypes`` saved it.

    Attributes
    ----------
    models : dict of str to estimator
        ``"decision_tree"`` and ``"random_forest"``, fitted on the development cohort.
    features : list of str
        The design columns the models take, in order.
    predict_with : str
        The model external validation assigns phenotypes with.
    phenotype_survival : dict of int to float
        Phenotype -> Kaplan-Meier survival at the horizon (a fraction) in development.
    """

    models: dict[str, Any]
    features: list[str]
    predict_with: str
    phenotype_survival: dict[int, float]


def dump_models(models: Mapping[str, Any]) -> bytes:
    """The fitted phenotype models in the skops format.

    Parameters
    ----------
    models : mapping of str to estimator
        Names and classes as :data:`MODEL_CLASSES`.

    Returns
    -------
    bytes
        A skops file (a zip archive) that :func:`load_models` reads back.
    """
    return sio.dumps(dict(models))


def load_models(data: bytes, source: str) -> dict[str, Any]:
    """Fitted phenotype models from a skops file, refusing any type not known to be safe.

    Parameters
    ----------
    data : bytes
        The file's content, as :func:`dump_models` wrote it.
    source : str
        The file's path or URL, for messages.

    Returns
    -------
    dict of str to estimator
        Exactly the names and classes of :data:`MODEL_CLASSES`.

    Raises
    ------
    CheckpointError
        If the file is not a skops file, holds a type outside skops' defaults and
        :data:`TRUSTED_TYPES` (named; nothing is built), or not the expected models.
    """
    try:
        found = sio.get_untrusted_types(data=data)
    # A damaged or hand-made file fails inside skops in many ways (not a zip, no schema,
    # malformed JSON, an unknown node); to the user they all mean the same thing.
    except Exception as exc:
        raise CheckpointError(
            f"{source} is not a readable skops file ({type(exc).__name__}: {exc}); {_RERUN}"
        ) from exc
    untrusted = sorted(set(found) - set(TRUSTED_TYPES))
    if untrusted:
        raise CheckpointError(
            f"{source} holds types outside the phenotype classifier's trusted list "
            f"{list(TRUSTED_TYPES)}: {untrusted}; it was not written by classify_phenotypes of "
            f"this version, so none of it is loaded; {_RERUN}"
        )
    # skops audits the types again against the same list before it builds anything.
    models = sio.loads(data, trusted=list(TRUSTED_TYPES))
    if not isinstance(models, dict) or set(models) != set(MODEL_CLASSES):
        got = sorted(map(str, models)) if isinstance(models, dict) else type(models).__name__
        raise CheckpointError(
            f"{source} holds {got}, not the models {sorted(MODEL_CLASSES)}; {_RERUN}"
        )
    for name, cls in MODEL_CLASSES.items():
        if type(models[name]) is not cls:
            raise CheckpointError(
                f"{source}: model {name!r} is a {type(models[name]).__name__}, not a "
                f"{cls.__name__}; {_RERUN}"
            )
    return models


def write_classifier(
    store: RunStore,
    models: Mapping[str, Any],
    features: Sequence[str],
    phenotype_survival: Mapping[int, float],
    *,
    predict_with: str,
    horizon: float,
    time_unit: str,
) -> None:
    """Save the phenotype classifier: :data:`CLASSIFIER` and :data:`CLASSIFIER_RECORD`.

    The pickle of an older version is removed, so the store no longer holds a file whose
    loading can run code.

    Parameters
    ----------
    store : RunStore
    models : mapping of str to estimator
        As :attr:`~pipeline.workflows.survival.classify.ClassifierResult.models`.
    features : sequence of str
        The design columns the models take, in order.
    phenotype_survival : mapping of int to float
        Phenotype -> Kaplan-Meier survival at the horizon (a fraction).
    predict_with : str
        The model external validation uses.
    horizon : float
        In ``time_unit``.
    time_unit : str
    """
    store.write_bytes(CLASSIFIER, dump_models(models))
    store.write_json(
        CLASSIFIER_RECORD,
        {
            "features": list(features),
            "predict_with": predict_with,
            "horizon": horizon,
            "time_unit": time_unit,
            # JSON keys are text; read_classifier turns them back into phenotype numbers.
            "phenotype_survival": {str(p): float(s) for p, s in phenotype_survival.items()},
        },
    )
    if store.exists(LEGACY_CLASSIFIER):
        log.info("removed %s, the unsafe pickle of an older version", LEGACY_CLASSIFIER)
        store.remove(LEGACY_CLASSIFIER)
    log.info("saved the phenotype classifier to %s", store.path(CLASSIFIER))


def refuse_legacy(store: RunStore) -> None:
    """Stop if the store holds only the pickled classifier of an older version.

    Raises
    ------
    StoreError
        If :data:`LEGACY_CLASSIFIER` exists and :data:`CLASSIFIER` does not.
    """
    if store.exists(LEGACY_CLASSIFIER) and not store.exists(CLASSIFIER):
        raise StoreError(
            f"{store.path(LEGACY_CLASSIFIER)} is the phenotype classifier in an unsafe old "
            "format (a pickle, which can run code when loaded), so it is not loaded; "
            f"{_RERUN} to save it as {CLASSIFIER}"
        )


def read_classifier(store: RunStore) -> SavedClassifier:
    """The phenotype classifier :func:`write_classifier` saved.

    Parameters
    ----------
    store : RunStore

    Returns
    -------
    SavedClassifier

    Raises
    ------
    StoreError
        If the store holds only an older version's pickle (never loaded), or the record lacks
        a field.
    CheckpointError
        If the model file is unreadable or holds a type that is not trusted (see
        :func:`load_models`).
    """
    refuse_legacy(store)
    record = store.read_json(CLASSIFIER_RECORD)
    missing = [k for k in ("features", "predict_with", "phenotype_survival") if k not in record]
    if missing:
        raise StoreError(
            f"{store.path(CLASSIFIER_RECORD)} lacks {missing} (written by an older version); "
            f"{_RERUN}"
        )
    models = load_models(store.read_bytes(CLASSIFIER), store.path(CLASSIFIER))
    features = [str(f) for f in record["features"]]
    for name, model in models.items():
        fitted = [str(f) for f in getattr(model, "feature_names_in_", [])]
        if fitted != features:
            raise CheckpointError(
                f"{store.path(CLASSIFIER)}: model {name!r} was fitted on the features "
                f"{fitted}, but {CLASSIFIER_RECORD} lists {features}; {_RERUN}"
            )
    log.info("loaded the phenotype classifier from %s", store.path(CLASSIFIER))
    return SavedClassifier(
        models=models,
        features=features,
        predict_with=str(record["predict_with"]),
        phenotype_survival={int(p): float(s) for p, s in record["phenotype_survival"].items()},
    )
