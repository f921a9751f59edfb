"""Job specs: YAML files naming the input, store, cluster and ordered stages of a run.

Example::

    name: demo
    store: runs/demo                 # relative paths are relative to the working directory
    seed: 0
    cluster: {kind: local, workers: 2}
    input:                           # the ingest stage's parameters
      sources: [data/demo/images]
    stages:
      - stage: report
        params: {montage_images: 16}

A spec is validated completely before any work starts: every problem is reported at once,
each naming the field, its line in the file and what to do (:class:`JobSpecError`, exit 2).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.core.cluster_config import KINDS, ClusterConfig, LocalClusterConfig, with_default_kind
from pipeline.core.registry import INGEST, EarlierStep, Registry, StageDef, default_registry
from pipeline.errors import JobSpecError

__all__ = ["Job", "JobSpec", "JobStep", "StageStep", "build_job", "load_job", "parse_job"]


class StageStep(BaseModel):
    """One entry of ``stages``: which stage, under which name, with which parameters."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class JobSpec(BaseModel):
    """A whole job spec (before stage parameters are validated by their own models)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    store: str = Field(min_length=1)
    seed: int = 0
    cluster: ClusterConfig = Field(default_factory=LocalClusterConfig)
    input: dict[str, Any] | None = None
    stages: list[StageStep] = Field(default_factory=list)

    @field_validator("cluster", mode="before")
    @classmethod
    def _cluster_kind(cls, value: Any) -> Any:
        # `kind` may be left out: `local`, or `address` when an address is given.
        return with_default_kind(value)


@dataclass(frozen=True)
class JobStep:
    """A validated step: its unique name, its stage, its parameters, its config hash and the
    store paths it writes."""

    name: str
    stage: StageDef
    params: BaseModel
    config_hash: str
    writes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """A validated job, ready to run."""

    spec: JobSpec
    steps: tuple[JobStep, ...]
    source: str

    def step(self, name: str) -> JobStep:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


# -- locating errors in the YAML file ---------------------------------------------------------


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _line_of(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (the key's line for mappings)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _hint(err: Any, model: type[BaseModel] | None) -> str:
    if err["type"] == "extra_forbidden" and model is not None:
        allowed = sorted(model.model_fields)
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{hint}allowed fields: {', '.join(allowed)}"
    if err["type"] == "missing":
        return "add it"
    return ""


class _Problems:
    def __init__(self, source: str, root: yaml.Node | None) -> None:
        self.source = source
        self.root = root
        self.items: list[str] = []

    def add(self, loc: Sequence[Any], message: str, hint: str = "") -> None:
        line = _line_of(self.root, loc)
        where = f"{self.source}:{line}" if line is not None else self.source
        text = f"{where}: {_format_loc(loc)}: {message}"
        self.items.append(text + (f" ({hint})" if hint else ""))

    def add_validation(
        self, exc: ValidationError, prefix: Sequence[Any], model: type[BaseModel] | None
    ) -> None:
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
                msg += f", got {err['input']!r}"
            loc, hint_model = list(err["loc"]), _model_at(model, err["loc"])
            if model is JobSpec and loc[:1] == ["cluster"] and len(loc) > 2 and loc[1] in KINDS:
                # A union member's error carries its tag: cluster.local.workers -> cluster.workers
                hint_model = KINDS[str(loc[1])]
                loc = [loc[0], *loc[2:]]
            self.add([*prefix, *loc], msg, _hint({**err, "loc": tuple(loc)}, hint_model))


def _model_at(model: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model whose field the last element of ``loc`` names (for 'allowed fields' hints)."""
    if model is JobSpec and len(loc) == 3 and loc[0] == "stages":
        return StageStep
    return model if len(loc) == 1 or model is not JobSpec else None


# -- overrides --------------------------------------------------------------------------------


def _apply_override(data: dict[str, Any], text: str) -> None:
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise JobSpecError(
            [f"--set {text!r}: expected STAGE.PARAM=VALUE (or input.X=..., cluster.X=..., seed=N)"],
            "<--set>",
        )
    value = yaml.safe_load(raw) if raw.strip() else ""
    head = parts[0]
    if head in ("input", "cluster") or len(parts) == 1:
        target: dict[str, Any] = data
        for p in parts[:-1]:
            # A missing (or null) section is created, so the override is validated with it.
            if not isinstance(target.get(p), dict):
                target[p] = {}
            target = target[p]
        target[parts[-1]] = value
        return
    steps = data.get("stages") or []
    for step in steps:
        if isinstance(step, dict) and (step.get("name") or step.get("stage")) == head:
            params = step.setdefault("params", {}) or {}
            step["params"] = params
            target = params
            for p in parts[1:-1]:
                target = target.setdefault(p, {})
            target[parts[-1]] = value
            return
    names = [str(s.get("name") or s.get("stage")) for s in steps if isinstance(s, dict)]
    raise JobSpecError(
        [f"--set {text!r}: no stage named {head!r} (stages: {', '.join(names) or 'none'})"],
        "<--set>",
    )


# -- validation -------------------------------------------------------------------------------

