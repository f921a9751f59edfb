"""Load and check a clinical table: the development cohort and an external one.

A clinical table has one row per patient: a follow-up time, whether the event (e.g. death) was
observed at that time, an optional patient identifier and the covariates. This module reads it
(CSV, TSV, Parquet, any fsspec URL, or a table bundled with lifelines), keeps the rows the job
asks for, checks every column and reports *every* problem at once (:class:`CohortError`: the
column, the data rows, the fix), applies the missing-value policy and returns the analysis
frame, the record the later stages read (resolved levels, imputation values, counts) and the
patient characteristics table (``cohort_summary``).

Row numbers in messages and in the ``row`` column are the source's data rows: 1 is the first
row after the header, whatever ``where`` kept.
"""

from __future__ import annotations

import difflib
import logging
import math
import operator
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd

from pipeline.errors import CohortError
from pipeline.survival.spec import (
    CohortParams,
    CohortRecord,
    CohortSource,
    Condition,
    Covariate,
    ExternalSource,
    convert_time,
)

__all__ = ["Cohort", "cohort_from_table", "load_cohort", "load_external", "read_source"]

logger = logging.getLogger(__name__)

#: Columns of the ``cohort_summary`` table, as documented in :mod:`pipeline.tables`.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "cohort",
    "covariate",
    "kind",
    "level",
    "n",
    "value",
    "q1",
    "q3",
    "missing",
    "imputed",
    "unit",
)

#: How many row numbers a message lists before "and N more".
_ROWS_SHOWN = 10
#: How many example values a message quotes.
_EXAMPLES_SHOWN = 5

# "1.0", "-2.000": the text of an integer-valued float, as a CSV column with a missing value
# (read as float) or a spreadsheet export writes it; it means the same category as "1".
_INTEGER_FLOAT_TEXT = re.compile(r"^[+-]?\d+\.0*$")

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

_FORMATS = ".csv, .csv.gz, .tsv, .tsv.gz, .parquet or .pq"


@dataclass(frozen=True)
class Cohort:
    """A checked clinical table, ready for analysis.

    Attributes
    ----------
    frame : pandas.DataFrame, shape (n_patients, 4 + n_covariates)
        Index ``0..n-1``. Columns: ``patient`` (str: the id column as text, else ``row <n>``),
        ``row`` (int64: data row of the source table, 1 = first after the header),
        ``duration`` (float64, in the record's ``time_unit``), ``event`` (int64, 1 = event,
        0 = censored), then one column per covariate, by name in covariates order: float64 for
        a numeric one, a pandas Categorical of the level labels (categories in level order)
        for a categorical one. No missing values (the missing-value policy has been applied).
    record : CohortRecord
        Resolved parameters (every categorical covariate's levels and reference), imputation
        values and counts.
    summary : pandas.DataFrame, shape (n_rows, 11)
        The ``cohort_summary`` table rows of this cohort (:data:`SUMMARY_COLUMNS`).
    """

    frame: pd.DataFrame
    record: CohortRecord
    summary: pd.DataFrame


# -- small helpers ----------------------------------------------------------------------------


def _rows(rows: Iterable[Any]) -> str:
    """``row 3`` / ``rows 3, 8`` / ``rows 1, ..., 10 and 40 more``."""
    ordered = sorted(int(r) for r in rows)
    if len(ordered) == 1:
        return f"row {ordered[0]}"
    text = "rows " + ", ".join(str(r) for r in ordered[:_ROWS_SHOWN])
    more = len(ordered) - _ROWS_SHOWN
    return f"{text} and {more} more" if more > 0 else text


def _rows_of(mask: pd.Series) -> str:
    return _rows(mask.index[mask.to_numpy(dtype=bool)])


def _examples(values: Iterable[Any]) -> str:
    """Up to five distinct values, quoted: ``'x', 'y'``."""
    seen: list[str] = []
    for v in values:
        text = _as_text(v)
        shown = "missing" if text is None else repr(text)
        if shown not in seen:
            seen.append(shown)
    more = len(seen) - _EXAMPLES_SHOWN
    out = ", ".join(seen[:_EXAMPLES_SHOWN])
    return f"{out} and {more} more" if more > 0 else out


