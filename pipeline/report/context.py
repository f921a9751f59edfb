"""What a report section is given: :class:`ReportContext`."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.manifest import Manifest
from pipeline.core.registry import INGEST
from pipeline.core.store import RunStore
from pipeline.report.figures import figure_html
from pipeline.report.spec import ReportParams

__all__ = ["ReportContext"]


@dataclass(frozen=True)
class ReportContext:
    """The run a report is written for.

    A section is ``render(ctx) -> html or None`` (declared by its workflow as a
    :class:`~pipeline.core.registry.ReportSection`); None means it has nothing to show.

    Attributes
    ----------
    store : RunStore
    manifest : Manifest
        What ran, with the job spec it ran for.
    params : ReportParams
    seed : int
        Chooses the samples of images the sections show.
    current_step : str, optional
        The job step writing the report (shown as such rather than as still running).
    """

    store: RunStore
    manifest: Manifest
    params: ReportParams
    seed: int = 0
    current_step: str | None = None

    def steps(self, stage: str) -> list[str]:
        """Names of the job's steps of ``stage``, in job order.

        A store with no job on record (stages run one by one from Python) is taken to have
        run the stage under its own name.
        """
        job = self.manifest.job
        if not job:
            return [stage]
        names = [INGEST] if stage == INGEST and job.get("input") is not None else []
        names += [
            str(s.get("name") or s.get("stage"))
            for s in job.get("stages", [])
            if s.get("stage") == stage
        ]
        return names

    def figure(self, name: str, png: bytes, alt: str) -> str:
        """Write the figure under ``report/`` and return the ``<img>`` that shows it.

        ``name`` is the figure's file name when it is a plain one, else a plain name made
        from it (:func:`~pipeline.report.figures.figure_file`); ``alt`` is plain text.
        """
        return figure_html(self.store, name, png, alt)
