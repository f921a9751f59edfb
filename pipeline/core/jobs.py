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
import reprlib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.core.cluster_config import KINDS, ClusterConfig, LocalClusterConfig, with_default_kind
from pipeline.core.names import NAME_RULE, is_name
from pipeline.core.registry import INGEST, EarlierStep, Registry, StageDef, default_registry
from pipeline.errors import JobSpecError

__all__ = [
    "Job",
    "JobSpec",
    "JobStep",
    "StageStep",
    "build_job",
    "load_job",
    "load_yaml",
    "parse_job",
    "validate_strict",
]

_M = TypeVar("_M", bound=BaseModel)


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
    """A validated step: its unique name, its stage, its parameters, its config hash, the
    store paths it writes, and ``upstream``, the config hash of the steps before it (what made
    its inputs; empty for the first step)."""

    name: str
    stage: StageDef
    params: BaseModel
    config_hash: str
    writes: tuple[str, ...] = ()
    upstream: str = ""


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


#: A job spec is a few kilobytes. These bounds keep a hostile one (a huge file, or a "billion
#: laughs" of nested YAML aliases, which expands exponentially once walked) from exhausting
#: memory while it is parsed, validated or echoed in messages.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_NODES = 100_000


def _short(value: Any) -> str:
    """A bounded ``repr`` of ``value`` for messages: a message names the value, it does not
    reprint a huge one."""
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 2, 80, 80, 40
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 6
    return r.repr(value)


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes ``root`` stands for once its aliases are expanded (stops past ``limit``).

    An alias is one node object shared by every place that names it, so the count is a
    memoised sum over the node graph: linear in the document, however large its expansion.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            kids = [n for kv in node.value for n in kv]
        elif isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        if not children_done:
            sizes[key] = 1  # a recursive alias counts once, and ends the walk there
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(k), 1) for k in kids)
        sizes[key] = min(total, limit + 1)
    return sizes[id(root)]


