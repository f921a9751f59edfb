"""The registry: which stages, tables and report sections the workflows contribute.

Each workflow (and the io, features and report layers) declares one :class:`Workflow` in a
module of its own that imports parameter models and nothing heavy; ``pyproject.toml`` lists
these modules under the ``pipeline.workflows`` entry-point group. As xarray finds its backends
and zarr its codecs, :func:`default_registry` reads the entry points once per process. A
stage's implementation, its preflight check and each report section are named by a
``"module:function"`` string and imported only when they run, so validating a job (or
``pipeline --help``) never imports torch, scikit-learn, lifelines or matplotlib.

Core code names no workflow: another package can add stages by declaring a ``Workflow`` under
the same entry-point group.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from pipeline.core.tables import TableSchema
from pipeline.errors import RegistryError

if TYPE_CHECKING:
    from pipeline.core.context import RunContext
    from pipeline.core.store import RunStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "GROWTH_HELP",
    "INGEST",
    "Counts",
    "EarlierStep",
    "Growth",
    "JobProblems",
    "Registry",
    "ReportSection",
    "StageDef",
    "Workflow",
    "default_registry",
    "discover",
    "load_object",
]

log = logging.getLogger(__name__)

#: The entry-point group workflows are declared under.
ENTRY_POINT_GROUP = "pipeline.workflows"

#: Name of the stage a job spec's ``input`` section runs.
INGEST = "ingest"

#: What a stage returns and the manifest records: ``{"images": 1200, "final_loss": 3.74}``.
Counts = Mapping[str, int | float]

#: Problems a job-level check finds: ``(field path inside the step's params, message)``.
JobProblems = list[tuple[tuple[str | int, ...], str]]


@dataclass(frozen=True)
class EarlierStep:
    """A step before the one being checked, as a job-level check sees it.

    Attributes
    ----------
    name : str
        The step's name in the job.
    stage : str
        Its stage.
    params : pydantic.BaseModel
        Its validated parameters.
    writes : tuple of str
        The store paths it writes.
    """

    name: str
    stage: str
    params: BaseModel
    writes: tuple[str, ...]


def load_object(path: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises
    ------
    RegistryError
        If the module cannot be imported (e.g. a missing optional dependency) or has no such
        attribute, naming both and what to do.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(f"{path!r} is not a 'module:attribute' reference")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"cannot import {module_name} (for {path}): {exc}. Install what it needs "
            "(`pip install -e .` installs every dependency) or leave its stage out of the job"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RegistryError(f"{module_name} has no attribute {attr!r} (for {path})") from None


WritesFn = Callable[[str, Any], tuple[str, ...]]

#: What a stage does when the collection it works on has grown since it ran (new files in
#: the source folder, a plate added; see ``StageDef.growth``).
Growth = Literal["new_rows", "refit", "keep", "all"]

#: One line per :data:`Growth` value, for ``pipeline stages`` and the manifest's readers.
GROWTH_HELP: dict[str, str] = {
    "new_rows": "processes only the rows added since it ran",
    "refit": "fits again on all rows (a global model or ranking)",
    "keep": "keeps the model it trained; --force STEP trains it again",
    "all": "recomputes everything",
}
CheckJobFn = Callable[[Any, Sequence[EarlierStep]], JobProblems]


@dataclass(frozen=True)
class StageDef:
    """A stage a job spec may name.

    Attributes
    ----------
    name : str
        What a job step's ``stage:`` says.
    params_model : type of pydantic.BaseModel
        Its parameters, validated when the job spec is.
    run : str
        ``"module:function"`` of the implementation, ``function(ctx, params) -> counts``
        (:class:`~pipeline.core.context.RunContext`), imported when the stage runs.
    summary : str
        One line for ``pipeline stages`` and the docs.
    writes : tuple of str, or callable
        Store paths (relative to the store root) that exist once the stage has completed, or
        ``writes(step_name, params) -> paths`` when they are named after the step.
    preflight : str, optional
        ``"module:function"`` of ``preflight(store, params)``: cheap checks run for every
        pending step before any stage starts (inputs exist, the store can take the output);
        raises to stop the run.
    inputs : str, optional
        ``"module:function"`` of ``inputs(params) -> str``: a cheap fingerprint of what the
        step reads from outside the store (file names, sizes and times; never their
        content). A completed step whose inputs' fingerprint has changed since it ran (files
        added to a folder, a plate added to an index) runs again, as does every step after
        it; the stage itself decides how much of that is new work. Left out, a stage's inputs
        are its parameters alone.
    check_job : callable, optional
        ``check_job(params, earlier) -> [(field path, message), ...]``: checks of the step's
        parameters against the steps before it in the job (:class:`EarlierStep`), run when
        the job spec is validated. It must import nothing heavy.
    growth : {"new_rows", "refit", "keep", "all"}
        What the stage does when an earlier step of the job ran again because the collection
        grew (a recurring run on a grown input; :data:`GROWTH_HELP`): ``new_rows``, a
        per-image stage, processes only the new rows; ``refit``, a global stage (PCA,
        clustering, rankings), fits again on all of them; ``keep``, a training stage, is not
        run again (its saved model is applied by the stages after it; ``--force`` retrains);
        ``all`` (default) recomputes. The runner records it with each run in the manifest.
    workflow : str
        The workflow that declared it (set by the registry).
    """

    name: str
    params_model: type[BaseModel]
    run: str
    summary: str
    writes: tuple[str, ...] | WritesFn = ()
    preflight: str | None = None
    inputs: str | None = None
    check_job: CheckJobFn | None = None
    growth: Growth = "all"
    workflow: str = ""

    def outputs(self, step: str, params: BaseModel) -> tuple[str, ...]:
        """The store paths step ``step`` of this stage writes."""
        return tuple(self.writes(step, params)) if callable(self.writes) else tuple(self.writes)

    def load(self) -> Callable[[RunContext, Any], Counts]:
        """The implementation (imported now)."""
        func: Callable[[RunContext, Any], Counts] = load_object(self.run)
        return func

    def load_inputs(self) -> Callable[[Any], str] | None:
        """The inputs' fingerprint function (imported now), or None."""
        if self.inputs is None:
            return None
        func: Callable[[Any], str] = load_object(self.inputs)
        return func

    def load_preflight(self) -> Callable[[RunStore, Any], None] | None:
        """The preflight check (imported now), or None."""
        if self.preflight is None:
            return None
        func: Callable[[RunStore, Any], None] = load_object(self.preflight)
        return func


