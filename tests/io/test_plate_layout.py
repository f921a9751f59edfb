"""Plate layouts: lenient well names, normalised; edge and inner wells; clear errors."""

from __future__ import annotations

import pytest

from pipeline.errors import PlateMapError
from pipeline.io.plate_layout import (
    Well,
    edge_wells,
    inner_wells,
    is_edge,
    normalize_well,
    parse_well,
    plate_format,
    well_name,
    well_problem,
)


@pytest.mark.parametrize(
    ("given", "fmt", "want"),
    [
        ("A1", 96, "A01"),
        ("A01", 96, "A01"),
        ("a01", 96, "A01"),
        (" h12 ", 96, "H12"),
        ("B-7", 96, "B07"),
        ("c_3", 96, "C03"),
        ("D 004", 96, "D04"),
        ("P24", 384, "P24"),
        ("p1", 384, "P01"),
        ("D6", 24, "D06"),
        ("F8", 48, "F08"),
    ],
)
def test_well_names_are_read_leniently_and_normalised(given: str, fmt: int, want: str) -> None:
    assert normalize_well(given, fmt) == want
    assert parse_well(given, fmt) == Well(want[0], int(want[1:]))


@pytest.mark.parametrize(
    ("given", "fmt", "says"),
    [
        ("I01", 96, "row I is not on it; fix the well name, or set plate_format 384"),
        ("A13", 96, "column 13 is not on it; fix the well name, or set plate_format 384"),
        ("A00", 96, "column 0 is not on it"),
        ("Q01", 384, "row Q is not on it; fix the well name"),
        ("A25", 384, "column 25 is not on it"),
        ("E01", 24, "row E is not on it; fix the well name, or set plate_format 48"),
        ("", 96, "'' is not a well name"),
        ("A", 96, "'A' is not a well name: give a row letter and a column number"),
        ("12", 96, "'12' is not a well name"),
        ("AB1", 96, "'AB1' is not a well name"),
        ("A1B", 96, "'A1B' is not a well name"),
    ],
)
def test_a_well_that_does_not_fit_is_a_clear_error(given: str, fmt: int, says: str) -> None:
    problem = well_problem(given, fmt)
    assert problem is not None and says in problem, problem
    with pytest.raises(PlateMapError, match="cannot be used") as info:
        parse_well(given, fmt)
    assert info.value.problems == [problem]
    if "not on it" in says:
        assert f"{fmt}-well plate" in problem


def test_formats_rows_and_columns() -> None:
    p96, p384 = plate_format(96), plate_format(384)
    assert (p96.n_rows, p96.n_columns, p96.rows[-1], p96.columns[-1]) == (8, 12, "H", 12)
    assert (p384.n_rows, p384.n_columns, p384.rows[-1], p384.columns[-1]) == (16, 24, "P", 24)
    assert p96.wells[:3] == ("A01", "A02", "A03") and p96.wells[-1] == "H12"
    assert len(p384.wells) == 384
    assert p96.describe() == "96-well plate (rows A-H, columns 1-12)"
    with pytest.raises(PlateMapError, match="no plate format has 100 wells: use one of"):
        plate_format(100)


@pytest.mark.parametrize(
    ("well", "fmt", "edge"),
    [
        ("A01", 96, True),
        ("A06", 96, True),
        ("H07", 96, True),
        ("D01", 96, True),
        ("D12", 96, True),
        ("B02", 96, False),
        ("G11", 96, False),
        ("H12", 384, False),
        ("P12", 384, True),
        ("B24", 384, True),
        ("O23", 384, False),
    ],
)
def test_edge_wells_are_the_first_and_last_rows_and_columns(
    well: str, fmt: int, edge: bool
) -> None:
    assert is_edge(well, fmt) is edge


def test_the_inner_60_of_a_96_well_plate_and_308_of_a_384_well_plate() -> None:
    inner = inner_wells(96)
    assert len(inner) == 60 and inner[0] == "B02" and inner[-1] == "G11"
    assert not {w[0] for w in inner} & {"A", "H"}
    assert not {int(w[1:]) for w in inner} & {1, 12}
    assert len(edge_wells(96)) == 36
    assert len(inner_wells(384)) == 14 * 22 and len(edge_wells(384)) == 384 - 308


def test_well_name_from_an_ome_zarr_row_and_column() -> None:
    assert well_name("B", "3") == "B03"
    assert well_name("b", "03") == "B03"
    assert well_name(1, 3) == "B03"
    with pytest.raises(PlateMapError, match="row I is not on it"):
        well_name(8, 1)
