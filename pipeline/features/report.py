"""The report's feature sections: PCA (explained variance), clusters (metrics, elbow, eps
sweep, SOM U-matrix, cluster sizes, a 2-D projection, per-cluster montages) and the linear
probe."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.artifacts import load_arrays
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.features.probe import summarize_probe
from pipeline.features.spec import reduce_outputs
from pipeline.report.context import ReportContext
from pipeline.report.figures import figure_html, new_figure, png_bytes, stretch, table_html
from pipeline.report.format import escape, join_parts

__all__ = ["clusters_section", "probe_section", "reduce_section"]

_METHODS = ("kmeans", "dbscan", "agglomerative", "som")
#: Images per cluster in a montage (the notebook's plot_clusters shows 10).
_PER_CLUSTER = 10
#: Clusters shown per montage: the largest ones (plus noise).
_MAX_CLUSTERS = 12


def reduce_section(ctx: ReportContext) -> str | None:
    """Explained variance of each ``reduce`` step's PCA (None if none ran)."""
    body = join_parts(_reduce_part(ctx, step) for step in ctx.steps("reduce"))
    return None if body is None else "\n".join(["<h2>Dimension reduction (PCA)</h2>", body])


def _reduce_part(ctx: ReportContext, step: str) -> str | None:
    out = reduce_outputs(step)
    if not ctx.store.exists(f"tables/{out.table}.parquet"):
        return None
    ev = read_table(ctx.store, out.table, schema="explained_variance")
    fig = new_figure(7, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    comp = ev["component"].to_numpy() + 1
    ax.bar(comp, ev["explained_variance_ratio"], color="#4a7ab5", label="per component")
    ax.plot(comp, ev["cumulative_ratio"], "o-", color="#b5544a", ms=3, label="cumulative")
    ax.set_xlabel("component")
    ax.set_ylabel("share of total variance")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right")
    fig.tight_layout()
    total = float(ev["cumulative_ratio"].iloc[-1])
    png = "explained_variance.png" if step == "reduce" else f"{step}_explained_variance.png"
    heading = "" if step == "reduce" else f"<h3>{escape(step)}</h3>"
    return "\n".join(
        [
            heading,
            f"<p>{len(ev)} components explain {100 * total:.1f}% of the variance; the "
            f"projections are <code>{escape(out.array)} (image, {escape(out.dim)})"
            f"</code>, the basis <code>models/{escape(out.model)}.npz</code>.</p>",
            ctx.figure(
                png,
                png_bytes(fig),
                "explained variance" + ("" if step == "reduce" else f" of {step}"),
            ),
        ]
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "-" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def _metrics_table(metrics: pd.DataFrame) -> str:
    rows = []
    for r in metrics.itertuples():
        fit = f"{r.fit_size} (sampled)" if r.sampled else str(r.fit_size)
        rows.append(
            [
                r.method,
                r.space,
                r.n_clusters,
                r.n_noise,
                fit,
                _fmt(r.silhouette),
                _fmt(r.davies_bouldin),
                _fmt(r.calinski_harabasz),
                _fmt(r.ari) if r.label_column else "-",
                _fmt(r.nmi) if r.label_column else "-",
            ]
        )
    header = ["method", "space (clustered and scored)", "clusters", "noise", "fitted on"]
    header += ["silhouette", "Davies-Bouldin", "Calinski-Harabasz", "ARI", "NMI"]
    return table_html(header, rows)


def _elbow(store: RunStore) -> str | None:
    if not store.exists("tables/elbow.parquet"):
        return None
    table = read_table(store, "elbow")
    if "method" not in table.columns:  # written before kmeans steps were named
        table = table.assign(method="kmeans")
    steps = list(dict.fromkeys(table["method"]))
    fig = new_figure(5 * len(steps), 3.2)
    text = []
    for i, step in enumerate(steps):
        el = table[table["method"] == step]
        ax = fig.add_subplot(1, len(steps), i + 1)
        ax.plot(el["k"], el["inertia"], "o-", color="#4a7ab5")
        chosen = el[el["chosen"]]
        ax.plot(chosen["k"], chosen["inertia"], "o", ms=12, mfc="none", mec="#b5544a", mew=2)
        ax.set_title(step, fontsize=9)
        ax.set_xlabel("k")
        ax.set_ylabel("inertia (within-cluster SS)")
        k = int(chosen["k"].iloc[0]) if len(chosen) else "?"
        text.append(f"{escape(step)}: k = {k}, chosen by {escape(el['rule'].iloc[0])}")
    fig.tight_layout()
    return f"<h3>k-means elbow</h3><p>{'; '.join(text)} (circled).</p>" + figure_html(
        store, "elbow.png", png_bytes(fig), "elbow plot"
    )


def _sweep(store: RunStore) -> str | None:
    if not store.exists("tables/dbscan_sweep.parquet"):
        return None
    sw = read_table(store, "dbscan_sweep")
    fig = new_figure(6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(sw["eps"], sw["n_clusters"], "-", color="#4a7ab5", label="clusters")
    ax.set_xlabel("eps")
    ax.set_ylabel("clusters")
    ax2 = ax.twinx()
    ax2.plot(sw["eps"], sw["n_noise"], "-", color="#b5544a", label="noise rows")
    ax2.set_ylabel("noise rows")
    eps = sw.loc[sw["chosen"], "eps"]
    if len(eps):
        ax.axvline(float(eps.iloc[0]), color="k", ls="--", lw=1)
    fig.legend(loc="upper center", ncols=2, fontsize=8)
    fig.tight_layout()
    chosen = f"{float(eps.iloc[0]):g}" if len(eps) else "?"
    return (
        f"<h3>DBSCAN eps sweep</h3><p>eps = {chosen} (dashed): the best silhouette among the "
        "eps values that give enough clusters with little enough noise; the whole sweep is "
        "<code>tables/dbscan_sweep.parquet</code>.</p>"
        + figure_html(store, "dbscan_sweep.png", png_bytes(fig), "eps sweep")
    )


def _som(store: RunStore, clusters: pd.DataFrame) -> str | None:
    if not store.exists("models/som.npz") or "som_row" not in clusters:
        return None
    arrays, meta = load_arrays(store, "som")
    umat = arrays["distance_map"]
    fig = new_figure(6, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    mesh = ax.pcolormesh(umat.T, cmap="bone_r")  # the notebook's plot: x = row index
    fig.colorbar(mesh, ax=ax, label="mean distance to neighbours (U-matrix)")
    ax.plot(
        clusters["som_row"] + 0.5,
        clusters["som_col"] + 0.5,
        "o",
        mfc="none",
        mec="r",
        ms=3,
        mew=0.5,
    )
    ax.set_aspect("equal")
    fig.tight_layout()
    return (
        f"<h3>Self-organising map</h3><p>{umat.shape[0]} x {umat.shape[1]} map trained with "
        f"{escape(meta.get('method'))}, quantization error "
        f"{float(meta.get('quantization_error', np.nan)):.3f}; red circles: the rows' winning "
        "cells, whose grid coordinates are then clustered.</p>"
        + figure_html(store, "som_umatrix.png", png_bytes(fig), "SOM U-matrix")
    )


def _sizes_and_projection(store: RunStore, clusters: pd.DataFrame, methods: list[str]) -> str:
    n = len(methods)
    fig = new_figure(3.2 * n, 2.8)
    for i, method in enumerate(methods):
        ax = fig.add_subplot(1, n, i + 1)
        sizes = clusters[method].value_counts().sort_index()
        names = ["noise" if k == -1 else str(k) for k in sizes.index]
        ax.bar(
            names, sizes.to_numpy(), color=["#999" if k == -1 else "#4a7ab5" for k in sizes.index]
        )
        ax.set_title(method, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    parts = [
        "<h3>Cluster sizes</h3>",
        figure_html(store, "cluster_sizes.png", png_bytes(fig), "sizes"),
    ]
    if store.has_array("reduced"):
        reduced = store.open_array("reduced", mode="r")
        if reduced.shape[1] >= 2:
            xy = np.asarray(reduced.oindex[clusters["image"].to_numpy(), :2])
            fig = new_figure(3.2 * n, 3.2)
            for i, method in enumerate(methods):
                ax = fig.add_subplot(1, n, i + 1)
                lab = clusters[method].to_numpy()
                ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab10", s=6, vmin=-1, vmax=9)
                ax.set_title(method, fontsize=9)
                ax.set_xlabel("PC 1", fontsize=8)
                ax.set_ylabel("PC 2", fontsize=8)
                ax.tick_params(labelsize=7)
            fig.tight_layout()
            parts += [
                "<h3>2-D projection (first two principal components), coloured by cluster</h3>",
                figure_html(store, "cluster_projection.png", png_bytes(fig), "projection"),
            ]
    return "\n".join(parts)


def _montage(store: RunStore, clusters: pd.DataFrame, method: str, seed: int) -> str | None:
    """The notebook's plot_clusters: a random sample of each cluster's images, one row each.

    None when the store holds neither ``cutouts`` nor ``images``.
    """
    array = "cutouts" if store.has_array("cutouts") else "images"
    if not store.has_array(array):
        return None
    source = store.open_array(array, mode="r")
    rng = np.random.default_rng(seed)
    sizes = clusters[method].value_counts()
    shown = [k for k in sizes.index if k != -1][:_MAX_CLUSTERS] + (
        [-1] if -1 in sizes.index else []
    )
    rows = []
    for k in sorted(shown, key=lambda v: (v == -1, v)):
        members = clusters.loc[clusters[method] == k, "image"].to_numpy()
        pick = np.sort(rng.choice(members, size=min(_PER_CLUSTER, len(members)), replace=False))
        rows.append((k, len(members), np.asarray(source.oindex[pick])))
    fig = new_figure(1.1 * _PER_CLUSTER + 1, 1.15 * len(rows))
    for r, (k, size, imgs) in enumerate(rows):
        for c in range(_PER_CLUSTER):
            ax = fig.add_subplot(len(rows), _PER_CLUSTER, r * _PER_CLUSTER + c + 1)
            ax.axis("off")
            if c < len(imgs):
                shown_img = stretch(imgs[c])
                ax.imshow(shown_img, cmap="gray" if shown_img.ndim == 2 else None, vmin=0, vmax=1)
            if c == 0:
                name = "noise" if k == -1 else f"cluster {k}"
                ax.set_title(f"{name} (n={size})", fontsize=7, loc="left")
    fig.tight_layout()
    more = len([k for k in sizes.index if k != -1]) - len([k for k in shown if k != -1])
    note = f" The {more} smaller clusters are not shown." if more > 0 else ""
    return (
        f"<h4>{escape(method)}</h4><p>Up to {_PER_CLUSTER} random {array} per cluster "
        f"(seed {escape(seed)}).{note}</p>"
        + figure_html(store, f"montage_{method}.png", png_bytes(fig), f"{method} montage")
    )


def clusters_section(ctx: ReportContext) -> str | None:
    """Everything the cluster stages wrote (None if none ran)."""
    store, seed = ctx.store, ctx.seed
    if not store.exists("tables/cluster_metrics.parquet"):
        return None
    metrics = read_table(store, "cluster_metrics")
    clusters = read_table(store, "clusters")
    # The four stages' default steps first, then steps named otherwise (e.g. kmeans on the
    # learned embeddings, `kmeans_embeddings`), in the metrics table's order.
    ran = [str(m) for m in metrics["method"] if str(m) in clusters.columns]
    methods = [m for m in _METHODS if m in ran] + [m for m in ran if m not in _METHODS]
    parts: list[str | None] = ["<h2>Clusters</h2>"]
    labelled = metrics[metrics["label_column"] != ""]
    note = ""
    if len(labelled):
        note = (
            f" ARI and NMI compare the clusters with the known column "
            f"<code>{escape(labelled['label_column'].iloc[0])}</code> (ARI 0 = chance)."
        )
    sampled = metrics[metrics["sampled"]]
    if len(sampled):
        note += (
            " Methods marked <em>sampled</em> were fitted on a seeded sample and every other row "
            "was assigned to its nearest fitted cluster."
        )
    parts += [
        f"<p>{len(clusters)} rows clustered; labels in <code>tables/clusters.parquet</code>, "
        "scores in <code>tables/cluster_metrics.parquet</code>. Scores are computed on the "
        "space each method clustered; DBSCAN's noise is left out of them." + note + "</p>",
        _metrics_table(metrics),
    ]
    for m in metrics.itertuples():
        params = json.loads(str(m.params))
        parts.append(
            f"<p><code>{escape(m.method)}</code>: "
            + ", ".join(f"{escape(k)}={escape(_fmt(v))}" for k, v in params.items())
            + "</p>"
        )
    parts += [_elbow(store), _sweep(store), _som(store, clusters)]
    if methods:
        parts.append(_sizes_and_projection(store, clusters, methods))
        parts.append("<h3>Cluster montages</h3>")
        parts += [_montage(store, clusters, m, seed) for m in methods]
    return join_parts(parts)


def probe_section(ctx: ReportContext) -> str | None:
    """The linear probe: mean ± std accuracy and macro-F1 per features and shots."""
    store = ctx.store
    if not store.exists("tables/probe.parquet"):
        return None
    table = read_table(store, "probe")
    if not len(table):
        return None
    summary = summarize_probe(table)
    rows = []
    for rec in summary.to_dict("records"):
        beats = rec.get("reference_beats")
        verdict = "" if beats is None or pd.isna(beats) else ("yes" if beats else "no")
        shots = int(rec["shots"])
        rows.append(
            [
                rec["features"],
                "all" if shots == 0 else shots,
                int(rec["n_repeats"]),
                f"{rec['accuracy_mean']:.3f} ± {_std(float(rec['accuracy_std']))}",
                f"{rec['macro_f1_mean']:.3f} ± {_std(float(rec['macro_f1_std']))}",
                verdict,
            ]
        )
    reference = str(table["features"].iloc[0])
    return "\n".join(
        [
            "<h2>Linear probe</h2>",
            "<p>Logistic regression on frozen features, trained on k examples per class "
            "(seeded, per repeat) and scored on the same held-out stratified split for every "
            f"feature array. <em>beaten by {escape(reference)}</em>: whether the first "
            "array's mean macro-F1 is higher than this baseline's. Every fit is in "
            "<code>tables/probe.parquet</code>.</p>",
            table_html(
                [
                    "features",
                    "per class",
                    "repeats",
                    "accuracy",
                    "macro-F1",
                    f"beaten by {reference}",
                ],
                rows,
            ),
        ]
    )


def _std(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3f}"
