"""The layout holds: layers import only the layers below them, nothing heavy is imported to
validate a job or print help, and no module grows past one concern."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import JOBS, REPO

PACKAGE = REPO / "pipeline"

#: Each layer and the layers it may import (besides itself, ``pipeline.errors`` and the lazy
#: top-level package). A workflow may not import another workflow.
ALLOWED = {
    "core": set(),
    "jobs": {"core"},
    "cli_args": {"synth"},
    "cli_common": set(),
    "cli_synth": {"synth", "cli_args", "cli_common"},
    "io": {"core"},
    "imaging": {"core"},
    "compute": {"core"},
    "report": {"core"},
    "features": {"core", "compute", "imaging", "report"},
    "synth": {"core", "imaging"},
    "workflows": {"core", "io", "imaging", "compute", "features", "report"},
    "cli": {
        "core",
        "io",
        "imaging",
        "compute",
        "features",
        "report",
        "workflows",
        "synth",
        "cli_args",
        "cli_common",
        "cli_synth",
    },
}

HEAVY = ("torch", "sklearn", "lifelines", "matplotlib")


def _layer(module: str) -> str:
    """``pipeline.workflows.embed.train`` -> ``workflows``; ``pipeline.cli`` -> ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _workflow(module: str) -> str | None:
    """``pipeline.workflows.embed.train`` -> ``embed``."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "workflows" else None


def _imports(path: Path) -> list[str]:
    """Every ``pipeline.*`` module a file imports (at any depth: lazy imports count too)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m == "pipeline" or m.startswith("pipeline.")]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_every_module_belongs_to_a_known_layer() -> None:
    layers = {_layer(name) for name, _ in _modules()} - {"", "errors", "__main__"}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)


def test_layers_import_only_the_layers_below_them() -> None:
    wrong = []
    for name, path in _modules():
        layer = _layer(name)
        if layer not in ALLOWED:
            continue
        for target in _imports(path):
            other = _layer(target)
            if other in ("", "errors"):
                continue
            if other == layer:
                if layer == "workflows" and _workflow(target) not in (None, _workflow(name)):
                    wrong.append(f"{name} imports another workflow: {target}")
                continue
            if other not in ALLOWED[layer]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_core_imports_nothing_from_the_workflows() -> None:
    """Core names no workflow, not even as a string to import later: the registry finds the
    workflows through entry points."""
    for name, path in _modules():
        if _layer(name) != "core":
            continue
        imported = [m for m in _imports(path) if _layer(m) not in ("core", "errors")]
        assert not imported, (name, imported)
        strings = [
            n.value
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        named = [
            s
            for s in strings
            if s.startswith("pipeline.") and _layer(s) in ALLOWED and _layer(s) != "core"
        ]
        # The entry-point group's name is the one mention allowed.
        assert [s for s in named if s != "pipeline.workflows"] == [], (name, named)


def test_no_module_is_over_800_lines() -> None:
    long = {n: c for n, p in _modules() if (c := len(p.read_text().splitlines())) > 800}
    assert not long, long


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``heavy`` libraries in ``sys.modules`` after running ``code`` in a fresh
    interpreter."""
    probe = "import sys\n" + code + f"\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "code",
    [
        "import pipeline",
        "import pipeline.jobs",
        "import pipeline.core.jobs",
        "from pipeline import load_job, RunStore, LocalClusterConfig",
    ],
)
def test_importing_the_api_loads_nothing_heavy(code: str) -> None:
    assert _loaded_after(code) == []


def test_validating_a_job_and_the_help_load_nothing_heavy() -> None:
    code = (
        "from pipeline.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    for job in {sorted(str(p) for p in JOBS.glob('*.yaml'))!r}:\n"
        "        assert main(['validate', job]) == 0\n"
        "    assert main(['stages', 'train_encoder']) == 0\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0\n"
    )
    # Nor Dask's scheduler machinery: validating needs no cluster.
    assert _loaded_after(code, (*HEAVY, "distributed")) == []


def test_running_a_stage_imports_its_implementation() -> None:
    """The counterpart: the heavy libraries are there once a stage's implementation loads."""
    code = (
        "from pipeline.core.registry import default_registry\n"
        "default_registry().stage('train_encoder').load()\n"
    )
    assert "torch" in _loaded_after(code)
