"""Text and number formatting for report sections, and small readers of optional outputs.

p-values, significant digits, aligned decimals and percentages are printed as a scientific
table prints them, so that every section reads alike; text goes through :func:`escape`. A
table or record a stage did not write reads as None or empty (:func:`read_optional_table`,
:func:`read_optional_json`): the part that shows it then leaves itself out, returning None,
and :func:`join_parts` joins the parts that are left.

Escaping: every value a section puts into its HTML goes through one of two functions, whatever
its origin (step, image, job, column, level and file names, parameter values, error messages,
records read from the store): :func:`escape` for text and attribute values, :func:`url` for
the ``src`` or ``href`` of a file of the report folder. Left as they are: the markup a section
writes itself, and the numbers it formats itself (``f"{n} images"``, ``f"{x:.3f}"``).
"""

from __future__ import annotations

import html
import math
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from pipeline.core.store import RunStore
from pipeline.core.tables import read_table

__all__ = [
    "escape",
    "format_p",
    "is_finite",
    "join_parts",
    "p_phrase",
    "percent",
    "read_optional_json",
    "read_optional_table",
    "same_decimals",
    "significant",
    "slug",
    "url",
]


def is_finite(x: Any) -> bool:
    """Whether ``x`` is a finite number.

    Parameters
    ----------
    x : Any
        A value from a table or a record: a number, a numeric string, None, ...

    Returns
    -------
    bool
        True when ``float(x)`` works and is neither NaN nor infinite.
    """
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_p(p: float) -> str:
    """A p-value as a clinical table prints it.

    Parameters
    ----------
    p : float
        The p-value (NaN or None when there is none).

    Returns
    -------
    str
        ``"<0.001"`` below 0.001, else three decimals (``"0.042"``); ``"-"`` for NaN.
    """
    if p is None or not is_finite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_phrase(p: float) -> str:
    """A p-value as a phrase in a sentence: ``"p = 0.042"``, ``"p < 0.001"``.

    Parameters
    ----------
    p : float
        The p-value.

    Returns
    -------
    str
        ``"p = "`` and the p-value as :func:`format_p` prints it, or ``"p < 0.001"``.
    """
    text = format_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def significant(x: float, digits: int = 3) -> str:
    """``x`` with about ``digits`` significant digits, never in exponent notation.

    Parameters
    ----------
    x : float
        The number.
    digits : int
        Significant digits to show; the digits before the decimal point are all kept.

    Returns
    -------
    str
        ``"4.95"``, ``"0.0123"``, ``"1234"``; ``"0"`` for zero, ``"-"`` for NaN or infinity.
    """
    if not is_finite(x):
        return "-"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def same_decimals(values: Sequence[float], digits: int = 3) -> list[str]:
    """Several numbers of one cell (median and quartiles) with the same decimals.

    Parameters
    ----------
    values : sequence of float
        The numbers of the cell.
    digits : int
        Significant digits of the largest one (in magnitude); its decimals serve for all.

    Returns
    -------
    list of str
        One text per value: no decimals when every finite value is a whole number, ``"-"``
        for a value that is not finite.
    """
    finite = [abs(v) for v in values if is_finite(v)]
    if not finite:
        return ["-" for _ in values]
    if all(float(v).is_integer() for v in values if is_finite(v)):
        decimals = 0
    else:
        top = max(finite) or 1.0
        decimals = max(0, digits - 1 - math.floor(math.log10(top)))
    return [f"{v:.{decimals}f}" if is_finite(v) else "-" for v in values]


def percent(x: float, decimals: int = 1) -> str:
    """A share as a percentage: ``0.423`` is ``"42.3%"``.

    Parameters
    ----------
    x : float
        The share, from 0 to 1.
    decimals : int
        Decimals of the percentage.

    Returns
    -------
    str
        ``"-"`` where ``x`` is not a finite number.
    """
    return f"{100 * x:.{decimals}f}%" if is_finite(x) else "-"


def escape(x: Any) -> str:
    """``x`` as text safe in HTML: in an element or in a quoted attribute value.

    The one escaping function of the report: ``&``, ``<``, ``>``, ``"`` and ``'`` become
    character references (``html.escape(str(x), quote=True)``), so a value can neither open
    a tag nor close the attribute it stands in, whichever quotes the attribute uses.

    Parameters
    ----------
    x : Any
        A name, a message or a number from a table, a record or a parameter file.

    Returns
    -------
    str
    """
    return html.escape(str(x), quote=True)


def url(path: str) -> str:
    """A file of the report folder as a relative URL, escaped for a ``src`` or ``href``.

    Parameters
    ----------
    path : str
        The file's path relative to ``report/`` (``montage.png``), possibly made from user
        names.

    Returns
    -------
    str
        ``path`` percent-encoded (every character but ASCII letters, digits, ``_.-~`` and
        ``/``: so no ``:`` can make it a scheme such as ``javascript:``, and no space, quote
        or ``#`` survives) and then :func:`escape`d; a path starting with ``/`` is prefixed
        with ``.`` so that it stays relative (``//host`` would name another server). An
        ordinary file name (``survival_km_0_all.png``) is unchanged.
    """
    quoted = urllib.parse.quote(str(path), safe="/")
    return escape("." + quoted if quoted.startswith("/") else quoted)


def slug(text: str) -> str:
    """``text`` as a lower-case part of a file name.

    Parameters
    ----------
    text : str
        A name (a grouping column).

    Returns
    -------
    str
        Each run of characters other than ASCII letters and digits becomes one ``_``
        (none at the ends); ``"x"`` when nothing is left.
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def join_parts(parts: Iterable[str | None], sep: str = "\n") -> str | None:
    """The optional parts of a page that have something to show, joined.

    Parameters
    ----------
    parts : iterable of str or None
        HTML fragments in page order; None (or an empty string) is a part with nothing to
        show.
    sep : str
        Put between two consecutive parts that are kept.

    Returns
    -------
    str or None
        The parts that are neither None nor empty, joined with ``sep`` in their order; None
        when no part is left.
    """
    shown = [p for p in parts if p is not None and p != ""]
    return sep.join(shown) if shown else None


def read_optional_table(store: RunStore, name: str) -> pd.DataFrame | None:
    """A documented table, or None where the stage that writes it did not run.

    Parameters
    ----------
    store : RunStore
        The run store.
    name : str
        The table's name (``tables/<name>.parquet``).

    Returns
    -------
    pandas.DataFrame or None
        None as well where the table has no rows.
    """
    if not store.exists(f"tables/{name}.parquet"):
        return None
    df = read_table(store, name)
    return df if len(df) else None


def read_optional_json(store: RunStore, rel: str) -> dict[str, Any]:
    """A JSON record of the store, or an empty dict where it was not written.

    Parameters
    ----------
    store : RunStore
        The run store.
    rel : str
        The record's path in the store (``models/cox.json``).

    Returns
    -------
    dict of str to Any
    """
    return dict(store.read_json(rel)) if store.exists(rel) else {}
