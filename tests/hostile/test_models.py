"""A run store is data anyone may hand over: the phenotype classifier in it must not run code.

``classify_phenotypes`` saves its models as skops (``models/phenotype_classifier.skops``) and
plain data as JSON; ``validate_external`` refuses an older version's pickle without opening it,
and a skops file naming a type outside the trusted list without building anything from it.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from distributed import Client
from lifelines.datasets import load_gbsg2
from sklearn.linear_model import LogisticRegression

from pipeline.core.context import RunContext
from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import CheckpointError, StoreError
from pipeline.workflows.survival.classify import (
    ClassifierParams,
    evaluate_classifiers,
    predict_phenotype,
)
from pipeline.workflows.survival.model_files import (
    CLASSIFIER,
    LEGACY_CLASSIFIER,
    TRUSTED_TYPES,
    read_classifier,
    write_classifier,
)
from pipeline.workflows.survival.spec import ExternalParams
from pipeline.workflows.survival.stages import run_validate_external


def _job(folder: Path, store: Path) -> str:
    # The smallest job that fits and applies the classifier: no Cox, few trees, no bootstrap.
    return f"""
name: hostile_models
store: {store}
seed: 0
stages:
  - stage: cohort
    params:
      source: {folder / "development.csv"}
      id: pid
      duration: time
      event: cens
      covariates:
        - {{name: tsize, kind: numeric, unit: mm}}
        - {{name: pnodes, kind: numeric}}
        - {{name: progrec, kind: numeric}}
  - stage: phenotypes
    params: {{k_range: [2, 3], bootstrap: 0}}
  - stage: classify_phenotypes
    params: {{folds: 3, forest_trees: 10}}
  - stage: validate_external
    params: {{source: {folder / "external.csv"}, bootstrap: 0}}
"""


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, client: Client) -> Path:
    """A folder with the gbsg2 tables and ``run/``, the store of the whole job run once."""
    folder = tmp_path_factory.mktemp("hostile_models")
    df = load_gbsg2()
    df.insert(0, "pid", [f"P{i:04d}" for i in range(len(df))])
    df.iloc[:300].to_csv(folder / "development.csv", index=False)
    df.iloc[300:].to_csv(folder / "external.csv", index=False)
    run_job(parse_job(_job(folder, folder / "run")), client=client)
    return folder


@pytest.fixture
def store(original: Path, tmp_path: Path) -> RunStore:
    """A copy of the job's store each test may tamper with; its validation outputs removed,
    so a test sees whether the refused validation wrote anything."""
    shutil.copytree(original / "run", tmp_path / "run")
    copy = RunStore(str(tmp_path / "run"))
    copy.remove("tables/validation_phenotypes.parquet")
    copy.remove("tables/validation_cohort.parquet")
    return copy


def _validate(original: Path, store: RunStore, client: Client) -> dict[str, int]:
    params = ExternalParams.model_validate(
        {"source": str(original / "external.csv"), "bootstrap": 0}
    )
    return run_validate_external(RunContext(store=store, client=client), params)


class _Touch:
    """A pickle whose loading creates ``marker``: what a crafted store could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


