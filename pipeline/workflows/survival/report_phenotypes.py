"""The phenotype parts of the report's survival section.

Part d, the phenotypes: how their number was chosen, their profiles and their survival; part
e, the classifiers that recognise them or predict survival from the covariates; part f, the
external validation. Only counts and aggregates are read: the patient-level tables
(``patient_phenotypes``, ``validation_phenotypes``, ``validation_cohort``) never are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore
from pipeline.report.figures import figure_html, new_figure, png_bytes, table_html
from pipeline.report.format import (
    escape,
    is_finite,
    join_parts,
    percent,
    read_optional_json,
    read_optional_table,
    same_decimals,
    significant,
)
from pipeline.workflows.survival.report_format import (
    covariates_by_name,
    metric_rows,
    metric_text,
    time_point,
)
from pipeline.workflows.survival.report_km import km_set_html
from pipeline.workflows.survival.spec import CohortRecord, Covariate

__all__ = ["classifier_part", "phenotype_part", "validation_part"]

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
        return percent(value, 0)
    if sd is None or not is_finite(sd):
        return significant(value)
    mean, spread = same_decimals([value, sd])
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


def _phenotype_intro(store: RunStore, sel: pd.DataFrame | None) -> str | None:
    """How the phenotypes were found, their bootstrap interval, numbering and weights.

    None when ``models/phenotypes.json``, the selection and the metrics say none of these.
    """
    params = read_optional_json(store, "models/phenotypes.json")
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
            text[-1] += f" ({escape(', '.join(how))})"
        if params.get("min_size") is not None:
            text.append(
                "k was chosen as the best-separated cut (largest silhouette) among those whose "
                f"smallest phenotype holds at least {percent(float(params['min_size']), 0)} of "
                "the patients"
            )
    metric = metric_rows(store, "phenotypes", "development").get("n_phenotypes")
    if metric is not None and is_finite(metric.get("lower")) and is_finite(metric.get("upper")):
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
            f"phenotypes are numbered by survival at {escape(time_point(float(horizon), unit))}: "
            "phenotype 1 has the best"
        )
    paragraphs = [f"<p>{'; '.join(text)}.</p>"] if text else []
    coincide = [str(c) for c in params.get("coincides_with") or []]
    if coincide:
        paragraphs.append(
            "<p><b>Note:</b> the phenotypes coincide with the levels of "
            f"{escape(', '.join(coincide))} (each phenotype holds patients of one level only), "
            "so they say no more than that "
            "covariate does. Gower's distance counts a category mismatch as much as the whole "
            "range of a numeric covariate; a weight below 1 for it (<code>phenotypes.weights"
            "</code>) lets the other covariates shape the phenotypes.</p>"
        )
    weights = params.get("weights") or {}
    if weights:
        shown = ", ".join(f"{escape(k)} {float(v):g}" for k, v in weights.items())
        paragraphs.append(f"<p>Covariate weights in the distance (others 1): {shown}.</p>")
    return join_parts(paragraphs, sep="")


def phenotype_part(store: RunStore, record: CohortRecord, unit: str) -> str | None:
    """Part d: the phenotypes, how their number was chosen, their profiles and survival.

    Parameters
    ----------
    store : RunStore
        The run store (tables ``phenotype_selection``, ``phenotypes`` and
        ``phenotype_km_*``, ``models/phenotypes.json``); figures go under ``report/``.
    record : CohortRecord
        The development cohort's record: its covariates order and label the profiles.
    unit : str
        Time unit of the survival tables (``years``).

    Returns
    -------
    str or None
        HTML fragment; None when the phenotype stages wrote none of these.
    """
    sel, prof = (
        read_optional_table(store, "phenotype_selection"),
        read_optional_table(store, "phenotypes"),
    )
    km = km_set_html(store, "phenotype_", unit)
    if sel is None and prof is None and km is None and not store.exists("models/phenotypes.json"):
        return None
    parts: list[str | None] = ["<h3>Phenotypes</h3>", _phenotype_intro(store, sel)]
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
        covs = covariates_by_name(record)
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
    if km is not None:
        parts += [
            "<h4>Survival by phenotype</h4><p>Read as the Kaplan-Meier curves above.</p>",
            km,
        ]
    return join_parts(parts)


# -- e. classifiers -----------------------------------------------------------------------------


def _target_label(target: str) -> str:
    m = re.fullmatch(r"survival_(\d+(?:\.\d+)?)([dwmy])", target)
    if m:
        return f"alive at {time_point(float(m.group(1)), _UNIT_LETTER[m.group(2)])}"
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


def _comparison_text(metrics: pd.DataFrame) -> str | None:
    """Direct classifier against the phenotype route on the survival target, in words.

    None when no survival target has a direct classifier and its phenotype route scored on
    the same measure (accuracy or AUC).
    """
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
    return f"<p>{escape(' '.join(sentences))}</p>" if sentences else None


def _class_order(values: Sequence[Any]) -> list[str]:
    names = list(dict.fromkeys(str(v) for v in values))
    known = [v for v in ("died", "alive") if v in names]
    rest = [v for v in names if v not in known]
    rest.sort(key=lambda v: (0, float(v), v) if is_finite(v) else (1, 0.0, v))
    return known + rest


def _panels(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(target, model) pairs in table order: one figure panel each."""
    pairs = zip(df["target"].astype(str), df["model"].astype(str), strict=True)
    return list(dict.fromkeys(pairs))