def _is_missing(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return value is None
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cell: not a missing scalar
        return False


def _as_text(value: Any) -> str | None:
    """A cell as the text categories and event codes compare by (``None`` when missing).

    Integer-valued floats lose their ``.0`` (a column with a missing value is read as float,
    and its ``1.0`` is the category ``1``); text is stripped.
    """
    if _is_missing(value):
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


def _texts(series: pd.Series) -> pd.Series:
    """:func:`_as_text` of every cell (object dtype, ``None`` where missing)."""
    return pd.Series(
        [_as_text(v) for v in series.to_numpy(dtype=object)], index=series.index, dtype=object
    )


def _to_number(series: pd.Series) -> tuple[pd.Series, pd.Series]:
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


def _close(name: str, columns: Iterable[Any]) -> list[str]:
    """Column names close to ``name`` (same up to case first), at most three."""
    names = [str(c) for c in columns]
    close = [c for c in names if c.casefold() == name.casefold() and c != name]
    close += [c for c in difflib.get_close_matches(name, names, n=3, cutoff=0.6) if c not in close]
    return close[:3]


def _hint(name: str, columns: Iterable[Any]) -> str:
    """`` (did you mean 'Age'?)`` for close column names, else ``""``."""
    close = _close(name, columns)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def _column_list(columns: Iterable[Any]) -> str:
    names = [str(c) for c in columns]
    shown = ", ".join(names[:20])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > 20 else shown


# -- reading ----------------------------------------------------------------------------------


@dataclass
class _Read:
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
                f"lifelines has no dataset {name!r}{_hint(name, available)}; available: "
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
            f"cannot tell the table's format from its name: expected {_FORMATS} (or "
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
                f"columns: {old!r} is not a column of the table{_hint(old, table.columns)}; "
                f"columns are: {_column_list(table.columns)}"
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
                f"dates: column {name!r} is not in the table{_hint(name, table.columns)}; "
                f"columns are: {_column_list(table.columns)}"
            )
            continue
        col = table[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            continue  # already dates (Parquet)
        texts = _texts(col)
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
                f"dates: column {name!r}: {_rows_of(bad)} do not match the format {fmt!r} "
                f"({_examples(col[bad])}): correct the rows or the format in `dates`"
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
                f"{_hint(cond.column, table.columns)}; columns are: {_column_list(table.columns)}"
            )
            continue
        mask, problem = _condition_mask(table, cond)
        if problem is not None:
            problems.append(problem)
        elif mask is not None:
            keep &= mask
    return table.loc[keep.to_numpy()], problems


def _read(source: CohortSource) -> _Read:
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
    return _Read(kept, len(table), problems + where_problems)


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
    read = _read(source)
    if read.problems:
        raise CohortError(read.problems, source.source)
    return read.frame


# -- checking ---------------------------------------------------------------------------------


def _event_code(value: Any, event_values: Mapping[str, int] | None) -> float:
    """1.0 / 0.0, or NaN when the value is not an event code."""
    if _is_missing(value):
        return math.nan
    text = _as_text(value)
    assert text is not None
    if event_values is None:
        code = {"0": 0, "1": 1, "true": 1, "false": 0}.get(text.casefold())
    else:
        code = event_values.get(text)
        if code is None:
            folded = {k.strip().casefold(): v for k, v in event_values.items()}
            code = folded.get(text.casefold())
    return math.nan if code is None else float(code)


def _normalise_key(key: str) -> str:
    text = _as_text(key)
    return "" if text is None else text


@dataclass
class _Columns:
    """Checked columns of the kept rows (index: source row numbers)."""

    duration: pd.Series  # float64, duration_unit, NaN where bad
    event: pd.Series  # float64 0/1, NaN where bad
    patient: pd.Series  # object str
    covariates: dict[str, pd.Series]  # float64 / object labels, NaN or None where missing
    missing: dict[str, pd.Series]  # bool: missing before the policy (incl. unseen -> missing)
    resolved: list[Covariate]


