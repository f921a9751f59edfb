"""Names that become paths in a run store: step names, and the arrays, tables and models a
spec refers to by name.

A name is joined into store paths (``store.zarr/<name>``, ``tables/<name>.parquet``,
``models/<name>.npz``), so it must never be able to climb out of the store (``..``), be
absolute, or carry a separator: an identifier is all a name needs to be.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["NAME_RULE", "StoreName", "check_name", "is_name"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

#: How a valid name looks, for messages.
NAME_RULE = "letters, digits and _, starting with a letter, at most 64 characters"


def is_name(value: str) -> bool:
    """Whether ``value`` is a valid store name."""
    return _NAME.fullmatch(value) is not None


def check_name(value: str) -> str:
    """``value`` when it is a valid store name.

    Raises
    ------
    ValueError
        Naming the value and the rule (pydantic turns it into a validation error).
    """
    if not is_name(value):
        shown = value if len(value) <= 80 else value[:79] + "\u2026"
        raise ValueError(
            f"{shown!r} is not a name of the store's arrays, tables or models ({NAME_RULE})"
        )
    return value


#: A string field naming an array, table or model of the store.
StoreName = Annotated[str, AfterValidator(check_name)]
