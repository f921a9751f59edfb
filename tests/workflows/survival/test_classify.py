"""Phenotype and survival classifiers (stage ``classify_phenotypes``): the figures a user
reads in the report are the ones sklearn and lifelines give when computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_gbsg2
from sklearn.cluster import AgglomerativeClustering
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from pipeline.core.tables import table_schema
from pipeline.errors import ParameterError
from pipeline.workflows.survival.classify import (
    ClassifierParams,
    ClassifierResult,
    evaluate_classifiers,
    predict_phenotype,
    survival_status,
    survival_target,
)

SEED = 7
PARAMS = ClassifierParams(forest_trees=50)


def _cohort(n: int = 150, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Three well-separated phenotypes in (a, b), a noise category, phenotype-specific survival.

    The index is not 0..n-1, as a filtered cohort's need not be.
    """
    rng = np.random.default_rng(seed)
    phenotype = np.repeat([1, 2, 3], n // 3)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    ab = centres[phenotype - 1] + rng.normal(0, 1.0, size=(n, 2))
    X = pd.DataFrame(
        {"a": ab[:, 0], "b": ab[:, 1], "grade[high]": rng.integers(0, 2, n).astype(float)},
        index=pd.RangeIndex(100, 100 + n),
    )
    true_time = rng.exponential(np.array([10.0, 4.0, 1.5])[phenotype - 1])
    censor = rng.uniform(0.5, 10.0, n)
    duration = np.minimum(true_time, censor)
    event = (true_time <= censor).astype(np.int64)
    return X, phenotype, duration, event


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    return _cohort()


@pytest.fixture(scope="module")
def result(cohort: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]) -> ClassifierResult:
    X, phenotype, duration, event = cohort
    return evaluate_classifiers(X, phenotype, duration, event, PARAMS, seed=SEED)


def _tree(seed: int = SEED) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(
        max_depth=PARAMS.tree_max_depth, min_samples_leaf=PARAMS.min_samples_leaf, random_state=seed
    )


def _forest(seed: int = SEED) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=PARAMS.forest_trees,
        max_depth=PARAMS.forest_max_depth,
        min_samples_leaf=PARAMS.min_samples_leaf,
        random_state=seed,
        n_jobs=1,
    )


def _metric(result: ClassifierResult, model: str, target: str, metric: str) -> pd.Series:
    m = result.metrics
    rows = m[(m.model == model) & (m.target == target) & (m.metric == metric)]
    assert len(rows) == 1, (model, target, metric)
    return rows.iloc[0]


def test_survival_status_boundaries() -> None:
    # event before, event exactly at, censored exactly at, censored before, censored after,
    # event after the horizon
    duration = np.array([1.0, 3.0, 3.0, 2.0, 5.0, 4.0])
    event = np.array([1, 1, 0, 0, 0, 1])
    status = survival_status(duration, event, 3.0)
    np.testing.assert_array_equal(status, [0.0, 0.0, 1.0, np.nan, 1.0, 1.0])


