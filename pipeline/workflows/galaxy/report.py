"""The galaxy workflow's report section: the catalog's verdicts, kept cutouts, rejections."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.tables import read_table
from pipeline.report.context import ReportContext
from pipeline.report.figures import grid_png, table_html

__all__ = ["catalog_section"]


def catalog_section(ctx: ReportContext) -> str | None:
    """The galaxy catalog: verdicts by reason, kept cutouts and rejected examples."""
    store, count, seed = ctx.store, ctx.params.montage_images, ctx.seed
    if not store.exists("tables/catalog.parquet"):
        return None
    cat = read_table(store, "catalog")
    n = len(cat)
    groups = cat.groupby(["status", "reason"], dropna=False).size()
    rows: list[list[Any]] = []
    for key, k in groups.items():
        status, reason = key if isinstance(key, tuple) else (key, "")
        rows.append([status, reason or "-", int(k), f"{100 * int(k) / max(n, 1):.1f}%"])
    parts = [
        "<h2>Galaxy catalog</h2>",
        f"<p>{n} images: one row each in <code>tables/catalog.parquet</code>; kept galaxies "
        "have an aligned cutout in <code>cutouts</code> (major axis along +x).</p>",
        table_html(["status", "reason", "images", "share"], rows),
    ]
    rng = np.random.default_rng(seed)
    kept = np.flatnonzero(cat["status"].to_numpy() == "kept")
    if count and kept.size and store.has_array("cutouts"):
        pick = np.sort(rng.choice(kept, size=min(count, kept.size), replace=False))
        cuts = np.asarray(store.open_array("cutouts", mode="r").oindex[pick])
        titles = [
            f"{cat.image_id.iloc[i]} {cat.angle_deg.iloc[i]:.0f}\N{DEGREE SIGN}" for i in pick
        ]
        parts += [
            "<h3>Sample of kept cutouts (title: image, measured angle)</h3>",
            ctx.figure("cutouts.png", grid_png(list(cuts), titles), "kept cutouts"),
        ]
    rejected = cat[cat["status"] == "rejected"]
    if count and len(rejected) and store.has_array("images"):
        pick_list: list[int] = []
        for _, grp in rejected.groupby("reason"):
            take = min(4, len(grp))
            pick_list += sorted(rng.choice(grp.index.to_numpy(), size=take, replace=False))
        pick = np.sort(np.asarray(pick_list))
        imgs = np.asarray(store.open_array("images", mode="r").oindex[pick])
        titles = [f"{cat.reason.iloc[i]}: {cat.image_id.iloc[i]}" for i in pick]
        parts += [
            "<h3>Examples of rejected images (up to 4 per reason)</h3>",
            ctx.figure("rejected.png", grid_png(list(imgs), titles), "rejected images"),
        ]
    return "\n".join(parts)
