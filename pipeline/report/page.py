"""The run report: ``report/index.html`` and its figures, written into the run store.

The page is assembled from the report sections the installed workflows declare
(:class:`~pipeline.core.registry.ReportSection`), in their declared order; each renders
itself from the store (``render(ctx) -> html or None``) and is imported only here. The
frame (stages, collection, quarantine, sample montage, versions) is
:mod:`pipeline.report.sections`. The page is static HTML with relative links, so the folder
can be copied or served as it is.

Every figure of the page is made inside :func:`~pipeline.report.figures.plain_text` (user names
are drawn as they are, never as mathtext or TeX), and every value in its HTML is escaped by
:mod:`pipeline.report.format`.
"""

from __future__ import annotations

import logging

from pipeline.core.context import RunContext
from pipeline.core.manifest import load_manifest
from pipeline.core.registry import Registry, default_registry
from pipeline.core.store import RunStore
from pipeline.report.context import ReportContext
from pipeline.report.figures import plain_text
from pipeline.report.format import escape
from pipeline.report.spec import ReportParams

__all__ = ["ReportParams", "run_report", "write_report"]

log = logging.getLogger(__name__)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; font-size: 0.9rem; }
th { background: #f3f3f3; }
.done { color: #176317; } .failed { color: #a11; } .running { color: #a60; }
code { background: #f6f6f6; padding: 0 0.2rem; }
"""


def write_report(
    store: RunStore,
    params: ReportParams | None = None,
    *,
    seed: int = 0,
    current_step: str | None = None,
    registry: Registry | None = None,
) -> str:
    """Write ``report/index.html`` (and its figures) for a run store.

    Parameters
    ----------
    store : RunStore
    params : ReportParams, optional
    seed : int
        Chooses the samples of images the sections show.
    current_step : str, optional
        The job step writing this report, shown as such rather than as still running.
    registry : Registry, optional
        Whose sections to render (default: the installed workflows').

    Returns
    -------
    str
        Path (or URL) of ``index.html``.
    """
    ctx = ReportContext(
        store=store,
        manifest=load_manifest(store),
        params=params or ReportParams(),
        seed=seed,
        current_step=current_step,
    )
    title = escape((ctx.manifest.job or {}).get("name") or store.url.rsplit("/", 1)[-1])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Run report: {title}</h1>",
        f"<p>Store: <code>{escape(store.url)}</code></p>",
    ]
    with plain_text():  # the one place: every section's figures are made inside
        for section in (registry or default_registry()).sections:
            body = section.load()(ctx)
            if body is not None:
                parts.append(f"<section id='{escape(section.name)}'>\n{body}\n</section>")
    parts.append("</body></html>")
    store.write_bytes("report/index.html", "\n".join(parts).encode())
    log.info("report written to %s", store.path("report/index.html"))
    return store.path("report/index.html")


def run_report(ctx: RunContext, params: ReportParams) -> dict[str, int]:
    """The ``report`` stage: :func:`write_report` for the run's store."""
    write_report(ctx.store, params, seed=ctx.seed, current_step=ctx.step_name("report"))
    return {"montage_images": params.montage_images}
