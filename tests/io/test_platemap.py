"""Image index + plate map: joined in a stable order, and every problem named with its row."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from pipeline.errors import PlateMapError
from pipeline.io.platemap import IMAGE_COLUMNS, WELL_COLUMNS, image_id, load_plate
from tests.conftest import smooth_image

#: The wells of the synthetic plates: well -> (group, treatment, concentration, unit).
WELLS = {
    "A01": ("untreated", "", "", ""),  # an edge well: left out by the inner-60 rule
    "B02": ("untreated", "", "", ""),
    "B03": ("single", "gemcitabine", "1.5", "uM"),
    "C02": ("screening", "gemcitabine+paclitaxel", "0.5", "uM"),
    "G11": ("positive_control", "staurosporine", "1", "uM"),
}


def write_plates(
    folder: Path,
    plates: tuple[str, ...] = ("P01", "P02"),
    wells: dict[str, tuple[str, str, str, str]] | None = None,
    days: tuple[int, ...] = (7, 8),
    fields: tuple[int, ...] = (1, 2),
    shape: tuple[int, ...] = (32, 32),
    seed: int = 0,
) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Small uint16 TIFF plates, an image index and a plate map under ``folder``.

    The index lists the images newest day first and names P02's wells leniently (``b2``), so
    that sorting and normalising show. Returns the index, the plate map and every image by
    its id.
    """
    wells = WELLS if wells is None else wells
    rng = np.random.default_rng(seed)
    index, plate_map, arrays = [], [], {}
    for plate in plates:
        for well, (group, treatment, conc, unit) in wells.items():
            plate_map.append(
                {
                    "plate": plate,
                    "well": well,
                    "treatment": treatment,
                    "concentration": conc,
                    "unit": unit,
                    "group": group,
                }
            )
            for day in sorted(days, reverse=True):
                for field in fields:
                    rel = f"images/{plate}/{plate}_{well}_d{day}_f{field}.tif"
                    array = smooth_image(rng, shape, np.uint16)
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    tifffile.imwrite(folder / rel, array)
                    arrays[image_id(plate, well, day, field)] = array
                    name = f"{well[0].lower()}{int(well[1:])}" if plate == "P02" else well
                    index.append(
                        {"file": rel, "plate": plate, "well": name, "field": field, "day": day}
                    )
    pd.DataFrame(index).to_csv(folder / "index.csv", index=False)
    pd.DataFrame(plate_map).to_csv(folder / "plate_map.csv", index=False)
    return folder / "index.csv", folder / "plate_map.csv", arrays


@pytest.fixture(scope="module")
def plate_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    return write_plates(tmp_path_factory.mktemp("plates"))


def test_the_join_has_one_row_per_inner_image_in_plate_well_day_field_order(
    plate_files: tuple[Path, Path, dict],
) -> None:
    index, plate_map, arrays = plate_files
    got = load_plate(index, plate_map)
    images = got.images
    # 2 plates x 4 inner wells x 2 days x 2 fields; A01 is on the edge.
    assert len(images) == 32 and got.n_excluded == 8
    assert list(images.columns[:2]) == ["image_id", "path"]
    assert got.metadata_columns == list(IMAGE_COLUMNS)
    keys = list(zip(images["plate"], images["well"], images["day"], images["field"], strict=True))
    assert keys == sorted(keys)
    assert images["image_id"].iloc[0] == "P01_B02_d07_f1"
    assert set(images["well"]) == {"B02", "B03", "C02", "G11"}  # "b2" read as B02
    assert not images["edge"].any()
    assert all(Path(p).is_absolute() and Path(p).exists() for p in images["path"])
    row = images.set_index("image_id").loc["P02_B03_d08_f2"]
    assert (row["row"], row["column"], row["field"], row["day"]) == ("B", 3, 2, 8)
    assert (row["treatment"], row["concentration"], row["unit"], row["group"]) == (
        "gemcitabine",
        1.5,
        "uM",
        "single",
    )
    untreated = images[images["group"] == "untreated"]
    assert untreated["concentration"].isna().all() and (untreated["unit"] == "").all()
    assert images["column"].dtype == np.int64 and images["edge"].dtype == bool
    assert set(images["image_id"]) <= set(arrays)