def _check_required(table: pd.DataFrame, params: CohortParams, external: bool) -> list[str]:
    """Problems for the required columns absent from the table (with close names)."""
    roles: list[tuple[str, str]] = [(params.duration, "duration"), (params.event, "event")]
    if params.id is not None:
        roles.append((params.id, "id"))
    roles += [(c.name, "covariate") for c in params.covariates]
    problems: list[str] = []
    for name, role in roles:
        if name in table.columns:
            continue
        hint = _hint(name, table.columns)
        if external:
            # Suggest a rename only from columns no other role already uses (e.g. not `time`
            # for a missing `tsize` when `time` is the duration column).
            taken = {n for n, _ in roles}
            free = [c for c in table.columns if str(c) not in taken]
            close = (_close(name, free) or ["<name there>"])[0]
            problems.append(
                f"column {name!r} ({role}) is not in the external table{hint}: if it has "
                f"another name there, map it with `columns: {{{close}: {name}}}`; columns "
                f"are: {_column_list(table.columns)}"
            )
        else:
            problems.append(
                f"column {name!r} ({role}) is not in the table{hint}; columns are: "
                f"{_column_list(table.columns)}"
            )
    return problems


def _check_duration(col: pd.Series, name: str) -> tuple[pd.Series, list[str]]:
    numbers, not_number = _to_number(col)
    problems: list[str] = []
    missing = col.isna()
    if missing.any():
        problems.append(
            f"duration column {name!r}: {_rows_of(missing)} have no follow-up time (missing): "
            "fill them in or remove the rows (e.g. with `where`)"
        )
    if not_number.any():
        problems.append(
            f"duration column {name!r}: {_rows_of(not_number)} are not numbers "
            f"({_examples(col[not_number])}): correct the rows"
        )
    negative = numbers < 0
    if negative.any():
        problems.append(
            f"duration column {name!r}: {_rows_of(negative)} are negative "
            f"({_examples(numbers[negative])}): a follow-up time is >= 0; correct the rows"
        )
    infinite = pd.Series(np.isinf(numbers.to_numpy()), index=numbers.index)
    if infinite.any():
        problems.append(
            f"duration column {name!r}: {_rows_of(infinite)} are infinite: correct the rows"
        )
    bad = negative | infinite
    return numbers.mask(bad), problems


def _check_event(
    col: pd.Series, name: str, event_values: Mapping[str, int] | None
) -> tuple[pd.Series, list[str]]:
    codes = pd.Series(
        [_event_code(v, event_values) for v in col.to_numpy(dtype=object)],
        index=col.index,
        dtype=np.float64,
    )
    bad = codes.isna()
    if not bad.any():
        return codes, []
    if event_values is None:
        expected = "0/1 or true/false"
        fix = "correct the rows, or map the values with `event_values` (e.g. {Dead: 1, Alive: 0})"
    else:
        expected = "one of event_values' keys (" + ", ".join(map(repr, event_values)) + ")"
        fix = "correct the rows or add the values to `event_values`"
    return codes, [
        f"event column {name!r}: {_rows_of(bad)} hold {_examples(col[bad])}, expected "
        f"{expected}: {fix}"
    ]


def _check_id(col: pd.Series, name: str) -> tuple[pd.Series, list[str]]:
    texts = _texts(col)
    problems: list[str] = []
    missing = texts.isna()
    if missing.any():
        problems.append(
            f"id column {name!r}: {_rows_of(missing)} have no patient id: fill them in, or "
            "leave `id` unset to name patients by row"
        )
    duplicated = texts.notna() & texts.duplicated(keep=False)
    if duplicated.any():
        problems.append(
            f"id column {name!r}: ids repeat ({_examples(texts[duplicated])}) in "
            f"{_rows_of(duplicated)}: each patient must appear once; remove the duplicate rows"
        )
    return texts, problems


def _check_numeric(col: pd.Series, cov: Covariate) -> tuple[pd.Series, list[str]]:
    numbers, not_number = _to_number(col)
    problems: list[str] = []
    if not_number.any():
        problems.append(
            f"covariate {cov.name}: {_rows_of(not_number)} are not numbers "
            f"({_examples(col[not_number])}): correct the rows, or declare it "
            "`kind: categorical`"
        )
    infinite = pd.Series(np.isinf(numbers.to_numpy()), index=numbers.index)
    if infinite.any():
        problems.append(f"covariate {cov.name}: {_rows_of(infinite)} are infinite: correct them")
    return numbers.mask(infinite), problems


def _resolve_levels(texts: pd.Series) -> dict[str, str]:
    """Sorted distinct values (numerically if all are numbers), each its own label."""
    distinct = [str(t) for t in pd.unique(texts.dropna())]
    try:
        ordered = sorted(distinct, key=float)
    except ValueError:
        ordered = sorted(distinct)
    return {t: t for t in ordered}


