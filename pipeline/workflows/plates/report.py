"""The plate workflow's report section: QC counts, plate heatmaps per day, a time-lapse strip
of sample wells per group, feature trajectories per group, QC failures with examples and the
Z'-factor per plate."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import grid_png, new_figure, png_bytes, stretch, table_html
from pipeline.report.format import escape, join_parts, significant
from pipeline.workflows.plates.ranking import z_prime
from pipeline.workflows.plates.spec import (
    FEATURES_TABLE,
    PROFILES_TABLE,
    QC_FLAGS,
    QC_TABLE,
)

__all__ = ["plates_section", "preview_images", "z_prime"]

#: What the heatmaps and trajectories show: (column, label).
SHOWN = (
    ("AreaShape_Area", "area"),
    ("AreaShape_FormFactor", "circularity (form factor)"),
    ("Intensity_MeanIntensity", "mean intensity"),
)
#: Plates drawn as heatmaps (the rest are listed): a screen of tens of plates stays readable.
MAX_HEATMAP_PLATES = 8
POSITIVE, NEGATIVE = "positive_control", "untreated"


def _plate_shape(rows: pd.Series, cols: pd.Series) -> tuple[int, int]:
    """8 x 12 for a 96-well plate, 16 x 24 for 384 (from the wells the plate has)."""
    r = max((string.ascii_uppercase.index(str(v)[0].upper()) + 1 for v in rows), default=8)
    c = int(max(cols, default=12))
    return (16, 24) if r > 8 or c > 12 else (8, 12)


def _well_grid(profiles: pd.DataFrame, values: pd.Series, shape: tuple[int, int]) -> np.ndarray:
    grid = np.full(shape, np.nan)
    for well, value in zip(profiles["Metadata_Well"], values, strict=True):
        r = string.ascii_uppercase.index(str(well)[0].upper())
        c = int(str(well)[1:]) - 1
        if r < shape[0] and c < shape[1]:
            grid[r, c] = value
    return grid


def _heatmaps(ctx: ReportContext, profiles: pd.DataFrame, plate: str) -> str:
    import matplotlib

    part = profiles[profiles["Metadata_Plate"] == plate]
    days = sorted(part["Metadata_Day"].unique())
    shape = _plate_shape(part["Metadata_Well"].str[0], part["Metadata_Well"].str[1:].astype(int))
    measures: list[tuple[str, str, Any]] = [(c, label, "viridis") for c, label in SHOWN]
    measures.append(("_failed", "fields failing QC (share)", "Reds"))
    fig = new_figure(2.6 * len(days) + 0.8, 1.9 * len(measures) + 0.4)
    for i, (column, label, cmap) in enumerate(measures):
        if column == "_failed":
            all_values = part["Metadata_FieldsFailedQC"] / part["Metadata_Fields"]
            lo, hi = 0.0, 1.0
        else:
            all_values = part[column]
            finite = all_values[np.isfinite(all_values)]
            lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        for j, day in enumerate(days):
            ax = fig.add_subplot(len(measures), len(days), i * len(days) + j + 1)
            sel = part["Metadata_Day"] == day
            grid = _well_grid(part[sel], all_values[sel], shape)
            # Wells without a value (not on the map, excluded edge, no usable field) are grey.
            colours = matplotlib.colormaps[cmap].with_extremes(bad="#d9d9d9")
            im = ax.imshow(grid, cmap=colours, vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_xticks(range(shape[1]), [str(k + 1) for k in range(shape[1])], fontsize=5)
            ax.set_yticks(range(shape[0]), list(string.ascii_uppercase[: shape[0]]), fontsize=5)
            ax.set_title(f"{label}, day {day}", fontsize=7)
            if j == len(days) - 1:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=5)
    fig.suptitle(f"plate {plate}", fontsize=9)
    fig.tight_layout()
    return ctx.figure(f"plate_heatmaps_{plate}.png", png_bytes(fig), f"heatmaps of plate {plate}")


def _trajectories(ctx: ReportContext, profiles: pd.DataFrame) -> str:
    fig = new_figure(4.0 * len(SHOWN), 3.2)
    for k, (column, label) in enumerate(SHOWN):
        ax = fig.add_subplot(1, len(SHOWN), k + 1)
        for group, part in profiles.groupby("Metadata_Group", sort=True):
            by_day = part.groupby("Metadata_Day")[column]
            stats = pd.DataFrame({q: by_day.quantile(q) for q in (0.25, 0.5, 0.75)})
            if stats.empty:
                continue
            ax.plot(stats.index, stats[0.5], marker="o", label=str(group))
            ax.fill_between(stats.index, stats[0.25], stats[0.75], alpha=0.2)
        ax.set_xlabel("day")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return ctx.figure(
        "plate_trajectories.png", png_bytes(fig), "feature trajectories per group (median, IQR)"
    )


def preview_images(ctx: ReportContext, index: list[int]) -> list[np.ndarray]:
    """Images ``index`` of the collection, grayscale, shrunk to about 128 px and stretched."""
    arr = ctx.store.open_array("images", mode="r")
    out = []
    for i in index:
        img = np.asarray(arr[i], dtype=np.float32)
        img = img.mean(axis=-1) if img.ndim == 3 else img
        step = max(1, int(np.ceil(max(img.shape) / 128)))
        out.append(stretch(img[::step, ::step]))
    return out


def _time_lapse(ctx: ReportContext, features: pd.DataFrame) -> str | None:
    """Field 1 of two wells per group, one column per day."""
    rng = np.random.default_rng(ctx.seed)
    first = features[features["Metadata_Field"] == features["Metadata_Field"].min()]
    days = sorted(first["Metadata_Day"].unique())
    picked: list[int] = []
    titles: list[str] = []
    for group, part in first.groupby("Metadata_Group", sort=True):
        wells = part[["Metadata_Plate", "Metadata_Well"]].drop_duplicates()
        take = wells.iloc[np.sort(rng.choice(len(wells), min(2, len(wells)), replace=False))]
        for plate, well in take.itertuples(index=False):
            rows = part[(part["Metadata_Plate"] == plate) & (part["Metadata_Well"] == well)]
            for day in days:
                hit = rows.index[rows["Metadata_Day"] == day]
                if len(hit):
                    picked.append(int(hit[0]))
                    titles.append(f"{group} {plate} {well} d{day}")
    if not picked:
        return None
    png = grid_png(preview_images(ctx, picked), titles)
    return ctx.figure("plate_time_lapse.png", png, "time-lapse of sample wells per group")


def _qc_part(ctx: ReportContext, qc: pd.DataFrame) -> str:
    n = len(qc)
    counts: list[tuple[str, int]] = [("not decodable", int((~qc["valid"]).sum()))]
    counts += [(flag.replace("_", " "), int(qc[flag].sum())) for flag in QC_FLAGS]
    counts.append(("ok", int(qc["ok"].sum())))
    table = table_html(
        ["QC", "images", "share"], [[a, b, f"{100 * b / max(n, 1):.1f}%"] for a, b in counts]
    )
    examples: list[int] = []
    titles: list[str] = []
    for flag in QC_FLAGS:
        hit = qc.index[qc[flag] & qc["valid"]][:3]
        examples += [int(i) for i in hit]
        titles += [f"{flag}: {qc['image_id'].iloc[int(i)]}" for i in hit]
    fig = (
        ctx.figure(
            "plate_qc_examples.png", grid_png(preview_images(ctx, examples), titles), "QC fails"
        )
        if examples
        else None
    )
    return join_parts(["<h3>Quality control</h3>", table, _lost_wells(ctx), fig]) or ""


def _lost_wells(ctx: ReportContext) -> str | None:
    """Wells of the plate map with images that could not be read (from ``plate_wells``)."""
    if not ctx.store.exists("tables/plate_wells.parquet"):
        return None
    wells = read_table(ctx.store, "plate_wells")
    if not {"n_images", "n_valid", "excluded"} <= set(wells.columns):
        return None
    lost = wells[~wells["excluded"].astype(bool) & (wells["n_valid"] < wells["n_images"])]
    if lost.empty:
        return None
    rows = [
        [p, w, int(n), int(v)]
        for p, w, n, v in lost[["plate", "well", "n_images", "n_valid"]].itertuples(index=False)
    ]
    return join_parts(
        [
            "<p>Wells with images that could not be read (quarantined at ingest; see "
            "<code>tables/quarantine.parquet</code>):</p>",
            table_html(["plate", "well", "images", "readable"], rows),
        ]
    )


def _z_primes(profiles: pd.DataFrame) -> str | None:
    groups = set(profiles["Metadata_Group"])
    if POSITIVE not in groups or NEGATIVE not in groups:
        return None
    # The change of area since the baseline day: each well's own starting size drops out.
    feature = "AreaShape_Area_ChangeRatio"
    if feature not in profiles:
        feature = "AreaShape_Area"
    rows: list[list[Any]] = []
    for key, part in profiles.groupby(["Metadata_Plate", "Metadata_Day"], sort=True):
        plate, day = key
        pos = part.loc[part["Metadata_Group"] == POSITIVE, feature].to_numpy(float)
        neg = part.loc[part["Metadata_Group"] == NEGATIVE, feature].to_numpy(float)
        value = z_prime(pos, neg)
        if np.isfinite(value):  # the baseline day, where every ratio is 1, has none
            rows.append([plate, day, significant(value)])
    if not rows:
        return None
    return join_parts(
        [
            f"<h3>Z'-factor ({escape(POSITIVE)} vs {escape(NEGATIVE)}, <code>"
            f"{escape(feature)}</code>)</h3>",
            "<p>Above 0.5 an excellent assay, 0 to 0.5 marginal, below 0 the controls overlap.</p>",
            table_html(["plate", "day", "Z'"], rows),
        ]
    )


def plates_section(ctx: ReportContext) -> str | None:
    """The plates: QC, heatmaps, time-lapse, trajectories, Z'-factor (None without plates)."""
    store = ctx.store
    if not store.exists(f"tables/{QC_TABLE}.parquet"):
        return None
    qc = read_table(store, QC_TABLE)
    parts: list[str | None] = [
        "<h2>Plates</h2>",
        f"<p>{len(qc)} images of "
        f"{qc['plate'].nunique() if 'plate' in qc else 1} plate(s); masks in "
        "<code>spheroid_masks</code>, QC in <code>tables/spheroid_qc.parquet</code>.</p>",
        _qc_part(ctx, qc),
    ]
    if store.exists(f"tables/{PROFILES_TABLE}.parquet"):
        profiles = read_table(store, PROFILES_TABLE)
        plates = sorted(profiles["Metadata_Plate"].unique())
        parts.append("<h3>Plate heatmaps</h3>")
        parts += [_heatmaps(ctx, profiles, p) for p in plates[:MAX_HEATMAP_PLATES]]
        if len(plates) > MAX_HEATMAP_PLATES:
            rest = ", ".join(escape(p) for p in plates[MAX_HEATMAP_PLATES:])
            parts.append(f"<p>Not drawn: {rest} (see tables/spheroid_profiles.parquet).</p>")
        parts += ["<h3>Feature trajectories per group</h3>", _trajectories(ctx, profiles)]
        parts.append(_z_primes(profiles))
    if store.exists(f"tables/{FEATURES_TABLE}.parquet"):
        features = read_table(store, FEATURES_TABLE)
        strip = _time_lapse(ctx, features)
        if strip:
            parts += ["<h3>Time-lapse of sample wells</h3>", strip]
    return join_parts(parts)
