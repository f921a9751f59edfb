"""The report's learned-embedding section: each encoder's SimCLR loss curve, where each
embedding's inference ran, and clustering agreement on each feature space."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import new_figure, png_bytes, table_html
from pipeline.report.format import escape, join_parts
from pipeline.workflows.embed.spec import embed_outputs, encoder_outputs

__all__ = ["embed_section"]


def _training(ctx: ReportContext, step: str) -> str | None:
    store, out = ctx.store, encoder_outputs(step)
    if not store.exists(f"tables/{out.table}.parquet"):
        return None
    loss = read_table(store, out.table, schema="training_loss")
    if not len(loss):
        return None
    fig = new_figure(6, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(loss["epoch"], loss["loss"], "o-", ms=3, color="#4a7ab5")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NT-Xent loss (mean over batches)")
    fig.tight_layout()
    pointer = store.read_json(out.pointer) if store.exists(out.pointer) else {}
    config = pointer.get("config", {})
    last = loss.iloc[-1]
    # The alt text is escaped where the <img> is made: it gets the step's plain name.
    named = "" if step == "train_encoder" else f": {step}"
    png = "training_loss.png" if step == "train_encoder" else f"{step}_training_loss.png"
    return "\n".join(
        [
            f"<h3>Encoder training (SimCLR){escape(named)}</h3>",
            f"<p>{escape(config.get('arch', '?'))} encoder, "
            f"{escape(config.get('input_size', '?'))} px input, {len(loss)} epoch(s) on "
            f"{escape(last['device'])} ({loss['seconds'].sum():.1f} s); loss "
            f"{loss['loss'].iloc[0]:.3f} at epoch 1, {last['loss']:.3f} at epoch "
            f"{int(last['epoch'])}. Checkpoint <code>models/"
            f"{escape(pointer.get('checkpoint', ''))}</code>; per-epoch loss in "
            f"<code>{escape(out.loss_csv)}</code>.</p>",
            ctx.figure(png, png_bytes(fig), "training loss" + named),
        ]
    )


def _inference(store: RunStore, step: str) -> str | None:
    out = embed_outputs(step)
    if not store.exists(out.record):
        return None
    rec = store.read_json(out.record)
    rows = [
        [addr, w["device"], w["tasks"], w["rows"], w["loads"]]
        for addr, w in sorted(rec["workers"].items())
    ]
    n = sum(int(w["rows"]) for w in rec["workers"].values())
    rate = n / max(float(rec["seconds"]), 1e-9)
    named = "" if step == "embed" else f": {escape(step)}"
    arch = escape(rec["config"]["arch"])
    return "\n".join(
        [
            f"<h3>Embeddings{named}</h3>",
            f"<p><code>{escape(out.array)} (image, {arch} features)</code>: {n} images "
            f"in {rec['seconds']:.1f} s ({rate:.0f} images/s) with checkpoint "
            f"<code>{escape(str(rec['checkpoint']).rsplit('/', 1)[-1])}</code>. Where the "
            "tasks ran (each worker loads the model once):</p>",
            table_html(["worker", "device", "tasks", "images", "model loads"], rows),
        ]
    )


def _learned(space: str, arrays: Sequence[str]) -> bool:
    """Whether a clustering's space (``"<array> (<n> features)"``) is a learned embedding."""
    return any(space.split(" (", 1)[0] == a or f"map of {a} (" in space for a in arrays)


def _agreement(store: RunStore, arrays: Sequence[str]) -> str | None:
    """ARI of every clustering that was scored against a known column, by feature space."""
    if not store.exists("tables/cluster_metrics.parquet"):
        return None
    metrics = read_table(store, "cluster_metrics")
    scored = metrics[(metrics["label_column"] != "") & metrics["ari"].notna()]
    if not any(_learned(str(s), arrays) for s in scored["space"]):
        return None
    rows: list[list[str]] = []
    best: dict[str, tuple[str, float]] = {}
    for rec in scored.to_dict("records"):
        method, where, ari = str(rec["method"]), str(rec["space"]), float(rec["ari"])
        space = "learned embeddings" if _learned(where, arrays) else "PCA features"
        rows.append([method, space, f"{ari:.3f}", f"{float(rec['nmi']):.3f}"])
        if "som winners" not in where and (space not in best or ari > best[space][1]):
            best[space] = (method, ari)
    summary = "; ".join(f"{s}: ARI {a:.3f} ({escape(m)})" for s, (m, a) in best.items())
    return "\n".join(
        [
            "<h3>Clustering on learned embeddings against PCA features</h3>",
            f"<p>Agreement with <code>{escape(scored['label_column'].iloc[0])}"
            f"</code> (ARI 0 = chance). Best per space: {summary}.</p>",
            table_html(["method", "features", "ARI", "NMI"], rows),
        ]
    )


def embed_section(ctx: ReportContext) -> str | None:
    """Training, inference and clustering-agreement parts (None when no encoder was used)."""
    embeds = ctx.steps("embed")
    body = join_parts(
        [
            *(_training(ctx, s) for s in ctx.steps("train_encoder")),
            *(_inference(ctx.store, s) for s in embeds),
            _agreement(ctx.store, [embed_outputs(s).array for s in embeds]),
        ]
    )
    return None if body is None else "\n".join(["<h2>Learned embeddings</h2>", body])
