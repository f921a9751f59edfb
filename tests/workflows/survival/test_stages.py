"""The survival stages run as a job: tables written, deterministic, external cohort errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from distributed import Client
from lifelines import CoxPHFitter
from lifelines.datasets import load_gbsg2

from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import CohortError, JobSpecError, StageError

COVARIATES = """
      covariates:
        - {name: age, kind: numeric, unit: years}
        - {name: menostat, kind: categorical}
        - {name: tsize, kind: numeric, unit: mm}
        - {name: tgrade, kind: categorical, levels: {I: I, II: II, III: III}}
        - {name: pnodes, kind: numeric}
        - {name: progrec, kind: numeric}
        - {name: horTh, kind: categorical, levels: {"no": "no", "yes": "yes"}}
"""


def _job(tmp_path: Path, external: Path, *overrides: str, store: str = "run") -> str:
    return f"""
name: survival_test
store: {tmp_path / store}
seed: 0
stages:
  - stage: cohort
    params:
      source: {tmp_path / "development.csv"}
      id: pid
      duration: time
      event: cens
{COVARIATES}
  - stage: kaplan_meier
    params: {{group_by: [tgrade, pnodes], cuts: {{pnodes: [3, 9]}}}}
  - stage: cox
    params: {{bootstrap: 20}}
  - stage: phenotypes
    params: {{covariates: [tsize, tgrade, pnodes, progrec], k_range: [2, 5], bootstrap: 10}}
  - stage: classify_phenotypes
    params: {{folds: 3, forest_trees: 30}}
  - stage: validate_external
    params: {{source: {external}, bootstrap: 20}}
"""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gbsg2")
    df = load_gbsg2()
    df.insert(0, "pid", [f"P{i:04d}" for i in range(len(df))])
    dev, ext = df.iloc[:480], df.iloc[480:]
    dev.to_csv(folder / "development.csv", index=False)
    ext.to_csv(folder / "external.csv", index=False)
    return folder


def _run(folder: Path, client: Client, store: str, external: str = "external.csv") -> RunStore:
    job = parse_job(_job(folder, folder / external, store=store))
    run_job(job, client=client)
    return RunStore(str(folder / store))


@pytest.fixture(scope="module")
def first_run(tables: Path, client: Client) -> RunStore:
    """The whole job, run once for the tests that read its store (whatever their order)."""
    return _run(tables, client, "run")


def test_a_job_writes_every_table_and_matches_lifelines(tables: Path, first_run: RunStore) -> None:
    store = first_run
    for name in [
        "cohort",
        "cohort_summary",
        "km_summary",
        "logrank",
        "cox_univariate",
        "cox_multivariate",
        "phenotypes",
        "phenotype_km_summary",
        "classifier_metrics",
        "validation_km_summary",
        "survival_metrics",
    ]:
        assert len(read_table(store, name)), name
    multi = read_table(store, "cox_multivariate")
    assert {"covariate", "coef", "hr", "hr_lower", "hr_upper", "p"} <= set(multi.columns)
    # The multivariate model is lifelines' fit on the covariates the screen selected.
    uni = read_table(store, "cox_univariate")
    chosen = sorted(set(uni.loc[uni.selected, "variable"]))
    dev = pd.read_csv(tables / "development.csv")
    x = pd.get_dummies(dev[chosen], drop_first=True, dtype=float)
    cph = CoxPHFitter().fit(x.assign(time=dev.time / 365.25, cens=dev.cens), "time", "cens")
    got = multi.set_index("covariate")["coef"]
    for term, coef in cph.params_.items():
        name = term if term in got.index else f"{term.rsplit('_', 1)[0]}[{term.rsplit('_', 1)[1]}]"
        assert got[name] == pytest.approx(coef, rel=1e-6), term
    metrics = read_table(store, "survival_metrics").set_index(["analysis", "cohort", "metric"])
    conc = metrics.loc[("cox_multivariate", "development", "concordance")]
    assert conc["lower"] <= conc["value"] <= conc["upper"] and conc["replicates"] == 20
    assert ("cox_multivariate", "validation", "concordance") in metrics.index
    summary = read_table(store, "cohort_summary")
    assert set(summary.cohort) == {"development", "validation"}
    predicted = read_table(store, "validation_phenotypes")
    assert len(predicted) == 686 - 480
    # The classifier is saved as skops, which cannot run code when loaded; never as a pickle.
    assert store.exists("models/phenotype_classifier.skops")
    assert not store.exists("models/phenotype_classifier.pkl")


def test_the_same_job_gives_the_same_tables(
    tables: Path, client: Client, first_run: RunStore
) -> None:
    a, b = first_run, _run(tables, client, "again")
    for name in ["survival_metrics", "phenotype_selection", "classifier_metrics", "phenotypes"]:
        pd.testing.assert_frame_equal(read_table(a, name), read_table(b, name))


def test_an_external_cohort_without_a_covariate_stops_with_the_rename_hint(
    tables: Path, client: Client
) -> None:
    ext = pd.read_csv(tables / "external.csv").rename(columns={"tsize": "tumour_size"})
    ext.to_csv(tables / "renamed.csv", index=False)
    # The development cohort's column map is known once its stage has run: the external table
    # is checked then, and what the earlier stages wrote stays.
    with pytest.raises(StageError, match=r"`columns: \{tumour_size: tsize\}`"):
        _run(tables, client, "renamed", "renamed.csv")
    assert RunStore(str(tables / "renamed")).exists("tables/classifier_metrics.parquet")


def test_an_unseen_category_is_an_error_or_missing_as_asked(tables: Path, client: Client) -> None:
    ext = pd.read_csv(tables / "external.csv")
    ext.loc[ext.index[:3], "tgrade"] = "IV"
    ext.to_csv(tables / "unseen.csv", index=False)
    with pytest.raises(StageError, match="IV"):
        _run(tables, client, "unseen", "unseen.csv")
    job = parse_job(
        _job(tables, tables / "unseen.csv", store="unseen_missing"),
        overrides=["validate_external.unseen=missing"],
    )
    run_job(job, client=client)
    store = RunStore(str(tables / "unseen_missing"))
    # Under the development cohort's `drop` policy the three rows are dropped, and counted.
    assert len(read_table(store, "validation_cohort")) == len(ext) - 3
    record = store.read_json("models/validation_cohort.json")
    assert record["dropped_missing"] == 3


def test_a_bad_development_table_stops_before_any_stage(tables: Path, client: Client) -> None:
    dev = pd.read_csv(tables / "development.csv")
    dev.loc[[4, 9], "time"] = -1
    dev.to_csv(tables / "bad.csv", index=False)
    text = _job(tables, tables / "external.csv", store="bad").replace("development.csv", "bad.csv")
    with pytest.raises(CohortError, match="rows 5, 10"):
        run_job(parse_job(text), client=client)
    assert not (tables / "bad" / "tables").exists()


def test_a_stage_without_its_inputs_names_the_missing_stage(tables: Path, client: Client) -> None:
    text = f"""
