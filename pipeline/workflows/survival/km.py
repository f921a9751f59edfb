"""Kaplan-Meier curves, medians, survival at chosen times and log-rank tests, per group.

lifelines does the estimation (``KaplanMeierFitter``, ``multivariate_logrank_test``,
``pairwise_logrank_test``); this module turns its results into the documented tables
(``km_summary``, ``km_times``, ``km_curves``, ``logrank``), one grouping at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test
from lifelines.utils import median_survival_times

from pipeline.errors import ParameterError

__all__ = ["KMTables", "group_labels", "km_tables"]

log = logging.getLogger(__name__)

#: ``group_column`` of the whole-cohort curve.
ALL = "all"


@dataclass(frozen=True)
class KMTables:
    """The four Kaplan-Meier tables of one or more groupings (documented in tables.py)."""

    summary: pd.DataFrame
    times: pd.DataFrame
    curves: pd.DataFrame
    logrank: pd.DataFrame

    @staticmethod
    def concat(parts: Sequence[KMTables]) -> KMTables:
        """The tables of several groupings, one after the other."""
        return KMTables(
            *(
                pd.concat([getattr(p, f) for p in parts], ignore_index=True)
                for f in ("summary", "times", "curves", "logrank")
            )
        )


def _fmt(v: float) -> str:
    return f"{v:g}"


def group_labels(values: pd.Series, cuts: Sequence[float] | None) -> pd.Series:
    """Groups of a covariate: its categories, or intervals of a numeric one.

    Parameters
    ----------
    values : pandas.Series, shape (n_patients,)
        A categorical (labels) or numeric covariate.
    cuts : sequence of float, optional
        Numeric only: the cut points (``<= c1``, ``c1-c2``, ..., ``> ck``, upper bounds
        included). Default: the median (two groups).

    Returns
    -------
    pandas.Series of str, shape (n_patients,)
        Ordered categorical of group labels.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.astype(str).astype(
            pd.CategoricalDtype([str(c) for c in values.cat.categories], ordered=True)
        )
    x = values.to_numpy(dtype=np.float64)
    edges = sorted(set(cuts)) if cuts else [float(np.median(x))]
    names = [f"<= {_fmt(edges[0])}"]
    names += [f"{_fmt(a)}-{_fmt(b)}" for a, b in itertools.pairwise(edges)]
    names.append(f"> {_fmt(edges[-1])}")
    # A value equal to a cut point falls in the interval the cut point closes (`<= c`).
    idx = np.searchsorted(np.asarray(edges), x, side="left").astype(np.int64)
    dtype = pd.CategoricalDtype(names, ordered=True)
    return pd.Series(pd.Categorical.from_codes(idx, dtype=dtype), index=values.index)


def _curve(kmf: KaplanMeierFitter, column: str, group: str) -> pd.DataFrame:
    et = kmf.event_table
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_survival_function_
    return pd.DataFrame(
        {
            "group_column": column,
            "group": group,
            "time": et.index.to_numpy(dtype=np.float64),
            "survival": sf.reindex(et.index).to_numpy(dtype=np.float64),
            "survival_lower": ci.iloc[:, 0].reindex(et.index).to_numpy(dtype=np.float64),
            "survival_upper": ci.iloc[:, 1].reindex(et.index).to_numpy(dtype=np.float64),
            "at_risk": et["at_risk"].to_numpy(dtype=np.int64),
            "events": et["observed"].to_numpy(dtype=np.int64),
            "censored": et["censored"].to_numpy(dtype=np.int64),
        }
    )


def _at(series: pd.Series, t: float) -> float:
    # The KM estimate is a right-continuous step function: its value at t is the last step at
    # or before t.
    pos = int(np.searchsorted(series.index.to_numpy(dtype=np.float64), t, side="right")) - 1
    return float(series.iloc[max(pos, 0)])


