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
