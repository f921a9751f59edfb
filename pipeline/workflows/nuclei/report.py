"""The nuclei workflow's report section: the segmenter's training curves, the network against
the classical Otsu + watershed baseline on the test images, a gallery of image / truth /
prediction triptychs (as source document 002 shows them), and the segmented large image with
its nuclei outlined, its counts and the nuclei's area histogram.

Every array is read strided, so that no figure reads more than about ``THUMBNAIL`` pixels a
side of a plane however large the plane is (a 40000 x 40000 mosaic included).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import new_figure, png_bytes, stretch, table_html
from pipeline.report.format import escape, is_finite, join_parts, read_optional_json
from pipeline.workflows.nuclei.spec import (
    PREDICTED_MASKS,
    SCORES_TABLE,
    SUMMARY_TABLE,
    segment_outputs,
    train_outputs,
)

__all__ = ["GALLERY", "THUMBNAIL", "nuclei_section"]

#: Test images the gallery shows at most.
GALLERY = 6
#: Largest side (px) of a plane as a figure reads it.
THUMBNAIL = 1024
#: Columns of the metrics table: (summary column, header).
METRICS = (
    ("accuracy", "accuracy"),
    ("f1", "F1"),
    ("jaccard", "Jaccard"),
    ("recall", "recall"),
    ("precision", "precision"),
    ("object_f1", "object F1 (IoU 0.5)"),
    ("matched_iou", "matched IoU"),
    ("dsb_ap", "DSB mean AP"),
)
#: How the methods of the scores are named in the report.
METHODS = {"network": "network (Multi-ResUNet)", "otsu": "Otsu + watershed baseline"}


def _table(store: RunStore, name: str, schema: str) -> pd.DataFrame | None:
    """Table ``name`` (an instance of ``schema``), or None where it is absent or empty.

    Parameters
    ----------
    store : RunStore
    name : str
        The file stem under ``tables/``.
    schema : str
        The documented table it is an instance of.

    Returns
    -------
    pandas.DataFrame or None
    """
    if not store.exists(f"tables/{name}.parquet"):
        return None
    df = read_table(store, name, schema=schema)
    return df if len(df) else None


def _fmt(x: Any) -> str:
    """A score with 3 decimals (``"-"`` where there is none)."""
    return f"{float(x):.3f}" if is_finite(x) else "-"


def _step(shape: tuple[int, ...]) -> int:
    """The stride that makes a plane of ``shape`` at most :data:`THUMBNAIL` px a side."""
    return max(1, math.ceil(max(shape) / THUMBNAIL))


def _plane(arr: Any, lead: tuple[int, ...], step: int) -> np.ndarray:
    """Every ``step``-th pixel of the plane ``arr[lead]`` (trailing channels kept)."""
    return np.asarray(arr[(*lead, slice(None, None, step), slice(None, None, step))])


def _gray(img: np.ndarray) -> np.ndarray:
    """An image (``(y, x)`` or ``(y, x, channel)``) as grey levels in [0, 1]."""
    shown = stretch(img)
    return shown.mean(axis=-1) if shown.ndim == 3 else shown


def _outlined(img: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``img`` in grey with the outline of each label in a colour of its own (RGB)."""
    import matplotlib
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(_gray(img)[..., None], 3, axis=-1)
    edge = find_boundaries(labels, mode="inner") & (labels > 0)
    colours = matplotlib.colormaps["tab10"](np.arange(10))[:, :3]
    rgb[edge] = colours[labels[edge].astype(np.int64) % 10]
    return rgb


