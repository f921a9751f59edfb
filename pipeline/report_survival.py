"""The report's survival section, written for a clinician reading a static page.

It shows what the survival stages wrote (``cohort``, ``kaplan_meier``, ``cox``, ``phenotypes``,
``classify_phenotypes``, ``validate_external``): the cohort and its 'table 1', Kaplan-Meier
curves with numbers at risk, the Cox models with their proportional-hazards check, the
phenotypes and how well classifiers recognise them, and the external validation. Every part
is optional: a table a job did not write leaves its part out.

Only counts and aggregates are shown. The patient-level tables (``cohort``,
``validation_cohort``, ``patient_phenotypes``, ``validation_phenotypes``) are never read here,
so no patient identifier or source row can reach the page.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.figures import figure_html, new_figure, png_bytes, table_html
from pipeline.store import RunStore
from pipeline.survival.spec import CohortRecord, Condition, Covariate
from pipeline.tables import read_table

__all__ = ["format_hr", "format_p", "format_time", "survival_section"]

_COHORTS = ("development", "validation")
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_UNIT_LETTER = {"d": "days", "w": "weeks", "m": "months", "y": "years"}
_MODEL_LABELS = {
    "decision_tree": "decision tree",
    "random_forest": "random forest",
    "phenotype_decision_tree": "phenotype route (decision tree)",
    "phenotype_random_forest": "phenotype route (random forest)",
}
_METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "roc_auc": "AUC (ROC)"}
#: Features per model in the importance chart.
_TOP_FEATURES = 15
#: Hazard ratios labelled on the forest plot's log axis (those within its range).
_HR_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20, 50, 100)
#: A term whose proportional-hazards test falls below this is flagged.
_PH_LEVEL = 0.05


# -- formatting ---------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_p(p: float) -> str:
    """A p-value as a clinical table prints it.

    Parameters
    ----------
    p : float
        The p-value (NaN or None when there is none).

    Returns
    -------
    str
        ``"<0.001"`` below 0.001, else three decimals (``"0.042"``); ``"-"`` for NaN.
    """
    if p is None or not _finite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_phrase(p: float) -> str:
    text = format_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


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


def _sig(x: float, digits: int = 3) -> str:
    """``x`` with about ``digits`` significant digits, never in exponent notation."""
    if not _finite(x):
        return "-"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _same_decimals(values: Sequence[float], digits: int = 3) -> list[str]:
    """Several numbers of one cell (median and quartiles) with the same decimals."""
    finite = [abs(v) for v in values if _finite(v)]
    if not finite:
        return ["-" for _ in values]
    if all(float(v).is_integer() for v in values if _finite(v)):
        decimals = 0
    else:
        top = max(finite) or 1.0
        decimals = max(0, digits - 1 - math.floor(math.log10(top)))
    return [f"{v:.{decimals}f}" if _finite(v) else "-" for v in values]


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
    if not _finite(t):
        return "-"
    return f"{_sig(float(t))} {unit}".strip()


def _median_text(median: float, lower: float, upper: float) -> str:
    """A median survival with its interval, the three numbers with the same decimals."""
    finite = [v for v in (median, lower, upper) if _finite(v)]
    shown = dict(zip(finite, _same_decimals(finite), strict=True))
    med, lo, hi = (
        "not reached" if v == math.inf else shown.get(v, "-") for v in (median, lower, upper)
    )
    if "-" in (lo, hi):
        return med  # no interval (or no median) to show
    return f"{med} ({lo} to {hi})" if "not reached" in (lo, hi) else f"{med} ({lo}-{hi})"


def _time_point(t: float, unit: str) -> str:
    # "1 year", "3 years": the time points of km_times are round numbers the job chose.
    return f"{t:g} {unit[:-1] if t == 1 and unit.endswith('s') else unit}"


def _percent(x: float, decimals: int = 1) -> str:
    return f"{100 * x:.{decimals}f}%" if _finite(x) else "-"


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def _table(store: RunStore, name: str) -> pd.DataFrame | None:
    """A documented table, or None where the stage that writes it did not run."""
    if not store.exists(f"tables/{name}.parquet"):
        return None
    df = read_table(store, name)
    return df if len(df) else None


def _json(store: RunStore, rel: str) -> dict[str, Any]:
    return dict(store.read_json(rel)) if store.exists(rel) else {}


def _covariates(record: CohortRecord) -> dict[str, Covariate]:
    return {c.name: c for c in record.params.covariates}


def _singular(unit: str) -> str:
    # "per year", "per node": hazard ratios are per one unit. Units that are not plurals
    # ("mm", "mmHg", "g/dL") are left as they are.
    if unit.endswith("s") and not unit.endswith("ss") and len(unit) > 3 and unit.isalpha():
        return unit[:-1]
    return unit


def _term_label(term: str, variable: str, covs: dict[str, Covariate]) -> str:
    """A model term in words: ``per mm`` for a number, ``III vs I`` for a category."""
    cov = covs.get(variable)
    if term == variable:
        unit = cov.unit if cov is not None else ""
        return f"per {_singular(unit)}" if unit else "per unit increase"
    level = term[len(variable) + 1 : -1] if term.startswith(f"{variable}[") else term
    ref = cov.reference if cov is not None and cov.reference else None
    return f"{level} vs {ref}" if ref else level


def _metric_text(rec: Mapping[Any, Any]) -> str:
    """A survival_metrics row: value with its bootstrap interval where there is one."""
    if str(rec.get("metric", "")).endswith("_p"):
        return format_p(float(rec["value"]))
    value = _sig(float(rec["value"]))
    if _finite(rec.get("lower")) and _finite(rec.get("upper")):
        reps = int(rec.get("replicates") or 0)
        extra = f", {reps} bootstrap replicates" if reps else ""
        return f"{value} ({_sig(float(rec['lower']))}-{_sig(float(rec['upper']))}{extra})"
    return value


def _metric_rows(store: RunStore, analysis: str, cohort: str) -> dict[str, dict[str, Any]]:
    metrics = _table(store, "survival_metrics")
    if metrics is None:
        return {}
    sel = metrics[(metrics["analysis"] == analysis) & (metrics["cohort"] == cohort)]
    return {str(r["metric"]): {str(k): v for k, v in r.items()} for r in sel.to_dict("records")}


# -- a. cohort --------------------------------------------------------------------------------


def _condition_text(cond: Condition, id_column: str | None) -> str:
    # A condition on the identifier column could list patients: its value is not shown.
    value = "(values not shown)" if cond.column == id_column else cond.value
    return f"{cond.column} {cond.op} {value}"


def _record_text(record: CohortRecord, label: str) -> str:
    p = record.params
    share = record.events / record.n if record.n else float("nan")
    parts = [
        f"<b>{_esc(label)}</b>: <code>{_esc(p.source)}</code>, {record.source_rows} rows read",
    ]
    if p.where:
        rules = "; ".join(_condition_text(c, p.id) for c in p.where)
        parts.append(f"{record.filtered_out} removed by the selection rules ({_esc(rules)})")
    if p.missing.strategy == "drop":
        parts.append(
            f"{record.dropped_missing} dropped because a covariate was missing (policy: drop "
            "incomplete rows)"
        )
    elif record.impute:
        values = ", ".join(
            f"{k} = {_sig(float(v)) if _finite(v) else v}" for k, v in record.impute.items()
        )
        parts.append(
            "missing covariates imputed with the development cohort's median or most frequent "
            f"level ({_esc(values)})"
        )
    else:
        parts.append("no covariate value was missing (policy: impute)")
    parts.append(
        f"<b>{record.n} patients analysed, {record.events} events</b> ({_percent(share)} of "
        "patients)"
    )
    return "; ".join(parts) + "."


def _summary_cell(rows: pd.DataFrame) -> str:
    r = rows.iloc[0]
    if r["kind"] == "numeric":
        med, q1, q3 = _same_decimals([float(r["value"]), float(r["q1"]), float(r["q3"])])
        return f"{med} [{q1}-{q3}]"
    return f"{int(r['n'])} ({_percent(float(r['value']))})"


def _missing_cell(rows: pd.DataFrame) -> str:
    missing, imputed = int(rows["missing"].max()), int(rows["imputed"].max())
    if not missing:
        return ""
    return f"{missing} ({imputed} imputed)" if imputed else str(missing)


def _table_one(summary: pd.DataFrame, records: dict[str, CohortRecord]) -> str:
    summary = summary.assign(level=summary["level"].fillna("").astype(str))
    cohorts = [c for c in _COHORTS if (summary["cohort"] == c).any()]
    by = {c: summary[summary["cohort"] == c] for c in cohorts}
    show_missing = {c: bool((by[c]["missing"] > 0).any()) for c in cohorts}
    header = ["characteristic"]
    for c in cohorts:
        n = f" (n = {records[c].n})" if c in records else ""
        header.append(f"{c}{n}")
        if show_missing[c]:
            header.append(f"missing ({c})")
    dev = records.get("development")
    covs = _covariates(dev) if dev else {}
    order = list(covs) + [v for v in dict.fromkeys(summary["covariate"]) if v not in covs]
    body: list[list[str]] = []
    for name in order:
        rows = summary[summary["covariate"] == name]
        if not len(rows):
            continue
        kind = str(rows["kind"].iloc[0])
        unit = str(rows["unit"].iloc[0] or "") if kind == "numeric" else ""
        label = f"{name}, median [IQR]" + (f" ({unit})" if unit else "")
        head = [label if kind == "numeric" else f"{name}, n (%)"]
        for c in cohorts:
            sel = by[c][by[c]["covariate"] == name]
            head.append(_summary_cell(sel) if kind == "numeric" and len(sel) else "")
            if show_missing[c]:
                head.append(_missing_cell(sel) if len(sel) else "")
        body.append(head)
        if kind == "numeric":
            continue
        cov = covs.get(name)
        levels = list(cov.levels.values()) if cov and cov.levels else []
        levels += [lv for lv in dict.fromkeys(rows["level"]) if lv not in levels]
        for level in levels:
            line = [f"\u2003{level}"]
            for c in cohorts:
                sel = by[c][(by[c]["covariate"] == name) & (by[c]["level"] == level)]
                line.append(_summary_cell(sel) if len(sel) else "0")
                if show_missing[c]:
                    line.append("")
            body.append(line)
    return table_html(header, body)


def _cohort_part(store: RunStore, records: dict[str, CohortRecord]) -> str:
    dev = records["development"]
    p = dev.params
    parts = [
        "<h3>Cohort</h3>",
        f"<p>{_record_text(dev, 'Development cohort')}</p>",
    ]
    if "validation" in records:
        parts.append(f"<p>{_record_text(records['validation'], 'External cohort')}</p>")
    parts.append(
        f"<p>Follow-up is measured from diagnosis to the event or the last contact "
        f"(censoring); every time in this section is in <b>{_esc(p.time_unit)}</b> (the "
        f"source table records {_esc(p.duration_unit)}).</p>"
    )
    summary = _table(store, "cohort_summary")
    if summary is not None:
        parts += [
            "<p><b>Patient characteristics.</b> Numbers: median [interquartile range], the "
            "middle half of the patients lies in the brackets. Categories: patients (share of "
            "the cohort). <em>missing</em>: patients without the value in the source table "
            "(before the missing-value policy).</p>",
            _table_one(summary, records),
        ]
    return "\n".join(parts)


# -- b. Kaplan-Meier (shared by the phenotype and validation parts) ---------------------------


def _ticks(tmax: float) -> list[float]:
    from matplotlib.ticker import MaxNLocator

    locator = MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10])
    return [float(t) for t in locator.tick_values(0.0, tmax) if -1e-12 <= t <= tmax * 1.0001]


def _at_risk(curve: pd.DataFrame, t: float, n: int) -> int:
    """Patients still followed at ``t``: time >= t (the at_risk of the first row from t on)."""
    if t <= 0:
        return n
    later = curve[curve["time"] >= t]
    return int(later["at_risk"].iloc[0]) if len(later) else 0


def _group_order(curves: pd.DataFrame, summary: pd.DataFrame | None) -> list[str]:
    if summary is not None and len(summary):
        return [str(g) for g in summary["group"]]
    return [str(g) for g in dict.fromkeys(curves["group"].astype(str))]


def _km_figure(
    curves: pd.DataFrame,
    groups: list[str],
    sizes: dict[str, int],
    title: str,
    unit: str,
) -> tuple[bytes, str]:
    """Step curves with bands, censoring ticks and numbers at risk; PNG and an alt text."""
    from matplotlib.ticker import PercentFormatter

    tmax = float(curves["time"].max()) or 1.0
    ticks = _ticks(tmax)
    fig = new_figure(8, 4.6 + 0.25 * len(groups))
    grid = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.45 + 0.28 * len(groups)], hspace=0.22)
    ax = fig.add_subplot(grid[0])
    tab = fig.add_subplot(grid[1], sharex=ax)
    risk_lines = []
    for i, group in enumerate(groups):
        color = _COLORS[i % len(_COLORS)]
        g = curves[curves["group"].astype(str) == group].sort_values("time")
        t = g["time"].to_numpy(dtype=np.float64)
        n = sizes.get(group, int(g["at_risk"].iloc[0]) if len(g) else 0)
        ax.step(t, g["survival"], where="post", color=color, lw=1.6, label=f"{group} (n = {n})")
        ax.fill_between(
            t, g["survival_lower"], g["survival_upper"], step="post", color=color, alpha=0.15
        )
        cens = g[g["censored"] > 0]
        ax.plot(cens["time"], cens["survival"], "|", color=color, ms=7, mew=1)
        counts = [_at_risk(g, tick, n) for tick in ticks]
        for tick, k in zip(ticks, counts, strict=True):
            tab.text(tick, i, str(k), ha="center", va="center", fontsize=8, color=color)
        risk_lines.append(f"{group}: {', '.join(str(k) for k in counts)}")
    ax.set_ylim(0, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("survival (share of patients event-free)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    tab.set_xticks(ticks)
    tab.set_xlim(-0.02 * tmax, tmax * 1.03)
    tab.set_ylim(len(groups) - 0.5, -0.5)
    tab.set_yticks(range(len(groups)), groups, fontsize=8)
    for i, label in enumerate(tab.get_yticklabels()):
        label.set_color(_COLORS[i % len(_COLORS)])
    tab.tick_params(left=False)
    for side in ("top", "right", "left"):
        tab.spines[side].set_visible(False)
    tab.set_xlabel(f"time since diagnosis ({unit})")
    tab.set_title("number at risk", fontsize=8, loc="left", pad=2)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.93, bottom=0.1)
    times = ", ".join(f"{t:g}" for t in ticks)
    alt = f"{title}. Number at risk at {times} {unit}: " + "; ".join(risk_lines)
    return png_bytes(fig), alt


def _survival_cell(times: pd.DataFrame, group: str, t: float) -> str:
    sel = times[(times["group"].astype(str) == group) & (times["time"] == t)]
    if not len(sel) or not _finite(sel["survival"].iloc[0]):
        return "-"  # past the group's follow-up: unknown, not flat
    r = sel.iloc[0]
    lo, hi = _percent(float(r["survival_lower"])), _percent(float(r["survival_upper"]))
    return f"{_percent(float(r['survival']))} ({lo.rstrip('%')}-{hi})"


def _median_cells(summary: pd.DataFrame | None, group: str) -> list[str]:
    s = summary[summary["group"].astype(str) == group] if summary is not None else None
    if s is None or not len(s):
        return ["", "", ""]
    r = s.iloc[0]
    median = _median_text(float(r["median"]), float(r["median_lower"]), float(r["median_upper"]))
    return [str(int(r["n"])), str(int(r["events"])), median]


def _km_summary_table(
    summary: pd.DataFrame | None, times: pd.DataFrame | None, groups: list[str], unit: str
) -> str:
    if summary is None and times is None:
        return ""
    points = sorted(set(times["time"].astype(float))) if times is not None else []
    header = ["group", "patients", "events", f"median survival, {unit} (CI)"]
    header += [f"survival at {_time_point(t, unit)} (CI)" for t in points]
    body = []
    for group in groups:
        row = [group, *_median_cells(summary, group)]
        if times is not None:
            row += [_survival_cell(times, group, t) for t in points]
        body.append(row)
    return table_html(header, body)


def _logrank_table(logrank: pd.DataFrame) -> str:
    body = []
    for r in logrank.to_dict("records"):
        pairwise = r["test"] == "pairwise"
        body.append(
            [
                "pairwise (unadjusted)" if pairwise else "all groups at once",
                f"{r['group_a']} vs {r['group_b']}" if pairwise else "",
                f"{float(r['statistic']):.2f}",
                str(int(r["df"])),
                format_p(float(r["p"])),
            ]
        )
    return table_html(["log-rank test", "groups", "chi-squared", "df", "p"], body)


_GROUPS = ("group", "group_a", "group_b")


def _group_label(column: str, group: str) -> str:
    return f"{column} {group}" if re.fullmatch(r"\d+", group) else group


def _km_grouping(
    store: RunStore,
    tables: dict[str, pd.DataFrame | None],
    column: str,
    name: str,
    unit: str,
    cohort: str,
) -> str:
    """Figure and tables of one grouping (one ``group_column``) of one KM table set."""

    def rows(key: str) -> pd.DataFrame | None:
        df = tables[key]
        if df is None:
            return None
        sel = df[df["group_column"].astype(str) == column]
        if not len(sel):
            return None
        # Phenotypes are numbers: "phenotype 2" reads better in legends and tables than "2".
        named = {
            c: sel[c].astype(str).map(lambda g: _group_label(column, g))
            for c in _GROUPS
            if c in sel.columns
        }
        return sel.assign(**named)

    curves, summary, times, logrank = (rows(k) for k in ("curves", "summary", "times", "logrank"))
    groups = _group_order(curves if curves is not None else pd.DataFrame({"group": []}), summary)
    multi = logrank[logrank["test"] == "multivariate"] if logrank is not None else None
    p = float(multi["p"].iloc[0]) if multi is not None and len(multi) else float("nan")
    what = "of all patients" if column == "all" else f"by {column}"
    title = f"{cohort}: survival {what}" if cohort else f"Survival {what}"
    title += f" (log-rank {_p_phrase(p)})" if _finite(p) else ""
    parts = [f"<h4>{_esc(title)}</h4>"]
    if curves is not None:
        sizes = (
            {str(g): int(n) for g, n in zip(summary["group"], summary["n"], strict=True)}
            if summary is not None
            else {}
        )
        png, alt = _km_figure(curves, groups, sizes, title, unit)
        parts.append(figure_html(store, name, png, alt))
    parts.append(_km_summary_table(summary, times, groups, unit))
    if logrank is not None:
        parts.append(_logrank_table(logrank))
    return "\n".join(p for p in parts if p)


_KM_HOWTO = (
    "<p><b>How to read the curves.</b> Each step curve is the share of patients still "
    "event-free over time (Kaplan-Meier estimate); the shaded band is its pointwise confidence "
    "interval, which widens as fewer patients remain. Vertical ticks mark patients censored "
    "(followed up to that time without the event). Under each plot, the number of patients "
    "still followed (at risk) at each time mark: estimates where few remain are uncertain. "
    "The table gives each group's median survival (the time by which half the patients had "
    "the event; <em>not reached</em> when the curve stays above 50%) and survival at fixed "
    "times, with confidence intervals (CI); '-' marks a time past the group's follow-up. "
    "The log-rank test asks whether the groups' survival differs more than chance would "
    "explain (small p: a real difference); pairwise p-values are <em>not</em> adjusted for "
    "multiple comparisons, so with many pairs some small ones arise by chance.</p>"
)


def _km_set(store: RunStore, prefix: str, unit: str, cohort: str = "") -> str:
    """Every grouping of the KM tables ``<prefix>km_*`` (prefix "", phenotype_, validation_)."""
    tables = {
        key: _table(store, f"{prefix}{table}")
        for key, table in (
            ("curves", "km_curves"),
            ("summary", "km_summary"),
            ("times", "km_times"),
            ("logrank", "logrank"),
        )
    }
    present = [t for t in tables.values() if t is not None]
    if not present:
        return ""
    columns = list(dict.fromkeys(str(c) for t in present for c in t["group_column"]))
    return "\n".join(
        _km_grouping(store, tables, col, f"survival_{prefix}km_{i}_{_slug(col)}.png", unit, cohort)
        for i, col in enumerate(columns)
    )


def _km_part(store: RunStore, unit: str) -> str:
    body = _km_set(store, "", unit)
    return "\n".join(["<h3>Kaplan-Meier survival</h3>", _KM_HOWTO, body]) if body else ""


# -- c. Cox -----------------------------------------------------------------------------------


def _univariate_table(uni: pd.DataFrame, covs: dict[str, Covariate], level: int) -> str:
    body, seen = [], set()
    for r in uni.to_dict("records"):
        variable = str(r["variable"])
        first = variable not in seen
        seen.add(variable)
        body.append(
            [
                variable if first else "",
                _term_label(str(r["covariate"]), variable, covs),
                format_hr(float(r["hr"]), float(r["hr_lower"]), float(r["hr_upper"])),
                format_p(float(r["p"])),
                format_p(float(r["variable_p"])) if first else "",
                ("yes" if bool(r["selected"]) else "no") if first else "",
            ]
        )
    header = ["covariate", "term", f"HR ({level}% CI)", "p (term)", "p (covariate, LRT)"]
    return table_html([*header, "in multivariate model"], body)


def _multivariate_table(multi: pd.DataFrame, covs: dict[str, Covariate], level: int) -> str:
    body, seen = [], set()
    for r in multi.to_dict("records"):
        ph = float(r["ph_p"])
        variable = str(r["variable"])
        first = variable not in seen
        seen.add(variable)
        body.append(
            [
                variable if first else "",
                _term_label(str(r["covariate"]), str(r["variable"]), covs),
                format_hr(float(r["hr"]), float(r["hr_lower"]), float(r["hr_upper"])),
                format_p(float(r["p"])),
                format_p(ph),
                "HR changes over time" if _finite(ph) and ph < _PH_LEVEL else "",
            ]
        )
    header = ["covariate", "term", f"HR ({level}% CI)", "p", "PH test p", "PH check"]
    return table_html(header, body)


def _forest_png(multi: pd.DataFrame, covs: dict[str, Covariate], level: int) -> bytes:
    from matplotlib.ticker import NullFormatter
    from matplotlib.transforms import blended_transform_factory

    n = len(multi)
    labels = [
        f"{r['variable']}: {_term_label(str(r['covariate']), str(r['variable']), covs)}"
        for r in multi.to_dict("records")
    ]
    hr = multi["hr"].to_numpy(dtype=np.float64)
    lo = multi["hr_lower"].to_numpy(dtype=np.float64)
    hi = multi["hr_upper"].to_numpy(dtype=np.float64)
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (hr, lo, hi)])
    left = float(min(finite.min(), 1.0)) / 1.25 if finite.size else 0.5
    right = float(max(finite.max(), 1.0)) * 1.25 if finite.size else 2.0
    lo_c, hi_c = (
        np.clip(np.nan_to_num(lo, nan=left), left, right),
        np.clip(np.nan_to_num(hi, nan=right), left, right),
    )
    y = np.arange(n)
    height = 0.42 * n + 1.3
    fig = new_figure(8, height)
    ax = fig.add_subplot(1, 1, 1)
    ax.axvline(1.0, color="#555", lw=1, ls="--")
    ax.hlines(y, lo_c, hi_c, color="#1f4e79", lw=1.6)
    ax.plot(hr, y, "s", color="#1f4e79", ms=6)
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ticks = [t for t in _HR_TICKS if left <= t <= right]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(f"hazard ratio ({level}% CI), log scale: < 1 lower risk, > 1 higher risk")
    side = blended_transform_factory(ax.transAxes, ax.transData)
    for yi, r in zip(y, multi.to_dict("records"), strict=True):
        text = format_hr(float(r["hr"]), float(r["hr_lower"]), float(r["hr_upper"]))
        ax.text(1.02, yi, text, transform=side, va="center", fontsize=8)
    ax.grid(axis="x", alpha=0.3, which="both")
    # Fixed margins in inches: the term labels on the left, the printed HRs on the right.
    fig.subplots_adjust(left=0.3, right=0.8, bottom=0.7 / height, top=1 - 0.2 / height)
    return png_bytes(fig)


def _references(variables: Sequence[str], covs: dict[str, Covariate]) -> str:
    refs = [
        f"{v} = {covs[v].reference}"
        for v in dict.fromkeys(variables)
        if v in covs and covs[v].kind == "categorical" and covs[v].reference
    ]
    return "; ".join(refs)


def _concordance_text(store: RunStore) -> str:
    m = _metric_rows(store, "cox_multivariate", "development")
    parts = []
    if "concordance" in m:
        parts.append(
            f"Concordance (Harrell's C) {_metric_text(m['concordance'])}: the share of patient "
            "pairs whose predicted risk is ordered as their survival was (0.5 is chance, 1 "
            "perfect ranking)."
        )
    if "log_likelihood_ratio_p" in m:
        parts.append(
            "Likelihood-ratio test of the whole model: "
            f"{_p_phrase(float(m['log_likelihood_ratio_p']['value']))}."
        )
    if "ph_global_p" in m:
        parts.append(
            f"Global proportional-hazards test: {_p_phrase(float(m['ph_global_p']['value']))}."
        )
    return f"<p>{' '.join(parts)}</p>" if parts else ""


def _cox_part(store: RunStore, record: CohortRecord) -> str:
    uni, multi = _table(store, "cox_univariate"), _table(store, "cox_multivariate")
    if uni is None and multi is None:
        return ""
    model = _json(store, "models/cox.json")
    level = round(100 * (1 - float(model.get("alpha", 0.05))))
    covs = _covariates(record)
    parts = [
        "<h3>Cox proportional-hazards models</h3>",
        "<p>A hazard ratio (HR) compares the instantaneous risk of the event: HR 2 means twice "
        "the risk at any time, HR 0.5 half. For a number it is per unit increase; for a category "
        "it compares the level with the reference level. An interval that excludes 1 means a "
        "difference unlikely to be chance.</p>",
    ]
    if uni is not None:
        threshold = model.get("threshold")
        rule = (
            f"Covariates whose likelihood-ratio test (all terms of the covariate at once) has "
            f"p &lt; {_esc(threshold)} enter the multivariate model."
            if threshold is not None
            else ""
        )
        size = f" ({int(uni['n'].iloc[0])} patients, {int(uni['events'].iloc[0])} events)"
        parts += [
            f"<h4>Univariate models</h4><p>Each covariate alone{size}. {rule}</p>",
            _univariate_table(uni, covs, level),
        ]
    if multi is not None:
        flagged = multi[multi["ph_p"] < _PH_LEVEL]
        if len(flagged):
            names = ", ".join(
                f"{r['variable']} ({_term_label(str(r['covariate']), str(r['variable']), covs)})"
                for r in flagged.to_dict("records")
            )
            ph = (
                f"<p><b>Proportional-hazards check:</b> doubtful (PH test p &lt; 0.05) for "
                f"{_esc(names)}. Their hazard ratio changes over follow-up (e.g. a strong early "
                "effect that fades), so the HR shown is an average over time; a model "
                "stratified on them describes them better.</p>"
            )
        else:
            ph = (
                "<p><b>Proportional-hazards check:</b> no term fails it (all PH test p &ge; "
                "0.05): each hazard ratio can be read as constant over follow-up.</p>"
            )
        refs = _references(multi["variable"].astype(str).tolist(), covs)
        ref_text = f" Reference categories: {_esc(refs)}." if refs else ""
        parts += [
            "<h4>Multivariate model</h4><p>All selected covariates together: each HR is "
            "adjusted for the others. The PH test (Schoenfeld residuals) checks that the HR "
            "stays constant over time.</p>",
            _multivariate_table(multi, covs, level),
            ph,
            _concordance_text(store),
            figure_html(
                store,
                "survival_forest.png",
                _forest_png(multi, covs, level),
                "forest plot of the multivariate hazard ratios",
            ),
            f"<p>Forest plot: squares are hazard ratios, lines their {level}% confidence "
            "intervals, on a log scale; right of the dashed line (HR 1) means higher risk."
            f"{ref_text}</p>",
        ]
    return "\n".join(p for p in parts if p)


# -- d. phenotypes ------------------------------------------------------------------------------


def _selection_png(sel: pd.DataFrame) -> bytes:
    sel = sel.sort_values("k")
    k = sel["k"].to_numpy()
    sil = sel["silhouette"].to_numpy(dtype=np.float64)
    eligible = sel["eligible"].to_numpy(dtype=bool)
    chosen = sel["chosen"].to_numpy(dtype=bool)
    fig = new_figure(7, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax2 = ax.twinx()
    ax2.bar(k, sel["bootstrap_share"], width=0.6, color="#f4a259", alpha=0.45)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("share of bootstrap replicates\nchoosing k (bars)", fontsize=8)
    ax.plot(k, sil, "-", color="#888", lw=1)
    ax.plot(k[eligible], sil[eligible], "o", color="#1f4e79", label="eligible k")
    ax.plot(k[~eligible], sil[~eligible], "o", color="#bbb", label="a phenotype too small")
    ax.plot(k[chosen], sil[chosen], "o", ms=14, mfc="none", mec="#d62728", mew=2, label="chosen")
    ax.set_zorder(ax2.get_zorder() + 1)  # the points over the bars
    ax.patch.set_visible(False)
    ax.set_xticks(k)
    ax.set_xlabel("number of phenotypes k")
    ax.set_ylabel("mean silhouette (higher = better separated)", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return png_bytes(fig)


def _profile_matrix(prof: pd.DataFrame, covs: dict[str, Covariate]) -> pd.DataFrame:
    """One row per covariate (or covariate: level): label, kind, per-phenotype value and sd."""
    prof = prof.assign(
        covariate=prof["covariate"].astype(str), level=prof["level"].fillna("").astype(str)
    )
    keys = list(dict.fromkeys(zip(prof["covariate"], prof["level"], strict=True)))
    order = {name: i for i, name in enumerate(covs)}
    keys.sort(key=lambda kl: order.get(kl[0], len(order)))
    rows = []
    for cov, level in keys:
        sel = prof[(prof["covariate"] == cov) & (prof["level"] == level)]
        unit = covs[cov].unit if cov in covs else ""
        rows.append(
            {
                "label": f"{cov}: {level}" if level else (f"{cov} ({unit})" if unit else cov),
                "kind": "categorical" if level else "numeric",
                "overall": float(sel["overall"].iloc[0]),
                **{
                    f"v{int(p)}": float(v)
                    for p, v in zip(sel["phenotype"], sel["value"], strict=True)
                },
                **{
                    f"s{int(p)}": float(v) for p, v in zip(sel["phenotype"], sel["sd"], strict=True)
                },
            }
        )
    return pd.DataFrame(rows)


def _profile_value(kind: str, value: float, sd: float | None = None) -> str:
    if kind == "categorical":
        return _percent(value, 0)
    if sd is None or not _finite(sd):
        return _sig(value)
    mean, spread = _same_decimals([value, sd])
    return f"{mean} ± {spread}"


def _profile_table(mat: pd.DataFrame, phenos: list[int], sizes: dict[int, int]) -> str:
    header = ["covariate"] + [f"phenotype {p} (n = {sizes.get(p, '?')})" for p in phenos]
    body = []
    for r in mat.to_dict("records"):
        row = [str(r["label"])]
        row += [_profile_value(r["kind"], r.get(f"v{p}", np.nan), r.get(f"s{p}")) for p in phenos]
        row.append(_profile_value(r["kind"], r["overall"]))
        body.append(row)
    return table_html([*header, "all patients"], body)


def _heatmap_png(mat: pd.DataFrame, phenos: list[int]) -> bytes:
    values = mat[[f"v{p}" for p in phenos]].to_numpy(dtype=np.float64)
    centre = np.nanmean(values, axis=1, keepdims=True)
    spread = np.nanstd(values, axis=1, keepdims=True)
    # A row without spread across phenotypes is 0 everywhere, not a division by zero.
    z = np.divide(values - centre, spread, out=np.zeros_like(values), where=spread > 0)
    lim = max(float(np.nanmax(np.abs(z))), 1.0) if z.size else 1.0
    fig = new_figure(1.3 * len(phenos) + 3.8, 0.32 * len(mat) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(z, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i, r in enumerate(mat.to_dict("records")):
        for j, p in enumerate(phenos):
            text = _profile_value(r["kind"], r[f"v{p}"])
            color = "white" if abs(z[i, j]) > 0.55 * lim else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(phenos)), [f"phenotype {p}" for p in phenos], fontsize=8)
    ax.set_yticks(range(len(mat)), mat["label"].tolist(), fontsize=8)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, label="standardised across phenotypes (per row)", shrink=0.8)
    fig.tight_layout()
    return png_bytes(fig)


def _phenotype_intro(store: RunStore, sel: pd.DataFrame | None) -> str:
    params = _json(store, "models/phenotypes.json")
    k = params.get("k")
    if k is None and sel is not None and sel["chosen"].any():
        k = int(sel.loc[sel["chosen"], "k"].iloc[0])
    text = []
    if k is not None:
        text.append(f"<b>{int(k)} phenotypes</b> were found by hierarchical clustering")
        how = [
            f"{params[key]} {word}"
            for key, word in (("distance", "distance between patients"), ("linkage", "linkage"))
            if params.get(key)
        ]
        if how:
            text[-1] += f" ({_esc(', '.join(how))})"
        if params.get("min_size") is not None:
            text.append(
                "k was chosen as the best-separated cut (largest silhouette) among those whose "
                f"smallest phenotype holds at least {_percent(float(params['min_size']), 0)} of "
                "the patients"
            )
    metric = _metric_rows(store, "phenotypes", "development").get("n_phenotypes")
    if metric is not None and _finite(metric.get("lower")) and _finite(metric.get("upper")):
        reps = int(metric.get("replicates") or 0)
        text.append(
            f"re-running the whole procedure on {reps} bootstrap resamples of the patients gave "
            f"between {float(metric['lower']):g} and {float(metric['upper']):g} phenotypes "
            "(bootstrap interval): a wide interval means the number of phenotypes is not "
            "firmly determined by the data"
        )
    horizon = params.get("horizon")
    if horizon is not None:
        unit = str(params.get("time_unit", ""))
        text.append(
            f"phenotypes are numbered by survival at {_time_point(float(horizon), unit)}: "
            "phenotype 1 has the best"
        )
    intro = f"<p>{'; '.join(text)}.</p>" if text else ""
    coincide = [str(c) for c in params.get("coincides_with") or []]
    if coincide:
        intro += (
            "<p><b>Note:</b> the phenotypes coincide with the levels of "
            f"{_esc(', '.join(coincide))} (each phenotype holds patients of one level only), "
            "so they say no more than that "
            "covariate does. Gower's distance counts a category mismatch as much as the whole "
            "range of a numeric covariate; a weight below 1 for it (<code>phenotypes.weights"
            "</code>) lets the other covariates shape the phenotypes.</p>"
        )
    weights = params.get("weights") or {}
    if weights:
        shown = ", ".join(f"{_esc(k)} {float(v):g}" for k, v in weights.items())
        intro += f"<p>Covariate weights in the distance (others 1): {shown}.</p>"
    return intro


def _phenotype_part(store: RunStore, record: CohortRecord, unit: str) -> str:
    sel, prof = _table(store, "phenotype_selection"), _table(store, "phenotypes")
    km = _km_set(store, "phenotype_", unit)
    if sel is None and prof is None and not km and not store.exists("models/phenotypes.json"):
        return ""
    parts = ["<h3>Phenotypes</h3>", _phenotype_intro(store, sel)]
    if sel is not None:
        parts += [
            figure_html(store, "survival_phenotype_selection.png", _selection_png(sel), "k"),
            "<p>Choice of the number of phenotypes: the points are the mean silhouette of each "
            "cut (how much closer patients are to their own phenotype than to the next one; "
            "higher is better), grey where a phenotype would be too small to be used; the red "
            "ring is the k chosen. Orange bars: how often each k was chosen on bootstrap "
            "resamples (right axis).</p>",
        ]
    if prof is not None:
        covs = _covariates(record)
        mat = _profile_matrix(prof, covs)
        phenos = sorted(int(p) for p in prof["phenotype"].unique())
        sizes = {int(p): int(n) for p, n in zip(prof["phenotype"], prof["n"], strict=True)}
        parts += [
            "<h4>Phenotype profiles</h4><p>What the patients of each phenotype look like: "
            "numbers as mean ± standard deviation, categories as the share of the phenotype's "
            "patients in the level; the last column is the whole cohort for comparison.</p>",
            _profile_table(mat, phenos, sizes),
            figure_html(store, "survival_phenotype_profiles.png", _heatmap_png(mat, phenos), "p"),
            "<p>Heat map of the same profiles: each row is standardised across the phenotypes, "
            "red where a phenotype is higher than the others, blue where lower; the printed "
            "numbers are the phenotype's means or shares.</p>",
        ]
    if km:
        parts += [
            "<h4>Survival by phenotype</h4><p>Read as the Kaplan-Meier curves above.</p>",
            km,
        ]
    return "\n".join(p for p in parts if p)


# -- e. classifiers -----------------------------------------------------------------------------


def _target_label(target: str) -> str:
    m = re.fullmatch(r"survival_(\d+(?:\.\d+)?)([dwmy])", target)
    if m:
        return f"alive at {_time_point(float(m.group(1)), _UNIT_LETTER[m.group(2)])}"
    return target


def _model_label(model: str) -> str:
    return _MODEL_LABELS.get(model, model.replace("_", " "))


def _classifier_table(metrics: pd.DataFrame) -> str:
    names = [m for m in _METRIC_LABELS if (metrics["metric"] == m).any()]
    names += [m for m in dict.fromkeys(metrics["metric"].astype(str)) if m not in names]
    body = []
    for (model, target), grp in metrics.groupby(["model", "target"], sort=False):
        row = [_model_label(str(model)), _target_label(str(target))]
        for name in names:
            sel = grp[grp["metric"] == name]
            row.append(
                f"{float(sel['mean'].iloc[0]):.3f} ± {float(sel['sd'].iloc[0]):.3f}"
                if len(sel)
                else "-"
            )
        row += [str(int(grp["folds"].iloc[0])), str(int(grp["n"].iloc[0]))]
        body.append(row)
    header = ["model", "target", *[_METRIC_LABELS.get(m, m) for m in names], "folds", "patients"]
    return table_html(header, body)


def _comparison_text(metrics: pd.DataFrame) -> str:
    """Direct classifier against the phenotype route on the survival target, in words."""
    sentences = []
    for target in dict.fromkeys(t for t in metrics["target"].astype(str) if t != "phenotype"):
        rows = metrics[metrics["target"] == target]
        for algo in ("decision_tree", "random_forest"):
            direct, route = rows[rows["model"] == algo], rows[rows["model"] == f"phenotype_{algo}"]
            if not len(direct) or not len(route):
                continue
            said = []
            for metric in ("accuracy", "roc_auc"):
                d, r = direct[direct["metric"] == metric], route[route["metric"] == metric]
                if not len(d) or not len(r):
                    continue
                dm, rm = float(d["mean"].iloc[0]), float(r["mean"].iloc[0])
                noise = max(float(d["sd"].iloc[0]), float(r["sd"].iloc[0]))
                winner = "the direct classifier" if dm > rm else "the phenotype route"
                if dm == rm:
                    winner = "neither"
                within = " (within the fold-to-fold spread)" if abs(dm - rm) <= noise else ""
                said.append(
                    f"{_METRIC_LABELS[metric]} {dm:.3f} directly vs {rm:.3f} through the "
                    f"phenotype: {winner} is higher by {abs(dm - rm):.3f}{within}"
                )
            if said:
                sentences.append(
                    f"Predicting whether a patient is {_target_label(target)} with a "
                    f"{_model_label(algo)}: " + "; ".join(said) + "."
                )
    return f"<p>{_esc(' '.join(sentences))}</p>" if sentences else ""


def _class_order(values: Sequence[Any]) -> list[str]:
    names = list(dict.fromkeys(str(v) for v in values))
    known = [v for v in ("died", "alive") if v in names]
    rest = [v for v in names if v not in known]
    rest.sort(key=lambda v: (0, float(v), v) if _finite(v) else (1, 0.0, v))
    return known + rest


def _panels(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(target, model) pairs in table order: one figure panel each."""
    pairs = zip(df["target"].astype(str), df["model"].astype(str), strict=True)
    return list(dict.fromkeys(pairs))


