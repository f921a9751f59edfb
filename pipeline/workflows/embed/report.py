"""The report's learned-embedding sections: the SimCLR loss curve, where inference ran, the
linear probe against its baseline, and clustering agreement on each feature space."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.features.probe import summarize_probe
from pipeline.report.figures import figure_html, new_figure, png_bytes, table_html

__all__ = ["embed_section", "probe_section"]


def _training(store: RunStore) -> str:
    if not store.exists("tables/training_loss.parquet"):
        return ""
    loss = read_table(store, "training_loss")
    if not len(loss):
        return ""
    fig = new_figure(6, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(loss["epoch"], loss["loss"], "o-", ms=3, color="#4a7ab5")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NT-Xent loss (mean over batches)")
    fig.tight_layout()
    pointer = store.read_json("models/encoder.json") if store.exists("models/encoder.json") else {}
    config = pointer.get("config", {})
    last = loss.iloc[-1]
    return "\n".join(
        [
            "<h3>Encoder training (SimCLR)</h3>",
            f"<p>{html.escape(str(config.get('arch', '?')))} encoder, "
            f"{config.get('input_size', '?')} px input, {len(loss)} epoch(s) on "
            f"{html.escape(str(last['device']))} ({loss['seconds'].sum():.1f} s); loss "
            f"{loss['loss'].iloc[0]:.3f} at epoch 1, {last['loss']:.3f} at epoch "
            f"{int(last['epoch'])}. Checkpoint <code>models/"
            f"{html.escape(str(pointer.get('checkpoint', '')))}</code>; per-epoch loss in "
            "<code>models/training_loss.csv</code>.</p>",
            figure_html(store, "training_loss.png", png_bytes(fig), "training loss"),
        ]
    )


def _inference(store: RunStore) -> str:
    if not store.exists("models/embed.json"):
        return ""
    rec = store.read_json("models/embed.json")
    rows = [
        [addr, w["device"], w["tasks"], w["rows"], w["loads"]]
        for addr, w in sorted(rec["workers"].items())
    ]
    n = sum(int(w["rows"]) for w in rec["workers"].values())
    rate = n / max(float(rec["seconds"]), 1e-9)
    return "\n".join(
        [
            "<h3>Embeddings</h3>",
            f"<p><code>embeddings (image, {rec['config']['arch']} features)</code>: {n} images "
            f"in {rec['seconds']:.1f} s ({rate:.0f} images/s) with checkpoint "
            f"<code>{html.escape(str(rec['checkpoint']).rsplit('/', 1)[-1])}</code>. Where the "
            "tasks ran (each worker loads the model once):</p>",
            table_html(["worker", "device", "tasks", "images", "model loads"], rows),
        ]
    )


def _agreement(store: RunStore) -> str:
    """ARI of every clustering that was scored against a known column, by feature space."""
    if not store.exists("tables/cluster_metrics.parquet"):
        return ""
    metrics = read_table(store, "cluster_metrics")
    scored = metrics[(metrics["label_column"] != "") & metrics["ari"].notna()]
    spaces = scored["space"].astype(str)
    if not spaces.str.contains("embeddings").any():
        return ""
    rows: list[list[str]] = []
    best: dict[str, tuple[str, float]] = {}
    for rec in scored.to_dict("records"):
        method, where, ari = str(rec["method"]), str(rec["space"]), float(rec["ari"])
        space = "learned embeddings" if "embeddings" in where else "PCA features"
        rows.append([method, space, f"{ari:.3f}", f"{float(rec['nmi']):.3f}"])
        if "som winners" not in where and (space not in best or ari > best[space][1]):
            best[space] = (method, ari)
    summary = "; ".join(f"{s}: ARI {a:.3f} ({html.escape(m)})" for s, (m, a) in best.items())
    return "\n".join(
        [
            "<h3>Clustering on learned embeddings against PCA features</h3>",
            f"<p>Agreement with <code>{html.escape(str(scored['label_column'].iloc[0]))}"
            f"</code> (ARI 0 = chance). Best per space: {summary}.</p>",
            table_html(["method", "features", "ARI", "NMI"], rows),
        ]
    )


def embed_section(store: RunStore) -> str:
    """Training, inference and clustering-agreement parts ("" when no encoder was used)."""
    parts = [_training(store), _inference(store), _agreement(store)]
    if not any(parts):
        return ""
    return "\n".join(["<h2>Learned embeddings</h2>", *[p for p in parts if p]])


def probe_section(store: RunStore) -> str:
    """The linear probe: mean ± std accuracy and macro-F1 per features and shots."""
    if not store.exists("tables/probe.parquet"):
        return ""
    table = read_table(store, "probe")
    if not len(table):
        return ""
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
            f"feature array. <em>beaten by {html.escape(reference)}</em>: whether the first "
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
