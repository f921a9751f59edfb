"""Behaviour of the synthetic spheroid-plate generator that segmentation, QC and efficacy
tests rely on."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from pipeline.synth import (
    FAULTS,
    PlateSynthParams,
    draw_well,
    generate_plates,
    load_image_truth,
    load_plate_truth,
    plate_map,
    render_example,
    render_well,
)
from pipeline.synth.plates import (
    IMAGE_INDEX_COLUMNS,
    IMAGE_TRUTH_COLUMNS,
    PLATE_MAP_COLUMNS,
    PLATE_TRUTH_COLUMNS,
    VIABILITY_COLUMNS,
    is_edge_well,
    load_viability,
    spheroid_on_day,
    well_names,
)

SIZE = 96  # small images keep the plate tests fast; geometry scales with the side


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _circularity(mask: np.ndarray) -> float:
    from skimage.measure import regionprops

    props = regionprops(mask.astype(np.uint8))[0]
    return float(4.0 * math.pi * props.area / props.perimeter**2)


@pytest.fixture(scope="module")
def plate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plates")
    generate_plates(
        out,
        plates=1,
        seed=7,
        size=SIZE,
        fields=(1, 2),
        days=(7, 8, 10),
        fault_rate=0.2,
        write_masks=True,
    )
    return out


# --------------------------------------------------------------------- in-memory API


def test_render_example_is_deterministic_per_seed() -> None:
    a = render_example(3, efficacy=0.9, day=9)
    b = render_example(3, efficacy=0.9, day=9)
    c = render_example(4, efficacy=0.9, day=9)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.exploded == b.exploded and a.fault == b.fault == ""
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize(("bit_depth", "dtype"), [(16, np.uint16), (8, np.uint8)])
def test_render_example_types_and_shapes(bit_depth: int, dtype: type) -> None:
    well = render_example(0, size=128, bit_depth=bit_depth)
    assert well.image.shape == well.mask.shape == (128, 128)
    assert well.image.dtype == dtype and well.mask.dtype == np.uint8
    assert set(np.unique(well.mask)) <= {0, 1, 2}
    # A light background well inside the range: neither clipped nor dim.
    background = np.median(well.image[well.mask == 0])
    assert 0.4 * np.iinfo(dtype).max < background < 0.95 * np.iinfo(dtype).max


@pytest.mark.parametrize("seed", range(5))
def test_mask_is_the_dark_body_with_a_lighter_rim(seed: int) -> None:
    well = render_example(seed, size=256)
    image = well.image.astype(np.float64)
    body = well.mask == 1
    assert body.sum() > 0.02 * body.size
    ring = ndimage.binary_dilation(body, iterations=4) & ~ndimage.binary_dilation(
        body, iterations=1
    )
    far = ~ndimage.binary_dilation(body, iterations=25)
    assert image[body].mean() < 0.6 * image[far].mean()
    # The halo just outside the boundary is lighter than the background nearby.
    near = ndimage.binary_dilation(body, iterations=25) & ~ndimage.binary_dilation(
        body, iterations=8
    )
    assert image[ring].mean() > image[near].mean()
    # The spheroid sits near, not exactly at, the centre and inside the image.
    assert not _touches_border(body)
    cy, cx = ndimage.center_of_mass(body)
    assert abs(cx - well.centre_x) < 3 and abs(cy - well.centre_y) < 3
    assert math.hypot(cx - 127.5, cy - 127.5) < 0.15 * 256


def test_untreated_grows_and_treated_shrinks_loses_circularity_or_explodes() -> None:
    area = {
        (e, d): int((render_example(11, efficacy=e, day=d).mask == 1).sum())
        for e in (0.0, 0.5, 0.95)
        for d in (7, 10)
    }
    # Day 7 is before the drug acts: the same spheroid whatever the efficacy.
    assert area[(0.0, 7)] == area[(0.5, 7)] == area[(0.95, 7)]
    assert area[(0.0, 10)] > 1.3 * area[(0.0, 7)]
    assert area[(0.5, 10)] < area[(0.0, 10)]
    assert area[(0.95, 10)] < area[(0.95, 7)]
    untreated = render_example(11, efficacy=0.0, day=10)
    medium = render_example(11, efficacy=0.5, day=10)
    strong = render_example(11, efficacy=0.95, day=10)
    assert _circularity(medium.mask == 1) < _circularity(untreated.mask == 1)
    assert not untreated.exploded and not medium.exploded
    assert strong.exploded and (strong.mask == 2).sum() > 0
    assert not render_example(11, efficacy=0.95, day=7).exploded


def test_treated_spheroid_gets_lighter() -> None:
    def body_mean(efficacy: float) -> float:
        well = render_example(2, efficacy=efficacy, day=10)
        return float(well.image[well.mask == 1].mean())

    assert body_mean(0.6) > body_mean(0.0)


@pytest.mark.parametrize("seed", range(6))
def test_faults_have_their_truth(seed: int) -> None:
    normal = render_example(seed, efficacy=0.8)
    empty = render_example(seed, efficacy=0.8, fault="empty_well")
    assert empty.fault == "empty_well" and not empty.mask.any() and not empty.exploded
    assert math.isnan(empty.centre_x)
    # Nothing dark in the middle of an empty well (the meniscus darkens only the border).
    middle = ndimage.gaussian_filter(empty.image.astype(float), 3)[64:192, 64:192]
    assert middle.min() > 0.85 * np.median(middle)

    edge = render_example(seed, efficacy=0.8, fault="touches_edge")
    assert _touches_border(edge.mask == 1)
    assert not _touches_border(normal.mask == 1)

    multiple = render_example(seed, efficacy=0.8, fault="multiple_bodies")
    _, n_bodies = ndimage.label(multiple.mask == 1)
    assert n_bodies >= 2 and not _touches_border(multiple.mask == 1)

    blurred = render_example(seed, efficacy=0.8, fault="out_of_focus")
    assert np.array_equal(blurred.mask, normal.mask)

    def sharpness(image: np.ndarray) -> float:
        # The strongest edges (the body's outline), above the pixel noise.
        gradient = ndimage.gaussian_gradient_magnitude(image.astype(float), 2.0)
        return float(np.percentile(gradient, 99.5))

    assert sharpness(blurred.image) < 0.7 * sharpness(normal.image)


def test_render_example_rejects_unknown_fault() -> None:
    with pytest.raises(ValueError, match="fault"):
        render_example(0, fault="smudge")


def test_same_spheroid_across_days_and_fields() -> None:
    state = draw_well(np.random.default_rng(5), efficacy=0.0, n_fields=2)

    def render(day: int, field: int) -> tuple[float, float, int]:
        rng = np.random.default_rng([day, field])
        well = render_well(state, day=day, field=field, size=256, rng=rng)
        return well.centre_x, well.centre_y, int((well.mask == 1).sum())

    x7, y7, a7 = render(7, 1)
    x10, y10, a10 = render(10, 1)
    x10b, y10b, a10b = render(10, 2)
    assert math.hypot(x10 - x7, y10 - y7) < 0.02 * 256  # only re-positioning jitter
    assert a10 > a7
    assert abs(a10b - a10) < 0.05 * a10  # the same body seen from another position
    assert math.hypot(x10b - x10, y10b - y10) > 0.0


def test_edge_wells_are_smaller_brighter_and_more_variable() -> None:
    params = PlateSynthParams()

    def radii(edge: bool) -> np.ndarray:
        out = []
        for i in range(200):
            state = draw_well(np.random.default_rng(i), edge=edge, params=params)
            out.append(spheroid_on_day(state, 10, params).radius)
        return np.asarray(out)

    inner, outer = radii(False), radii(True)
    assert outer.mean() < inner.mean()
    assert outer.std() > inner.std()
    od_inner = draw_well(np.random.default_rng(1), edge=False).core_od
    od_outer = draw_well(np.random.default_rng(1), edge=True).core_od
    assert od_outer < od_inner


def test_params_reject_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="explode_threshold"):
        PlateSynthParams(explode_threshold=1.5)
    with pytest.raises(ValueError, match="radius_day7"):
        PlateSynthParams(radius_day7=(0.2, 0.1))
    with pytest.raises(ValueError, match="growth_per_day"):
        PlateSynthParams(growth_per_day=-1.0)


# --------------------------------------------------------------------- plate layout


def test_plate_map_96_layout() -> None:
    layout = plate_map(96, seed=0)
    assert list(layout["well"]) == well_names(96)
    assert layout["well"].iloc[0] == "A01" and layout["well"].iloc[-1] == "H12"
    outer = layout[layout["edge"]]
    inner = layout[~layout["edge"]]
    assert len(outer) == 36 and len(inner) == 60
    assert set(outer["group"]) == {"untreated"}
    counts = inner["group"].value_counts().to_dict()
    assert counts == {"screening": 30, "untreated": 12, "single": 12, "positive_control": 6}
    screening = inner[inner["group"] == "screening"]
    assert set(screening.groupby(["treatment", "concentration"]).size()) == {3}
    assert (layout.loc[layout["group"] == "untreated", "efficacy"] == 0).all()
    assert layout["efficacy"].between(0, 1).all()
    assert (layout.loc[layout["group"] == "positive_control", "efficacy"] > 0.7).all()
    assert (layout["unit"] == "uM").all()
    # The screening dose responses span weak to exploding, and a higher dose is stronger.
    assert screening["efficacy"].min() < 0.3 and screening["efficacy"].max() > 0.7
    by_dose = screening.groupby(["treatment", "concentration"])["efficacy"].first().unstack()
    assert (by_dose[1.0] > by_dose[0.1]).all()


def test_plate_map_384_and_edge_wells() -> None:
    layout = plate_map(384)
    assert len(layout) == 384 and layout["well"].iloc[-1] == "P24"
    assert layout["edge"].sum() == 2 * 24 + 2 * 14
    assert set(layout["group"]) == {"untreated", "positive_control", "single", "screening"}
    assert is_edge_well("A05") and is_edge_well("H12") and not is_edge_well("B02")
    assert is_edge_well("P10", 384) and not is_edge_well("H12", 384)
    with pytest.raises(ValueError, match="wells"):
        plate_map(48)


# --------------------------------------------------------------------- files on disk


def test_files_and_columns(plate_dir: Path) -> None:
    index = pd.read_csv(plate_dir / "image_index.csv")
    assert tuple(index.columns) == IMAGE_INDEX_COLUMNS
    assert tuple(pd.read_csv(plate_dir / "plate_map.csv").columns) == PLATE_MAP_COLUMNS
    assert tuple(pd.read_csv(plate_dir / "truth.csv").columns) == PLATE_TRUTH_COLUMNS
    assert tuple(pd.read_csv(plate_dir / "image_truth.csv").columns) == IMAGE_TRUTH_COLUMNS
    names = sorted(p.name for p in (plate_dir / "images").iterdir())
    assert names == sorted(Path(f).name for f in index["file"])
    assert all(re.fullmatch(r"P01_[A-H]\d\d_f[12]_d(07|08|10)\.tif", n) for n in names)
    assert sorted(p.name for p in (plate_dir / "masks").iterdir()) == names
    # Every well is imaged on every day through the same fields.
    per_well = index.groupby("well").agg(days=("day", "nunique"), fields=("field", "nunique"))
    assert (per_well["days"] == 3).all() and per_well["fields"].between(1, 2).all()
    assert len(index) == 3 * per_well["fields"].sum()
    image = tifffile.imread(plate_dir / index["file"].iloc[0])
    assert image.shape == (SIZE, SIZE) and image.dtype == np.uint16


def test_plate_map_covers_exactly_the_plate_wells(plate_dir: Path) -> None:
    layout = pd.read_csv(plate_dir / "plate_map.csv", keep_default_na=False)
    assert list(layout["well"]) == well_names(96)
    assert set(layout["plate"]) == {"P01"}
    assert set(layout["group"]) <= {"untreated", "positive_control", "single", "screening"}
    index = pd.read_csv(plate_dir / "image_index.csv")
    assert set(index["well"]) == set(layout["well"])


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    kwargs = {"plates": 1, "seed": 3, "size": 64, "fields": (1, 2), "days": (7, 10)}
    generate_plates(tmp_path / "a", **kwargs, write_masks=True, wells=96)  # type: ignore[arg-type]
    generate_plates(tmp_path / "b", **kwargs, write_masks=True, wells=96)  # type: ignore[arg-type]
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b and len(files_a) > 100
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_truth_is_consistent_with_images(plate_dir: Path) -> None:
    images = load_image_truth(plate_dir)
    wells = load_plate_truth(plate_dir)
    merged = images.merge(wells.rename(columns={"exploded": "well_exploded"}), on=["plate", "well"])
    clean = merged[(merged["fault"] == "") & (merged["well_fault"] == "")]

    # Areas in the table are the masks' labels.
    for row in merged.sample(20, random_state=0).itertuples():
        mask = tifffile.imread(plate_dir / "masks" / Path(str(row.file)).name)
        assert int((mask == 1).sum()) == row.spheroid_area_px
        assert int((mask == 2).sum()) == row.debris_area_px

    # Untreated inner wells grow from day 7 to day 10.
    untreated = clean[(clean["group"] == "untreated") & ~clean["edge"]]
    mean_area = untreated.groupby("day")["spheroid_area_px"].mean()
    assert mean_area[10] > 1.2 * mean_area[7]
    # Exploding wells are exploded from the day after treatment, with debris, and smaller.
    strong = clean[clean["well_efficacy"] > 0.7]
    assert not strong.empty
    assert not strong[strong["day"] == 7]["exploded"].any()
    day10 = strong[strong["day"] == 10]
    assert day10["exploded"].all() and (day10["debris_area_px"] > 0).all()
    assert (
        day10["spheroid_area_px"].mean()
        < untreated[untreated["day"] == 10]["spheroid_area_px"].mean()
    )
    assert not clean[clean["well_efficacy"] <= 0.7]["exploded"].any()
    # The well's fate: it explodes when its efficacy passes the threshold (and it has a
    # spheroid at all).
    held = wells["well_fault"] != "empty_well"
    assert (wells["exploded"] == ((wells["well_efficacy"] > 0.7) & held)).all()


def test_faults_on_disk_match_their_masks(plate_dir: Path) -> None:
    images = load_image_truth(plate_dir)
    assert set(images["fault"]) == {"", *FAULTS}
    wells = load_plate_truth(plate_dir)
    assert set(wells["well_fault"]) == {"", "empty_well", "multiple_bodies"}
    assert images.loc[images["fault"] == "empty_well", "centre_x"].isna().all()
    for row in images[images["fault"] != ""].itertuples():
        mask = tifffile.imread(plate_dir / "masks" / Path(str(row.file)).name)
        if row.fault == "empty_well":
            assert not mask.any()
        elif row.fault == "touches_edge":
            assert _touches_border(mask == 1)
        elif row.fault == "multiple_bodies":
            assert ndimage.label(mask == 1)[1] >= 2
    for row in images[images["fault"] == ""].itertuples():
        mask = tifffile.imread(plate_dir / "masks" / Path(str(row.file)).name)
        assert not _touches_border(mask == 1), row.file
    # Well faults hold on every image of the well.
    faulted = wells.loc[wells["well_fault"] != "", ["well", "well_fault"]]
    for row in faulted.itertuples():
        assert (images.loc[images["well"] == row.well, "fault"] == row.well_fault).all()


def test_viability_falls_with_efficacy(plate_dir: Path) -> None:
    wells = load_plate_truth(plate_dir)
    ok = wells[wells["well_fault"] != "empty_well"]
    untreated = ok[(ok["group"] == "untreated") & ~ok["edge"]]["viability"]
    assert abs(untreated.mean() - 1.0) < 0.1
    assert ok[ok["group"] == "positive_control"]["viability"].mean() < 0.2
    assert np.corrcoef(ok["well_efficacy"], ok["viability"])[0, 1] < -0.9
    assert (wells.loc[wells["well_fault"] == "empty_well", "viability"] < 0.2).all()


def test_fault_rate_zero_and_8_bit(tmp_path: Path) -> None:
    generate_plates(
        tmp_path, plates=1, seed=0, size=64, fields=1, days=(10,), bit_depth=8, fault_rate=0.0
    )
    images = load_image_truth(tmp_path)
    assert len(images) == 96 and (images["fault"] == "").all()
    assert tifffile.imread(tmp_path / images["file"].iloc[0]).dtype == np.uint8


def test_384_well_plates(tmp_path: Path) -> None:
    truth = generate_plates(tmp_path, plates=2, seed=1, size=64, fields=1, days=(10,), wells=384)
    assert len(truth) == 2 * 384
    assert set(truth["plate"]) == {"P01", "P02"}
    index = pd.read_csv(tmp_path / "image_index.csv")
    assert len(index) == 2 * 384 and (tmp_path / "images" / "P02_P24_f1_d10.tif").exists()
    layout = pd.read_csv(tmp_path / "plate_map.csv")
    for _, plate in layout.groupby("plate"):
        assert sorted(plate["well"]) == sorted(well_names(384))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"plates": 0}, "plates"),
        ({"seed": -1}, "seed"),
        ({"size": 32}, "size"),
        ({"fields": (3, 1)}, "fields"),
        ({"days": (7, 7)}, "days"),
        ({"wells": 48}, "wells"),
        ({"bit_depth": 12}, "bit_depth"),
        ({"fault_rate": 1.5}, "fault_rate"),
        ({"readout_fraction": 1.5}, "readout_fraction"),
        ({"readout_fraction": -0.1}, "readout_fraction"),
        ({"readout_fraction": True}, "readout_fraction"),
    ],
)
def test_generate_plates_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"plates": 1, "seed": 0, "size": 64, "days": (10,), **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_plates(tmp_path, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "images").exists()


# --------------------------------------------------------------------- viability read-out


def _readout_kwargs(**extra: object) -> dict[str, object]:
    # Two plates so the per-plate choice is exercised; one day, one field keeps it fast.
    return {"plates": 2, "seed": 5, "size": 64, "fields": 1, "days": (10,), **extra}


@pytest.fixture(scope="module")
def readout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("readout")
    generate_plates(out, **_readout_kwargs())  # type: ignore[arg-type]
    return out


def _readout_wells(path: Path) -> set[tuple[str, str]]:
    frame = load_viability(path)
    return set(zip(frame["plate"], frame["well"], strict=True))


def test_viability_readout_covers_half_of_each_group_of_inner_wells(readout_dir: Path) -> None:
    assert tuple(pd.read_csv(readout_dir / "viability.csv").columns) == VIABILITY_COLUMNS
    readout = load_viability(readout_dir)
    truth = load_plate_truth(readout_dir)
    assert readout["plate"].dtype == object and readout["viability"].dtype == np.float64
    # Rows in plate then well order, no duplicates.
    keys = list(zip(readout["plate"], readout["well"], strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    merged = readout.merge(truth, on=["plate", "well"], suffixes=("", "_truth"))
    assert len(merged) == len(readout)
    # The read-out is the truth's viability, to the digit, and only on inner wells.
    assert (merged["viability"] == merged["viability_truth"]).all()
    assert not merged["edge"].any()
    # 96 wells: 12 inner untreated and 48 inner treated, half of each on every plate.
    treated = merged["group"] != "untreated"
    counts = merged.groupby(["plate", treated]).size().to_dict()
    assert counts == {("P01", False): 6, ("P01", True): 24, ("P02", False): 6, ("P02", True): 24}
    # The two plates are chosen independently.
    by_plate = merged.groupby("plate")["well"].apply(frozenset)
    assert by_plate["P01"] != by_plate["P02"]


@pytest.mark.parametrize(("fraction", "untreated", "treated"), [(1.0, 12, 48), (0.25, 3, 12)])
def test_viability_readout_fraction_sets_the_counts(
    tmp_path: Path, fraction: float, untreated: int, treated: int
) -> None:
    generate_plates(tmp_path, **_readout_kwargs(plates=1, readout_fraction=fraction))  # type: ignore[arg-type]
    readout = load_viability(tmp_path).merge(load_plate_truth(tmp_path), on=["plate", "well"])
    groups = (readout["group"] == "untreated").value_counts().to_dict()
    assert groups == {True: untreated, False: treated}


def test_viability_readout_of_zero_writes_the_header_only(tmp_path: Path) -> None:
    generate_plates(tmp_path, **_readout_kwargs(plates=1, readout_fraction=0))  # type: ignore[arg-type]
    assert (tmp_path / "viability.csv").read_text() == "plate,well,viability\n"
    readout = load_viability(tmp_path / "viability.csv")
    assert readout.empty and tuple(readout.columns) == VIABILITY_COLUMNS


def test_viability_readout_choice_is_seeded(tmp_path: Path, readout_dir: Path) -> None:
    generate_plates(tmp_path / "same", **_readout_kwargs())  # type: ignore[arg-type]
    generate_plates(tmp_path / "other", **_readout_kwargs(seed=6))  # type: ignore[arg-type]
    assert (tmp_path / "same" / "viability.csv").read_bytes() == (
        readout_dir / "viability.csv"
    ).read_bytes()
    assert _readout_wells(tmp_path / "other") != _readout_wells(readout_dir)


def test_readout_fraction_changes_nothing_else(tmp_path: Path, readout_dir: Path) -> None:
    generate_plates(tmp_path, **_readout_kwargs(readout_fraction=0.8))  # type: ignore[arg-type]
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.*"))
    assert written == sorted(p.relative_to(readout_dir) for p in readout_dir.rglob("*.*"))
    for rel in written:
        if rel.name != "viability.csv":
            assert (tmp_path / rel).read_bytes() == (readout_dir / rel).read_bytes(), rel
    # A larger fraction reads out more wells.
    assert len(load_viability(tmp_path)) > len(load_viability(readout_dir))