def test_survival_status_agrees_with_kaplan_meier_boundary() -> None:
    # Everyone's status known: the share alive equals KM survival at the horizon, because
    # both count an event at exactly the horizon as a death.
    duration = np.array([1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
    event = np.ones(6, dtype=int)
    km = KaplanMeierFitter().fit(duration, event).survival_function_at_times(3.0).iloc[0]
    assert np.nanmean(survival_status(duration, event, 3.0)) == pytest.approx(km)


@pytest.mark.parametrize(
    ("horizon", "unit", "name"),
    [
        (3.0, "years", "survival_3y"),
        (2.5, "years", "survival_2.5y"),
        (36, "months", "survival_36m"),
        (6, "weeks", "survival_6w"),
        (90, "days", "survival_90d"),
    ],
)
def test_survival_target_names(horizon: float, unit: str, name: str) -> None:
    assert survival_target(horizon, unit) == name


def test_phenotype_metrics_and_confusion_match_sklearn(
    cohort: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray], result: ClassifierResult
) -> None:
    X, phenotype, _, _ = cohort
    values = X.to_numpy()
    skf = StratifiedKFold(n_splits=PARAMS.folds, shuffle=True, random_state=SEED)
    oof = np.zeros(len(phenotype), dtype=int)
    acc, f1 = [], []
    for train, test in skf.split(values, phenotype):
        pred = _tree().fit(values[train], phenotype[train]).predict(values[test])
        oof[test] = pred
        acc.append(accuracy_score(phenotype[test], pred))
        f1.append(f1_score(phenotype[test], pred, average="macro"))

    row = _metric(result, "decision_tree", "phenotype", "accuracy")
    assert row["mean"] == pytest.approx(np.mean(acc))
    assert row["sd"] == pytest.approx(np.std(acc, ddof=1))
    assert (row["folds"], row["n"]) == (PARAMS.folds, len(phenotype))
    row = _metric(result, "decision_tree", "phenotype", "macro_f1")
    assert row["mean"] == pytest.approx(np.mean(f1))
    assert row["sd"] == pytest.approx(np.std(f1, ddof=1))

    c = result.confusion
    tree = c[(c.model == "decision_tree") & (c.target == "phenotype")]
    assert tree["count"].sum() == len(phenotype)
    assert len(tree) == 9  # complete 3x3 matrix, zero cells included
    matrix = tree.pivot(index="true", columns="predicted", values="count")
    labels = ["1", "2", "3"]
    expected = confusion_matrix(phenotype, oof, labels=[1, 2, 3])
    np.testing.assert_array_equal(matrix.loc[labels, labels].to_numpy(), expected)

    # every model/target's matrix counts every scored patient once
    sums = c.groupby(["model", "target"])["count"].sum()
    n_known = int((~np.isnan(survival_status(cohort[2], cohort[3], PARAMS.horizon))).sum())
    for (model, target), total in sums.items():
        assert total == (len(phenotype) if target == "phenotype" else n_known), model
    survival = c[c.target == "survival_3y"]
    assert set(survival["true"]) == set(survival["predicted"]) == {"died", "alive"}


def test_direct_survival_metrics_match_sklearn(
    cohort: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray], result: ClassifierResult
) -> None:
    X, _, duration, event = cohort
    values = X.to_numpy()
    status = survival_status(duration, event, PARAMS.horizon)
    known = np.flatnonzero(~np.isnan(status))  # censored before the horizon: not scored
    y = status[known].astype(int)
    skf = StratifiedKFold(n_splits=PARAMS.folds, shuffle=True, random_state=SEED)
    aucs, accs = [], []
    for train, test in skf.split(known.reshape(-1, 1), y):
        rf = _forest().fit(values[known[train]], y[train])
        aucs.append(roc_auc_score(y[test], rf.predict_proba(values[known[test]])[:, 1]))
        accs.append(accuracy_score(y[test], rf.predict(values[known[test]])))
    row = _metric(result, "random_forest", "survival_3y", "roc_auc")
    assert row["mean"] == pytest.approx(np.mean(aucs))
    assert row["n"] == len(known) < len(X)
    assert _metric(result, "random_forest", "survival_3y", "accuracy")["mean"] == pytest.approx(
        np.mean(accs)
    )


def test_phenotype_route_probability_is_km_of_predicted_phenotype(
    cohort: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray], result: ClassifierResult
) -> None:
    X, phenotype, duration, event = cohort
    values = X.to_numpy()
    status = survival_status(duration, event, PARAMS.horizon)
    known = np.flatnonzero(~np.isnan(status))
    skf = StratifiedKFold(n_splits=PARAMS.folds, shuffle=True, random_state=SEED)
    _, test_k = next(iter(skf.split(known.reshape(-1, 1), status[known].astype(int))))
    test = known[test_k]
    # the phenotype classifier and KM curves use every other patient, censored ones too
    train = np.setdiff1d(np.arange(len(X)), test)
    predicted = _tree().fit(values[train], phenotype[train]).predict(values[test])
    expected = []
    for p in predicted:
        mask = phenotype[train] == p
        km = KaplanMeierFitter().fit(duration[train][mask], event[train][mask])
        expected.append(km.survival_function_at_times(PARAMS.horizon).iloc[0])

    pr = result.predictions
    fold1 = pr[(pr.model == "phenotype_decision_tree") & (pr.fold == 1)].set_index("index")
    got = fold1.loc[X.index[test]]
    np.testing.assert_allclose(got["probability"].to_numpy(), expected)
    np.testing.assert_array_equal(
        got["predicted"].to_numpy(), np.where(np.array(expected) >= 0.5, "alive", "died")
    )
    np.testing.assert_array_equal(
        got["true"].to_numpy(), np.where(status[test] == 1, "alive", "died")
    )


def test_importances_sum_to_one_and_rank_the_informative_feature_first() -> None:
    rng = np.random.default_rng(3)
    n = 120
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["signal", "noise1", "noise2", "noise3"])
    phenotype = np.digitize(X["signal"], [-0.5, 0.5]) + 1  # only `signal` decides
    duration = rng.exponential(3.0, n)
    event = rng.integers(0, 2, n)
    res = evaluate_classifiers(X, phenotype, duration, event, PARAMS, seed=SEED)
    imp = res.importance
    assert set(imp.model) == {"decision_tree", "random_forest"}
    assert set(imp.target) == {"phenotype", "survival_3y"}
    for _, part in imp.groupby(["model", "target"]):
        assert part["importance"].sum() == pytest.approx(1.0)
        assert sorted(part.feature) == sorted(X.columns)
    top = imp[imp.target == "phenotype"].groupby("model").first()["feature"]
    assert (top == "signal").all()