#: A step name becomes part of output names (arrays, tables, model files): an identifier.
_STEP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def _config_hash(stage: str, params: BaseModel, seed: int, upstream: str) -> str:
    # Chained with the previous step's hash: changing an upstream stage reruns what follows.
    blob = json.dumps(
        {"stage": stage, "params": params.model_dump(mode="json"), "seed": seed, "up": upstream},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_job(text: str, source: str = "<job spec>", overrides: Sequence[str] = ()) -> Job:
    """Validate a job spec given as YAML text.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        Its file name, used in messages.
    overrides : sequence of str
        ``STAGE.PARAM=VALUE`` (or ``input.X=V``, ``cluster.X=V``, ``seed=N``); values are YAML.

    Returns
    -------
    Job

    Raises
    ------
    JobSpecError
        Listing every problem, each with the field, the line and the fix.
    """
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise JobSpecError([f"{where}: not valid YAML: {exc}"], source) from exc
    if not isinstance(data, dict):
        raise JobSpecError(
            [f"{source}: a job spec is a mapping with name, store, input, cluster, stages"], source
        )
    return build_job(data, source, overrides, root)


def build_job(
    data: dict[str, Any],
    source: str = "<job spec>",
    overrides: Sequence[str] = (),
    root: yaml.Node | None = None,
    registry: Registry | None = None,
) -> Job:
    """Validate a job spec given as a mapping (e.g. built by the CLI's ``ingest``).

    Parameters
    ----------
    data : dict
        The spec, as YAML would load it. It is not modified.
    source : str
        Where it came from, used in messages.
    overrides : sequence of str
        As for :func:`parse_job`.
    root : yaml.Node, optional
        The composed YAML document, to give line numbers in messages.
    registry : Registry, optional
        The stages to know (default: the installed workflows').

    Returns
    -------
    Job

    Raises
    ------
    JobSpecError
    """
    data = copy.deepcopy(data)
    for text_override in overrides:
        _apply_override(data, text_override)
    problems = _Problems(source, root)
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        problems.add_validation(exc, [], JobSpec)
        raise JobSpecError(problems.items, source) from None

    registry = default_registry() if registry is None else registry
    steps: list[JobStep] = []
    seen: dict[str, int] = {}
    earlier: list[EarlierStep] = []
    arrays: dict[str, str] = {}  # store array -> the step that writes it
    upstream = ""
    entries: list[tuple[Sequence[Any], str, str, dict[str, Any]]] = []
    if spec.input is not None:
        entries.append((["input"], INGEST, INGEST, spec.input))
    for i, st in enumerate(spec.stages):
        entries.append((["stages", i], st.stage, st.name or st.stage, st.params))
    for loc, stage_name, step_name, raw in entries:
        stage = registry.stages.get(stage_name)
        if stage is None or (stage_name == INGEST and loc[0] == "stages"):
            names = sorted(registry.stages)
            close = difflib.get_close_matches(stage_name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(n for n in names if n != INGEST)
            extra = " (ingest is configured by the `input` section)" if stage_name == INGEST else ""
            problems.add(
                [*loc, "stage"],
                f"unknown stage {stage_name!r}{extra}",
                f"{hint}known stages: {known}",
            )
            continue
        if not _STEP_NAME.fullmatch(step_name):
            problems.add(
                [*loc, "name"],
                f"step name {step_name!r} is not an identifier; it names the step's outputs "
                "(arrays, tables, models), so use letters, digits and _ (starting with a letter)",
            )
            continue
        if step_name in seen:
            problems.add(
                [*loc, "name"],
                f"step name {step_name!r} is used twice",
                "give one of them a distinct `name:`",
            )
            continue
        seen[step_name] = len(steps)
        prefix = loc if loc[0] == "input" else [*loc, "params"]
        try:
            params = stage.params_model.model_validate(raw)
        except ValidationError as exc:
            problems.add_validation(exc, prefix, stage.params_model)
            continue
        if stage.check_job is not None:
            for field, message in stage.check_job(params, earlier):
                problems.add([*prefix, *field], message)
        writes = stage.outputs(step_name, params)
        for path in writes:
            array = _array_of(path)
            if array is not None and arrays.setdefault(array, step_name) != step_name:
                problems.add(
                    [*loc, "name"] if loc[0] == "stages" else loc,
                    f"step {step_name!r} writes the array {array!r}, which step "
                    f"{arrays[array]!r} writes too",
                    "give this step another `name:` (its outputs are named after it)",
                )
        earlier.append(EarlierStep(step_name, stage_name, params, writes))
        upstream = _config_hash(stage_name, params, spec.seed, upstream)
        steps.append(JobStep(step_name, stage, params, upstream, writes))
    if problems.items:
        raise JobSpecError(problems.items, source)
    return Job(spec=spec, steps=tuple(steps), source=source)


def _array_of(path: str) -> str | None:
    """The store array a written path belongs to (``store.zarr/<name>/...``), if any."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "store.zarr" else None


def load_job(path: str | Path, overrides: Sequence[str] = ()) -> Job:
    """Read and validate a job spec file (see :func:`parse_job`).

    Raises
    ------
    JobSpecError
        If the file is missing or the spec does not validate.
    """
    p = Path(path)
    if not p.is_file():
        raise JobSpecError([f"{path}: no such job spec file"], str(path))
    return parse_job(p.read_text(), str(path), overrides)
