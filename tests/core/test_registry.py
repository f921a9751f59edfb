"""The registry: workflows declare stages, tables and report sections; implementations are
imported only when a stage runs; bad declarations are named."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from pipeline.core import registry as registry_module
from pipeline.core.jobs import build_job
from pipeline.core.registry import (
    Registry,
    ReportSection,
    StageDef,
    Workflow,
    default_registry,
    discover,
    load_object,
)
from pipeline.core.tables import TableSchema
from pipeline.errors import JobSpecError, RegistryError

#: A module that records being imported: the implementation of the fake stage below.
IMPL = "tests.core.fake_stage_impl"


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    word: str = "hi"


def _echo_writes(step: str, params: EchoParams) -> tuple[str, ...]:
    return (f"store.zarr/{step}/zarr.json",)


FAKE = Workflow(
    name="fake",
    summary="a workflow made up for tests",
    stages=(
        StageDef(
            "echo",
            EchoParams,
            f"{IMPL}:run",
            "writes an array named after the step",
            writes=_echo_writes,
        ),
    ),
    tables=(TableSchema("echoes", "one row per echo", {"word": "what was said"}),),
    sections=(
        ReportSection("late", 900, f"{IMPL}:section"),
        ReportSection("early", 150, f"{IMPL}:section"),
    ),
)


def test_validating_a_job_does_not_import_the_implementations() -> None:
    sys.modules.pop(IMPL, None)
    reg = Registry((FAKE,))
    job = build_job(
        {"name": "t", "store": "/tmp/x", "stages": [{"stage": "echo", "name": "shout"}]},
        registry=reg,
    )
    assert IMPL not in sys.modules
    assert job.steps[0].writes == ("store.zarr/shout/zarr.json",)
    assert job.steps[0].stage.workflow == "fake"
    func = job.steps[0].stage.load()  # now, when the stage is to run
    assert IMPL in sys.modules and func.__name__ == "run"


def test_sections_come_in_their_declared_order() -> None:
    reg = Registry((FAKE,))
    assert [s.name for s in reg.sections] == ["early", "late"]
    installed = [s.name for s in default_registry().sections]
    assert installed[0] == "stages" and installed[-1] == "versions"
    assert (
        installed.index("galaxy_catalog") < installed.index("reduce") < installed.index("survival")
    )


def test_two_workflows_cannot_declare_the_same_stage() -> None:
    other = Workflow("other", "again", stages=FAKE.stages)
    with pytest.raises(
        RegistryError, match="stage 'echo' is declared by both workflow 'fake' and 'other'"
    ):
        Registry((FAKE, other))


def test_a_table_no_workflow_documents_is_named_with_those_that_are() -> None:
    with pytest.raises(RegistryError, match="unknown table 'nope'; documented tables are: echoes"):
        Registry((FAKE,)).table("nope")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "is not a 'module:attribute' reference"),
        ("tests.core.no_such_module:run", "cannot import tests.core.no_such_module"),
        (f"{IMPL}:missing", "has no attribute 'missing'"),
    ],
)
def test_a_bad_implementation_reference_says_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        load_object(path)


def test_every_installed_stage_implementation_and_section_loads() -> None:
    reg = default_registry()
    for stage in reg.stages.values():
        assert callable(stage.load()), stage.name
        if stage.preflight:
            assert callable(stage.load_preflight()), stage.name
    for section in reg.sections:
        assert callable(section.load()), section.name


def test_the_installed_workflows_declare_every_stage_and_table(tmp_path: Path) -> None:
    reg = default_registry()
    assert {w.name for w in reg.workflows} == {
        "io",
        "features",
        "galaxy",
        "mosaic",
        "embed",
        "survival",
        "plates",
        "nuclei",
        "report",
    }
    stages = {"ingest", "ingest_plates", "preprocess", "reduce", "kmeans", "embed", "cohort"}
    assert stages | {"segment_spheroids", "spheroid_profiles", "report"} <= set(reg.stages)
    assert {"train_segmenter", "evaluate_segmentation", "segment"} <= set(reg.stages)
    tables = {"images", "catalog", "sources", "clusters", "training_loss", "cohort"}
    assert tables | {"plate_wells", "spheroid_qc", "spheroid_profiles"} <= set(reg.tables)
    assert {"segmenter_training", "segmentation_scores", "nuclei"} <= set(reg.tables)


def test_entry_points_that_are_not_workflows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    point = EntryPoint("bad", "tests.core.test_registry:EchoParams", "pipeline.workflows")
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", lambda group: [point])
    with pytest.raises(
        RegistryError, match=r"is a ModelMetaclass, not a pipeline\.core\.registry\.Workflow"
    ):
        discover()
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", lambda group: [])
    with pytest.raises(RegistryError, match="install the package"):
        discover()


@pytest.mark.parametrize("name", ["../../tmp/x", "has space", "1st", "a/b", "é"])
def test_a_step_name_that_is_not_an_identifier_is_refused(name: str) -> None:
    spec = {"name": "t", "store": "/tmp/x", "stages": [{"stage": "echo", "name": name}]}
    with pytest.raises(JobSpecError, match="not an identifier"):
        build_job(spec, registry=Registry((FAKE,)))


def test_two_steps_writing_one_array_are_refused() -> None:
    spec = {
        "name": "t",
        "store": "/tmp/x",
        "stages": [
            {"stage": "reduce", "name": "pca", "params": {"n_components": 2}},
            {"stage": "embed", "name": "pca"},
        ],
    }
    with pytest.raises(JobSpecError, match="used twice"):
        build_job(spec)
    spec["stages"][1]["name"] = "reduced"  # the array the step `reduce` writes
    spec["stages"].insert(0, {"stage": "reduce"})
    with pytest.raises(
        JobSpecError, match="writes the array 'reduced', which step 'reduce' writes too"
    ):
        build_job(spec)