def _check_categorical(
    col: pd.Series,
    cov: Covariate,
    unseen: Literal["error", "missing"] | None,
) -> tuple[pd.Series, pd.Series, Covariate, list[str]]:
    """Labels (None where missing), missing mask, resolved covariate, problems.

    ``unseen`` is None for the development cohort (declared levels are checked), else the
    external cohort's policy for values outside the development levels.
    """
    texts = _texts(col)
    missing = texts.isna()
    problems: list[str] = []
    levels = cov.levels if cov.levels is not None else _resolve_levels(texts)
    lookup = {_normalise_key(k): label for k, label in levels.items()}
    outside = texts.notna() & ~texts.isin(list(lookup))
    if outside.any():
        known = ", ".join(levels)
        by_value = [
            (value, outside & (texts == value)) for value in pd.unique(texts[outside].dropna())
        ]
        parts = [f"value {value!r} in {_rows_of(mask)}" for value, mask in by_value]
        shown = ", ".join(parts[:_EXAMPLES_SHOWN])
        if len(parts) > _EXAMPLES_SHOWN:
            shown += f" and {len(parts) - _EXAMPLES_SHOWN} more values"
        many = len(parts) > 1
        if unseen is None:
            verb = "are not declared levels" if many else "is not a declared level"
            problems.append(
                f"covariate {cov.name}: {shown} {verb} ({known}): add "
                f"{'them' if many else 'it'} to levels or correct the rows"
            )
        elif unseen == "error":
            problems.append(
                f"covariate {cov.name}: unseen category: {shown} never occurred in the "
                f"development cohort (known levels: {known}): correct the rows, or set "
                "`unseen: missing` to treat such values as missing"
            )
        else:
            logger.info(
                "covariate %s: %d values outside the development levels treated as missing",
                cov.name,
                int(outside.sum()),
            )
            missing = missing | outside
    labels = pd.Series(
        [lookup.get(t) if t is not None else None for t in texts.to_numpy(dtype=object)],
        index=texts.index,
        dtype=object,
    )
    label_list = list(levels.values())
    if unseen is None and cov.levels is not None:
        # Not an error (the job may be reused on other data), but the Cox stage cannot
        # estimate a hazard ratio for a level without patients.
        empty = [label for label in label_list if not (labels == label).any()]
        if empty:
            logger.warning("covariate %s: declared levels %s have no patients", cov.name, empty)
    resolved = cov.model_copy(
        update={"levels": dict(levels), "reference": cov.reference or label_list[0]}
    )
    return labels, missing, resolved, problems


def _check_columns(
    table: pd.DataFrame,
    params: CohortParams,
    *,
    unseen: Literal["error", "missing"] | None,
) -> tuple[_Columns, list[str]]:
    """Check every column of the kept rows; ``unseen`` None = the development cohort.

    Columns absent from the table are skipped here (:func:`_check_required` reports them), so
    that the problems of the other columns are reported with them.
    """
    problems: list[str] = []
    absent = pd.Series(np.nan, index=table.index, dtype=np.float64)
    duration, event = absent, absent
    if params.duration in table.columns:
        duration, p = _check_duration(table[params.duration], params.duration)
        problems += p
    if params.event in table.columns:
        event, p = _check_event(table[params.event], params.event, params.event_values)
        problems += p
    if params.id is not None and params.id in table.columns:
        patient, p = _check_id(table[params.id], params.id)
        problems += p
    else:
        patient = pd.Series([f"row {r}" for r in table.index], index=table.index, dtype=object)
    covariates: dict[str, pd.Series] = {}
    missing: dict[str, pd.Series] = {}
    resolved: list[Covariate] = []
    n = len(table)
    for cov in params.covariates:
        if cov.name not in table.columns:
            continue
        col = table[cov.name]
        if cov.kind == "numeric":
            values, p = _check_numeric(col, cov)
            miss = col.isna()
            distinct = values.dropna().nunique()
            resolved.append(cov)
        else:
            values, miss, res, p = _check_categorical(col, cov, unseen)
            distinct = values.dropna().nunique()
            resolved.append(res)
        problems += p
        if unseen is None and distinct < 2:
            what = (
                "no values" if distinct == 0 else f"a single value ({_examples(values.dropna())})"
            )
            problems.append(
                f"covariate {cov.name}: has {what} in the {n} rows: a constant cannot explain "
                "survival; remove it from covariates"
            )
        share = float(miss.mean())
        if share > params.missing.max_fraction:
            problems.append(
                f"covariate {cov.name}: missing in {100 * share:.1f}% of the rows "
                f"({int(miss.sum())} of {n}: {_rows_of(miss)}), more than "
                f"missing.max_fraction = {params.missing.max_fraction:g}: complete the column, "
                "remove the covariate, or raise max_fraction"
            )
        covariates[cov.name] = values
        missing[cov.name] = miss
    valid_events = event.dropna()
    if len(valid_events) and not (valid_events == 1).any():
        problems.append(
            f"event column {params.event!r}: no events among the {n} rows (every patient is "
            "censored): survival cannot be estimated; check the column and `event_values`"
        )
    return _Columns(duration, event, patient, covariates, missing, resolved), problems


