"""Kaplan-Meier tables against lifelines called directly, on the bundled GBSG2 table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_gbsg2
from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test
from lifelines.utils import median_survival_times

from pipeline.core.tables import table_schema
from pipeline.errors import ParameterError
from pipeline.workflows.survival.km import group_labels, km_tables


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    df = load_gbsg2()
    return df.assign(years=df["time"] / 365.25)


def test_medians_and_survival_at_times_equal_lifelines(gbsg2: pd.DataFrame) -> None:
    groups = pd.Series(pd.Categorical(gbsg2["tgrade"], categories=["I", "II", "III"]))
    t = km_tables(gbsg2.years.to_numpy(), gbsg2.cens.to_numpy(), groups, "tgrade", times=[1, 3, 5])
    assert t.summary["group"].tolist() == ["I", "II", "III"]
    for g in ["I", "II", "III"]:
        m = (gbsg2.tgrade == g).to_numpy()
        kmf = KaplanMeierFitter().fit(gbsg2.years[m], gbsg2.cens[m])
        row = t.summary.set_index("group").loc[g]
        assert row["n"] == m.sum() and row["events"] == gbsg2.cens[m].sum()
        assert row["median"] == kmf.median_survival_time_
        ci = median_survival_times(kmf.confidence_interval_)
        assert row["median_lower"] == pytest.approx(ci.iloc[0, 0])
        at = t.times[t.times.group == g].set_index("time")
        expected = kmf.survival_function_at_times([1, 3, 5]).to_numpy()
        np.testing.assert_allclose(at["survival"].to_numpy(), expected)
        assert at.loc[3.0, "at_risk"] == (gbsg2.years[m] >= 3).sum()
        assert (at["survival_lower"] <= at["survival"]).all()
        assert (at["survival"] <= at["survival_upper"]).all()


def test_logrank_equals_lifelines(gbsg2: pd.DataFrame) -> None:
    groups = pd.Series(pd.Categorical(gbsg2["tgrade"]))
    t = km_tables(gbsg2.time.to_numpy(), gbsg2.cens.to_numpy(), groups, "tgrade")
    multi = multivariate_logrank_test(gbsg2.time, gbsg2.tgrade, gbsg2.cens)
    row = t.logrank[t.logrank.test == "multivariate"].iloc[0]
    assert row["p"] == pytest.approx(multi.p_value) and row["df"] == 2
    pair = pairwise_logrank_test(gbsg2.time, gbsg2.tgrade, gbsg2.cens).summary
    got = t.logrank[t.logrank.test == "pairwise"].set_index(["group_a", "group_b"])["p"]
    assert got.loc[("I", "III")] == pytest.approx(pair.loc[("I", "III"), "p"])
    assert len(got) == 3


def test_curves_carry_at_risk_and_censoring(gbsg2: pd.DataFrame) -> None:
    t = km_tables(gbsg2.years.to_numpy(), gbsg2.cens.to_numpy(), None, "all")
    c = t.curves
    assert list(c.columns) == list(table_schema("km_curves").columns)
    assert c["time"].iloc[0] == 0 and c["at_risk"].iloc[0] == len(gbsg2)
    assert c["events"].sum() == gbsg2.cens.sum()
    assert c["censored"].sum() == (gbsg2.cens == 0).sum()
    assert t.logrank.empty
    for name, frame in [("km_summary", t.summary), ("km_times", t.times)]:
        assert list(frame.columns) == list(table_schema(name).columns)


def test_survival_past_the_last_follow_up_is_unknown() -> None:
    t = km_tables(np.array([0.5, 1.0, 2.0]), np.array([1, 0, 0]), None, "all", times=[1, 10])
    assert np.isnan(t.times.set_index("time").loc[10.0, "survival"])


def test_numeric_groups_close_at_the_cut_points() -> None:
    g = group_labels(pd.Series([1.0, 3.0, 4.0, 9.0, 10.0]), [3, 9])
    assert g.tolist() == ["<= 3", "<= 3", "3-9", "3-9", "> 9"]
    assert list(g.cat.categories) == ["<= 3", "3-9", "> 9"]
    median_split = group_labels(pd.Series([1.0, 2.0, 3.0, 4.0]), None)
    assert median_split.tolist() == ["<= 2.5", "<= 2.5", "> 2.5", "> 2.5"]


def test_a_grouping_with_one_group_is_refused() -> None:
    with pytest.raises(ParameterError, match="two or more"):
        km_tables(np.ones(4), np.ones(4), pd.Series(["a"] * 4), "arm")
