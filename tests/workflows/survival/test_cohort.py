"""Loading and checking clinical tables: every problem at once, with its rows and fix."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.tables import table_schema
from pipeline.errors import CohortError
from pipeline.workflows.survival.cohort import (
    SUMMARY_COLUMNS,
    Cohort,
    cohort_from_table,
    load_cohort,
    load_external,
    read_source,
)
from pipeline.workflows.survival.spec import (
    CohortParams,
    CohortRecord,
    CohortSource,
    Condition,
    Covariate,
    ExternalSource,
)

N = 20
GRADE_LEVELS = {"1": "G1", "2": "G2", "3": "G3"}


def base_table() -> pd.DataFrame:
    """A small valid clinical table: 20 patients, days, 0/1 events, two covariates, a date."""
    i = np.arange(N)
    return pd.DataFrame(
        {
            "pid": 100 + i,
            "time": 30.0 * (i + 1),
            "status": (i % 3 == 0).astype(int),
            "age": 40 + (i * 7) % 31,
            "grade": 1 + i % 3,
            "diag": [f"{1 + i % 28:02d}-{1 + i % 12:02d}-{1980 + i % 10}" for i in range(N)],
        }
    )


def params(path: Path | str, **update: Any) -> CohortParams:
    base: dict[str, Any] = {
        "source": str(path),
        "duration": "time",
        "event": "status",
        "id": "pid",
        "dates": {"diag": "%d-%m-%Y"},
        "covariates": [
            Covariate(name="age", kind="numeric", unit="years"),
            Covariate(name="grade", kind="categorical", levels=GRADE_LEVELS),
        ],
    }
    base.update(update)
    return CohortParams(**base)


def write_csv(tmp_path: Path, df: pd.DataFrame, name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def problems_of(p: CohortParams) -> list[str]:
    with pytest.raises(CohortError) as info:
        load_cohort(p)
    return info.value.problems


def set_rows(column: str, rows: list[int], value: Any) -> Callable[[pd.DataFrame], None]:
    """Set ``column`` in the given data rows (1 = first after the header)."""

    def corrupt(df: pd.DataFrame) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            df[column] = df[column].astype(object)
        df.loc[[r - 1 for r in rows], column] = value

    return corrupt


def no_change(df: pd.DataFrame) -> None:
    return None


def rename_age(df: pd.DataFrame) -> None:
    df.rename(columns={"age": "agee"}, inplace=True)


def constant_age(df: pd.DataFrame) -> None:
    df["age"] = 50


def no_events(df: pd.DataFrame) -> None:
    df["status"] = 0


# (description, corruption of the table, parameter changes, substrings of one problem)
BAD_TABLES: list[tuple[str, Callable[[pd.DataFrame], None], dict[str, Any], list[str]]] = [
    (
        "negative duration",
        set_rows("time", [3, 7], -5.0),
        {},
        ["duration column 'time'", "rows 3, 7", "negative"],
    ),
    ("missing duration", set_rows("time", [3, 7], np.nan), {}, ["'time'", "rows 3, 7", "missing"]),
    ("event 2", set_rows("status", [3, 7], 2), {}, ["event column 'status'", "rows 3, 7", "'2'"]),
    ("event maybe", set_rows("status", [4], "maybe"), {}, ["'status'", "row 4 ", "'maybe'"]),
    (
        "unknown category",
        set_rows("grade", [5, 9], 4),
        {},
        ["covariate grade: value '4' in rows 5, 9 is not a declared level (1, 2, 3)", "levels"],
    ),
    ("constant covariate", constant_age, {}, ["covariate age", "remove it from covariates"]),
    (
        "covariate mostly missing",
        set_rows("age", [1, 2, 3, 4, 5, 6], np.nan),
        {},
        ["covariate age", "30.0%", "6 of 20", "rows 1, 2, 3, 4, 5, 6", "max_fraction"],
    ),
    ("duplicate id", set_rows("pid", [3, 7], 555), {}, ["id column 'pid'", "rows 3, 7", "'555'"]),
    (
        "text in a numeric covariate",
        set_rows("age", [3, 7], "old"),
        {},
        ["covariate age", "rows 3, 7", "not numbers", "'old'"],
    ),
    ("missing column", rename_age, {}, ["column 'age'", "did you mean 'agee'"]),
    ("bad date", set_rows("diag", [3], "31-31-1985"), {}, ["'diag'", "row 3 ", "%d-%m-%Y"]),
    (
        "dates column not in the table",
        no_change,
        {"dates": {"diagnosed": "%d-%m-%Y"}},
        ["dates: column 'diagnosed'", "did you mean 'diag'"],
    ),
    ("bad date format", no_change, {"dates": {"diag": "%Q"}}, ["'%Q'", "strptime"]),
    (
        "where on a missing column",
        no_change,
        {"where": [Condition(column="diagnosis", op="<", value="1985-01-01")]},
        ["where: column 'diagnosis'", "did you mean 'diag'"],
    ),
    (
        "no rows after where",
        no_change,
        {"where": [Condition(column="age", op=">", value=1000)]},
        ["no rows left after `where`", "20"],
    ),
    ("no events", no_events, {}, ["no events", "'status'"]),
    (
        "where value of the wrong type",
        no_change,
        {"where": [Condition(column="age", op="<", value="old")]},
        ["where: cannot compare column 'age'", "'old'"],
    ),
    (
        "many rows listed briefly",
        set_rows("time", list(range(1, 16)), -1.0),
        {},
        ["rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 5 more"],
    ),
]


@pytest.mark.parametrize(
    ("description", "corrupt", "update", "expected"),
    BAD_TABLES,
    ids=[case[0] for case in BAD_TABLES],
)
def test_bad_table_is_reported(
    tmp_path: Path,
    description: str,
    corrupt: Callable[[pd.DataFrame], None],
    update: dict[str, Any],
    expected: list[str],
) -> None:
    df = base_table()
    corrupt(df)
    path = write_csv(tmp_path, df)
    problems = problems_of(params(path, **update))
    # One problem line carries all the expected pieces (column, rows, fix).
    matching = [p for p in problems if all(e in p + " " for e in expected)]
    assert matching, f"{description}: no problem mentions {expected}: {problems}"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    df = base_table()
    set_rows("time", [3], -1.0)(df)
    set_rows("grade", [7, 8], 9)(df)
    set_rows("status", [12], "maybe")(df)
    path = write_csv(tmp_path, df)
    with pytest.raises(CohortError) as info:
        load_cohort(params(path))
    err = info.value
    assert len(err.problems) == 3
    text = str(err)
    assert "row 3 " in text and "rows 7, 8" in text and "row 12 " in text
    assert str(path) in text
    # The row checks still run when a column is absent; the absent one is reported too.
    df = df.drop(columns="pid")
    problems = problems_of(params(write_csv(tmp_path, df)))
    assert len(problems) == 4 and any("column 'pid' (id)" in p for p in problems)


def test_rows_are_source_rows_after_where(tmp_path: Path) -> None:
    df = base_table()
    set_rows("time", [15], -1.0)(df)
    path = write_csv(tmp_path, df)
    where = [Condition(column="pid", op=">=", value=110)]  # keeps rows 11..20
    problems = problems_of(params(path, where=where))
    assert problems == [p for p in problems if "row 15 " in p]
    df.loc[14, "time"] = 1.0
    cohort = load_cohort(params(write_csv(tmp_path, df), where=where))
    assert cohort.frame["row"].tolist() == list(range(11, 21))
    assert cohort.record.source_rows == 20 and cohort.record.filtered_out == 10
    assert cohort.frame["patient"].tolist() == [str(100 + r - 1) for r in range(11, 21)]


def test_valid_frame_layout(tmp_path: Path) -> None:
    df = base_table()
    cohort = load_cohort(params(write_csv(tmp_path, df)))
    frame = cohort.frame
    assert list(frame.columns) == ["patient", "row", "duration", "event", "age", "grade"]
    assert frame.index.equals(pd.RangeIndex(N))
    assert frame["row"].dtype == np.int64 and frame["event"].dtype == np.int64
    assert frame["duration"].dtype == np.float64 and frame["age"].dtype == np.float64
    assert list(frame["grade"].cat.categories) == ["G1", "G2", "G3"]
    assert frame["grade"].astype(str).tolist() == [f"G{g}" for g in df["grade"]]
    np.testing.assert_allclose(frame["duration"], df["time"] / 365.25)
    record = cohort.record
    assert (record.n, record.events, record.dropped_missing) == (N, int(df["status"].sum()), 0)
    assert record.params.covariates[1].reference == "G1"
    assert list(cohort.summary.columns) == list(SUMMARY_COLUMNS)
    assert set(SUMMARY_COLUMNS) == set(table_schema("cohort_summary").columns)
    age = cohort.summary.query("covariate == 'age'").iloc[0]
    assert age["value"] == df["age"].median() and age["unit"] == "years"
    assert age["q1"] == df["age"].quantile(0.25) and age["q3"] == df["age"].quantile(0.75)
    grade = cohort.summary.query("covariate == 'grade'")
    assert grade["level"].tolist() == ["G1", "G2", "G3"]
    assert grade["n"].sum() == N
    np.testing.assert_allclose(grade["value"], df["grade"].value_counts().sort_index() / N)
    assert (cohort.summary["cohort"] == "development").all()


def test_event_coding_and_event_values(tmp_path: Path) -> None:
    df = base_table()
    expected = df["status"].tolist()
    df["status"] = np.where(df["status"] == 1, "TRUE", "false")
    assert load_cohort(params(write_csv(tmp_path, df))).frame["event"].tolist() == expected
    df["status"] = np.where(np.array(expected) == 1, "Dead", "Alive")
    p = params(write_csv(tmp_path, df), event_values={"Dead": 1, "Alive": 0})
    assert load_cohort(p).frame["event"].tolist() == expected
    problems = problems_of(params(write_csv(tmp_path, df)))
    assert any("event_values" in p and "'Dead'" in p for p in problems)


def test_levels_resolved_from_data(tmp_path: Path) -> None:
    df = base_table()
    df["grade"] = df["grade"].map({1: "low", 2: "mid", 3: "high"})
    df["stage"] = [10, 2, 1][0:1] * 5 + [2] * 5 + [1] * 5 + [10] * 5
    covariates = [
        Covariate(name="grade", kind="categorical", reference="mid"),
        Covariate(name="stage", kind="categorical"),
    ]
    cohort = load_cohort(params(write_csv(tmp_path, df), covariates=covariates))
    grade, stage = cohort.record.params.covariates
    assert grade.levels == {"high": "high", "low": "low", "mid": "mid"}
    assert grade.reference == "mid"
    assert stage.levels == {"1": "1", "2": "2", "10": "10"}  # numeric order, not text order
    assert stage.reference == "1"
    assert list(cohort.frame["stage"].cat.categories) == ["1", "2", "10"]


def test_float_category_values_match_integer_levels(tmp_path: Path) -> None:
    df = base_table()
    df["grade"] = df["grade"].astype(float)
    df.loc[4, "grade"] = np.nan  # a missing value makes pandas read the column as float
    cohort = load_cohort(params(write_csv(tmp_path, df)))
    assert cohort.record.dropped_missing == 1
    assert set(cohort.frame["grade"].astype(str)) == {"G1", "G2", "G3"}


def test_drop_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    df = base_table()
    df.loc[[1, 4], "age"] = np.nan
    df["grade"] = df["grade"].astype(object)
    df.loc[8, "grade"] = ""  # an empty text cell is missing too
    with caplog.at_level("INFO", logger="pipeline.workflows.survival.cohort"):
        cohort = load_cohort(params(write_csv(tmp_path, df)))
    assert cohort.record.dropped_missing == 3 and cohort.record.n == N - 3
    assert cohort.record.impute == {}
    assert 2 not in cohort.frame["row"].tolist() and 9 not in cohort.frame["row"].tolist()
    assert "dropped 3 rows" in caplog.text
    summary = cohort.summary.set_index(["covariate", "level"])
    assert summary.loc[("age", ""), "missing"] == 2 and summary.loc[("age", ""), "n"] == N - 3
    assert cohort.summary.query("covariate == 'grade'")["missing"].tolist() == [1, 1, 1]
    assert (cohort.summary["imputed"] == 0).all()


def test_impute_policy(tmp_path: Path) -> None:
    df = base_table()
    df.loc[[1, 4], "age"] = np.nan
    df.loc[[8], "grade"] = np.nan
    p = params(write_csv(tmp_path, df), missing={"strategy": "impute"})
    cohort = load_cohort(p)
    median = df["age"].median()  # pandas skips the missing values
    mode = GRADE_LEVELS[str(int(df["grade"].mode().iloc[0]))]
    assert cohort.record.impute == {"age": median, "grade": mode}
    assert cohort.record.n == N and cohort.record.dropped_missing == 0
    frame = cohort.frame.set_index("row")
    assert frame.loc[[2, 5], "age"].tolist() == [median, median]
    assert frame.loc[9, "grade"] == mode
    summary = cohort.summary.set_index(["covariate", "level"])
    assert summary.loc[("age", ""), "imputed"] == 2 and summary.loc[("age", ""), "missing"] == 2
    assert cohort.summary.query("covariate == 'grade'")["imputed"].tolist() == [1, 1, 1]


def test_impute_tie_takes_first_level(tmp_path: Path) -> None:
    df = base_table().iloc[:12].copy()
    df["grade"] = [3, 1, 3, 1, 3, 1, 2, 2, 2, 3, 1, np.nan]  # 1 and 3 tie (4 each)
    df["status"] = 1
    p = params(write_csv(tmp_path, df), missing={"strategy": "impute", "max_fraction": 0.5})
    cohort = load_cohort(p)
    assert cohort.record.impute["grade"] == "G1"


def test_lifelines_gbsg2() -> None:
    covariates = [
        Covariate(name="age", kind="numeric", unit="years"),
        Covariate(name="tgrade", kind="categorical"),
        Covariate(name="horTh", kind="categorical", levels={"no": "no", "yes": "yes"}),
    ]
    p = CohortParams(source="lifelines:gbsg2", duration="time", event="cens", covariates=covariates)
    cohort = load_cohort(p)
    assert cohort.record.n == 686 and cohort.record.events == 299
    assert cohort.record.params.covariates[1].levels == {"I": "I", "II": "II", "III": "III"}
    assert cohort.frame["patient"].iloc[0] == "row 1"


def test_lifelines_lymph_node_dates_where_levels_and_units() -> None:
    raw = read_source(CohortSource(source="lifelines:lymph_node"))
    assert "id" in raw.columns and raw.index[0] == 1
    p = CohortParams(
        source="lifelines:lymph_node",
        id="id",
        dates={"diagdateb": "%d-%m-%Y"},
        where=[Condition(column="diagdateb", op="<", value="1987-01-01")],
        duration="survtime",
        event="censdead",
        covariates=[
            Covariate(name="age", kind="numeric", unit="years"),
            Covariate(
                name="menopause",
                kind="categorical",
                levels={"1": "pre", "2": "post"},
                reference="post",
            ),
        ],
    )
    cohort = load_cohort(p)
    assert cohort.record.n == 396 and cohort.record.filtered_out == 686 - 396
    assert cohort.record.params.covariates[1].reference == "post"
    kept = raw[raw["diagdateb"].map(lambda t: t[-4:] < "1987")]
    assert cohort.frame["patient"].tolist() == kept["id"].astype(str).tolist()
    np.testing.assert_allclose(cohort.frame["duration"], kept["survtime"] / 365.25)
    menopause = kept["menopause"].map({1: "pre", 2: "post"})
    assert cohort.frame["menopause"].astype(str).tolist() == menopause.tolist()
    in_months = load_cohort(p.model_copy(update={"time_unit": "months"}))
    np.testing.assert_allclose(in_months.frame["duration"], kept["survtime"] / (365.25 / 12))


def test_unknown_lifelines_dataset_lists_the_available_ones() -> None:
    with pytest.raises(CohortError, match=r"did you mean 'gbsg2'.*lifelines:rossi"):
        read_source(CohortSource(source="lifelines:gbsg"))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("absent.csv", None, "does not exist"),
        ("table.xlsx", b"x", ".parquet or .pq"),
        ("broken.parquet", b"not parquet at all", "cannot read it as a Parquet table"),
        ("broken.csv.gz", b"\x1f\x8b\x08garbage", "cannot read it as a CSV table"),
        ("empty.csv", b"", "cannot read it as a CSV table"),
    ],
)
def test_unreadable_sources(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CohortError, match=expected) as info:
        read_source(CohortSource(source=str(path)))
    assert info.value.source == str(path)


def test_file_formats_give_the_same_frame(tmp_path: Path) -> None:
    df = base_table()
    df.loc[3, "age"] = np.nan  # dropped: CSV reads it as float, Parquet keeps the float column
    reference = load_cohort(params(write_csv(tmp_path, df))).frame
    df.to_parquet(tmp_path / "cohort.parquet", index=False)
    df.to_parquet(tmp_path / "cohort.pq", index=False)
    df.to_csv(tmp_path / "cohort.csv.gz", index=False)
    df.to_csv(tmp_path / "cohort.tsv", index=False, sep="\t")
    for name in ("cohort.parquet", "cohort.pq", "cohort.csv.gz", "cohort.tsv"):
        frame = load_cohort(params(tmp_path / name)).frame
        pd.testing.assert_frame_equal(frame, reference, obj=name)
    url = (tmp_path / "cohort.parquet").as_uri()
    pd.testing.assert_frame_equal(load_cohort(params(url)).frame, reference)


@pytest.fixture
def memory_url() -> Iterator[str]:
    url = f"memory://survival-{uuid.uuid4().hex}/cohort.csv"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url)


def test_memory_url(tmp_path: Path, memory_url: str) -> None:
    df = base_table()
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    with fsspec.open(memory_url, "w") as f:
        f.write(buf.getvalue())
    reference = load_cohort(params(write_csv(tmp_path, df))).frame
    pd.testing.assert_frame_equal(load_cohort(params(memory_url)).frame, reference)


# -- external cohort --------------------------------------------------------------------------


def development(tmp_path: Path, strategy: str = "drop") -> Cohort:
    df = base_table()
    df.loc[[0, 1], "age"] = 90.0  # the development median differs from the external one
    p = params(write_csv(tmp_path, df, "development.csv"), missing={"strategy": strategy})
    return load_cohort(p)


def external(tmp_path: Path, df: pd.DataFrame, **kw: Any) -> ExternalSource:
    return ExternalSource(source=str(write_csv(tmp_path, df, "external.csv")), **kw)


def test_external_cohort_uses_development_columns(tmp_path: Path) -> None:
    dev = development(tmp_path)
    ext_df = base_table().iloc[:10].copy()
    ext_df["grade"] = 2  # one level only: fine, nothing is fitted on it
    cohort = load_external(external(tmp_path, ext_df), dev.record)
    assert cohort.record.n == 10 and cohort.record.params.source.endswith("external.csv")
    assert cohort.record.params.covariates == dev.record.params.covariates
    assert list(cohort.frame["grade"].cat.categories) == ["G1", "G2", "G3"]
    assert (cohort.summary["cohort"] == "validation").all()
    assert cohort.summary.query("covariate == 'grade'")["n"].tolist() == [0, 10, 0]


def test_external_missing_covariate_suggests_columns(tmp_path: Path) -> None:
    dev = development(tmp_path)
    ext_df = base_table().rename(columns={"age": "Age", "grade": "tumour_grade"})
    with pytest.raises(CohortError) as info:
        load_external(external(tmp_path, ext_df), dev.record)
    text = str(info.value)
    assert "`columns: {Age: age}`" in text
    assert "`columns: {<name there>: grade}`" in text
    renamed = external(tmp_path, ext_df, columns={"Age": "age", "tumour_grade": "grade"})
    cohort = load_external(renamed, dev.record)
    assert cohort.record.n == N
    np.testing.assert_array_equal(cohort.frame["age"], ext_df["Age"].astype(float))


def test_external_rename_applies_before_dates_and_where(tmp_path: Path) -> None:
    dev = development(tmp_path)
    ext_df = base_table().rename(columns={"diag": "diagnosis_date", "time": "days"})
    source = external(
        tmp_path,
        ext_df,
        columns={"diagnosis_date": "diag", "days": "time"},
        dates={"diag": "%d-%m-%Y"},
        where=[Condition(column="diag", op=">=", value="1985-01-01")],
    )
    cohort = load_external(source, dev.record)
    years = ext_df["diagnosis_date"].str[-4:].astype(int)
    assert cohort.record.n == int((years >= 1985).sum())
    assert cohort.record.params.where == source.where


def test_external_unseen_category(tmp_path: Path) -> None:
    ext_df = base_table()
    ext_df.loc[[2, 6], "grade"] = 4
    dev = development(tmp_path)
    with pytest.raises(CohortError) as info:
        load_external(external(tmp_path, ext_df), dev.record)
    (problem,) = info.value.problems
    for piece in ("covariate grade", "unseen category", "'4'", "rows 3, 7", "1, 2, 3", "unseen:"):
        assert piece in problem
    # Treated as missing: dropped under the development's `drop` ...
    cohort = load_external(external(tmp_path, ext_df, unseen="missing"), dev.record)
    assert cohort.record.dropped_missing == 2 and cohort.record.n == N - 2
    assert cohort.summary.query("covariate == 'grade'")["missing"].tolist() == [2, 2, 2]
    # ... and imputed with the development's most frequent level under `impute`.
    dev = development(tmp_path, "impute")
    cohort = load_external(external(tmp_path, ext_df, unseen="missing"), dev.record)
    assert cohort.record.n == N
    assert cohort.frame.loc[[2, 6], "grade"].tolist() == [dev.record.impute["grade"]] * 2


def test_external_imputation_uses_development_values(tmp_path: Path) -> None:
    dev = development(tmp_path, "impute")
    ext_df = base_table()
    ext_df.loc[[3, 5], "age"] = np.nan
    cohort = load_external(external(tmp_path, ext_df), dev.record)
    dev_median = dev.record.impute["age"]
    assert dev_median != ext_df["age"].median()
    assert cohort.frame.loc[[3, 5], "age"].tolist() == [dev_median, dev_median]
    assert cohort.record.impute == dev.record.impute
    assert cohort.summary.query("covariate == 'age'")["imputed"].item() == 2
    # Under `drop` the external rows missing a covariate are dropped and counted.
    dev = development(tmp_path, "drop")
    cohort = load_external(external(tmp_path, ext_df), dev.record)
    assert cohort.record.dropped_missing == 2 and cohort.record.impute == {}


def test_external_keeps_max_fraction_check(tmp_path: Path) -> None:
    dev = development(tmp_path)
    ext_df = base_table()
    ext_df.loc[:9, "age"] = np.nan
    with pytest.raises(CohortError, match=r"50\.0% of the rows"):
        load_external(external(tmp_path, ext_df), dev.record)


# -- stored table round trip ------------------------------------------------------------------


def roundtrip(cohort: Cohort) -> pd.DataFrame:
    buf = io.BytesIO()
    cohort.frame.to_parquet(buf, index=False)
    table = pd.read_parquet(io.BytesIO(buf.getvalue()))
    return cohort_from_table(table, cohort.record, cohort.summary).frame


def test_cohort_from_table_round_trip(tmp_path: Path) -> None:
    cohort = development(tmp_path, "impute")
    pd.testing.assert_frame_equal(roundtrip(cohort), cohort.frame)
    table = cohort.frame.astype({"grade": object})
    table.loc[0, "grade"] = "G9"
    with pytest.raises(CohortError, match="'G9'"):
        cohort_from_table(table, cohort.record, cohort.summary)


def _record(levels: dict[str, str], n: int) -> CohortRecord:
    p = CohortParams(
        source="x.csv",
        duration="time",
        event="status",
        covariates=[
            Covariate(name="size", kind="numeric"),
            Covariate(name="stage", kind="categorical", levels=levels, reference=None),
        ],
    )
    return CohortRecord(params=p, source_rows=n, filtered_out=0, dropped_missing=0, n=n, events=1)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(0, 1e4, allow_nan=False),
            st.integers(0, 1),
            st.floats(-1e6, 1e6, allow_nan=False),
            st.integers(0, 2),
        ),
        min_size=1,
        max_size=30,
    ),
    labels=st.lists(st.text(min_size=1, max_size=5), min_size=3, max_size=3, unique=True),
)
def test_cohort_from_table_round_trip_property(
    rows: list[tuple[float, int, float, int]], labels: list[str]
) -> None:
    levels = {str(i): label for i, label in enumerate(labels)}
    frame = pd.DataFrame(
        {
            "patient": [f"row {i + 1}" for i in range(len(rows))],
            "row": np.arange(1, len(rows) + 1, dtype=np.int64),
            "duration": [r[0] for r in rows],
            "event": np.array([r[1] for r in rows], dtype=np.int64),
            "size": [r[2] for r in rows],
            "stage": pd.Categorical([labels[r[3]] for r in rows], categories=labels),
        }
    )
    frame["patient"] = frame["patient"].astype(str)
    cohort = Cohort(frame=frame, record=_record(levels, len(rows)), summary=pd.DataFrame())
    pd.testing.assert_frame_equal(roundtrip(cohort), frame)