def _group_rows(
    duration: np.ndarray,
    event: np.ndarray,
    column: str,
    group: str,
    times: Sequence[float],
    alpha: float,
) -> tuple[dict[str, object], list[dict[str, object]], pd.DataFrame]:
    kmf = KaplanMeierFitter(alpha=alpha).fit(duration, event, label=group)
    med_ci = median_survival_times(kmf.confidence_interval_)
    summary = {
        "group_column": column,
        "group": group,
        "n": int(duration.size),
        "events": int(event.sum()),
        "median": float(kmf.median_survival_time_),
        "median_lower": float(med_ci.iloc[0, 0]),
        "median_upper": float(med_ci.iloc[0, 1]),
    }
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_survival_function_
    rows = []
    for t in times:
        beyond = t > duration.max()
        rows.append(
            {
                "group_column": column,
                "group": group,
                "time": float(t),
                # Past the last follow-up the curve is unknown, not flat: report NaN.
                "survival": np.nan if beyond else _at(sf, t),
                "survival_lower": np.nan if beyond else _at(ci.iloc[:, 0], t),
                "survival_upper": np.nan if beyond else _at(ci.iloc[:, 1], t),
                "at_risk": int((duration >= t).sum()),
            }
        )
    return summary, rows, _curve(kmf, column, group)


def km_tables(
    duration: np.ndarray,
    event: np.ndarray,
    groups: pd.Series | None,
    column: str,
    *,
    times: Sequence[float] = (1.0, 3.0, 5.0),
    alpha: float = 0.05,
) -> KMTables:
    """Kaplan-Meier estimates and log-rank tests of one grouping of the patients.

    Parameters
    ----------
    duration : numpy.ndarray, shape (n_patients,)
        Follow-up times (the cohort's time unit).
    event : numpy.ndarray, shape (n_patients,)
        1 = event observed, 0 = censored.
    groups : pandas.Series, shape (n_patients,), optional
        Group label of each patient (categorical order is kept); None = the whole cohort.
    column : str
        The ``group_column`` written in the tables (``all`` for the whole cohort).
    times : sequence of float
        Time points for survival with its confidence interval (e.g. 1, 3, 5 years).
    alpha : float
        1 - confidence level of the intervals.

    Returns
    -------
    KMTables
        Empty ``logrank`` for a single group; groups without patients are left out.

    Raises
    ------
    ParameterError
        If a grouping leaves fewer than two groups with patients.
    """
    duration = np.asarray(duration, dtype=np.float64)
    event = np.asarray(event, dtype=np.int64)
    if groups is None:
        labels = pd.Series(np.full(duration.size, ALL), dtype=object)
        order = [ALL]
    else:
        labels = groups.reset_index(drop=True).astype(str)
        cats = getattr(groups, "cat", None)
        seen = set(labels)
        order = [str(c) for c in (cats.categories if cats is not None else sorted(seen))]
        order = [g for g in order if g in seen]
        if len(order) < 2:
            raise ParameterError(
                f"grouping by {column!r} gives {len(order)} group(s) with patients "
                f"({', '.join(order) or 'none'}): Kaplan-Meier comparisons need two or more; "
                "choose other cut points or drop it from group_by"
            )
    summaries, time_rows, curves = [], [], []
    for g in order:
        mask = (labels == g).to_numpy()
        s, t, c = _group_rows(duration[mask], event[mask], column, g, times, alpha)
        summaries.append(s)
        time_rows += t
        curves.append(c)
    logrank = _logrank(duration, event, labels, column, order)
    log.info("Kaplan-Meier by %s: %d group(s)", column, len(order))
    return KMTables(pd.DataFrame(summaries), pd.DataFrame(time_rows), pd.concat(curves), logrank)


def _logrank(
    duration: np.ndarray, event: np.ndarray, labels: pd.Series, column: str, order: list[str]
) -> pd.DataFrame:
    cols = ["group_column", "test", "group_a", "group_b", "statistic", "df", "p"]
    if len(order) < 2:
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c in cols[:4] else np.float64) for c in cols}
        )
    lab = labels.to_numpy()
    multi = multivariate_logrank_test(duration, lab, event)
    rows: list[dict[str, object]] = [
        {
            "group_column": column,
            "test": "multivariate",
            "group_a": "",
            "group_b": "",
            "statistic": float(multi.test_statistic),
            "df": int(multi.degrees_of_freedom),
            "p": float(multi.p_value),
        }
    ]
    if len(order) > 2:
        pair = pairwise_logrank_test(duration, lab, event).summary
        rank = {g: i for i, g in enumerate(order)}
        for (a, b), rec in pair.iterrows():
            a, b = sorted((str(a), str(b)), key=rank.__getitem__)
            rows.append(
                {
                    "group_column": column,
                    "test": "pairwise",
                    "group_a": a,
                    "group_b": b,
                    "statistic": float(rec["test_statistic"]),
                    "df": 1,
                    "p": float(rec["p"]),
                }
            )
    return pd.DataFrame(rows)
