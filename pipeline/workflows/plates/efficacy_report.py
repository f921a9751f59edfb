"""The efficacy ranking's report section: the ranking with intervals and groups, dose-response
curves per drug, score distributions, the learned-vs-morphology comparison, day-10 montages
of the top and bottom of the ranking, the probe and supervised-baseline tables and the
score's Z'-factor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import grid_png, new_figure, png_bytes, table_html
from pipeline.report.format import escape, join_parts, read_optional_table, significant
from pipeline.workflows.plates.dose_response import four_pl
from pipeline.workflows.plates.efficacy_spec import (
    DOSE_RESPONSE_TABLE,
    EFFICACY_MODELS_TABLE,
    EFFICACY_MORPHOLOGY_TABLE,
    EFFICACY_TABLE,
    EFFICACY_WELLS_TABLE,
)
from pipeline.workflows.plates.ranking import TREATMENT_KEYS, z_prime
from pipeline.workflows.plates.report import preview_images
from pipeline.workflows.plates.spec import CROPS_TABLE

__all__ = ["efficacy_section"]

#: Wells shown from each end of the ranking in the montage.
MONTAGE_WELLS = 6


def _label(row: Any) -> str:
    if row["treatment"] == "untreated":
        return "untreated"
    return f"{row['treatment']} {significant(float(row['concentration']))} {row['unit']}"


def _ranking_table(ranking: pd.DataFrame) -> str:
    rows = [
        [
            int(r["rank"]),
            escape(_label(r)),
            int(r["wells"]),
            significant(r["score"]),
            f"[{significant(r['score_lower'])}, {significant(r['score_upper'])}]",
            significant(r["z"]),
            significant(r["p"]),
            escape(r["group"]),
            int(r["method2_rank"]),
        ]
        for _, r in ranking.iterrows()
    ]
    return table_html(
        ["rank", "treatment", "wells", "score", "interval", "z", "p", "group", "method 2 rank"],
        rows,
    )


def _dose_plots(ctx: ReportContext, wells: pd.DataFrame, dose: pd.DataFrame) -> str | None:
    treated = wells[~wells["control"]]
    drugs = [d for d in dose["treatment"] if (treated["treatment"] == d).any()]
    if not drugs:
        return None
    control = (
        float(np.median(wells.loc[wells["control"], "score"])) if wells["control"].any() else np.nan
    )
    cols = min(4, len(drugs))
    rows = -(-len(drugs) // cols)
    fig = new_figure(3.2 * cols, 2.7 * rows)
    for k, drug in enumerate(drugs):
        ax = fig.add_subplot(rows, cols, k + 1)
        part = treated[treated["treatment"] == drug]
        ax.scatter(part["concentration"], part["score"], s=12, color="C0", label="wells")
        fit = dose[dose["treatment"] == drug].iloc[0]
        if bool(fit["converged"]):
            c = np.geomspace(part["concentration"].min() / 3, part["concentration"].max() * 3, 100)
            ax.plot(
                c,
                four_pl(c, fit["bottom"], fit["top"], fit["ec50"], fit["hill"]),
                "C1-",
                label=f"4PL, EC50 {significant(fit['ec50'])}",
            )
        else:
            ax.text(
                0.02,
                0.95,
                str(fit["status"]).replace("_", " "),
                transform=ax.transAxes,
                fontsize=7,
                va="top",
            )
        if np.isfinite(control):
            ax.axhline(control, color="0.5", lw=0.8, ls="--", label="untreated median")
        ax.set_xscale("log")
        ax.set_xlabel(f"concentration ({fit['unit']})", fontsize=8)
        ax.set_ylabel("score", fontsize=8)
        ax.set_title(str(drug), fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return ctx.figure("efficacy_dose_response.png", png_bytes(fig), "dose-response per drug")


def _distributions(ctx: ReportContext, wells: pd.DataFrame) -> str:
    fig = new_figure(8.0, 3.0)
    for k, (column, title) in enumerate(
        (("score", "learned representation (method 1)"), ("morphology_score", "morphology"))
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        values = wells[column].to_numpy(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        bins = np.linspace(finite.min(), finite.max(), 30)
        for name, mask in (
            ("untreated (held out)", wells["control"]),
            ("treated", ~wells["control"]),
        ):
            v = wells.loc[mask, column].to_numpy(np.float64)
            ax.hist(v[np.isfinite(v)], bins=bins, alpha=0.6, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("well score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return ctx.figure("efficacy_scores.png", png_bytes(fig), "score distributions")


def _comparison(ranking: pd.DataFrame, morph: pd.DataFrame) -> str:
    keys = list(TREATMENT_KEYS)
    both = ranking[[*keys, "rank", "score"]].merge(
        morph[[*keys, "rank", "score"]], on=keys, suffixes=("", "_morphology")
    )
    rho = both["rank"].corr(both["rank_morphology"], method="spearman")
    rows = [
        [
            escape(_label(r)),
            int(r["rank"]),
            int(r["rank_morphology"]),
            significant(r["score"]),
            significant(r["score_morphology"]),
        ]
        for _, r in both.sort_values("rank").iterrows()
    ]
    return (
        join_parts(
            [
                "<h3>Learned representation vs morphology</h3>",
                f"<p>Spearman correlation of the two rankings: {significant(rho)}. The morphology "
                "baseline scores a well by the norm of its day-10 robust z-scores (area, "
                "circularity and intensity changes) against the plate's untreated wells.</p>",
                table_html(
                    [
                        "treatment",
                        "rank (learned)",
                        "rank (morphology)",
                        "score (learned)",
                        "score (morphology)",
                    ],
                    rows,
                ),
            ]
        )
        or ""
    )


def _montage(ctx: ReportContext, wells: pd.DataFrame, ranking: pd.DataFrame) -> str | None:
    if not ctx.store.exists(f"tables/{CROPS_TABLE}.parquet"):
        return None
    crops = read_table(ctx.store, CROPS_TABLE)
    target = int(crops.loc[crops["ok"], "day"].max())
    treated = wells[~wells["control"]].sort_values("score")
    picks = pd.concat([treated.head(MONTAGE_WELLS), treated.tail(MONTAGE_WELLS)])
    index, titles = [], []
    for _, w in picks.iterrows():
        hit = crops[
            (crops["plate"] == w["plate"])
            & (crops["well"] == w["well"])
            & (crops["day"] == target)
            & crops["ok"]
        ]
        if hit.empty:
            continue
        index.append(int(hit["image"].iloc[0]))
        titles.append(f"{w['plate']} {w['well']} {_label(w)[:22]} s={significant(w['score'])}")
    if not index:
        return None
    return ctx.figure(
        "efficacy_montage.png",
        grid_png(preview_images(ctx, index), titles),
        f"day {target}: the {MONTAGE_WELLS} least and most changed treated wells",
    )


def _probes(ctx: ReportContext) -> str | None:
    from pipeline.features.probe import summarize_probe

    tables = [
        t
        for t in (
            read_optional_table(ctx.store, "probe"),
            read_optional_table(ctx.store, "supervised_baseline"),
        )
        if t is not None
    ]
    if not tables:
        return None
    common = ["features", "shots", "seed", "n_train", "n_test", "accuracy", "macro_f1"]
    summary = summarize_probe(pd.concat([t[common] for t in tables], ignore_index=True))
    rows = [
        [
            escape(r["features"]),
            "all" if int(r["shots"]) == 0 else int(r["shots"]),
            significant(r["macro_f1_mean"]),
            significant(r["accuracy_mean"]),
        ]
        for _, r in summary.iterrows()
    ]
    return join_parts(
        [
            "<h3>Linear probe and supervised baseline</h3>",
            "<p>Macro-F1 on held-out wells against the three groups (untreated, single "
            "concentration, screening): logistic regression on the frozen representation "
            "vs a ResNet trained supervised from random initialisation.</p>",
            table_html(["features", "examples per class", "macro-F1", "accuracy"], rows),
        ]
    )


def efficacy_section(ctx: ReportContext) -> str | None:
    """The efficacy ranking (None when the job has no efficacy step)."""
    store = ctx.store
    if not store.exists(f"tables/{EFFICACY_TABLE}.parquet"):
        return None
    ranking = read_table(store, EFFICACY_TABLE)
    wells = read_table(store, EFFICACY_WELLS_TABLE)
    morph = read_table(store, EFFICACY_MORPHOLOGY_TABLE)
    dose = read_table(store, DOSE_RESPONSE_TABLE)
    models = read_table(store, EFFICACY_MODELS_TABLE)
    control = wells["control"].to_numpy(bool)
    positive = wells["plate_group"] == "positive_control"
    zp = z_prime(
        wells.loc[positive, "score"].to_numpy(float), wells.loc[control, "score"].to_numpy(float)
    )
    selected = models[models["selected"].astype(bool)]
    chosen = selected["model"].tolist()
    metric = str(ranking["metric"].iloc[0]) if len(ranking) else "l2"
    observed = "forecast" in selected and bool(selected["forecast"].eq("observed").any())
    how = (
        "predicts from days 7-9 as imaged"
        if observed
        else "predicts from day 7, the treatment day, one day at a time (days 8 and 9 are "
        "its own predictions, so a treated well is compared with an untreated course)"
    )
    parts: list[str | None] = [
        "<h2>Drug efficacy</h2>",
        f"<p>{len(ranking)} treatments from {len(wells)} wells ({int(control.sum())} untreated). "
        f"A well's score is the {escape(metric)} deviation of its day-10 representation from "
        f"what a time-series model of untreated spheroids {how} (model: "
        f"{escape(', '.join(chosen))}); untreated wells are scored by models that did not see "
        "them and give the null for z and p. Intervals: bootstrap over replicate wells.</p>",
        _ranking_table(ranking),
        f"<p>Z'-factor of the score, positive control vs untreated: {significant(zp)} "
        "(above 0.5 an excellent assay).</p>",
        _dose_plots(ctx, wells, dose),
        _distributions(ctx, wells),
        _comparison(ranking, morph),
        _montage(ctx, wells, ranking),
        _probes(ctx),
    ]
    return join_parts(parts)
