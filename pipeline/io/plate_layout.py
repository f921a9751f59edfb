"""Multi-well plate layouts: formats, well names, edge and inner wells.

A well is named by its row letter and column number, normalised to a letter and two digits
(``A01`` ... ``H12`` on a 96-well plate, ``A01`` ... ``P24`` on a 384-well plate); names are
read leniently (``A1``, ``a01``, ``A-01``, ``A_1`` and ``" A01 "`` are all ``A01``).

The *edge* of a plate is its outer ring of wells: the first and last row and the first and
last column. Those wells evaporate faster and see more temperature change, so screens
usually leave them out and analyse the *inner* wells only: the inner 60 of a 96-well plate
(rows B-G, columns 2-11), the inner 308 of a 384-well plate.

Pure functions of strings and integers: nothing here reads a file.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from pipeline.errors import PlateMapError

__all__ = [
    "PLATE_FORMATS",
    "PlateFormat",
    "Well",
    "edge_wells",
    "inner_wells",
    "is_edge",
    "normalize_well",
    "parse_well",
    "plate_format",
    "well_name",
    "well_problem",
]

#: The plate formats known, by number of wells: ``(rows, columns)``.
PLATE_FORMATS: dict[int, tuple[int, int]] = {
    6: (2, 3),
    12: (3, 4),
    24: (4, 6),
    48: (6, 8),
    96: (8, 12),
    384: (16, 24),
}

# A row letter, an optional separator and the column number (leading zeros allowed).
_WELL = re.compile(r"^\s*([A-Za-z])\s*[-_ ]?\s*(\d{1,3})\s*$")


class Well(NamedTuple):
    """A well's position: row letter (``"A"``) and column number (1-based)."""

    row: str
    column: int

    @property
    def name(self) -> str:
        """The normalised name, e.g. ``"A01"``."""
        return f"{self.row}{self.column:02d}"


@dataclass(frozen=True)
class PlateFormat:
    """A plate format: ``n_rows`` x ``n_columns`` wells.

    Attributes
    ----------
    n_wells : int
        Number of wells (96, 384, ...).
    n_rows, n_columns : int
        Its grid.
    """

    n_wells: int
    n_rows: int
    n_columns: int

    @cached_property
    def rows(self) -> tuple[str, ...]:
        """Row letters, top to bottom (``A`` ... ``H`` on a 96-well plate)."""
        return tuple(string.ascii_uppercase[: self.n_rows])

    @cached_property
    def columns(self) -> tuple[int, ...]:
        """Column numbers, left to right (1 ... 12 on a 96-well plate)."""
        return tuple(range(1, self.n_columns + 1))

    @cached_property
    def wells(self) -> tuple[str, ...]:
        """Every well's name, row by row (``A01``, ``A02``, ... ``H12``)."""
        return tuple(Well(r, c).name for r in self.rows for c in self.columns)

    def describe(self) -> str:
        """``"96-well plate (rows A-H, columns 1-12)"``."""
        return (
            f"{self.n_wells}-well plate (rows {self.rows[0]}-{self.rows[-1]}, "
            f"columns 1-{self.n_columns})"
        )


def plate_format(fmt: int | PlateFormat) -> PlateFormat:
    """The :class:`PlateFormat` of ``fmt`` wells (or ``fmt`` itself).

    Raises
    ------
    PlateMapError
        If no format has that many wells.
    """
    if isinstance(fmt, PlateFormat):
        return fmt
    try:
        n_rows, n_columns = PLATE_FORMATS[int(fmt)]
    except (KeyError, ValueError, TypeError):
        known = ", ".join(map(str, PLATE_FORMATS))
        raise PlateMapError(
            [f"no plate format has {fmt!r} wells: use one of {known}"], "plate_format"
        ) from None
    return PlateFormat(int(fmt), n_rows, n_columns)


def _parse(well: object, fmt: PlateFormat) -> Well | str:
    """The well, or what is wrong with the name (with the fix)."""
    text = str(well)
    m = _WELL.match(text)
    if m is None:
        return (
            f"{text!r} is not a well name: give a row letter and a column number "
            f"(e.g. A01 or B7) on a {fmt.describe()}"
        )
    row, column = m.group(1).upper(), int(m.group(2))
    if row not in fmt.rows or column not in fmt.columns:
        where = (
            f"row {row} is not on it" if row not in fmt.rows else f"column {column} is not on it"
        )
        bigger = [
            n
            for n, (r, c) in PLATE_FORMATS.items()
            if n > fmt.n_wells and string.ascii_uppercase.index(row) < r and column <= c
        ]
        hint = f", or set plate_format {bigger[0]}" if bigger else ""
        return f"well {text!r} does not fit a {fmt.describe()}: {where}; fix the well name{hint}"
    return Well(row, column)


def well_problem(well: object, fmt: int | PlateFormat = 96) -> str | None:
    """What is wrong with a well name on plates of ``fmt`` (None: nothing).

    The text names the well, the format and the fix, for a list of problems
    (:class:`~pipeline.errors.PlateMapError`).
    """
    got = _parse(well, plate_format(fmt))
    return got if isinstance(got, str) else None


def parse_well(well: object, fmt: int | PlateFormat = 96) -> Well:
    """Read a well name leniently.

    Parameters
    ----------
    well : str
        ``"A01"``, ``"A1"``, ``"a01"``, ``"A-1"``, ...
    fmt : int or PlateFormat
        The plate format the well must fit (default 96).

    Returns
    -------
    Well
        Row letter (upper case) and column number.

    Raises
    ------
    PlateMapError
        If it is not a well name, or the well is not on a plate of that format.
    """
    got = _parse(well, plate_format(fmt))
    if isinstance(got, str):
        raise PlateMapError([got], f"well {str(well)!r}")
    return got


def normalize_well(well: object, fmt: int | PlateFormat = 96) -> str:
    """The normalised name of a well (``"a1"`` -> ``"A01"``); see :func:`parse_well`."""
    return parse_well(well, fmt).name


def well_name(row: str | int, column: int | str, fmt: int | PlateFormat = 96) -> str:
    """The normalised name of the well at ``row`` (a letter, or a 0-based index) and
    ``column`` (a 1-based number, e.g. an OME-Zarr column name ``"3"`` or ``"03"``).

    Raises
    ------
    PlateMapError
        If the position is not on a plate of that format.
    """
    letter = string.ascii_uppercase[row] if isinstance(row, int) and row < 26 else str(row)
    return normalize_well(f"{letter}{column}", fmt)


def is_edge(well: object, fmt: int | PlateFormat = 96) -> bool:
    """Whether a well is on the plate's edge: its first or last row or column.

    Raises
    ------
    PlateMapError
        If the well is not on a plate of that format.
    """
    plate = plate_format(fmt)
    w = parse_well(well, plate)
    return w.row in (plate.rows[0], plate.rows[-1]) or w.column in (1, plate.n_columns)


def edge_wells(fmt: int | PlateFormat = 96) -> list[str]:
    """The edge wells of the format, row by row (36 of a 96-well plate)."""
    plate = plate_format(fmt)
    return [w for w in plate.wells if is_edge(w, plate)]


def inner_wells(fmt: int | PlateFormat = 96) -> list[str]:
    """The wells off the edge, row by row: the inner 60 of a 96-well plate (B02 ... G11)."""
    plate = plate_format(fmt)
    return [w for w in plate.wells if not is_edge(w, plate)]
