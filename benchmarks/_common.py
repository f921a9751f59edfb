"""What every benchmark script prints: the code it measured, results as they come, targets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


class Results:
    """Result lines printed as soon as known and again in the closing summary, and targets."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.targets: list[tuple[str, bool]] = []

    def report(self, line: str) -> None:
        """Print a result line now and again in the summary at the end."""
        print(line, flush=True)
        self.lines.append(line)

    def target(self, name: str, met: bool) -> str:
        """Record whether target ``name`` was met; returns "met" or "NOT met" to print."""
        self.targets.append((name, met))
        return "met" if met else "NOT met"

    def summary(self) -> None:
        """Print every result line and each target's verdict."""
        print("\n== summary ==\n" + "\n".join(self.lines))
        print("targets: " + ", ".join(f"{n} {'met' if m else 'NOT met'}" for n, m in self.targets))

    def exit_code(self) -> int:
        """0 when every target was measured and met, else 1."""
        return 0 if self.targets and all(m for _, m in self.targets) else 1


def version(modules: Sequence[str]) -> str:
    """The library state measured: git HEAD, a hash of each module, uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %cd", "--date=iso"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run([*git, "status", "--short", *modules], capture_output=True, text=True)
    hashes = ", ".join(
        f"{m} sha256 {hashlib.sha256((ROOT / m).read_bytes()).hexdigest()[:12]}" for m in modules
    )
    return f"HEAD {head}; {hashes}; uncommitted: {dirty.stdout.split()[1::2] or 'none'}"


def open_workdir(given: Path | None, prefix: str, extra: str = "") -> tuple[Path, bool]:
    """The working folder (a new temporary one unless given), after printing the machine.

    Returns
    -------
    path : Path
    own : bool
        Whether it was created here (and so may be deleted at the end).
    """
    own = given is None
    workdir = Path(tempfile.mkdtemp(prefix=prefix)) if given is None else given
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, load "
        f"average {os.getloadavg()[0]:.2f}{extra}; workdir {workdir}",
        flush=True,
    )
    return workdir, own
