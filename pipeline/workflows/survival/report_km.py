"""The Kaplan-Meier figures and tables of the report's survival section.

Per grouping of the patients: step curves with their confidence bands, censoring ticks and
the numbers at risk under the plot; the summary table (patients, events, median survival,
survival at fixed times) and the log-rank tests. :func:`km_set_html` renders a whole set of
KM tables under one prefix: ``""`` for the development cohort (the survival section's
Kaplan-Meier part), ``phenotype_`` for the phenotypes and ``validation_`` for the external
cohort.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore
from pipeline.report.figures import figure_html, new_figure, png_bytes, table_html
from pipeline.report.format import (
    escape,
    format_p,
    is_finite,
    p_phrase,
    percent,
    read_optional_table,
    slug,
)
from pipeline.workflows.survival.report_format import (
    median_text,
    time_point,
)

__all__ = ["km_set_html"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


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
    if not len(sel) or not is_finite(sel["survival"].iloc[0]):
        return "-"  # past the group's follow-up: unknown, not flat
    r = sel.iloc[0]
    lo, hi = percent(float(r["survival_lower"])), percent(float(r["survival_upper"]))
    return f"{percent(float(r['survival']))} ({lo.rstrip('%')}-{hi})"


def _median_cells(summary: pd.DataFrame | None, group: str) -> list[str]:
    s = summary[summary["group"].astype(str) == group] if summary is not None else None
    if s is None or not len(s):
        return ["", "", ""]
    r = s.iloc[0]
    median = median_text(float(r["median"]), float(r["median_lower"]), float(r["median_upper"]))
    return [str(int(r["n"])), str(int(r["events"])), median]


def _km_summary_table(
    summary: pd.DataFrame | None, times: pd.DataFrame | None, groups: list[str], unit: str
) -> str | None:
    """Patients, events, median and survival at fixed times per group.

    None when there is neither a summary nor a times table.
    """
    if summary is None and times is None:
        return None
    points = sorted(set(times["time"].astype(float))) if times is not None else []
    header = ["group", "patients", "events", f"median survival, {unit} (CI)"]
    header += [f"survival at {time_point(t, unit)} (CI)" for t in points]
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
    title += f" (log-rank {p_phrase(p)})" if is_finite(p) else ""
    parts = [f"<h4>{escape(title)}</h4>"]
    if curves is not None:
        sizes = (
            {str(g): int(n) for g, n in zip(summary["group"], summary["n"], strict=True)}
            if summary is not None
            else {}
        )
        png, alt = _km_figure(curves, groups, sizes, title, unit)
        parts.append(figure_html(store, name, png, alt))
    table = _km_summary_table(summary, times, groups, unit)
    if table is not None:
        parts.append(table)
    if logrank is not None:
        parts.append(_logrank_table(logrank))
    return "\n".join(parts)


def km_set_html(store: RunStore, prefix: str, unit: str, cohort: str = "") -> str | None:
    """Every grouping of the KM tables ``<prefix>km_*`` (prefix "", phenotype_, validation_).

    Parameters
    ----------
    store : RunStore
        The run store; each grouping's figure is written under ``report/`` as
        ``survival_<prefix>km_<i>_<column>.png``.
    prefix : str
        Prefix of the tables ``km_curves``, ``km_summary``, ``km_times`` and ``logrank``:
        ``""`` (the development cohort), ``"phenotype_"`` or ``"validation_"``.
    unit : str
        Time unit of the tables (``years``), for the axes and headers.
    cohort : str
        Cohort named in the titles (``"External cohort"``); empty for none.

    Returns
    -------
    str or None
        HTML, per grouping (``group_column``): a heading with the log-rank p-value, the
        curves with numbers at risk, the summary table and the log-rank tests. None when
        none of the tables was written.
    """
    tables = {
        key: read_optional_table(store, f"{prefix}{table}")
        for key, table in (
            ("curves", "km_curves"),
            ("summary", "km_summary"),
            ("times", "km_times"),
            ("logrank", "logrank"),
        )
    }
    present = [t for t in tables.values() if t is not None]
    if not present:
        return None
    columns = list(dict.fromkeys(str(c) for t in present for c in t["group_column"]))
    return "\n".join(
        _km_grouping(store, tables, col, f"survival_{prefix}km_{i}_{slug(col)}.png", unit, cohort)
        for i, col in enumerate(columns)
    )
