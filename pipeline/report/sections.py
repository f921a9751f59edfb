"""The report's frame: what ran, the collection, what was set aside, a sample of images, the
versions. Each is a section renderer (``render(ctx) -> html or None``) declared in
:mod:`pipeline.report.workflow`."""

from __future__ import annotations

import numpy as np

from pipeline.core.manifest import Manifest
from pipeline.core.registry import INGEST
from pipeline.report.context import ReportContext
from pipeline.report.figures import grid_png, table_html
from pipeline.report.format import escape

__all__ = [
    "collection_section",
    "montage_section",
    "quarantine_section",
    "stages_section",
    "versions_section",
]


def _planned(manifest: Manifest) -> list[str]:
    job = manifest.job or {}
    planned = [str(s.get("name") or s.get("stage")) for s in job.get("stages", [])]
    return [INGEST, *planned] if job.get("input") is not None else planned


def stages_section(ctx: ReportContext) -> str:
    """Every step of the job (and any other the store ran): status, start, time, counts."""
    manifest = ctx.manifest
    names = list(dict.fromkeys([*_planned(manifest), *manifest.stages]))
    rows, classes = [], []
    for name in names:
        rec = manifest.stages.get(name)
        if rec is None:
            rows.append([name, "pending", "", "", "", ""])
            classes.append("")
            continue
        counts = ", ".join(f"{k}={v}" for k, v in rec.counts.items())
        secs = f"{rec.seconds:.1f}" if rec.seconds is not None else ""
        current = name == ctx.current_step and rec.status == "running"
        status = "this report" if current else rec.status
        rows.append([name, status, rec.started or "", secs, counts, rec.error or ""])
        classes.append(rec.status if status == rec.status else "done")
    header = ["stage", "status", "started (UTC)", "seconds", "counts", "error"]
    body = table_html(header, rows, classes) if rows else "<p>No stage has run yet.</p>"
    return "<h2>Stages</h2>\n" + body


def _has_collection(ctx: ReportContext) -> bool:
    # A job over clinical tables only (no image collection, no ingest) has no collection or
    # quarantine to speak of.
    return bool(ctx.manifest.collection) or (ctx.manifest.job or {}).get("input") is not None


def collection_section(ctx: ReportContext) -> str | None:
    """The ingested collection: size, dimensions, dtype, chunking, coordinates."""
    if not _has_collection(ctx):
        return None
    col = ctx.manifest.collection
    if not col:
        return "<h2>Collection</h2>\n<p>No collection has been ingested.</p>"
    ds = ctx.store.open_dataset()
    coords = ", ".join(f"<code>{escape(c)}</code>" for c in ds.coords)
    images = ds["images"]
    rows = [
        ["images", f"{images.sizes['image']}"],
        ["dims", " x ".join(f"{d}={n}" for d, n in images.sizes.items())],
        ["dtype", str(images.dtype)],
        ["chunk (images)", str(col.get("per_chunk"))],
        ["status", str(col.get("status"))],
    ]
    return "<h2>Collection</h2>\n" + table_html(["", ""], rows) + f"<p>Coordinates: {coords}</p>"


def quarantine_section(ctx: ReportContext) -> str | None:
    """The inputs set aside, with their reasons (the first ``max_quarantine_rows``)."""
    if not _has_collection(ctx):
        return None
    q, limit = ctx.manifest.quarantine, ctx.params.max_quarantine_rows
    if not q:
        return "<h2>Quarantine</h2>\n<p>No input was quarantined.</p>"
    rows = [[e.stage, e.path.rsplit("/", 1)[-1], e.reason] for e in q[:limit]]
    more = f"<p>... and {len(q) - limit} more.</p>" if len(q) > limit else ""
    return (
        "<h2>Quarantine</h2>\n"
        f"<p>{len(q)} input(s) set aside; all are in <code>tables/quarantine.parquet</code>.</p>"
        + table_html(["stage", "file", "reason"], rows)
        + more
    )


def montage_section(ctx: ReportContext) -> str | None:
    """A seeded sample of the valid images (``montage_images`` of them)."""
    store, count = ctx.store, ctx.params.montage_images
    if count == 0 or not store.has_array("images"):
        return None
    valid = np.asarray(store.open_array("valid", mode="r")[:])
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        return None
    rng = np.random.default_rng(ctx.seed)
    pick = np.sort(rng.choice(candidates, size=min(count, candidates.size), replace=False))
    images = np.asarray(store.open_array("images", mode="r").oindex[pick])
    ids = [str(v) for v in np.asarray(store.open_array("image_id", mode="r").oindex[pick])]
    return "\n".join(
        [
            "<h2>Sample of images</h2>",
            f"<p>{len(ids)} valid images chosen at random (seed {escape(ctx.seed)}); 16-bit and "
            "float images are stretched to their 0.5-99.5 percentile range.</p>",
            ctx.figure("montage.png", grid_png(list(images), ids), "sample montage"),
        ]
    )


def versions_section(ctx: ReportContext) -> str:
    """Python's and the packages' versions the run used."""
    versions = ", ".join(f"{k} {v}" for k, v in sorted(ctx.manifest.versions.items()))
    return f"<h2>Versions</h2><p>{escape(versions)}</p>"