# -- building ---------------------------------------------------------------------------------


def _development_impute(columns: _Columns) -> dict[str, float | str]:
    values: dict[str, float | str] = {}
    for cov in columns.resolved:
        present = columns.covariates[cov.name][~columns.missing[cov.name]]
        if cov.kind == "numeric":
            values[cov.name] = float(present.median())
        else:
            assert cov.levels is not None
            counts = present.value_counts().reindex(list(cov.levels.values()), fill_value=0)
            values[cov.name] = str(counts.idxmax())  # first of the tied levels, in level order
    return values


def _impute_problems(record: CohortRecord, covariates: Sequence[Covariate]) -> list[str]:
    problems: list[str] = []
    for cov in covariates:
        value = record.impute.get(cov.name)
        fix = "run the cohort stage again with `missing: {strategy: impute}`"
        if value is None:
            problems.append(f"the development record has no imputation value for {cov.name}: {fix}")
        elif cov.kind == "numeric" and not isinstance(value, int | float):
            problems.append(
                f"the development imputation value {value!r} of {cov.name} is not a number: {fix}"
            )
        elif cov.kind == "categorical" and value not in (cov.levels or {}).values():
            problems.append(
                f"the development imputation value {value!r} of {cov.name} is not one of its "
                f"levels: {fix}"
            )
    return problems


