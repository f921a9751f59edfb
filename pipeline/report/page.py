"""The run report: ``report/index.html`` and its figures, written into the run store.

The report says what ran (stages, timings, counts), what the collection is, what was set
aside and why, and shows a seeded sample montage of the images. It is static HTML with
relative links, so the folder can be copied or served as it is.
"""

from __future__ import annotations

import html
import io
import logging
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.manifest import Manifest, load_manifest
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.features.report import clusters_section, reduce_section
from pipeline.report.figures import figure_html, grid_png, new_figure, table_html
from pipeline.workflows.embed.report import embed_section, probe_section
from pipeline.workflows.survival.report import survival_section

__all__ = ["ReportParams", "write_report"]

log = logging.getLogger(__name__)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; font-size: 0.9rem; }
th { background: #f3f3f3; }
.done { color: #176317; } .failed { color: #a11; } .running { color: #a60; }
code { background: #f6f6f6; padding: 0 0.2rem; }
"""


class ReportParams(BaseModel):
    """Parameters of the ``report`` stage.

    Attributes
    ----------
    montage_images : int
        How many images the sample montage shows (0 for none).
    max_quarantine_rows : int
        How many quarantined files the report lists (all are in ``tables/quarantine.parquet``).
    """

    model_config = ConfigDict(extra="forbid")

    montage_images: int = Field(16, ge=0, le=400)
    max_quarantine_rows: int = Field(50, ge=0)


def _montage_png(store: RunStore, count: int, seed: int) -> tuple[bytes, list[str]] | None:
    if count == 0 or not store.has_array("images"):
        return None
    valid = np.asarray(store.open_array("valid", mode="r")[:])
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        return None
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(candidates, size=min(count, candidates.size), replace=False))
    images = np.asarray(store.open_array("images", mode="r").oindex[pick])
    ids = [str(v) for v in np.asarray(store.open_array("image_id", mode="r").oindex[pick])]
    return grid_png(list(images), ids), ids


def _catalog_section(store: RunStore, count: int, seed: int) -> str:
    if not store.exists("tables/catalog.parquet"):
        return ""
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
            figure_html(store, "cutouts.png", grid_png(list(cuts), titles), "kept cutouts"),
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
            figure_html(store, "rejected.png", grid_png(list(imgs), titles), "rejected images"),
        ]
    return "\n".join(parts)


def _sources_section(store: RunStore, count: int, seed: int) -> str:
    if not store.exists("tables/sources.parquet"):
        return ""
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
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            parts.append(figure_html(store, "mosaic.png", buf.getvalue(), "mosaic with sources"))
    if count and len(src) and store.has_array("cutouts"):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(src), size=min(count, len(src)), replace=False))
        cuts = np.asarray(store.open_array("cutouts", mode="r").oindex[pick])
        titles = [str(src.image_id.iloc[i]) for i in pick]
        parts += [
            "<h3>Sample of source cutouts</h3>",
            figure_html(store, "source_cutouts.png", grid_png(list(cuts), titles), "cutouts"),
        ]
    return "\n".join(parts)


def _stages_section(manifest: Manifest, current: str | None) -> str:
    planned = [s.get("name") or s.get("stage") for s in (manifest.job or {}).get("stages", [])]
    if manifest.job and manifest.job.get("input") is not None:
        planned = ["ingest", *planned]
    names = list(dict.fromkeys([*planned, *manifest.stages]))
    rows, classes = [], []
    for name in names:
        rec = manifest.stages.get(name)
        if rec is None:
            rows.append([name, "pending", "", "", "", ""])
            classes.append("")
            continue
        counts = ", ".join(f"{k}={v}" for k, v in rec.counts.items())
        secs = f"{rec.seconds:.1f}" if rec.seconds is not None else ""
        status = "this report" if name == current and rec.status == "running" else rec.status
        rows.append([name, status, rec.started or "", secs, counts, rec.error or ""])
        classes.append(rec.status if status == rec.status else "done")
    if not rows:
        return "<p>No stage has run yet.</p>"
    return table_html(
        ["stage", "status", "started (UTC)", "seconds", "counts", "error"], rows, classes
    )


def _collection_section(store: RunStore, manifest: Manifest) -> str:
    col = manifest.collection
    if not col:
        return "<p>No collection has been ingested.</p>"
    ds = store.open_dataset()
    coords = ", ".join(f"<code>{html.escape(str(c))}</code>" for c in ds.coords)
    images = ds["images"]
    rows = [
        ["images", f"{images.sizes['image']}"],
        ["dims", " x ".join(f"{d}={n}" for d, n in images.sizes.items())],
        ["dtype", str(images.dtype)],
        ["chunk (images)", str(col.get("per_chunk"))],
        ["status", str(col.get("status"))],
    ]
    return table_html(["", ""], rows) + f"<p>Coordinates: {coords}</p>"


def _quarantine_section(manifest: Manifest, limit: int) -> str:
    q = manifest.quarantine
    if not q:
        return "<p>No input was quarantined.</p>"
    rows = [[e.stage, e.path.rsplit("/", 1)[-1], e.reason] for e in q[:limit]]
    more = f"<p>... and {len(q) - limit} more.</p>" if len(q) > limit else ""
    return (
        f"<p>{len(q)} input(s) set aside; all are in <code>tables/quarantine.parquet</code>.</p>"
        + table_html(["stage", "file", "reason"], rows)
        + more
    )


def write_report(
    store: RunStore,
    params: ReportParams | None = None,
    *,
    seed: int = 0,
    current_step: str | None = None,
) -> str:
    """Write ``report/index.html`` (and ``report/montage.png``) for a run store.

    Parameters
    ----------
    store : RunStore
    params : ReportParams, optional
    seed : int
        Chooses the montage's sample of images.
    current_step : str, optional
        The job step writing this report, shown as such rather than as still running.

    Returns
    -------
    str
        Path (or URL) of ``index.html``.
    """
    params = params or ReportParams()
    manifest = load_manifest(store)
    title = html.escape((manifest.job or {}).get("name") or store.url.rsplit("/", 1)[-1])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Run report: {title}</h1>",
        f"<p>Store: <code>{html.escape(store.url)}</code></p>",
        "<h2>Stages</h2>",
        _stages_section(manifest, current_step),
    ]
    # A job over clinical tables only (no image collection, no ingest) has no collection or
    # quarantine to speak of.
    if manifest.collection or (manifest.job or {}).get("input") is not None:
        parts += [
            "<h2>Collection</h2>",
            _collection_section(store, manifest),
            "<h2>Quarantine</h2>",
            _quarantine_section(manifest, params.max_quarantine_rows),
        ]
    montage = _montage_png(store, params.montage_images, seed)
    if montage is not None:
        png, ids = montage
        store.write_bytes("report/montage.png", png)
        parts += [
            "<h2>Sample of images</h2>",
            f"<p>{len(ids)} valid images chosen at random (seed {seed}); 16-bit and float "
            "images are stretched to their 0.5-99.5 percentile range.</p>",
            "<img src='montage.png' alt='sample montage' style='max-width:100%'>",
        ]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(manifest.versions.items()))
    parts.append(_catalog_section(store, params.montage_images, seed))
    parts.append(_sources_section(store, params.montage_images, seed))
    parts.append(reduce_section(store))
    parts.append(clusters_section(store, seed))
    parts.append(embed_section(store))
    parts.append(probe_section(store))
    parts.append(survival_section(store))
    parts += [f"<h2>Versions</h2><p>{html.escape(versions)}</p>", "</body></html>"]
    store.write_bytes("report/index.html", "\n".join(parts).encode())
    log.info("report written to %s", store.path("report/index.html"))
    return store.path("report/index.html")