class _TouchOnBuild:
    """An object that creates its marker file when it is rebuilt from its state."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, str]) -> None:
        Path(state["marker"]).touch()


def _old_store(store: RunStore, marker: Path) -> None:
    """The store as an older version left it, but its pickle replaced by a crafted one."""
    store.remove(CLASSIFIER)
    store.write_bytes(LEGACY_CLASSIFIER, pickle.dumps(_Touch(marker)))


def _unpickle(marker: Path) -> None:
    pickle.loads(pickle.dumps(_Touch(marker)))


def _trust_everything(marker: Path) -> None:
    data = sio.dumps({"decision_tree": _TouchOnBuild(marker)})
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))


@pytest.mark.parametrize("load", [_unpickle, _trust_everything])
def test_the_crafted_files_would_run_code(tmp_path: Path, load: Callable[[Path], None]) -> None:
    # The traps are live: loading them carelessly creates the marker, so its absence below
    # means the file was refused, not that the trap misfired.
    marker = tmp_path / "sprung"
    load(marker)
    assert marker.exists()


def test_an_old_pickled_classifier_is_refused_unopened(
    original: Path, store: RunStore, client: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    _old_store(store, marker)
    with pytest.raises(StoreError) as info:
        _validate(original, store, client)
    message = str(info.value)
    assert "phenotype_classifier.pkl" in message and "unsafe old format" in message
    assert "pipeline run JOB --force classify_phenotypes" in message
    assert not marker.exists()
    # Refused before any output: the validation tables were not rewritten.
    assert not store.exists("tables/validation_cohort.parquet")
    assert not store.exists("tables/validation_phenotypes.parquet")


def test_rerunning_the_job_over_an_old_store_refits_and_deletes_the_pickle(
    original: Path, store: RunStore, client: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    _old_store(store, marker)
    # The stage's declared outputs are incomplete, so the runner refits the classifier.
    summary = run_job(parse_job(_job(original, Path(store.path()))), client=client)
    assert {"classify_phenotypes", "validate_external"} <= set(summary.ran)
    assert not marker.exists()
    assert not store.exists(LEGACY_CLASSIFIER)
    assert store.exists(CLASSIFIER)
    assert len(read_table(store, "validation_phenotypes"))


# Skops files a store could hold instead of the models: (what it holds, the type to be named).
UNTRUSTED: list[tuple[str, Callable[[Path], Any], str]] = [
    (
        "object_that_acts_when_built",
        lambda m: {"decision_tree": _TouchOnBuild(m), "random_forest": _TouchOnBuild(m)},
        f"{__name__}._TouchOnBuild",
    ),
    ("path_touch", lambda m: {"decision_tree": pathlib.Path.touch, "m": str(m)}, "pathlib.touch"),
    (
        "os_system",
        lambda m: {"decision_tree": os.system, "cmd": f"touch {m}"},
        f"{os.system.__module__}.system",
    ),
    ("eval", lambda m: {"decision_tree": eval, "code": f"open({str(m)!r}, 'w')"}, "builtins.eval"),
]


@pytest.mark.parametrize(
    ("content", "named"), [(c, n) for _, c, n in UNTRUSTED], ids=[i for i, _, _ in UNTRUSTED]
)
def test_a_skops_file_with_an_untrusted_type_is_refused(
    original: Path,
    store: RunStore,
    client: Client,
    tmp_path: Path,
    content: Callable[[Path], Any],
    named: str,
) -> None:
    marker = tmp_path / "marker"
    store.write_bytes(CLASSIFIER, sio.dumps(content(marker)))
    with pytest.raises(CheckpointError, match=re.escape(named)) as info:
        _validate(original, store, client)
    assert "trusted list" in str(info.value)
    assert "--force classify_phenotypes" in str(info.value)
    assert not marker.exists()
    assert not store.exists("tables/validation_cohort.parquet")
    assert not store.exists("tables/validation_phenotypes.parquet")


# Files of only trusted types, or none at all, that are still not the classifier.
NOT_THE_MODELS: list[tuple[str, Callable[[], bytes], str]] = [
    ("not_a_zip", lambda: b"\x80\x04not a skops file", "not a readable skops file"),
    ("another_estimator", lambda: _models_but(LogisticRegression()), "not a DecisionTree"),
    ("a_list", lambda: sio.dumps([1, 2]), "not the models"),
]


def _models_but(tree: Any) -> bytes:
    return sio.dumps({"decision_tree": tree, "random_forest": LogisticRegression()})


@pytest.mark.parametrize(
    ("data", "says"), [(d, s) for _, d, s in NOT_THE_MODELS], ids=[i for i, _, _ in NOT_THE_MODELS]
)
def test_a_skops_file_without_the_models_is_refused(
    original: Path, store: RunStore, client: Client, data: Callable[[], bytes], says: str
) -> None:
    store.write_bytes(CLASSIFIER, data())
    with pytest.raises(CheckpointError, match=says):
        _validate(original, store, client)
    assert not store.exists("tables/validation_cohort.parquet")


def test_the_stored_classifier_holds_only_the_trusted_types(original: Path) -> None:
    run = RunStore(str(original / "run"))
    assert not run.exists(LEGACY_CLASSIFIER)
    # Exactly the list: a type the models no longer hold should leave it.
    assert sio.get_untrusted_types(data=run.read_bytes(CLASSIFIER)) == list(TRUSTED_TYPES)


def test_the_round_trip_predicts_as_the_fitted_models(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 90
    phenotype = np.repeat([1, 2, 3], n // 3)
    ab = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])[phenotype - 1] + rng.normal(size=(n, 2))
    x = pd.DataFrame({"a": ab[:, 0], "b": ab[:, 1], "c": rng.normal(size=n)})
    duration = rng.exponential(5.0, n)
    event = rng.integers(0, 2, n)
    result = evaluate_classifiers(
        x, phenotype, duration, event, ClassifierParams(folds=3, forest_trees=15), seed=1
    )
    store = RunStore(str(tmp_path / "run"))
    write_classifier(
        store,
        result.models,
        result.features,
        result.phenotype_survival,
        predict_with="random_forest",
        horizon=3.0,
        time_unit="years",
    )
    saved = read_classifier(store)
    assert saved.features == result.features
    assert saved.phenotype_survival == pytest.approx(result.phenotype_survival)
    new = pd.DataFrame(rng.normal(0, 3, size=(40, 3)), columns=["c", "b", "a"])
    for name, model in result.models.items():
        assert np.array_equal(
            predict_phenotype(saved.models, saved.features, new, name),
            predict_phenotype(result.models, result.features, new, name),
        )
        data = new[result.features]
        np.testing.assert_array_equal(
            saved.models[name].predict_proba(data), model.predict_proba(data)
        )
