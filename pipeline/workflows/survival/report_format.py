"""Formatting of the survival section: hazard ratios, times in the cohort's unit, medians,
model terms, and the figures of the ``survival_metrics`` table.

Clinical tables print these a certain way; every part of the survival section
(:mod:`.report`, :mod:`.report_km`, :mod:`.report_phenotypes`) prints them alike through here.
The generic formatting (p-values, digits, percentages, escaping) is
:mod:`pipeline.report.format`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipeline.core.store import RunStore
from pipeline.report.format import (
    format_p,
    is_finite,
    read_optional_table,
    same_decimals,
    significant,
)
from pipeline.workflows.survival.spec import CohortRecord, Covariate

__all__ = [
    "covariates_by_name",
    "format_hr",
    "format_time",
    "median_text",
    "metric_rows",
    "metric_text",
    "term_label",
    "time_point",
]


def _ratio(x: float) -> str:
    if x is None or math.isnan(float(x)):
        return "-"
    if math.isinf(float(x)):
        return "inf" if x > 0 else "-"
    # Two decimals read well from 0.01 up; smaller ratios keep two significant digits.
    return f"{x:.2g}" if 0 < abs(x) < 0.01 else f"{x:.2f}"


def format_hr(hr: float, lower: float, upper: float) -> str:
    """A hazard ratio with its confidence interval: ``"0.62 (0.45-0.85)"``.

    Parameters
    ----------
    hr, lower, upper : float
        Hazard ratio and the bounds of its interval (dimensionless). An infinite bound
        prints as ``"inf"``; a NaN ratio as ``"-"``, and without NaN bounds' interval.

    Returns
    -------
    str
    """
    text = _ratio(hr)
    if text == "-" or "-" in (_ratio(lower), _ratio(upper)):
        return text  # no interval to show
    return f"{text} ({_ratio(lower)}-{_ratio(upper)})"


def format_time(t: float, unit: str = "") -> str:
    """A time (e.g. a median survival) for reading.

    Parameters
    ----------
    t : float
        The time, in ``unit``; ``inf`` for a median the curve never reaches.
    unit : str
        Time unit appended to the number (``years``); empty for none.

    Returns
    -------
    str
        ``"not reached"`` for ``inf``, ``"-"`` for NaN, else three significant digits
        (``"4.95 years"``).
    """
    if t is None:
        return "-"
    if float(t) == math.inf:
        return "not reached"
    if not is_finite(t):
        return "-"
    return f"{significant(float(t))} {unit}".strip()


def median_text(median: float, lower: float, upper: float) -> str:
    """A median survival with its interval, the three numbers with the same decimals.

    Parameters
    ----------
    median, lower, upper : float
        Median survival time and the bounds of its confidence interval: ``inf`` where the
        curve never falls that low, NaN where unknown.

    Returns
    -------
    str
        ``"4.9 (3.8-6.1)"``; ``"not reached"`` for an infinite time, with ``"to"`` between the
        bounds then (``"6.1 (4.2 to not reached)"``); the median alone when a bound is NaN.
    """
    finite = [v for v in (median, lower, upper) if is_finite(v)]
    shown = dict(zip(finite, same_decimals(finite), strict=True))
    med, lo, hi = (
        "not reached" if v == math.inf else shown.get(v, "-") for v in (median, lower, upper)
    )
    if "-" in (lo, hi):
        return med  # no interval (or no median) to show
    return f"{med} ({lo} to {hi})" if "not reached" in (lo, hi) else f"{med} ({lo}-{hi})"


def time_point(t: float, unit: str) -> str:
    # "1 year", "3 years": the time points of km_times are round numbers the job chose.
    """A fixed time point in words: ``"1 year"``, ``"3 years"``.

    Parameters
    ----------
    t : float
        The time, a round number (a time point of ``km_times``, a horizon).
    unit : str
        Its unit as a plural (``years``), made singular for ``t == 1``.

    Returns
    -------
    str
    """
    return f"{t:g} {unit[:-1] if t == 1 and unit.endswith('s') else unit}"


def covariates_by_name(record: CohortRecord) -> dict[str, Covariate]:
    """The cohort's covariates by name, in the order of its parameters.

    Parameters
    ----------
    record : CohortRecord
        The record the ``cohort`` stage wrote (``models/cohort.json``).

    Returns
    -------
    dict of str to Covariate
    """
    return {c.name: c for c in record.params.covariates}


def _singular(unit: str) -> str:
    # "per year", "per node": hazard ratios are per one unit. Units that are not plurals
    # ("mm", "mmHg", "g/dL") are left as they are.
    if unit.endswith("s") and not unit.endswith("ss") and len(unit) > 3 and unit.isalpha():
        return unit[:-1]
    return unit


def term_label(term: str, variable: str, covs: dict[str, Covariate]) -> str:
    """A model term in words: ``per mm`` for a number, ``III vs I`` for a category.

    Parameters
    ----------
    term : str
        The term as the model names it: the covariate for a number, ``grade[III]`` for a
        category's level.
    variable : str
        The covariate the term belongs to.
    covs : dict of str to Covariate
        Covariates by name (:func:`covariates_by_name`): their units and reference levels.

    Returns
    -------
    str
        ``"per <unit>"`` (``"per unit increase"`` without a unit) for a number; the level,
        with ``"vs <reference>"`` where the reference level is known, for a category.
    """
    cov = covs.get(variable)
    if term == variable:
        unit = cov.unit if cov is not None else ""
        return f"per {_singular(unit)}" if unit else "per unit increase"
    level = term[len(variable) + 1 : -1] if term.startswith(f"{variable}[") else term
    ref = cov.reference if cov is not None and cov.reference else None
    return f"{level} vs {ref}" if ref else level


def metric_text(rec: Mapping[Any, Any]) -> str:
    """A survival_metrics row: value with its bootstrap interval where there is one.

    Parameters
    ----------
    rec : Mapping
        A row of ``survival_metrics`` (``metric``, ``value``, ``lower``, ``upper``,
        ``replicates``).

    Returns
    -------
    str
        For a p-value (a metric ending in ``_p``), :func:`format_p`'s text; otherwise
        ``"0.712 (0.684-0.741, 200 bootstrap replicates)"``, or the value alone.
    """
    if str(rec.get("metric", "")).endswith("_p"):
        return format_p(float(rec["value"]))
    value = significant(float(rec["value"]))
    if is_finite(rec.get("lower")) and is_finite(rec.get("upper")):
        reps = int(rec.get("replicates") or 0)
        extra = f", {reps} bootstrap replicates" if reps else ""
        return (
            f"{value} ({significant(float(rec['lower']))}-"
            f"{significant(float(rec['upper']))}{extra})"
        )
    return value


def metric_rows(store: RunStore, analysis: str, cohort: str) -> dict[str, dict[str, Any]]:
    """The ``survival_metrics`` rows of one analysis and cohort, by metric.

    Parameters
    ----------
    store : RunStore
        The run store.
    analysis : str
        The analysis (``cox_multivariate``, ``phenotypes``).
    cohort : str
        ``development`` or ``validation``.

    Returns
    -------
    dict of str to dict
        Each row as a dict, under its ``metric``; empty without the table.
    """
    metrics = read_optional_table(store, "survival_metrics")
    if metrics is None:
        return {}
    sel = metrics[(metrics["analysis"] == analysis) & (metrics["cohort"] == cohort)]
    return {str(r["metric"]): {str(k): v for k, v in r.items()} for r in sel.to_dict("records")}