def _summary(
    frame: pd.DataFrame,
    covariates: Sequence[Covariate],
    missing: Mapping[str, int],
    imputed: Mapping[str, int],
    cohort: str,
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    n = len(frame)
    for cov in covariates:
        values = frame[cov.name]
        common = {"cohort": cohort, "covariate": cov.name, "kind": cov.kind}
        counts = {"missing": int(missing[cov.name]), "imputed": int(imputed[cov.name])}
        if cov.kind == "numeric":
            present = values.dropna()
            rows.append(
                {
                    **common,
                    "level": "",
                    "n": len(present),
                    "value": float(present.median()),
                    "q1": float(present.quantile(0.25)),
                    "q3": float(present.quantile(0.75)),
                    **counts,
                    "unit": cov.unit,
                }
            )
            continue
        assert cov.levels is not None
        level_counts = values.value_counts()
        for label in cov.levels.values():
            k = int(level_counts.get(label, 0))
            rows.append(
                {
                    **common,
                    "level": label,
                    "n": k,
                    "value": k / n if n else math.nan,
                    "q1": math.nan,
                    "q3": math.nan,
                    **counts,
                    "unit": "",
                }
            )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return out.astype(
        {
            "n": np.int64,
            "value": np.float64,
            "q1": np.float64,
            "q3": np.float64,
            "missing": np.int64,
            "imputed": np.int64,
        }
    )


def _assemble(
    read: _Read,
    params: CohortParams,
    source: str,
    *,
    unseen: Literal["error", "missing"] | None,
    development: CohortRecord | None,
) -> Cohort:
    """Check the kept rows, apply the missing policy, build frame, record and summary."""
    table = read.frame
    problems = list(read.problems)
    required = _check_required(table, params, external=development is not None)
    problems += required
    if read.source_rows == 0:
        problems.append("the table has no data rows")
    elif table.empty:
        problems.append(
            f"no rows left after `where` (all {read.source_rows} rows removed): loosen the "
            "conditions"
        )
    if table.empty:
        raise CohortError(problems, source)
    columns, column_problems = _check_columns(table, params, unseen=unseen)
    problems += column_problems
    if development is not None and params.missing.strategy == "impute":
        problems += _impute_problems(development, columns.resolved)
    if problems:
        raise CohortError(problems, source)

    any_missing = pd.Series(False, index=table.index)
    for miss in columns.missing.values():
        any_missing |= miss
    missing_counts = {name: int(m.sum()) for name, m in columns.missing.items()}
    imputed = dict.fromkeys(missing_counts, 0)
    impute: dict[str, float | str] = {}
    keep = pd.Series(True, index=table.index)
    if params.missing.strategy == "drop":
        keep = ~any_missing
    else:
        # The external cohort is imputed with the development values, never its own.
        impute = (
            dict(development.impute) if development is not None else _development_impute(columns)
        )
        for cov in columns.resolved:
            miss = columns.missing[cov.name]
            columns.covariates[cov.name] = columns.covariates[cov.name].mask(miss, impute[cov.name])
            imputed[cov.name] = int(miss.sum())
    dropped = int((~keep).sum())
    if dropped:
        logger.info("%s: dropped %d rows missing a covariate", source, dropped)
    if impute and any(imputed.values()):
        logger.info("%s: imputed %s", source, {k: v for k, v in imputed.items() if v})

    rows = keep.to_numpy()
    factor = convert_time(1.0, params.duration_unit, params.time_unit)
    frame = pd.DataFrame(
        {
            "patient": columns.patient[rows].to_numpy(dtype=object),
            "row": table.index[rows].to_numpy(dtype=np.int64),
            "duration": columns.duration[rows].to_numpy(dtype=np.float64) * factor,
            "event": columns.event[rows].to_numpy(dtype=np.int64),
        }
    )
    frame["patient"] = frame["patient"].astype(str)
    for cov in columns.resolved:
        values = columns.covariates[cov.name][rows]
        if cov.kind == "numeric":
            frame[cov.name] = values.to_numpy(dtype=np.float64)
        else:
            assert cov.levels is not None
            frame[cov.name] = pd.Categorical(
                values.to_numpy(dtype=object), categories=list(cov.levels.values())
            )

    n, events = len(frame), int(frame["event"].sum())
    if n == 0 or events == 0:
        what = "no patients" if n == 0 else f"no events among the {n} patients"
        raise CohortError(
            [
                f"{what} left after dropping the {dropped} rows missing a covariate: complete "
                "the covariates, or use `missing: {strategy: impute}`"
            ],
            source,
        )
    record = CohortRecord(
        params=params.model_copy(update={"covariates": columns.resolved}),
        impute=impute,
        source_rows=read.source_rows,
        filtered_out=read.source_rows - len(table),
        dropped_missing=dropped,
        n=n,
        events=events,
    )
    cohort = "development" if development is None else "validation"
    logger.info(
        "%s cohort from %s: %d source rows, %d removed by where, %d dropped for missing "
        "covariates, %d patients, %d events",
        cohort,
        source,
        record.source_rows,
        record.filtered_out,
        record.dropped_missing,
        n,
        events,
    )
    summary = _summary(frame, columns.resolved, missing_counts, imputed, cohort)
    return Cohort(frame=frame, record=record, summary=summary)


def load_cohort(params: CohortParams) -> Cohort:
    """Load, check and prepare the development cohort.

    Parameters
    ----------
    params : CohortParams
        The table, its rows (``dates``, ``where``), its columns and policies. Durations are
        read in ``duration_unit`` and converted to ``time_unit``.

    Returns
    -------
    Cohort
        ``frame`` (one row per analysed patient), ``record`` (params with every categorical
        covariate's ``levels`` and ``reference`` resolved: undeclared levels are the sorted
        distinct values, numerically when all are numbers; ``impute`` holds the development
        median / most frequent label of every covariate under ``impute``) and ``summary``
        (``cohort_summary`` rows, cohort ``development``).

    Raises
    ------
    CohortError
        With every problem found at once, each naming the column, the data rows (1 = first
        after the header; ``rows 3, 8, ... and 40 more``) and the fix: a missing column (with
        close names), missing/non-numeric/negative/infinite durations, event values that are
        not event codes, missing or duplicate ids, non-numeric values of a numeric covariate,
        values outside a categorical's declared levels, a constant covariate, a covariate
        missing in more than ``missing.max_fraction`` of the rows, no rows after ``where``, no
        events; and the problems :func:`read_source` reports.
    """
    return _assemble(_read(params), params, params.source, unseen=None, development=None)


def load_external(source: ExternalSource, record: CohortRecord) -> Cohort:
    """Load and check an external (validation) cohort with the development cohort's columns.

    Parameters
    ----------
    source : ExternalSource
        The external table, its renames (``columns``: external name -> development name,
        applied first, so ``dates`` and ``where`` use development names), its rows and the
        ``unseen`` policy for categories the development cohort never had.
    record : CohortRecord
        The development record: column names, event coding, units, resolved levels, missing
        policy and imputation values all come from it; nothing is re-resolved.

    Returns
    -------
    Cohort
        ``frame`` as for the development cohort (same levels, same ``time_unit``),
        ``record`` (the development params with this source's ``source``/``dates``/``where``,
        the development imputation values, this cohort's counts) and ``summary`` (cohort
        ``validation``). Under ``drop`` rows missing a covariate are dropped and counted;
        under ``impute`` they get the development values.

    Raises
    ------
    CohortError
        As :func:`load_cohort` (except the constant-covariate check, since nothing is fitted on
        this cohort), plus: a column absent from the external table (with a
        ``columns: {external_name: development_name}`` hint) and, under ``unseen: error``, an
        unseen category (covariate, value, rows, known levels).
    """
    dev = record.params
    params = dev.model_copy(
        update={
            "source": source.source,
            "dates": dict(source.dates),
            "where": list(source.where),
        }
    )
    unresolved = [c.name for c in dev.covariates if c.kind == "categorical" and c.levels is None]
    if unresolved:
        raise CohortError(
            [
                f"the development record has no levels for {unresolved}: use the record the "
                "cohort stage wrote (models/cohort.json)"
            ],
            source.source,
        )
    return _assemble(_read(source), params, source.source, unseen=source.unseen, development=record)


def cohort_from_table(table: pd.DataFrame, record: CohortRecord, summary: pd.DataFrame) -> Cohort:
    """Rebuild a :class:`Cohort` from its stored table (``tables/cohort.parquet``).

    Parameters
    ----------
    table : pandas.DataFrame, shape (n_patients, >= 4 + n_covariates)
        The ``cohort`` (or ``validation_cohort``) table as read back: ``patient``, ``row``,
        ``duration`` (time_unit), ``event``, one column per covariate (labels for categories).
        Other columns are ignored.
    record : CohortRecord
        The record written with it: covariate kinds and level labels.
    summary : pandas.DataFrame
        Its ``cohort_summary`` rows, kept as they are.

    Returns
    -------
    Cohort
        ``frame`` with the dtypes :func:`load_cohort` gives (index 0..n-1; categorical
        covariates as Categoricals whose categories are the record's labels in level order).

    Raises
    ------
    CohortError
        The table lacks a column, or holds a label the record does not know.
    """
    where = "the stored cohort table"
    covariates = record.params.covariates
    needed = ["patient", "row", "duration", "event", *(c.name for c in covariates)]
    absent = [c for c in needed if c not in table.columns]
    if absent:
        raise CohortError(
            [f"columns {absent} are missing: run the cohort stage again to rewrite the table"],
            where,
        )
    n = len(table)
    index = pd.RangeIndex(n)
    frame = pd.DataFrame(
        {
            "patient": table["patient"].to_numpy(dtype=object),
            "row": table["row"].to_numpy(dtype=np.int64),
            "duration": table["duration"].to_numpy(dtype=np.float64),
            "event": table["event"].to_numpy(dtype=np.int64),
        },
        index=index,
    )
    frame["patient"] = frame["patient"].astype(str)
    problems: list[str] = []
    for cov in covariates:
        if cov.kind == "numeric":
            frame[cov.name] = table[cov.name].to_numpy(dtype=np.float64)
            continue
        if cov.levels is None:
            problems.append(f"covariate {cov.name}: the record has no levels")
            continue
        labels = list(cov.levels.values())
        values = pd.Series(table[cov.name].to_numpy(dtype=object), index=index)
        unknown = values.notna() & ~values.isin(labels)
        if unknown.any():
            problems.append(
                f"covariate {cov.name}: labels {_examples(values[unknown])} are not the record's "
                f"levels ({', '.join(labels)}): the table and the record come from different runs"
            )
        frame[cov.name] = pd.Categorical(values.to_numpy(dtype=object), categories=labels)
    if problems:
        raise CohortError(problems, where)
    return Cohort(frame=frame, record=record, summary=summary)
