"""Reading a clinical table: CSV, TSV, Parquet (any fsspec URL) or a lifelines dataset,
with the job's renames, date columns and ``where`` conditions applied.

Row numbers are the source's data rows (1 = the first row after the header), kept through
``where`` so that every later message can point at the row a user opens in a spreadsheet.
"""

from __future__ import annotations

import logging
import operator
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import pandas as pd

from pipeline.errors import CohortError
from pipeline.workflows.survival.spec import CohortSource, Condition, ExternalSource
from pipeline.workflows.survival.values import (
    cell_texts,
    column_list,
    did_you_mean,
    examples,
    rows_of,
)

__all__ = ["FORMATS", "SourceRows", "read_rows", "read_source"]

logger = logging.getLogger(__name__)

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

FORMATS = ".csv, .csv.gz, .tsv, .tsv.gz, .parquet or .pq"


# -- reading ----------------------------------------------------------------------------------


@dataclass
class SourceRows:
    """A source table after ``dates`` and ``where``, with what went wrong on the way."""

    frame: pd.DataFrame  # index: data row numbers (1 = first after the header), name "row"
    source_rows: int
    problems: list[str] = field(default_factory=list)


def _lifelines_table(source: str) -> pd.DataFrame:
    import lifelines.datasets

    name = source.split(":", 1)[1].strip()
    available = sorted(n[len("load_") :] for n in dir(lifelines.datasets) if n.startswith("load_"))
    if name not in available:
        raise CohortError(
            [
                f"lifelines has no dataset {name!r}{did_you_mean(name, available)}; available: "
                + ", ".join(f"lifelines:{n}" for n in available)
            ],
            source,
        )
    table: pd.DataFrame = getattr(lifelines.datasets, f"load_{name}")()
    # A named index is a column of the table (lymph_node's patient `id`); an unnamed one is
    # just the position.
    if any(n is not None for n in table.index.names):
        return table.reset_index()
    return table.reset_index(drop=True)


def _file_kind(source: str) -> tuple[str, Literal["gzip"] | None]:
    """(``csv``/``tsv``/``parquet``, compression) from the name, or a CohortError."""
    name = source.split("?", 1)[0].lower()
    compression: Literal["gzip"] | None
    for suffix, kind, compression in (
        (".csv.gz", "csv", "gzip"),
        (".tsv.gz", "tsv", "gzip"),
        (".csv", "csv", None),
        (".tsv", "tsv", None),
        (".parquet", "parquet", None),
        (".pq", "parquet", None),
    ):
        if name.endswith(suffix):
            return kind, compression
    raise CohortError(
        [
            f"cannot tell the table's format from its name: expected {FORMATS} (or "
            "lifelines:<name>); rename the file or export it to one of these formats"
        ],
        source,
    )


def _file_table(source: str) -> pd.DataFrame:
    kind, compression = _file_kind(source)
    try:
        with fsspec.open(source, "rb") as f:
            if kind == "parquet":
                return pd.read_parquet(f)
            # Through a file object pandas cannot infer compression from the name.
            return pd.read_csv(
                f,
                sep="\t" if kind == "tsv" else ",",
                compression=compression,
                keep_default_na=True,
                encoding="utf-8-sig",  # a spreadsheet's byte-order mark is not the first column
            )
    except FileNotFoundError:
        raise CohortError(
            ["the file does not exist: check the path or URL (`source`)"], source
        ) from None
    except ImportError as exc:
        raise CohortError(
            [f"cannot open it: {exc}; install the fsspec backend for this URL"], source
        ) from exc
    except UnicodeDecodeError as exc:
        raise CohortError(
            [f"cannot read it as UTF-8 text ({exc}): save the table as UTF-8 CSV"], source
        ) from exc
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        # pandas' ParserError/EmptyDataError and pyarrow's ArrowInvalid are ValueErrors; a
        # truncated gzip raises EOFError, OSError or zlib.error.
        what = "Parquet" if kind == "parquet" else kind.upper()
        raise CohortError(
            [
                f"cannot read it as a {what} table ({type(exc).__name__}: {exc}): check that the "
                "file is complete and really in that format (export it again)"
            ],
            source,
        ) from exc


def _blank_to_missing(table: pd.DataFrame) -> pd.DataFrame:
    """Empty (or blank) text cells are missing values, as an empty CSV field is."""
    for name in table.columns:
        col = table[name]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            blank = col.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
            if blank.any():
                table[name] = col.mask(blank)
    return table


def _rename(table: pd.DataFrame, columns: Mapping[str, str]) -> tuple[pd.DataFrame, list[str]]:
    problems: list[str] = []
    valid: dict[str, str] = {}
    for old, new in columns.items():
        if old not in table.columns:
            problems.append(
                f"columns: {old!r} is not a column of the table{did_you_mean(old, table.columns)}; "
                f"columns are: {column_list(table.columns)}"
            )
        elif new != old and new in table.columns and new not in columns:
            problems.append(
                f"columns: renaming {old!r} to {new!r} clashes with the table's own {new!r} "
                f"column: rename that one too, or map {new!r} instead of {old!r}"
            )
        else:
            valid[old] = new
    return table.rename(columns=valid), problems


