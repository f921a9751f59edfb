"""The report's survival section, written for a clinician reading a static page.

It shows what the survival stages wrote (``cohort``, ``kaplan_meier``, ``cox``, ``phenotypes``,
``classify_phenotypes``, ``validate_external``): the cohort and its 'table 1', Kaplan-Meier
curves with numbers at risk, the Cox models with their proportional-hazards check, the
phenotypes and how well classifiers recognise them, and the external validation. Every part
is optional: a table a job did not write leaves its part out.

The cohort (part a), Kaplan-Meier (b) and Cox (c) parts are here; the curves and their tables
are drawn by :mod:`~pipeline.workflows.survival.report_km`,
the phenotype, classifier and external-validation
parts (d to f) by :mod:`pipeline.workflows.survival.report_phenotypes`, and numbers are printed by
:mod:`pipeline.report.format`, whose ``format_p``, ``format_hr`` and ``format_time`` this
module re-exports.

Only counts and aggregates are shown. The patient-level tables (``cohort``,
``validation_cohort``, ``patient_phenotypes``, ``validation_phenotypes``) are never read by
these modules, so no patient identifier or source row can reach the page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore
from pipeline.report.context import ReportContext
from pipeline.report.figures import figure_html, new_figure, png_bytes, table_html
from pipeline.report.format import (
    escape,
    format_p,
    is_finite,
    join_parts,
    p_phrase,
    percent,
    read_optional_json,
    read_optional_table,
    same_decimals,
    significant,
)
from pipeline.workflows.survival.report_format import (
    covariates_by_name,
    format_hr,
    format_time,
    metric_rows,
    metric_text,
    term_label,
)
from pipeline.workflows.survival.report_km import km_set_html
from pipeline.workflows.survival.report_phenotypes import (
    classifier_part,
    phenotype_part,
    validation_part,
)
from pipeline.workflows.survival.spec import CohortRecord, Condition, Covariate

__all__ = ["format_hr", "format_p", "format_time", "survival_section"]

_COHORTS = ("development", "validation")
#: Hazard ratios labelled on the forest plot's log axis (those within its range).
_HR_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20, 50, 100)
#: A term whose proportional-hazards test falls below this is flagged.
_PH_LEVEL = 0.05


# -- a. cohort ----------------------------------------------------------------------------------


def _condition_text(cond: Condition, id_column: str | None) -> str:
    # A condition on the identifier column could list patients: its value is not shown.
    value = "(values not shown)" if cond.column == id_column else cond.value
    return f"{cond.column} {cond.op} {value}"


def _record_text(record: CohortRecord, label: str) -> str:
    p = record.params
    share = record.events / record.n if record.n else float("nan")
    parts = [
        f"<b>{escape(label)}</b>: <code>{escape(p.source)}</code>, {record.source_rows} rows read",
    ]
    if p.where:
        rules = "; ".join(_condition_text(c, p.id) for c in p.where)
        parts.append(f"{record.filtered_out} removed by the selection rules ({escape(rules)})")
    if p.missing.strategy == "drop":
        parts.append(
            f"{record.dropped_missing} dropped because a covariate was missing (policy: drop "
            "incomplete rows)"
        )
    elif record.impute:
        values = ", ".join(
            f"{k} = {significant(float(v)) if is_finite(v) else v}"
            for k, v in record.impute.items()
        )
        parts.append(
            "missing covariates imputed with the development cohort's median or most frequent "
            f"level ({escape(values)})"
        )
    else:
        parts.append("no covariate value was missing (policy: impute)")
    parts.append(
        f"<b>{record.n} patients analysed, {record.events} events</b> ({percent(share)} of "
        "patients)"
    )
    return "; ".join(parts) + "."


def _summary_cell(rows: pd.DataFrame) -> str:
    r = rows.iloc[0]
    if r["kind"] == "numeric":
        med, q1, q3 = same_decimals([float(r["value"]), float(r["q1"]), float(r["q3"])])
        return f"{med} [{q1}-{q3}]"
    return f"{int(r['n'])} ({percent(float(r['value']))})"


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
    covs = covariates_by_name(dev) if dev else {}
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
        f"(censoring); every time in this section is in <b>{escape(p.time_unit)}</b> (the "
        f"source table records {escape(p.duration_unit)}).</p>"
    )
    summary = read_optional_table(store, "cohort_summary")
    if summary is not None:
        parts += [
            "<p><b>Patient characteristics.</b> Numbers: median [interquartile range], the "
            "middle half of the patients lies in the brackets. Categories: patients (share of "
            "the cohort). <em>missing</em>: patients without the value in the source table "
            "(before the missing-value policy).</p>",
            _table_one(summary, records),
        ]
    return "\n".join(parts)


# -- b. Kaplan-Meier (curves and tables: report_km) ---------------------------------------------

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


def _km_part(store: RunStore, unit: str) -> str | None:
    body = km_set_html(store, "", unit)
    if body is None:
        return None
    return "\n".join(["<h3>Kaplan-Meier survival</h3>", _KM_HOWTO, body])


# -- c. Cox -------------------------------------------------------------------------------------


def _univariate_table(uni: pd.DataFrame, covs: dict[str, Covariate], level: int) -> str:
    body, seen = [], set()
    for r in uni.to_dict("records"):
        variable = str(r["variable"])
        first = variable not in seen
        seen.add(variable)
        body.append(
            [
                variable if first else "",
                term_label(str(r["covariate"]), variable, covs),
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
                term_label(str(r["covariate"]), str(r["variable"]), covs),
                format_hr(float(r["hr"]), float(r["hr_lower"]), float(r["hr_upper"])),
                format_p(float(r["p"])),
                format_p(ph),
                "HR changes over time" if is_finite(ph) and ph < _PH_LEVEL else "",
            ]
        )
    header = ["covariate", "term", f"HR ({level}% CI)", "p", "PH test p", "PH check"]
    return table_html(header, body)


def _forest_png(multi: pd.DataFrame, covs: dict[str, Covariate], level: int) -> bytes:
    from matplotlib.ticker import NullFormatter
    from matplotlib.transforms import blended_transform_factory

    n = len(multi)
    labels = [
        f"{r['variable']}: {term_label(str(r['covariate']), str(r['variable']), covs)}"
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


def _concordance_text(store: RunStore) -> str | None:
    m = metric_rows(store, "cox_multivariate", "development")
    parts = []
    if "concordance" in m:
        parts.append(
            f"Concordance (Harrell's C) {escape(metric_text(m['concordance']))}: the share of "
            "patient pairs whose predicted risk is ordered as their survival was (0.5 is chance, 1 "
            "perfect ranking)."
        )
    if "log_likelihood_ratio_p" in m:
        parts.append(
            "Likelihood-ratio test of the whole model: "
            f"{escape(p_phrase(float(m['log_likelihood_ratio_p']['value'])))}."
        )
    if "ph_global_p" in m:
        parts.append(
            "Global proportional-hazards test: "
            f"{escape(p_phrase(float(m['ph_global_p']['value'])))}."
        )
    return f"<p>{' '.join(parts)}</p>" if parts else None


def _cox_part(store: RunStore, record: CohortRecord) -> str | None:
    uni, multi = (
        read_optional_table(store, "cox_univariate"),
        read_optional_table(store, "cox_multivariate"),
    )
    if uni is None and multi is None:
        return None
    model = read_optional_json(store, "models/cox.json")
    level = round(100 * (1 - float(model.get("alpha", 0.05))))
    covs = covariates_by_name(record)
    parts: list[str | None] = [
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
            f"p &lt; {escape(threshold)} enter the multivariate model."
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
                f"{r['variable']} ({term_label(str(r['covariate']), str(r['variable']), covs)})"
                for r in flagged.to_dict("records")
            )
            ph = (
                f"<p><b>Proportional-hazards check:</b> doubtful (PH test p &lt; 0.05) for "
                f"{escape(names)}. Their hazard ratio changes over follow-up (e.g. a strong early "
                "effect that fades), so the HR shown is an average over time; a model "
                "stratified on them describes them better.</p>"
            )
        else:
            ph = (
                "<p><b>Proportional-hazards check:</b> no term fails it (all PH test p &ge; "
                "0.05): each hazard ratio can be read as constant over follow-up.</p>"
            )
        refs = _references(multi["variable"].astype(str).tolist(), covs)
        ref_text = f" Reference categories: {escape(refs)}." if refs else ""
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
    return join_parts(parts)


# -- the section --------------------------------------------------------------------------------


def survival_section(ctx: ReportContext) -> str | None:
    """The survival analysis part of the report, as HTML.

    Parameters
    ----------
    ctx : ReportContext
        Its store is one the survival stages wrote to; the figures are written under
        ``report/`` (``survival_*.png``).

    Returns
    -------
    str or None
        HTML fragment: cohort, Kaplan-Meier, Cox, phenotypes, classifiers and external
        validation, each present only where its tables are; None when the store has no
        ``models/cohort.json`` (the ``cohort`` stage did not run). Patient identifiers and
        rows are never shown: only counts and aggregates.
    """
    store = ctx.store
    if not store.exists("models/cohort.json"):
        return None
    records = {"development": CohortRecord.model_validate(store.read_json("models/cohort.json"))}
    if store.exists("models/validation_cohort.json"):
        records["validation"] = CohortRecord.model_validate(
            store.read_json("models/validation_cohort.json")
        )
    dev = records["development"]
    unit = dev.params.time_unit
    return join_parts(
        [
            "<h2>Survival analysis</h2>",
            _cohort_part(store, records),
            _km_part(store, unit),
            _cox_part(store, dev),
            phenotype_part(store, dev, unit),
            classifier_part(store),
            validation_part(store, records, unit),
        ]
    )
