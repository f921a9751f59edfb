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

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.errors import CohortError
from pipeline.workflows.survival.reading import SourceRows, read_rows, read_source
from pipeline.workflows.survival.spec import (
    CohortParams,
    CohortRecord,
    Covariate,
    ExternalSource,
    convert_time,
)
from pipeline.workflows.survival.values import (
    EXAMPLES_SHOWN,
    as_text,
    cell_texts,
    close_names,
    column_list,
    did_you_mean,
    examples,
    is_missing,
    rows_of,
    to_number,
)

__all__ = ["Cohort", "cohort_from_table", "load_cohort", "load_external", "read_source"]

logger = logging.getLogger(__name__)

#: Columns of the ``cohort_summary`` table, as documented in :mod:`pipeline.core.tables`.
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


# -- checking ---------------------------------------------------------------------------------


def _event_code(value: Any, event_values: Mapping[str, int] | None) -> float:
    """1.0 / 0.0, or NaN when the value is not an event code."""
    if is_missing(value):
        return math.nan
    text = as_text(value)
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
    text = as_text(key)
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
        hint = did_you_mean(name, table.columns)
        if external:
            # Suggest a rename only from columns no other role already uses (e.g. not `time`
            # for a missing `tsize` when `time` is the duration column).
            taken = {n for n, _ in roles}
            free = [c for c in table.columns if str(c) not in taken]
            close = (close_names(name, free) or ["<name there>"])[0]
            problems.append(
                f"column {name!r} ({role}) is not in the external table{hint}: if it has "
                f"another name there, map it with `columns: {{{close}: {name}}}`; columns "
                f"are: {column_list(table.columns)}"
            )
        else:
            problems.append(
                f"column {name!r} ({role}) is not in the table{hint}; columns are: "
                f"{column_list(table.columns)}"
            )
    return problems


def _check_duration(col: pd.Series, name: str) -> tuple[pd.Series, list[str]]:
    numbers, not_number = to_number(col)
    problems: list[str] = []
    missing = col.isna()
    if missing.any():
        problems.append(
            f"duration column {name!r}: {rows_of(missing)} have no follow-up time (missing): "
            "fill them in or remove the rows (e.g. with `where`)"
        )
    if not_number.any():
        problems.append(
            f"duration column {name!r}: {rows_of(not_number)} are not numbers "
            f"({examples(col[not_number])}): correct the rows"
        )
    negative = numbers < 0
    if negative.any():
        problems.append(
            f"duration column {name!r}: {rows_of(negative)} are negative "
            f"({examples(numbers[negative])}): a follow-up time is >= 0; correct the rows"
        )
    infinite = pd.Series(np.isinf(numbers.to_numpy()), index=numbers.index)
    if infinite.any():
        problems.append(
            f"duration column {name!r}: {rows_of(infinite)} are infinite: correct the rows"
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
        f"event column {name!r}: {rows_of(bad)} hold {examples(col[bad])}, expected "
        f"{expected}: {fix}"
    ]


def _check_id(col: pd.Series, name: str) -> tuple[pd.Series, list[str]]:
    texts = cell_texts(col)
    problems: list[str] = []
    missing = texts.isna()
    if missing.any():
        problems.append(
            f"id column {name!r}: {rows_of(missing)} have no patient id: fill them in, or "
            "leave `id` unset to name patients by row"
        )
    duplicated = texts.notna() & texts.duplicated(keep=False)
    if duplicated.any():
        problems.append(
            f"id column {name!r}: ids repeat ({examples(texts[duplicated])}) in "
            f"{rows_of(duplicated)}: each patient must appear once; remove the duplicate rows"
        )
    return texts, problems


def _check_numeric(col: pd.Series, cov: Covariate) -> tuple[pd.Series, list[str]]:
    numbers, not_number = to_number(col)
    problems: list[str] = []
    if not_number.any():
        problems.append(
            f"covariate {cov.name}: {rows_of(not_number)} are not numbers "
            f"({examples(col[not_number])}): correct the rows, or declare it "
            "`kind: categorical`"
        )
    infinite = pd.Series(np.isinf(numbers.to_numpy()), index=numbers.index)
    if infinite.any():
        problems.append(f"covariate {cov.name}: {rows_of(infinite)} are infinite: correct them")
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
    texts = cell_texts(col)
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
        parts = [f"value {value!r} in {rows_of(mask)}" for value, mask in by_value]
        shown = ", ".join(parts[:EXAMPLES_SHOWN])
        if len(parts) > EXAMPLES_SHOWN:
            shown += f" and {len(parts) - EXAMPLES_SHOWN} more values"
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
            what = "no values" if distinct == 0 else f"a single value ({examples(values.dropna())})"
            problems.append(
                f"covariate {cov.name}: has {what} in the {n} rows: a constant cannot explain "
                "survival; remove it from covariates"
            )
        share = float(miss.mean())
        if share > params.missing.max_fraction:
            problems.append(
                f"covariate {cov.name}: missing in {100 * share:.1f}% of the rows "
                f"({int(miss.sum())} of {n}: {rows_of(miss)}), more than "
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
    read: SourceRows,
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
    return _assemble(read_rows(params), params, params.source, unseen=None, development=None)


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
    return _assemble(
        read_rows(source), params, source.source, unseen=source.unseen, development=record
    )


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
                f"covariate {cov.name}: labels {examples(values[unknown])} are not the record's "
                f"levels ({', '.join(labels)}): the table and the record come from different runs"
            )
        frame[cov.name] = pd.Categorical(values.to_numpy(dtype=object), categories=labels)
    if problems:
        raise CohortError(problems, where)
    return Cohort(frame=frame, record=record, summary=summary)