def _parse_dates(table: pd.DataFrame, dates: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, fmt in dates.items():
        if name not in table.columns:
            problems.append(
                f"dates: column {name!r} is not in the table{did_you_mean(name, table.columns)}; "
                f"columns are: {column_list(table.columns)}"
            )
            continue
        col = table[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            continue  # already dates (Parquet)
        texts = cell_texts(col)
        try:
            parsed = pd.to_datetime(texts, format=fmt, errors="coerce")
        except ValueError as exc:  # a bad directive, e.g. "%Q"
            problems.append(
                f"dates: {fmt!r} (column {name!r}) is not a strptime format ({exc}): write it "
                "with %d, %m, %Y, ... e.g. '%d-%m-%Y'"
            )
            continue
        bad = texts.notna() & parsed.isna()
        if bad.any():
            problems.append(
                f"dates: column {name!r}: {rows_of(bad)} do not match the format {fmt!r} "
                f"({examples(col[bad])}): correct the rows or the format in `dates`"
            )
        table[name] = parsed
    return problems


def _condition_mask(table: pd.DataFrame, cond: Condition) -> tuple[pd.Series | None, str | None]:
    col = table[cond.column]
    value = cond.value
    if pd.api.types.is_datetime64_any_dtype(col):
        try:
            value = (
                [pd.Timestamp(v) for v in value]
                if isinstance(value, list)
                else (pd.Timestamp(value))
            )
        except (TypeError, ValueError) as exc:
            return None, (
                f"where: {cond.column!r} is a date column and {cond.value!r} is not a date "
                f"({exc}): write it as an ISO date, e.g. '1987-01-01'"
            )
    values = value if isinstance(value, list) else [value]
    type_problem = (
        f"where: cannot compare column {cond.column!r} ({col.dtype}) with {cond.value!r} "
        f"({type(cond.value).__name__}) using {cond.op!r}: give a value of the column's type"
    )
    # Text against a numeric column never matches (`==`) or raises (`<`): either way a mistake.
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if numeric and any(isinstance(v, str) for v in values):
        return None, type_problem
    try:
        if cond.op == "in":
            mask = col.isin(values)
        elif cond.op == "not in":
            mask = ~col.isin(values)
        else:
            mask = _COMPARISONS[cond.op](col, value)
    except TypeError:
        return None, type_problem
    return pd.Series(mask, index=table.index).fillna(False).astype(bool), None


def _apply_where(table: pd.DataFrame, where: Sequence[Condition]) -> tuple[pd.DataFrame, list[str]]:
    problems: list[str] = []
    keep = pd.Series(True, index=table.index)
    for cond in where:
        if cond.column not in table.columns:
            problems.append(
                f"where: column {cond.column!r} is not in the table"
                f"{did_you_mean(cond.column, table.columns)}; columns are: "
                f"{column_list(table.columns)}"
            )
            continue
        mask, problem = _condition_mask(table, cond)
        if problem is not None:
            problems.append(problem)
        elif mask is not None:
            keep &= mask
    return table.loc[keep.to_numpy()], problems


def read_rows(source: CohortSource) -> SourceRows:
    """Read, rename (external), parse dates, filter; problems collected, I/O errors raised."""
    if source.source.startswith("lifelines:"):
        table = _lifelines_table(source.source)
    else:
        table = _file_table(source.source)
    table.columns = pd.Index([str(c) for c in table.columns])
    table = _blank_to_missing(table)
    table.index = pd.RangeIndex(1, len(table) + 1, name="row")
    problems: list[str] = []
    if isinstance(source, ExternalSource) and source.columns:
        table, problems = _rename(table, source.columns)
    problems += _parse_dates(table, source.dates)
    kept, where_problems = _apply_where(table, source.where)
    return SourceRows(kept, len(table), problems + where_problems)


def read_source(source: CohortSource) -> pd.DataFrame:
    """Read a clinical table and keep the rows its ``where`` conditions select.

    Parameters
    ----------
    source : CohortSource
        ``source`` is a ``.csv``/``.csv.gz``/``.tsv``/``.parquet``/``.pq`` path or fsspec URL
        (``file://``, ``memory://``, ...), or ``lifelines:<name>`` for
        ``lifelines.datasets.load_<name>()`` (a named index becomes a column, e.g.
        lymph_node's ``id``). ``dates`` columns are parsed with their ``strptime`` format
        before the ``where`` conditions are applied (all must hold; dates compare with ISO
        dates). An :class:`ExternalSource`'s ``columns`` renames are applied first, so its
        ``dates`` and ``where`` use the development names. Empty text cells are missing.

    Returns
    -------
    pandas.DataFrame, shape (n_kept_rows, n_columns)
        The kept rows, as read (dates parsed), indexed by their data row number in the source
        (index name ``row``; 1 = the first row after the header).

    Raises
    ------
    CohortError
        The source is missing, unreadable or of an unknown format; or, listing every one at
        once: a date that does not parse (with its rows), a ``dates``/``where`` column not in
        the table (with close names), a ``where`` value that cannot be compared with its
        column.
    """
    read = read_rows(source)
    if read.problems:
        raise CohortError(read.problems, source.source)
    return read.frame