def test_the_wells_table_keeps_the_excluded_edge_wells(
    plate_files: tuple[Path, Path, dict],
) -> None:
    index, plate_map, _ = plate_files
    wells = load_plate(index, plate_map).wells
    assert list(wells.columns) == list(WELL_COLUMNS)
    assert len(wells) == 10
    edge = wells[wells["well"] == "A01"]
    assert edge["edge"].all() and edge["excluded"].all() and (edge["n_images"] == 0).all()
    assert (wells.loc[wells["well"] != "A01", "n_images"] == 4).all()


def test_exclude_edge_false_ingests_the_edge_wells_flagged(
    plate_files: tuple[Path, Path, dict],
) -> None:
    index, plate_map, _ = plate_files
    got = load_plate(index, plate_map, exclude_edge=False)
    assert len(got.images) == 40 and got.n_excluded == 0
    assert set(got.images.loc[got.images["edge"], "well"]) == {"A01"}
    assert not got.wells["excluded"].any()


def test_edge_wells_need_neither_images_nor_plate_map_rows(tmp_path: Path) -> None:
    index, plate_map, _ = write_plates(tmp_path, plates=("P01",), fields=(1,))
    idx, pm = pd.read_csv(index), pd.read_csv(plate_map)
    # The microscope imaged H12 (an edge well) that the plate map leaves out, and the map's
    # A01 (edge) has no image: with the inner-60 rule neither is a problem.
    extra = idx.iloc[[0]].assign(file="images/P01/extra.tif", well="H12")
    shutil.copy(tmp_path / idx["file"].iloc[0], tmp_path / "images/P01/extra.tif")
    pd.concat([idx[idx["well"] != "A01"], extra]).to_csv(index, index=False)
    pm.to_csv(plate_map, index=False)
    got = load_plate(index, plate_map)
    assert set(got.images["well"]) == {"B02", "B03", "C02", "G11"} and got.n_excluded == 1
    with pytest.raises(PlateMapError) as info:
        load_plate(index, plate_map, exclude_edge=False)
    text = str(info.value)
    assert "plate P01 well H12 is not in the plate map" in text
    assert "plate P01 well A01 has no image" in text


def test_parquet_inputs_and_extra_columns_become_metadata(tmp_path: Path) -> None:
    index, plate_map, _ = write_plates(tmp_path, plates=("P01",), fields=(1,))
    idx = pd.read_csv(index).assign(exposure_ms=12.5)
    pm = pd.read_csv(plate_map).assign(cell_line="PANC-1", seeding=[1000, 1000, 2000, 2000, 500])
    idx.to_parquet(tmp_path / "index.parquet")
    pm.to_parquet(tmp_path / "plate_map.parquet")
    got = load_plate(tmp_path / "index.parquet", tmp_path / "plate_map.parquet")
    assert got.metadata_columns == [*IMAGE_COLUMNS, "exposure_ms", "cell_line", "seeding"]
    assert got.images["exposure_ms"].dtype == np.float64
    assert got.images["seeding"].dtype == np.int64
    assert set(got.images["cell_line"]) == {"PANC-1"}
    assert list(got.wells.columns[-2:]) == ["cell_line", "seeding"]


def test_384_well_plates(tmp_path: Path) -> None:
    wells = {
        "A01": ("untreated", "", "", ""),
        "B02": ("untreated", "", "", ""),
        "O23": ("single", "drug", "10", "nM"),
        "P24": ("single", "drug", "10", "nM"),
        "H12": ("screening", "drug+other", "1", "nM"),
    }
    index, plate_map, _ = write_plates(tmp_path, plates=("P01",), wells=wells, fields=(1,))
    got = load_plate(index, plate_map, fmt=384)
    assert sorted(set(got.images["well"])) == ["B02", "H12", "O23"]
    assert got.n_excluded == 4  # A01 and P24 on two days
    with pytest.raises(PlateMapError, match=r"does not fit a 96-well plate.*plate_format 384"):
        load_plate(index, plate_map)