def _training(ctx: ReportContext, step: str) -> str | None:
    """Loss and validation scores per epoch of ``train_segmenter`` step ``step``."""
    out = train_outputs(step)
    log = _table(ctx.store, out.table, "segmenter_training")
    if log is None:
        return None
    log = log.sort_values("epoch")
    best_rows = log[log["best"].astype(bool)]
    best = best_rows.iloc[-1] if len(best_rows) else log.iloc[int(np.argmin(log["val_loss"]))]
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(10, 3.4)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(log["epoch"], log["loss"], "o-", ms=3, label="train loss")
    ax.plot(log["epoch"], log["val_loss"], "s-", ms=3, label="validation loss")
    ax.axvline(float(best["epoch"]), color="grey", ls="--", lw=0.8)
    ax.plot([best["epoch"]], [best["val_loss"]], "*", ms=12, color="#c0392b", label="kept (best)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(log["epoch"], log["val_dice"], "o-", ms=3, label="validation Dice")
    ax.plot(log["epoch"], log["val_iou"], "s-", ms=3, label="validation IoU")
    ax.axvline(float(best["epoch"]), color="grey", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    named = "" if step == "train_segmenter" else f": {step}"
    png = "nuclei_training.png" if step == "train_segmenter" else f"{step}_training.png"
    split = _table(ctx.store, out.split, "segmentation_split")
    counts = ""
    if split is not None:
        n = split["split"].value_counts()
        counts = (
            f" Images: {int(n.get('train', 0))} train, {int(n.get('validation', 0))} "
            f"validation, {int(n.get('test', 0))} test."
        )
    ckpt = str(best["checkpoint"]).rsplit("/", 1)[-1]
    kept = f" Kept checkpoint <code>{escape(ckpt)}</code>." if ckpt else ""
    return "\n".join(
        [
            f"<h3>Segmenter training{escape(named)}</h3>",
            f"<p>{len(log)} epoch(s) on {escape(log['device'].iloc[-1])} "
            f"({float(log['seconds'].sum()):.1f} s), learning rate "
            f"{float(log['lr'].iloc[0]):.2g} to {float(log['lr'].iloc[-1]):.2g}. Best epoch "
            f"{int(best['epoch'])} (lowest validation loss, {_fmt(best['val_loss'])}): "
            f"validation Dice {_fmt(best['val_dice'])}, IoU {_fmt(best['val_iou'])}, recall "
            f"{_fmt(best['val_recall'])}, precision {_fmt(best['val_precision'])}.{kept}"
            f"{counts} Per-epoch log in <code>{escape(out.csv)}</code>.</p>",
            ctx.figure(png, png_bytes(fig), "segmenter training curves" + named),
        ]
    )


def _metrics(store: RunStore) -> str | None:
    """The network against the baseline: mean scores over the test images."""
    summary = _table(store, SUMMARY_TABLE, SUMMARY_TABLE)
    if summary is None:
        return None
    rows = [
        [
            METHODS.get(str(rec["method"]), str(rec["method"])),
            str(int(rec["images"])) if is_finite(rec.get("images")) else "-",
            *(_fmt(rec.get(col)) for col, _ in METRICS),
        ]
        for rec in summary.to_dict("records")
    ]
    header = ["method", "test images", *(h for _, h in METRICS)]
    objects = ""
    scores = _table(store, SCORES_TABLE, SCORES_TABLE)
    if scores is not None:
        sums = scores.groupby("method")[["true_objects", "predicted_objects", "matched"]].sum()
        objects = " " + "; ".join(
            f"{escape(METHODS.get(str(m), str(m)))}: {int(r['matched'])} of "
            f"{int(r['true_objects'])} true nuclei matched, {int(r['predicted_objects'])} "
            "predicted"
            for m, r in sums.iterrows()
        )
        objects += "."
    return "\n".join(
        [
            "<h3>Test scores: network against the classical baseline</h3>",
            "<p>Means over the test images of the pixel scores of the binary masks (the "
            "seed's five) and of the object scores of the instances (a nucleus is found when "
            "a prediction overlaps it with IoU above 0.5; DSB mean AP averages "
            "TP / (TP + FP + FN) over IoU thresholds 0.5 to 0.95)." + objects + " Per image in "
            f"<code>tables/{SCORES_TABLE}.parquet</code>.</p>",
            table_html(header, rows),
        ]
    )


def _gallery(ctx: ReportContext) -> str | None:
    """Image / truth / prediction of the first test images, one figure each."""
    store = ctx.store
    scores = _table(store, SCORES_TABLE, SCORES_TABLE)
    arrays = ("images", "masks", PREDICTED_MASKS)
    if scores is None or not all(store.has_array(a) for a in arrays):
        return None
    net = scores[scores["method"] == "network"].sort_values("row")
    net = net.drop_duplicates("row").head(GALLERY)
    if not len(net):
        return None
    images, masks, predicted = (store.open_array(a, mode="r") for a in arrays)
    figures = []
    for k, rec in enumerate(net.to_dict("records")):
        row = int(rec["row"])
        step = _step(tuple(masks.shape[1:3]))
        img = _plane(images, (row,), step)
        truth, pred = _plane(masks, (row,), step), _plane(predicted, (row,), step)
        fig = new_figure(7.5, 2.8)
        shown: list[tuple[np.ndarray, str]] = [
            (_gray(img), f"{rec['image_id']}"),
            (truth > 0, f"ground truth ({int(rec['true_objects'])} nuclei)"),
            (
                pred > 0,
                f"network ({int(rec['predicted_objects'])} nuclei, "
                f"F1 {_fmt(rec['f1'])}, object F1 {_fmt(rec['object_f1'])})",
            ),
        ]
        for j, (plane, title) in enumerate(shown):
            ax = fig.add_subplot(1, 3, j + 1)
            ax.imshow(plane, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        fig.tight_layout()
        alt = f"image, truth and prediction of test image {rec['image_id']}"
        figures.append(ctx.figure(f"nuclei_gallery_{k}.png", png_bytes(fig), alt))
    return "\n".join(
        [
            "<h3>Test images: input, ground truth, prediction</h3>",
            f"<p>The first {len(figures)} test image(s); masks shown as nucleus / background "
            f"(the network's instance labels are in <code>{PREDICTED_MASKS}</code>).</p>",
            *figures,
        ]
    )


def _areas(ctx: ReportContext, table: str, name: str) -> str | None:
    """The histogram of the nuclei's areas of table ``table``."""
    nuclei = _table(ctx.store, table, "nuclei")
    if nuclei is None or "area" not in nuclei:
        return None
    area = nuclei["area"].to_numpy(dtype=np.float64)
    fig = new_figure(5, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(area, bins=min(50, max(5, int(np.sqrt(area.size)))), color="#4a7ab5")
    ax.set_xlabel("nucleus area (px)")
    ax.set_ylabel("nuclei")
    fig.tight_layout()
    q1, med, q3 = np.percentile(area, [25, 50, 75])
    return "\n".join(
        [
            f"<p>{len(nuclei)} nuclei in <code>tables/{escape(table)}.parquet</code>; area "
            f"median {med:.0f} px (IQR {q1:.0f} to {q3:.0f}).</p>",
            ctx.figure(name, png_bytes(fig), "histogram of nucleus areas"),
        ]
    )


def _segmented(ctx: ReportContext, step: str) -> str | None:
    """The image ``segment`` step ``step`` labelled, with its nuclei outlined, and counts."""
    store, out = ctx.store, segment_outputs(step)
    rec = read_optional_json(store, out.record)
    labels_name = str(rec.get("labels", out.labels))
    prefix = "nuclei" if step == "segment" else step
    parts: list[str | None] = []
    if rec:
        mp, secs = float(rec.get("megapixels", 0.0)), float(rec.get("seconds", 0.0))
        devices = rec.get("devices") or {}
        where = ", ".join(f"{k}: {v}" for k, v in sorted(devices.items())) or "-"
        rows = [
            ["nuclei", str(rec.get("nuclei", "-"))],
            ["megapixels", f"{mp:.1f}"],
            ["seconds", f"{secs:.1f}"],
            ["megapixels / s", f"{mp / secs:.2f}" if secs > 0 else "-"],
            ["tile (px)", str(rec.get("tile", "-"))],
            ["halo (px)", str(rec.get("halo", "-"))],
            ["tiles", str(rec.get("tiles", "-"))],
            ["checkpoint", str(rec.get("checkpoint", "")).rsplit("/", 1)[-1]],
            ["devices", where],
        ]
        parts.append(table_html(["", ""], rows))
    if store.has_array(labels_name):
        labels = store.open_array(labels_name, mode="r")
        lead = (0,) if labels.ndim == 3 else ()
        plane = tuple(labels.shape[-2:])
        step_px = _step(plane)
        lab = _plane(labels, lead, step_px)
        source = str(rec.get("input", ""))
        if source and store.has_array(source):
            img = _plane(store.open_array(source, mode="r"), lead, step_px)
        else:
            img = np.zeros(lab.shape, dtype=np.float64)
        fig = new_figure(8, max(2.0, 8 * lab.shape[0] / max(lab.shape[1], 1)))
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(_outlined(img, lab), interpolation="nearest")
        which = "first plane of " if lead else ""
        ax.set_title(
            f"{which}{labels_name}: {plane[0]} x {plane[1]} px (sampled every {step_px} px), "
            "nuclei outlined",
            fontsize=8,
        )
        ax.axis("off")
        fig.tight_layout()
        alt = f"{labels_name} with its nuclei outlined"
        parts.append(ctx.figure(f"{prefix}_segmented.png", png_bytes(fig), alt))
    parts.append(_areas(ctx, str(rec.get("table", out.table)), f"{prefix}_areas.png"))
    body = join_parts(parts)
    if body is None:
        return None
    named = "" if step == "segment" else f": {step}"
    intro = (
        f"<p>Tiled inference over <code>{escape(rec.get('input', '?'))}</code>, instance "
        f"labels in <code>{escape(labels_name)}</code>.</p>"
    )
    return join_parts([f"<h3>Segmented image{escape(named)}</h3>", intro if rec else None, body])


def nuclei_section(ctx: ReportContext) -> str | None:
    """The nuclei segmentation section of the report.

    Parameters
    ----------
    ctx : ReportContext

    Returns
    -------
    str or None
        Training curves of each ``train_segmenter`` step, the test scores of the network
        and the Otsu + watershed baseline, the gallery of test triptychs and, for each
        ``segment`` step, the labelled image, its counts and its area histogram, each where
        its inputs are in the store; None when none is.
    """
    body = join_parts(
        [
            *(_training(ctx, s) for s in ctx.steps("train_segmenter")),
            _metrics(ctx.store),
            _gallery(ctx),
            *(_segmented(ctx, s) for s in ctx.steps("segment")),
        ]
    )
    return None if body is None else "\n".join(["<h2>Nuclei segmentation</h2>", body])
