"""Lazy package attributes, as scikit-image's ``lazy.attach``: a package lists its public
names and the modules that define them, and each module is imported on first access, so
importing the package itself costs nothing."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, resolving ``names`` (name -> module).

    Examples
    --------
    >>> __getattr__, __dir__ = attach(__name__, {"RunStore": "pipeline.core.store"})
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
