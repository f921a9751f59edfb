"""The mosaic workflow's report section: sources per tile, the mosaic with its sources
circled, a sample of source cutouts."""

from __future__ import annotations

import numpy as np

from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import grid_png, new_figure, png_bytes

__all__ = ["sources_section"]


def sources_section(ctx: ReportContext) -> str | None:
    """The mosaic's sources: counts per tile, the mosaic with its sources, cutouts."""
    store, count, seed = ctx.store, ctx.params.montage_images, ctx.seed
    if not store.exists("tables/sources.parquet"):
        return None
    src = read_table(store, "sources")
    per_tile = src.groupby("tile").size()
    parts = [
        "<h2>Mosaic sources</h2>",
        f"<p>{len(src)} sources in {per_tile.size} tiles with sources (per tile: min "
        f"{per_tile.min() if len(per_tile) else 0}, median "
        f"{int(per_tile.median()) if len(per_tile) else 0}, max "
        f"{per_tile.max() if len(per_tile) else 0}); "
        "<code>tables/sources.parquet</code>, cutouts in <code>cutouts</code>.</p>",
    ]
    if store.has_array("mosaic"):
        mosaic = store.open_array("mosaic", mode="r")
        h, w = mosaic.shape
        step = max(1, int(np.ceil(max(h, w) / 1000)))
        if h * w <= 64_000_000:
            from skimage.transform import downscale_local_mean

            # Block means, not every step-th pixel: single pixels are mostly sky noise.
            small = downscale_local_mean(np.asarray(mosaic[:], dtype=np.float32), (step, step))
            lo, hi = np.percentile(small, [1.0, 99.8])
            thumb = np.clip((small - lo) / max(float(hi - lo), 1e-12), 0, 1) ** 0.5
            fig = new_figure(8, 8 * h / max(w, 1))
            ax = fig.add_subplot(1, 1, 1)
            ax.imshow(thumb, cmap="gray", vmin=0, vmax=1)
            ax.scatter(
                src.x / step, src.y / step, s=12, facecolors="none", edgecolors="r", linewidths=0.6
            )
            ax.set_title(
                f"mosaic {h} x {w} px ({step} x {step} px means), sources circled", fontsize=9
            )
            ax.axis("off")
            fig.tight_layout()
            parts.append(ctx.figure("mosaic.png", png_bytes(fig), "mosaic with sources"))
    if count and len(src) and store.has_array("cutouts"):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(src), size=min(count, len(src)), replace=False))
        cuts = np.asarray(store.open_array("cutouts", mode="r").oindex[pick])
        titles = [str(src.image_id.iloc[i]) for i in pick]
        parts += [
            "<h3>Sample of source cutouts</h3>",
            ctx.figure("source_cutouts.png", grid_png(list(cuts), titles), "cutouts"),
        ]
    return "\n".join(parts)