def load_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML document with the safe loader, within the spec's size bounds.

    Returns
    -------
    data : object
        The document (plain mappings, lists and scalars: no Python tags are honoured).
    root : yaml.Node or None
        The composed node tree, for line numbers in messages.

    Raises
    ------
    JobSpecError
        If the text is not YAML, is over :data:`MAX_SPEC_BYTES`, or its aliases expand to
        more than :data:`MAX_SPEC_NODES` nodes.
    """
    if len(text) > MAX_SPEC_BYTES:
        raise JobSpecError(
            [
                f"{source}: {len(text)} characters, over the limit of {MAX_SPEC_BYTES} for a job "
                "spec; a spec names its inputs (files, folders, a manifest CSV) rather than "
                "listing data inline"
            ],
            source,
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            nodes = _expanded_nodes(root, MAX_SPEC_NODES)
            if nodes > MAX_SPEC_NODES:
                raise JobSpecError(
                    [
                        f"{source}: the document expands to more than {MAX_SPEC_NODES} values "
                        "through YAML aliases (*name); write the values out, or use fewer "
                        "nested aliases"
                    ],
                    source,
                )
        data = yaml.safe_load(text)
    except RecursionError:
        raise JobSpecError(
            [f"{source}: nested too deeply to be a job spec; flatten the structure"], source
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobSpecError(
            [f"{where}: not valid YAML: {_short_text(str(problem))}"], source
        ) from exc
    return data, root


def _short_text(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (through ``X | None``, ``list[X]``,
    ``dict[str, X]``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            out.extend(_models_in(arg))
    return out


def _walk(
    model: type[BaseModel] | None, path: Sequence[Any]
) -> tuple[type[BaseModel] | None, list[Any]]:
    """Follow ``path`` (an error's location) from ``model``.

    Returns
    -------
    model : type or None
        The model the last field name leads to (list indices and union tags are stepped
        over), or None where the path leaves the models (a free-form mapping).
    shown : list
        ``path`` without the union members' tags pydantic puts in it (``TableRows``,
        ``literal['all','kept']``), as a user would write the location.
    """
    current: list[type[BaseModel]] = [model] if model is not None else []
    shown: list[Any] = []
    for part in path:
        if isinstance(part, int):
            shown.append(part)
            continue
        text = str(part)
        if text.startswith("literal["):
            continue
        found = [
            m
            for c in current
            if text in c.model_fields
            for m in _models_in(c.model_fields[text].annotation)
        ]
        tagged = [c for c in current if c.__name__ == text and text not in c.model_fields]
        if tagged and not found:
            current = tagged  # a union member's tag names no field
            continue
        shown.append(part)
        current = found
    return (current[0] if len(current) == 1 else None), shown


def _nested_model(model: type[BaseModel] | None, path: Sequence[Any]) -> type[BaseModel] | None:
    """The model whose fields an error at ``path + [field]`` is about (see :func:`_walk`)."""
    return _walk(model, path)[0]


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
        errors = exc.errors()
        for err in errors:
            loc = list(err["loc"])
            if (
                any(str(p).startswith("literal[") for p in loc)
                and isinstance(err.get("input"), dict)
                and len(errors) > 1
            ):
                continue  # a mapping was meant for the union's model member, not a keyword
            msg = str(err["msg"]).removeprefix("Value error, ")
            # A validator's own message names the bad value; others get it appended.
            if err["type"] not in ("missing", "extra_forbidden", "value_error") and "input" in err:
                msg += f", got {_short(err['input'])}"
            hint_model = _nested_model(model, loc[:-1])
            if model is JobSpec and loc[:1] == ["cluster"] and len(loc) > 2 and loc[1] in KINDS:
                # A union member's error carries its tag: cluster.local.workers -> cluster.workers
                hint_model = _nested_model(KINDS[str(loc[1])], loc[2:-1])
                loc = [loc[0], *loc[2:]]
            shown = _walk(model, loc)[1] if model is not JobSpec or loc[:1] != ["cluster"] else loc
            self.add([*prefix, *shown], msg, _hint({**err, "loc": tuple(loc)}, hint_model))


# -- overrides --------------------------------------------------------------------------------


def _apply_override(data: dict[str, Any], text: str) -> None:
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise JobSpecError(
            [f"--set {text!r}: expected STAGE.PARAM=VALUE (or input.X=..., cluster.X=..., seed=N)"],
            "<--set>",
        )
    value = load_yaml(raw, "<--set>")[0] if raw.strip() else ""
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


def validate_strict(model: type[_M], raw: Any) -> _M:
    """Validate spec data (as YAML loads it) against ``model``, strictly.

    The data goes through JSON, pydantic's strict JSON mode: a string where a number is
    expected (``cutout_size: "128"``) and a boolean for a number are refused, while the
    things JSON cannot spell (paths, tuples, enums) are still read from strings and lists.

    Raises
    ------
    pydantic.ValidationError
    JobSpecError
        If the data holds values JSON cannot represent.
    """
    try:
        text = json.dumps(raw, default=str)
    except (TypeError, ValueError) as exc:
        raise JobSpecError([f"values that are not plain YAML data: {exc}"]) from exc
    return model.model_validate_json(text, strict=True)


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
    data, root = load_yaml(text, source)
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
        json.dumps(data, default=str)
    except (TypeError, ValueError) as exc:  # e.g. a recursive YAML alias
        raise JobSpecError([f"{source}: not plain YAML data ({exc})"], source) from None
    spec: JobSpec | None
    try:
        spec = validate_strict(JobSpec, data)
    except ValidationError as exc:
        # Reported with the stages' own problems: one run of `validate` lists everything.
        problems.add_validation(exc, [], JobSpec)
        spec = None
    seed = spec.seed if spec is not None else 0

    registry = default_registry() if registry is None else registry
    steps: list[JobStep] = []
    seen: dict[str, int] = {}
    earlier: list[EarlierStep] = []
    arrays: dict[str, str] = {}  # store array -> the step that writes it
    upstream = ""
    for loc, stage_name, step_name, raw in _entries(spec, data):
        stage = registry.stages.get(stage_name)
        if stage is None or (stage_name == INGEST and loc[0] == "stages"):
            names = sorted(registry.stages)
            close = difflib.get_close_matches(stage_name, [n for n in names if n != INGEST], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(n for n in names if n != INGEST)
            extra = " (ingest is configured by the `input` section)" if stage_name == INGEST else ""
            problems.add(
                [*loc, "stage"],
                f"unknown stage {stage_name!r}{extra}",
                f"{hint}known stages: {known}",
            )
            continue
        # A step name becomes part of output names (arrays, tables, model files).
        if not is_name(step_name):
            problems.add(
                [*loc, "name"],
                f"step name {_short(step_name)} is not an identifier; it names the step's "
                f"outputs (arrays, tables, models), so use {NAME_RULE}",
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
            params = validate_strict(stage.params_model, raw)
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
        before, upstream = upstream, _config_hash(stage_name, params, seed, upstream)
        steps.append(JobStep(step_name, stage, params, upstream, writes, before))
    if problems.items or spec is None:
        raise JobSpecError(problems.items, source)
    return Job(spec=spec, steps=tuple(steps), source=source)


def _entries(
    spec: JobSpec | None, data: dict[str, Any]
) -> list[tuple[Sequence[Any], str, str, dict[str, Any]]]:
    """(location, stage, step name, raw parameters) of every step to validate.

    Without a valid ``spec`` (its top-level problems are already reported) the steps are
    read from the raw data, skipping entries too malformed to name a stage.
    """
    out: list[tuple[Sequence[Any], str, str, dict[str, Any]]] = []
    if spec is not None:
        if spec.input is not None:
            out.append((["input"], INGEST, INGEST, spec.input))
        for i, st in enumerate(spec.stages):
            out.append((["stages", i], st.stage, st.name or st.stage, st.params))
        return out
    if isinstance(data.get("input"), dict):
        out.append((["input"], INGEST, INGEST, data["input"]))
    stages = data.get("stages")
    for i, raw in enumerate(stages if isinstance(stages, list) else []):
        try:
            st = validate_strict(StageStep, raw)
        except (ValidationError, JobSpecError):
            continue  # already reported under stages[i]
        out.append((["stages", i], st.stage, st.name or st.stage, st.params))
    return out


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