# -- every problem, named with its file and row ----------------------------------------------

Frames = tuple[pd.DataFrame, pd.DataFrame]


def _row(df: pd.DataFrame, **where: object) -> int:
    """The 1-based data row of the first row matching ``where``."""
    mask = np.ones(len(df), dtype=bool)
    for k, v in where.items():
        mask &= (df[k].astype(str) == str(v)).to_numpy()
    return int(np.flatnonzero(mask)[0]) + 1


def _no_images(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    keep = idx[~((idx["plate"] == "P01") & (idx["well"] == "C02"))]
    return (keep, pm), (
        f"plate_map.csv row {_row(pm, plate='P01', well='C02')}: plate P01 well C02 has no "
        "image in index.csv: add its images to the index, or remove the well from the plate map"
    )


def _not_in_map(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    rows = [i + 1 for i in np.flatnonzero((idx["plate"] == "P01") & (idx["well"] == "B03"))]
    keep = pm[~((pm["plate"] == "P01") & (pm["well"] == "B03"))]
    return (idx, keep), (
        f"index.csv rows {rows[0]}-{rows[-1]}: plate P01 well B03 is not in the plate map "
        "plate_map.csv: add the well to it, or remove the image(s)"
    )


def _plate_not_in_map(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    return (idx, pm[pm["plate"] != "P02"]), "plate P02 is not in the plate map plate_map.csv"


def _plate_without_images(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    # A01 is an edge well: with the inner-60 rule it needs no images.
    rows = [i + 1 for i in np.flatnonzero((pm["plate"] == "P02") & (pm["well"] != "A01"))]
    return (idx[idx["plate"] != "P02"], pm), (
        f"plate_map.csv rows {rows[0]}-{rows[-1]}: plate P02 has no images in index.csv"
    )


def _duplicate_image(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    i = _row(idx, plate="P01", well="B02", day=7, field=1)
    other = _row(idx, plate="P01", well="B02", day=7, field=2)
    idx.loc[other - 1, "field"] = 1
    assert other == i + 1  # consecutive rows are shown as a range
    return (idx, pm), (
        f"index.csv rows {i}-{other}: plate P01 well B02 field 1 day 7 more than once: give "
        "each image its own field or day, or remove the duplicate row"
    )


def _same_file_twice(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    extra = idx.iloc[[0]].assign(day=9)
    return (pd.concat([idx, extra], ignore_index=True), pm), (
        f"index.csv rows 1, {len(idx) + 1}: file "
    )


def _unknown_group(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    r = _row(pm, plate="P01", well="B03")
    pm.loc[r - 1, "group"] = "treated"
    return (idx, pm), (
        f"plate_map.csv row {r}: group 'treated' is not one of untreated, single, screening, "
        "positive_control: fix it, or add it to the stage's groups"
    )


def _empty_group(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    r = _row(pm, plate="P02", well="C02")
    pm.loc[r - 1, "group"] = np.nan
    return (idx, pm), f"plate_map.csv row {r}: group is empty; it must be one of untreated"


def _no_unit(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    r = _row(pm, plate="P01", well="B03")
    pm.loc[r - 1, "unit"] = np.nan
    return (idx, pm), (
        f"plate_map.csv row {r}: concentration 1.5 has no unit: fill `unit` (e.g. uM, nM or %)"
    )


def _untreated_dosed(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    r = _row(pm, plate="P01", well="B02")
    pm.loc[r - 1, ["concentration", "unit"]] = [2.0, "uM"]
    return (idx, pm), (
        f"plate_map.csv row {r}: well B02 is untreated but has concentration 2.0 uM: clear the "
        "concentration (empty or 0), or fix its group"
    )


def _bad_concentration(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    r = _row(pm, plate="P01", well="C02")
    pm["concentration"] = pm["concentration"].astype(object)
    pm.loc[r - 1, "concentration"] = "lots"
    return (idx, pm), f"plate_map.csv row {r}: concentration 'lots' is not a number"


def _negative_concentration(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    r = _row(pm, plate="P01", well="C02")
    pm.loc[r - 1, "concentration"] = -1.0
    return (idx, pm), f"plate_map.csv row {r}: concentration '-1.0' is not a non-negative number"


def _well_off_plate(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    idx.loc[2, "well"] = "I01"
    return (idx, pm), (
        "index.csv row 3: well 'I01' does not fit a 96-well plate (rows A-H, columns 1-12): "
        "row I is not on it; fix the well name, or set plate_format 384"
    )


def _map_well_off_plate(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    pm.loc[0, "well"] = "A13"  # was A01, an edge well: its images are left out anyway
    return (idx, pm), "plate_map.csv row 1: well 'A13' does not fit a 96-well plate"


def _not_a_well(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    idx.loc[0, "well"] = "middle"
    return (idx, pm), "index.csv row 1: 'middle' is not a well name"


def _duplicate_map_well(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    return (idx, pd.concat([pm, pm.iloc[[1]]], ignore_index=True)), (
        f"plate_map.csv rows 2, {len(pm) + 1}: plate P01 well B02 more than once: give each "
        "well one row"
    )


def _bad_field(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    idx["field"] = idx["field"].astype(object)
    idx.loc[4, "field"] = "left"
    return (idx, pm), "index.csv row 5: field 'left' is not a whole number"


def _bad_day(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    idx["day"] = idx["day"].astype(float)
    idx.loc[5, "day"] = 7.5
    return (idx, pm), "index.csv row 6: day '7.5' is not a whole number"


def _missing_file(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    idx.loc[6, "file"] = "images/P01/gone.tif"
    return (idx, pm), (
        "index.csv row 7: image file images/P01/gone.tif does not exist: fix the path "
        "(relative to the index's folder) or remove the row"
    )


def _empty_file(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    idx.loc[7, "file"] = np.nan
    return (idx, pm), "index.csv row 8: file is empty: name the image file"


def _index_columns(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    return (idx.drop(columns=["day", "field"]), pm), (
        "index.csv: missing column(s) field, day: the image index needs columns file, plate, "
        "well, field, day (or path / filename)"
    )


def _map_columns(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    return (idx, pm.drop(columns=["unit"])), (
        "plate_map.csv: missing column(s) unit: the plate map needs columns plate, well, "
        "treatment, concentration, unit, group"
    )


def _reserved_column(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    return (idx.assign(valid=True), pm), "index.csv: column(s) valid are reserved"


def _column_in_both(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    return (idx.assign(note="a"), pm.assign(note="b")), (
        "index.csv and plate_map.csv both have column(s) note: keep each in one of them"
    )


def _row_disagrees(idx: pd.DataFrame, pm: pd.DataFrame) -> tuple[Frames, str]:
    pm = pm.assign(row=pm["well"].str[0])
    pm.loc[1, "row"] = "C"
    return (idx, pm), "plate_map.csv row 2: row 'C' disagrees with its well (in row B)"


PROBLEMS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], tuple[Frames, str]]] = {
    "well in the map with no image": _no_images,
    "image whose well is not in the map": _not_in_map,
    "plate not in the map": _plate_not_in_map,
    "plate of the map without images": _plate_without_images,
    "duplicate plate/well/field/day": _duplicate_image,
    "the same file twice": _same_file_twice,
    "unknown group": _unknown_group,
    "empty group": _empty_group,
    "concentration without unit": _no_unit,
    "untreated well with a concentration": _untreated_dosed,
    "concentration not a number": _bad_concentration,
    "negative concentration": _negative_concentration,
    "index well off the plate": _well_off_plate,
    "map well off the plate": _map_well_off_plate,
    "not a well name": _not_a_well,
    "duplicate well in the map": _duplicate_map_well,
    "field not a whole number": _bad_field,
    "day not a whole number": _bad_day,
    "missing image file": _missing_file,
    "empty file cell": _empty_file,
    "missing index columns": _index_columns,
    "missing plate map columns": _map_columns,
    "reserved column": _reserved_column,
    "column in both tables": _column_in_both,
    "row that disagrees with the well": _row_disagrees,
}


@pytest.mark.parametrize("case", PROBLEMS, ids=list(PROBLEMS))
def test_each_problem_is_named_with_its_file_row_and_fix(
    case: str, plate_files: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    index, plate_map, _ = plate_files
    (idx, pm), expected = PROBLEMS[case](pd.read_csv(index), pd.read_csv(plate_map))
    # Beside the real index, so its relative paths still lead to the images.
    slug = "".join(c if c.isalnum() else "_" for c in case)
    bad_index, bad_map = index.parent / f"index_{slug}.csv", tmp_path / "m.csv"
    idx.to_csv(bad_index, index=False)
    pm.to_csv(bad_map, index=False)
    try:
        with pytest.raises(PlateMapError) as info:
            load_plate(bad_index, bad_map)
    finally:
        bad_index.unlink()
    text = [
        p.replace(str(bad_index), "index.csv").replace(str(bad_map), "plate_map.csv")
        for p in info.value.problems
    ]
    assert any(expected in p for p in text), "\n".join(text)
    # One problem, not a cascade of follow-ups.
    assert len(text) == 1, "\n".join(text)


def test_every_problem_is_listed_at_once(
    plate_files: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    index, plate_map, _ = plate_files
    idx, pm = pd.read_csv(index), pd.read_csv(plate_map)
    expected = []
    for fn in (_unknown_group, _missing_file, _well_off_plate, _bad_day):
        (idx, pm), text = fn(idx, pm)
        expected.append(text)
    bad_index = index.parent / "index_many.csv"
    idx.to_csv(bad_index, index=False)
    pm.to_csv(tmp_path / "plate_map.csv", index=False)
    try:
        with pytest.raises(PlateMapError, match="cannot be used") as info:
            load_plate(bad_index, tmp_path / "plate_map.csv")
    finally:
        bad_index.unlink()
    message = str(info.value).replace(str(bad_index), "index.csv")
    message = message.replace(str(tmp_path / "plate_map.csv"), "plate_map.csv")
    for text in expected:
        assert text in message, message
    assert len(info.value.problems) == 4
    assert isinstance(info.value, ValueError)


def test_an_unreadable_or_missing_table_is_a_plate_map_error(tmp_path: Path) -> None:
    (tmp_path / "map.csv").write_text("plate,well\n")
    with pytest.raises(PlateMapError, match=r"the image index .*nope\.csv does not exist"):
        load_plate(tmp_path / "nope.csv", tmp_path / "map.csv")
    (tmp_path / "index.parquet").write_text("not parquet")
    with pytest.raises(PlateMapError, match="cannot read the image index"):
        load_plate(tmp_path / "index.parquet", tmp_path / "map.csv")


def test_groups_are_a_parameter(plate_files: tuple[Path, Path, dict], tmp_path: Path) -> None:
    index, plate_map, _ = plate_files
    with pytest.raises(PlateMapError, match="group 'single' is not one of untreated, screening"):
        load_plate(index, plate_map, groups=["untreated", "screening", "positive_control"])
    pm = pd.read_csv(plate_map)
    pm["group"] = pm["group"].str.upper()  # matched case-insensitively, stored as allowed
    pm.to_csv(tmp_path / "upper.csv", index=False)
    assert set(load_plate(index, tmp_path / "upper.csv").images["group"]) == {
        "untreated",
        "single",
        "screening",
        "positive_control",
    }