name: t
store: {tables / "lonely"}
stages:
  - stage: cox
"""
    with pytest.raises(StageError, match="put a `cohort` stage before"):
        run_job(parse_job(text), client=client)


def test_external_validation_of_the_cox_model_alone(tables: Path, client: Client) -> None:
    # A job without phenotypes: the external cohort validates the Cox model only.
    text = _job(tables, tables / "external.csv", store="cox_only")
    head, _, tail = text.partition("  - stage: phenotypes")
    cox_only = head + "  - stage: validate_external" + tail.split("  - stage: validate_external")[1]
    run_job(parse_job(cox_only), client=client)
    store = RunStore(str(tables / "cox_only"))
    metrics = read_table(store, "survival_metrics")
    validation = metrics[metrics.cohort == "validation"]
    assert validation["metric"].tolist() == ["concordance"]
    assert not store.exists("tables/validation_phenotypes.parquet")
    # No covariate passes a threshold of 1e-12: there is nothing left to validate.
    strict = cox_only.replace(
        "params: {bootstrap: 20}", "params: {bootstrap: 20, threshold: 1.0e-12}", 1
    )
    with pytest.raises(StageError, match="nothing to validate"):
        run_job(parse_job(strict), client=client)


def test_covariate_names_are_checked_against_the_cohort_when_the_spec_is_validated(
    tables: Path,
) -> None:
    text = _job(tables, tables / "external.csv")
    with pytest.raises(JobSpecError) as info:
        parse_job(
            text,
            "survival.yaml",
            overrides=[
                "kaplan_meier.group_by=[tgrad]",
                "cox.include=[age, nodes]",
                "phenotypes.weights={age: 0.5}",
            ],
        )
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert "stages[1].params.group_by: 'tgrad' is not one of" in problems[0]
    assert "did you mean 'tgrade'?" in problems[0]
    assert "stages[1].params.cuts.pnodes" in problems[1]
    assert "['nodes']" not in problems[2] and "'nodes' is not one of" in problems[2]
    assert "'age' is not one of the clustered covariates" in problems[3]
    assert problems[0].startswith("survival.yaml:")