def _confusion_png(conf: pd.DataFrame) -> bytes:
    panels = _panels(conf)
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


def classifier_part(store: RunStore) -> str | None:
    """Part e: how well classifiers recognise the phenotypes and predict survival.

    Parameters
    ----------
    store : RunStore
        The run store (tables ``classifier_metrics``, ``classifier_confusion`` and
        ``classifier_importance``); figures go under ``report/``.

    Returns
    -------
    str or None
        HTML fragment; None when none of those tables was written.
    """
    metrics = read_optional_table(store, "classifier_metrics")
    conf = read_optional_table(store, "classifier_confusion")
    imp = read_optional_table(store, "classifier_importance")
    if metrics is None and conf is None and imp is None:
        return None
    parts: list[str | None] = [
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
    return join_parts(parts)


# -- f. external validation ---------------------------------------------------------------------


def _validation_metrics_table(store: RunStore) -> str | None:
    metrics = read_optional_table(store, "survival_metrics")
    if metrics is None:
        return None
    val = metrics[metrics["cohort"] == "validation"]
    if not len(val):
        return None
    body = []
    for r in val.to_dict("records"):
        dev = metric_rows(store, str(r["analysis"]), "development").get(str(r["metric"]))
        body.append(
            [
                str(r["analysis"]).replace("_", " "),
                str(r["metric"]).replace("_", " "),
                metric_text(dev) if dev is not None else "-",
                metric_text(r),
            ]
        )
    header = ["model", "measure", "development cohort", "external cohort"]
    return (
        "<p>The development models applied unchanged to the external patients. A concordance "
        "close to the development one means the model ranks new patients' risk as well as those "
        "it was built on; a fall towards 0.5 means it transports poorly (intervals: bootstrap)."
        "</p>" + table_html(header, body)
    )


def validation_part(store: RunStore, records: dict[str, CohortRecord], unit: str) -> str | None:
    """Part f: the external cohort, its survival by phenotype and how the models transport.

    Parameters
    ----------
    store : RunStore
        The run store (tables ``validation_km_*``, ``validation_logrank`` and
        ``survival_metrics``); figures go under ``report/``.
    records : dict of str to CohortRecord
        Cohort records: ``development``, and ``validation`` where there is one.
    unit : str
        Time unit of the survival tables (``years``).

    Returns
    -------
    str or None
        HTML fragment; None without a validation cohort, its curves or its metrics.
    """
    km = km_set_html(store, "validation_", unit, "External cohort")
    metrics = _validation_metrics_table(store)
    val = records.get("validation")
    if val is None and km is None and metrics is None:
        return None
    parts: list[str | None] = ["<h3>External validation</h3>"]
    if val is not None:
        share = f"{percent(val.events / val.n)} of patients" if val.n else "-"
        parts.append(
            f"<p>{val.n} external patients, {val.events} events ({share}); each was assigned "
            "the phenotype the classifier trained on the development cohort predicts.</p>"
        )
    if km is not None:
        parts += [
            "<p>If the phenotypes carry over, the external curves are ordered as in the "
            "development cohort (phenotype 1 best).</p>",
            km,
        ]
    parts.append(metrics)
    return join_parts(parts)
