"""The mosaic workflow's report section: the catalog's facts, the field with its sources,
magnitudes, completeness and purity against the reference, the background map, deblended
pairs and a sample of source cutouts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import grid_png, table_html
from pipeline.report.format import escape, read_optional_json, read_optional_table, significant
from pipeline.workflows.mosaic import report_figures as figs

__all__ = ["sources_section"]

_FLAG_NAMES = {
    1: "masked pixels in the Kron aperture",
    2: "deblended",
    4: "saturated",
    8: "touch the image edge",
    16: "aperture off the image",
    32: "footprint beyond the largest halo",
    64: "deblending overflow",
}


def _facts(src: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The catalog's coordinates, photometric calibration, sky and flag counts."""
    rows = [
        ["coordinates", escape(meta.get("wcs", "pixel coordinates only"))],
        ["magnitude zero point", escape(meta.get("mag_zeropoint", 0.0))],
        [
            "saturation level",
            escape(meta.get("saturation"))
            if meta.get("saturation") is not None
            else "none known (no SATURATE keyword, float data): no saturation flags",
        ],
        [
            "sky (median background, RMS)",
            f"{significant(float(meta.get('global_back', np.nan)))}, "
            f"{significant(float(meta.get('global_rms', np.nan)))}",
        ],
        ["largest tile halo", f"{meta.get('largest_halo', '?')} px"],
    ]
    flags = src["flags"].to_numpy(dtype=np.int64)
    for bit, name in _FLAG_NAMES.items():
        count = int(np.count_nonzero(flags & bit))
        if count:
            rows.append([f"flag {bit}", f"{count} sources ({name})"])
    return table_html(["", ""], rows)


def sources_section(ctx: ReportContext) -> str | None:
    """The mosaic's sources: facts, the field, magnitudes, matches, sky, deblends, cutouts."""
    store, count, seed = ctx.store, ctx.params.montage_images, ctx.seed
    if not store.exists("tables/sources.parquet"):
        return None
    src = read_table(store, "sources")
    sep = "mag_auto" in src.columns
    per_tile = src.groupby("tile").size()
    parts = [
        "<h2>Mosaic sources</h2>",
        f"<p>{len(src)} sources ({'SEP, Source Extractor' if sep else 'blob detection'}) in "
        f"{per_tile.size} tiles with sources (per tile: min "
        f"{per_tile.min() if len(per_tile) else 0}, median "
        f"{int(per_tile.median()) if len(per_tile) else 0}, max "
        f"{per_tile.max() if len(per_tile) else 0}); "
        "<code>tables/sources.parquet</code>"
        + (" and <code>tables/sources.fits</code>" if sep else "")
        + ", cutouts in <code>cutouts</code>.</p>",
    ]
    if sep:
        parts.append(_facts(src, read_optional_json(store, "tables/sources_meta.json")))
    if store.has_array("mosaic"):
        mosaic = store.open_array("mosaic", mode="r")
        h, w = mosaic.shape
        small, step = figs.thumbnail(mosaic)
        title = f"mosaic {h} x {w} px ({step} x {step} px means), sources marked"
        parts.append(ctx.figure("mosaic.png", figs.field_png(small, step, src, title), title))
    if sep and len(src):
        parts += [
            "<h3>Magnitudes</h3>",
            ctx.figure("magnitudes.png", figs.magnitude_png(src), "mag_auto histogram"),
        ]
        parts.append(_matches(ctx))
        if store.has_array("sky_mesh"):
            sky = store.open_array("sky_mesh", mode="r")
            attrs: dict[str, Any] = dict(sky.attrs)
            parts += [
                "<h3>Background</h3>",
                f"<p>SEP's background mesh, filtered ({attrs.get('fw')} x {attrs.get('fh')} "
                f"boxes), shared by every tile; {attrs.get('n_filled', 0)} box(es) with too "
                "few valid pixels filled from their neighbours.</p>",
                ctx.figure(
                    "background.png",
                    figs.background_png(
                        np.asarray(sky[:]), int(attrs.get("bw", 0)), int(attrs.get("bh", 0))
                    ),
                    "background mesh",
                ),
            ]
        blended = src[(src["flags"].to_numpy(dtype=np.int64) & 2) > 0]
        if len(blended) and store.has_array("mosaic"):
            rng = np.random.default_rng(seed)
            picks = blended.iloc[np.sort(rng.choice(len(blended), min(8, len(blended)), False))]
            parts += [
                "<h3>Deblended sources</h3>",
                f"<p>{len(blended)} sources were deblended from a shared footprint; a sample, "
                "with every source's ellipse (3 a x 3 b; red: deblended).</p>",
                ctx.figure(
                    "deblended.png",
                    figs.deblended_png(store.open_array("mosaic", mode="r"), src, picks),
                    "deblended sources",
                ),
            ]
    if count and len(src) and store.has_array("cutouts"):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(src), size=min(count, len(src)), replace=False))
        cuts = np.asarray(store.open_array("cutouts", mode="r").oindex[pick])
        titles = [str(src.image_id.iloc[i]) for i in pick]
        parts += [
            "<h3>Sample of source cutouts</h3>",
            ctx.figure("source_cutouts.png", grid_png(list(cuts), titles), "cutouts"),
        ]
    return "\n".join(p for p in parts if p)


def _matches(ctx: ReportContext) -> str:
    """Completeness and purity against the reference, when ``match_sources`` ran."""
    bins = read_optional_table(ctx.store, "source_matches")
    summary = read_optional_json(ctx.store, "tables/source_matches.json")
    if bins is None or not summary:
        return ""
    label = str(summary.get("reference_magnitude") or "mag")
    if label == "peak":
        label = "-2.5 log10 peak"
    return "\n".join(
        [
            "<h3>Completeness and purity</h3>",
            f"<p>Against <code>{escape(summary.get('reference'))}</code> "
            f"({int(summary.get('n_reference', 0))} sources), one-to-one within "
            f"{significant(float(summary.get('radius', 0)))} {escape(summary.get('radius_unit'))}"
            f" ({escape(summary.get('frame'))} coordinates): recall "
            f"{significant(float(summary.get('recall', np.nan)))}, precision "
            f"{significant(float(summary.get('precision', np.nan)))}, median offset "
            f"{significant(float(summary.get('median_distance', np.nan)))} "
            f"{escape(summary.get('radius_unit'))}.</p>",
            ctx.figure(
                "completeness.png", figs.completeness_png(bins, label), "completeness and purity"
            ),
        ]
    )
