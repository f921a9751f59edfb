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

from pipeline.manifest import Manifest, load_manifest
from pipeline.store import RunStore

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


def _stretch(img: np.ndarray) -> np.ndarray:
    # 8-bit images are already display-ready (JPEG cutouts are stretched by the survey);
    # uint16 and float data are unreadable unscaled, so they get a percentile stretch.
    if img.dtype == np.uint8:
        return img / 255.0
    img = img.astype(np.float64)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros_like(img)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        return np.zeros_like(img)
    return np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)


def _montage_png(store: RunStore, count: int, seed: int) -> tuple[bytes, list[str]] | None:
    if count == 0 or not store.has_array("images"):
        return None
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    valid = np.asarray(store.open_array("valid", mode="r")[:])
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        return None
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(candidates, size=min(count, candidates.size), replace=False))
    images = np.asarray(store.open_array("images", mode="r").oindex[pick])
    ids = [str(v) for v in np.asarray(store.open_array("image_id", mode="r").oindex[pick])]
    cols = int(np.ceil(np.sqrt(len(pick))))
    rows = int(np.ceil(len(pick) / cols))
    fig = Figure(figsize=(2 * cols, 2.2 * rows), dpi=100)
    for k, (img, name) in enumerate(zip(images, ids, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        shown = _stretch(img)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue(), ids


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


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
    return _table(["stage", "status", "started (UTC)", "seconds", "counts", "error"], rows, classes)


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
    return _table(["", ""], rows) + f"<p>Coordinates: {coords}</p>"


def _quarantine_section(manifest: Manifest, limit: int) -> str:
    q = manifest.quarantine
    if not q:
        return "<p>No input was quarantined.</p>"
    rows = [[e.stage, e.path.rsplit("/", 1)[-1], e.reason] for e in q[:limit]]
    more = f"<p>... and {len(q) - limit} more.</p>" if len(q) > limit else ""
    return (
        f"<p>{len(q)} input(s) set aside; all are in <code>tables/quarantine.parquet</code>.</p>"
        + _table(["stage", "file", "reason"], rows)
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
    parts += [f"<h2>Versions</h2><p>{html.escape(versions)}</p>", "</body></html>"]
    store.write_bytes("report/index.html", "\n".join(parts).encode())
    log.info("report written to %s", store.path("report/index.html"))
    return store.path("report/index.html")