def test_determinism() -> None:
    cohort = _cohort(n=60)
    params = PARAMS.model_copy(update={"folds": 3})
    first = evaluate_classifiers(*cohort, params, seed=SEED)
    again = evaluate_classifiers(*cohort, params, seed=SEED)
    pd.testing.assert_frame_equal(again.metrics, first.metrics)
    pd.testing.assert_frame_equal(again.confusion, first.confusion)
    pd.testing.assert_frame_equal(again.importance, first.importance)
    pd.testing.assert_frame_equal(again.predictions, first.predictions)
    other = evaluate_classifiers(*cohort, params, seed=SEED + 1)

    def rf(r: ClassifierResult) -> pd.Series:
        i = r.importance
        return i[i.model == "random_forest"].set_index(["target", "feature"])["importance"]

    assert not np.allclose(rf(other).sort_index(), rf(first).sort_index())


def test_output_columns_are_the_documented_schemas(result: ClassifierResult) -> None:
    for name, frame in [
        ("classifier_metrics", result.metrics),
        ("classifier_confusion", result.confusion),
        ("classifier_importance", result.importance),
    ]:
        assert list(frame.columns) == list(table_schema(name).columns), name
    assert set(result.metrics.model) == {
        "decision_tree",
        "random_forest",
        "phenotype_decision_tree",
        "phenotype_random_forest",
    }
    assert set(result.metrics[result.metrics.target == "phenotype"].metric) == {
        "accuracy",
        "macro_f1",
    }


def test_phenotype_smaller_than_folds_is_refused() -> None:
    X, phenotype, duration, event = _cohort(n=60)
    phenotype = phenotype.copy()
    phenotype[:17] = 2  # phenotype 1 keeps 3 patients
    with pytest.raises(ParameterError, match=r"phenotype 1 has 3 patients.*folds.*min_size"):
        evaluate_classifiers(X, phenotype, duration, event, PARAMS, seed=SEED)


def test_too_few_known_statuses_is_refused() -> None:
    X, phenotype, _, _ = _cohort(n=60)
    # everyone followed past the horizon alive, except three deaths: too few for five folds
    duration = np.full(60, 5.0)
    event = np.zeros(60, dtype=np.int64)
    duration[[0, 25, 45]], event[[0, 25, 45]] = 1.0, 1
    with pytest.raises(
        ParameterError, match=r"3 patients are known to have died.*shorter horizon.*fewer folds"
    ):
        evaluate_classifiers(X, phenotype, duration, event, PARAMS, seed=SEED)


def test_predict_phenotype_reorders_and_names_missing_features(
    cohort: tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray], result: ClassifierResult
) -> None:
    X = cohort[0]
    shuffled = X[["grade[high]", "b", "a"]].assign(extra=1.0)
    for which in ("decision_tree", "random_forest"):
        got = predict_phenotype(result.models, result.features, shuffled, which)
        np.testing.assert_array_equal(got, result.models[which].predict(X))
        assert got.dtype == np.int64
    with pytest.raises(ParameterError, match=r"grade\[high\]"):
        predict_phenotype(
            result.models, result.features, X.drop(columns="grade[high]"), "random_forest"
        )
    with pytest.raises(ParameterError, match="boosting"):
        predict_phenotype(result.models, result.features, X, "boosting")


def test_gbsg2_phenotypes_are_recognised() -> None:
    """A real cohort: phenotypes from Ward clustering of the standardised numeric covariates."""
    data = load_gbsg2()
    numeric = ["age", "tsize", "pnodes", "progrec", "estrec"]
    X = data[numeric].astype(float)
    X["horTh[yes]"] = (data["horTh"] == "yes").astype(float)
    scaled = StandardScaler().fit_transform(data[numeric])
    phenotype = AgglomerativeClustering(n_clusters=3, linkage="ward").fit_predict(scaled) + 1
    duration = data["time"].to_numpy() / 365.25
    event = data["cens"].to_numpy()
    res = evaluate_classifiers(X, phenotype, duration, event, PARAMS, seed=SEED)

    assert _metric(res, "random_forest", "phenotype", "accuracy")["mean"] > 0.8
    for model in ("random_forest", "phenotype_random_forest"):
        assert 0.55 < _metric(res, model, "survival_3y", "roc_auc")["mean"] < 1.0
    assert res.features == [*numeric, "horTh[yes]"]
    for p, s in res.phenotype_survival.items():
        km = KaplanMeierFitter().fit(duration[phenotype == p], event[phenotype == p])
        assert s == pytest.approx(km.survival_function_at_times(3.0).iloc[0])
    assert set(res.phenotype_survival) == {1, 2, 3}
