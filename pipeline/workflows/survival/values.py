"""Cell values of a clinical table as the checks compare them, and how problems quote them.

Categories and event codes compare as text (``1``, ``1.0`` and `` 1 `` are the same category),
numbers are coerced with the non-numbers kept for the message, and every message lists rows
and values the same way (``rows 3, 8 and 40 more``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "as_text",
    "cell_texts",
    "close_names",
    "column_list",
    "did_you_mean",
    "examples",
    "is_missing",
    "rows_of",
    "rows_text",
    "to_number",
]

#: How many row numbers a message lists before "and N more".
ROWS_SHOWN = 10
#: How many example values a message quotes.
EXAMPLES_SHOWN = 5

# "1.0", "-2.000": the text of an integer-valued float, as a CSV column with a missing value
# (read as float) or a spreadsheet export writes it; it means the same category as "1".
_INTEGER_FLOAT_TEXT = re.compile(r"^[+-]?\d+\.0*$")


def rows_text(rows: Iterable[Any]) -> str:
    """``row 3`` / ``rows 3, 8`` / ``rows 1, ..., 10 and 40 more``."""
    ordered = sorted(int(r) for r in rows)
    if len(ordered) == 1:
        return f"row {ordered[0]}"
    text = "rows " + ", ".join(str(r) for r in ordered[:ROWS_SHOWN])
    more = len(ordered) - ROWS_SHOWN
    return f"{text} and {more} more" if more > 0 else text


def rows_of(mask: pd.Series) -> str:
    return rows_text(mask.index[mask.to_numpy(dtype=bool)])


def examples(values: Iterable[Any]) -> str:
    """Up to five distinct values, quoted: ``'x', 'y'``."""
    seen: list[str] = []
    for v in values:
        text = as_text(v)
        shown = "missing" if text is None else repr(text)
        if shown not in seen:
            seen.append(shown)
    more = len(seen) - EXAMPLES_SHOWN
    out = ", ".join(seen[:EXAMPLES_SHOWN])
    return f"{out} and {more} more" if more > 0 else out


def is_missing(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return value is None
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cell: not a missing scalar
        return False


def as_text(value: Any) -> str | None:
    """A cell as the text categories and event codes compare by (``None`` when missing).

    Integer-valued floats lose their ``.0`` (a column with a missing value is read as float,
    and its ``1.0`` is the category ``1``); text is stripped.
    """
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, Integral | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else str(number)
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_FLOAT_TEXT.match(text):
            return str(int(text.split(".")[0]))
        return text
    return str(value).strip()


def cell_texts(series: pd.Series) -> pd.Series:
    """:func:`as_text` of every cell (object dtype, ``None`` where missing)."""
    return pd.Series(
        [as_text(v) for v in series.to_numpy(dtype=object)], index=series.index, dtype=object
    )


def to_number(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """float64 values (NaN where missing or not a number) and the mask of non-numbers."""
    missing = series.isna()
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        values = np.full(len(series), np.nan)
    else:
        if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(series):
            series = series.astype(object)
        coerced = pd.to_numeric(series, errors="coerce")
        values = pd.Series(coerced, index=series.index).to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.Series(values, index=series.index, dtype=np.float64)
    return numbers, ~missing & numbers.isna()


def close_names(name: str, columns: Iterable[Any]) -> list[str]:
    """Column names close to ``name`` (same up to case first), at most three."""
    names = [str(c) for c in columns]
    close = [c for c in names if c.casefold() == name.casefold() and c != name]
    close += [c for c in difflib.get_close_matches(name, names, n=3, cutoff=0.6) if c not in close]
    return close[:3]


def did_you_mean(name: str, columns: Iterable[Any]) -> str:
    """`` (did you mean 'Age'?)`` for close column names, else ``""``."""
    close = close_names(name, columns)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def column_list(columns: Iterable[Any]) -> str:
    names = [str(c) for c in columns]
    shown = ", ".join(names[:20])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > 20 else shown