def _confusion_png(conf: pd.DataFrame) -> bytes:
    panels = list(
        dict.fromkeys(zip(conf["target"].astype(str), conf["model"].astype(str), strict=True))
    )
    targets = list(dict.fromkeys(t for t, _ in panels))
    cols = max(sum(1 for t, _ in panels if t == target) for target in targets)
    fig = new_figure(3.4 * cols, 3.2 * len(targets))
    for r, target in enumerate(targets):
        models = [m for t, m in panels if t == target]
        for c, model in enumerate(models):
            sel = conf[(conf["target"] == target) & (conf["model"] == model)]
            classes = _class_order([*sel["true"], *sel["predicted"]])
            grid = np.zeros((len(classes), len(classes)), dtype=np.int64)
            index = {name: i for i, name in enumerate(classes)}
            for rec in sel.to_dict("records"):
                grid[index[str(rec["true"])], index[str(rec["predicted"])]] += int(rec["count"])
            ax = fig.add_subplot(len(targets), cols, r * cols + c + 1)
            ax.imshow(grid, cmap="Blues")
            top = grid.max() or 1
            for (i, j), count in np.ndenumerate(grid):
                color = "white" if count > top / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
            ax.set_xticks(range(len(classes)), classes, fontsize=7)
            ax.set_yticks(range(len(classes)), classes, fontsize=7)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
            ax.set_title(f"{_model_label(model)}\n{_target_label(target)}", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _importance_png(imp: pd.DataFrame) -> bytes:
    panels = list(
        dict.fromkeys(zip(imp["target"].astype(str), imp["model"].astype(str), strict=True))
    )
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    shown = min(_TOP_FEATURES, int(imp.groupby(["target", "model"]).size().max()))
    fig = new_figure(5.2 * cols, (0.28 * shown + 1.2) * rows)
    for i, (target, model) in enumerate(panels):
        sel = imp[(imp["target"] == target) & (imp["model"] == model)]
        top = sel.sort_values("importance", ascending=False).head(_TOP_FEATURES)[::-1]
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.barh(
            top["feature"].astype(str),
            top["importance"],
            xerr=top["sd"].fillna(0),
            color="#4a7ab5",
            ecolor="#555",
            capsize=2,
        )
        ax.tick_params(labelsize=7)
        ax.set_xlabel("importance (mean decrease in impurity)", fontsize=7)
        ax.set_title(f"{_model_label(model)}: {_target_label(target)}", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _classifier_part(store: RunStore) -> str:
    metrics = _table(store, "classifier_metrics")
    conf = _table(store, "classifier_confusion")
    imp = _table(store, "classifier_importance")
    if metrics is None and conf is None and imp is None:
        return ""
    parts = [
        "<h3>Recognising phenotypes and predicting survival</h3>",
        "<p>Classifiers learn, from the covariates alone, either a patient's phenotype or "
        "whether the patient is alive at the horizon; they are scored on patients left out of "
        "training (cross-validation: mean ± standard deviation over the folds). The "
        "<em>phenotype route</em> predicts the phenotype and then uses that phenotype's "
        "survival; the direct classifiers predict the status at the horizon itself. Accuracy: "
        "share classified correctly; AUC: chance that a patient who died is ranked at higher "
        "risk than one who lived (0.5 chance, 1 perfect).</p>",
    ]
    if metrics is not None:
        parts += [_classifier_table(metrics), _comparison_text(metrics)]
    if conf is not None:
        parts += [
            "<p>Confusion matrices (out-of-fold predictions): rows are the true class, columns "
            "the predicted one; the diagonal counts correct predictions.</p>",
            figure_html(store, "survival_confusion.png", _confusion_png(conf), "confusion"),
        ]
    if imp is not None:
        parts += [
            f"<p>Which covariates the models lean on (top {_TOP_FEATURES} per model; bars: "
            "mean over the folds, lines: standard deviation). A category appears as "
            "<code>name[level]</code>. Importance says what the model uses, not that the "
            "covariate causes the outcome.</p>",
            figure_html(store, "survival_importance.png", _importance_png(imp), "importance"),
        ]
    return "\n".join(p for p in parts if p)


# -- f. external validation ---------------------------------------------------------------------


def _validation_metrics_table(store: RunStore) -> str:
    metrics = _table(store, "survival_metrics")
    if metrics is None:
        return ""
    val = metrics[metrics["cohort"] == "validation"]
    if not len(val):
        return ""
    body = []
    for r in val.to_dict("records"):
        dev = _metric_rows(store, str(r["analysis"]), "development").get(str(r["metric"]))
        body.append(
            [
                str(r["analysis"]).replace("_", " "),
                str(r["metric"]).replace("_", " "),
                _metric_text(dev) if dev is not None else "-",
                _metric_text(r),
            ]
        )
    header = ["model", "measure", "development cohort", "external cohort"]
    return (
        "<p>The development models applied unchanged to the external patients. A concordance "
        "close to the development one means the model ranks new patients' risk as well as those "
        "it was built on; a fall towards 0.5 means it transports poorly (intervals: bootstrap)."
        "</p>" + table_html(header, body)
    )


def _validation_part(store: RunStore, records: dict[str, CohortRecord], unit: str) -> str:
    km = _km_set(store, "validation_", unit, "External cohort")
    metrics = _validation_metrics_table(store)
    val = records.get("validation")
    if val is None and not km and not metrics:
        return ""
    parts = ["<h3>External validation</h3>"]
    if val is not None:
        share = f"{_percent(val.events / val.n)} of patients" if val.n else "-"
        parts.append(
            f"<p>{val.n} external patients, {val.events} events ({share}); each was assigned "
            "the phenotype the classifier trained on the development cohort predicts.</p>"
        )
    if km:
        parts += [
            "<p>If the phenotypes carry over, the external curves are ordered as in the "
            "development cohort (phenotype 1 best).</p>",
            km,
        ]
    parts.append(metrics)
    return "\n".join(p for p in parts if p)


# -- the section --------------------------------------------------------------------------------


def survival_section(store: RunStore) -> str:
    """The survival analysis part of the report, as HTML.

    Parameters
    ----------
    store : RunStore
        A run store the survival stages wrote to; its figures are written under ``report/``
        (``survival_*.png``).

    Returns
    -------
    str
        HTML fragment: cohort, Kaplan-Meier, Cox, phenotypes, classifiers and external
        validation, each present only where its tables are; ``""`` when the store has no
        ``models/cohort.json`` (the ``cohort`` stage did not run). Patient identifiers and
        rows are never shown: only counts and aggregates.
    """
    if not store.exists("models/cohort.json"):
        return ""
    records = {"development": CohortRecord.model_validate(store.read_json("models/cohort.json"))}
    if store.exists("models/validation_cohort.json"):
        records["validation"] = CohortRecord.model_validate(
            store.read_json("models/validation_cohort.json")
        )
    dev = records["development"]
    unit = dev.params.time_unit
    parts = [
        "<h2>Survival analysis</h2>",
        _cohort_part(store, records),
        _km_part(store, unit),
        _cox_part(store, dev),
        _phenotype_part(store, dev, unit),
        _classifier_part(store),
        _validation_part(store, records, unit),
    ]
    return "\n".join(p for p in parts if p)