@dataclass(frozen=True)
class ReportSection:
    """A part of the run report.

    Attributes
    ----------
    name : str
        Unique name (also the section's HTML id).
    order : int
        Sections appear in increasing order (ties by name): the page's frame uses 0-99 and
        1000+, workflows 100-999.
    render : str
        ``"module:function"`` of ``render(ctx) -> html or None``
        (:class:`~pipeline.report.context.ReportContext`); None means nothing to show.
    workflow : str
        The workflow that declared it (set by the registry).
    """

    name: str
    order: int
    render: str
    workflow: str = ""

    def load(self) -> Callable[[Any], str | None]:
        """The renderer (imported now)."""
        func: Callable[[Any], str | None] = load_object(self.render)
        return func


@dataclass(frozen=True)
class Workflow:
    """What one workflow contributes.

    Attributes
    ----------
    name : str
    summary : str
    stages : tuple of StageDef
    tables : tuple of TableSchema
        Every table its stages write, documented once.
    sections : tuple of ReportSection
    """

    name: str
    summary: str
    stages: tuple[StageDef, ...] = ()
    tables: tuple[TableSchema, ...] = ()
    sections: tuple[ReportSection, ...] = ()


@dataclass(frozen=True)
class Registry:
    """The stages, tables and report sections of a set of workflows.

    Raises
    ------
    RegistryError
        (on construction) if two workflows declare the same stage, table or section name.
    """

    workflows: tuple[Workflow, ...]
    stages: Mapping[str, StageDef] = field(init=False)
    tables: Mapping[str, TableSchema] = field(init=False)
    sections: tuple[ReportSection, ...] = field(init=False)

    def __post_init__(self) -> None:
        owner: dict[tuple[str, str], str] = {}

        def claim(kind: str, name: str, workflow: str) -> None:
            if (kind, name) in owner:
                raise RegistryError(
                    f"{kind} {name!r} is declared by both workflow {owner[kind, name]!r} and "
                    f"{workflow!r}; rename one of them"
                )
            owner[kind, name] = workflow

        stages: dict[str, StageDef] = {}
        tables: dict[str, TableSchema] = {}
        sections: list[ReportSection] = []
        for wf in self.workflows:
            for stage in wf.stages:
                claim("stage", stage.name, wf.name)
                stages[stage.name] = dataclasses.replace(stage, workflow=wf.name)
            for table in wf.tables:
                claim("table", table.name, wf.name)
                tables[table.name] = table
            for section in wf.sections:
                claim("report section", section.name, wf.name)
                sections.append(dataclasses.replace(section, workflow=wf.name))
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "tables", tables)
        sections.sort(key=lambda s: (s.order, s.name))
        object.__setattr__(self, "sections", tuple(sections))

    def stage(self, name: str) -> StageDef:
        """The stage called ``name`` (KeyError if none)."""
        return self.stages[name]

    def table(self, name: str) -> TableSchema:
        """The schema of table ``name``.

        Raises
        ------
        RegistryError
            If no workflow documents it, listing those that are.
        """
        try:
            return self.tables[name]
        except KeyError:
            raise RegistryError(
                f"unknown table {name!r}; documented tables are: {', '.join(sorted(self.tables))}"
                ". Declare it in the tables of the workflow that writes it"
            ) from None


def discover(group: str = ENTRY_POINT_GROUP, extra: Iterable[Workflow] = ()) -> Registry:
    """Read the workflows declared under the entry-point ``group`` (plus ``extra``).

    Raises
    ------
    RegistryError
        If no workflow is declared (the package is not installed), or a declaration cannot be
        loaded or is not a :class:`Workflow`.
    """
    found: list[Workflow] = list(extra)
    points = sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name)
    for point in points:
        try:
            wf = point.load()
        except ImportError as exc:
            raise RegistryError(
                f"workflow {point.name!r} ({point.value}) cannot be imported: {exc}"
            ) from exc
        if not isinstance(wf, Workflow):
            raise RegistryError(
                f"entry point {point.name!r} of {group} ({point.value}) is a "
                f"{type(wf).__name__}, not a pipeline.core.registry.Workflow"
            )
        found.append(wf)
    if not found:
        raise RegistryError(
            f"no workflow is declared under the entry-point group {group!r}: install the "
            "package (`pip install -e .` or `make install`) so that its entry points exist"
        )
    log.debug("workflows: %s", ", ".join(w.name for w in found))
    return Registry(tuple(found))


@functools.cache
def default_registry() -> Registry:
    """The installed workflows' registry, read once per process (as xarray lists engines)."""
    return discover()
