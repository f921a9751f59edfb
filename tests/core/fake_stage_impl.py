"""The implementation of the made-up ``echo`` stage of tests/core/test_registry.py: importing
it is what the registry must not do while validating a job."""

from __future__ import annotations

from typing import Any


def run(ctx: Any, params: Any) -> dict[str, int]:
    """Count one echo."""
    return {"echoes": 1}


def section(ctx: Any) -> str | None:
    """Nothing to show."""
    return None


def read_file(ctx: Any, params: Any) -> dict[str, int]:
    """Read the file ``params.path`` names (a stage whose input lies outside the store)."""
    with open(params.path, "rb") as fh:
        return {"bytes": len(fh.read())}


def file_inputs(params: Any) -> str:
    """The fingerprint of that input: its size and modification time."""
    import os

    from pipeline.errors import InputError

    try:
        st = os.stat(params.path)
    except FileNotFoundError as exc:
        raise InputError(f"{params.path} does not exist") from exc
    return f"{st.st_size}:{st.st_mtime_ns}"
