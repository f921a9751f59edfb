"""What the report layer contributes: the ``report`` stage and the page's frame sections."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.report.spec import ReportParams

__all__ = ["WORKFLOW"]

_SECTIONS = "pipeline.report.sections"

WORKFLOW = Workflow(
    name="report",
    summary="the static HTML report of a run",
    stages=(
        StageDef(
            "report",
            ReportParams,
            "pipeline.report.page:run_report",
            "static HTML report: stages, timings, counts, quarantine, sample montage, and "
            "each workflow's section",
            writes=("report/index.html",),
        ),
    ),
    # Frame sections: 0-99 before the workflows' (100-999), 1000+ after them.
    sections=(
        ReportSection("stages", 10, f"{_SECTIONS}:stages_section"),
        ReportSection("collection", 20, f"{_SECTIONS}:collection_section"),
        ReportSection("quarantine", 30, f"{_SECTIONS}:quarantine_section"),
        ReportSection("montage", 40, f"{_SECTIONS}:montage_section"),
        ReportSection("versions", 1000, f"{_SECTIONS}:versions_section"),
    ),
)
