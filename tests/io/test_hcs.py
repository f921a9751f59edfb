"""OME-Zarr HCS plates: exported so that ome-zarr-py reads them back and the NGFF schemas
accept them; plates other tools write are read as image files of the same plate would be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.errors import InputError, PlateMapError, StoreError
from pipeline.io.hcs import (
    HCS_FORMAT,
    HcsExport,
    export_ome_zarr,
    find_plates,
    load_hcs,
    read_field,
    read_field_header,
)
from pipeline.io.plates import ingest_plates
from pipeline.io.spec import PlateIngestParams
from tests.io.test_platemap import write_plates

FIELDS = (1, 2)
DAYS = (7, 8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, HcsExport]:
    """A files-ingested store of two plates (shape 40 x 36, not square) and its export."""
    folder = tmp_path_factory.mktemp("hcs")
    index, plate_map, _ = write_plates(folder / "in", days=DAYS, fields=FIELDS, shape=(40, 36))
    store = RunStore(str(folder / "run"))
    ingest_plates(RunContext(store), PlateIngestParams(index=str(index), plate_map=str(plate_map)))
    return store, export_ome_zarr(store, folder / "out")


def test_export_writes_one_plate_per_plate_and_the_plate_map(
    exported: tuple[RunStore, HcsExport],
) -> None:
    _, result = exported
    assert [Path(p).name for p in result.plates] == ["P01.ome.zarr", "P02.ome.zarr"]
    assert result.images == 32 and result.skipped == 0
    assert result.plate_map is not None and Path(result.plate_map).name == "plate_map.csv"
    assert not [p for p in Path(result.plates[0]).parent.iterdir() if p.name.startswith(".")]


def test_ome_zarr_py_reads_back_the_wells_fields_acquisitions_and_pixels(
    exported: tuple[RunStore, HcsExport],
) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader, Well

    store, result = exported
    ds = xr.open_zarr(store.zarr_url)
    by_id = {str(i): k for k, i in enumerate(ds["image_id"].values)}
    for plate_path in result.plates:
        plate = str(Path(plate_path).name).split(".")[0]
        location = parse_url(plate_path)
        assert location is not None and location.version == "0.5"
        root = next(iter(Reader(location)()))
        meta = root.metadata["metadata"]["plate"]
        assert meta["name"] == plate
        assert [r["name"] for r in meta["rows"]] == list("ABCDEFGH")
        assert [c["name"] for c in meta["columns"]] == [str(c) for c in range(1, 13)]
        assert sorted(w["path"] for w in meta["wells"]) == ["B/2", "B/3", "C/2", "G/11"]
        assert [(a["id"], a["name"]) for a in meta["acquisitions"]] == [
            (7, "day 7"),
            (8, "day 8"),
        ]
        assert meta["field_count"] == len(FIELDS)
        for well in meta["wells"]:
            row, column = well["path"].split("/")
            node = next(iter(Reader(parse_url(f"{plate_path}/{well['path']}"))()))
            spec = node.first(Well)
            assert spec is not None
            images = spec.well_data["images"]
            assert [i["acquisition"] for i in images] == [7, 7, 8, 8]
            for k, image in enumerate(images):
                field_url = f"{plate_path}/{well['path']}/{image['path']}"
                fnode = next(iter(Reader(parse_url(field_url))()))
                assert fnode.first(Multiscales) is not None
                levels = [np.asarray(level) for level in fnode.data]
                day, field = image["acquisition"], FIELDS[k % len(FIELDS)]
                want = ds["images"].values[
                    by_id[f"{plate}_{row}{int(column):02d}_d{day:02d}_f{field}"]
                ]
                np.testing.assert_array_equal(levels[0], want)
                assert [lv.shape for lv in levels] == [(40, 36), (20, 18)]  # s0, then 2x
                assert (
                    fnode.metadata["name"] == f"{plate}_{row}{int(column):02d}_d{day:02d}_f{field}"
                )


#: The NGFF 0.5 JSON schemas, kept beside this test (see ngff_schemas/README.md).
NGFF_SCHEMAS = Path(__file__).resolve().parent / "ngff_schemas" / "0.5"


def _attributes(group: Path) -> dict:
    return json.loads((group / "zarr.json").read_text())["attributes"]


def test_the_plate_and_well_metadata_validate_against_the_ngff_json_schemas(
    exported: tuple[RunStore, HcsExport],
) -> None:
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    folder = NGFF_SCHEMAS
    schemas = {p.name: json.loads(p.read_text()) for p in folder.glob("*.schema")}
    # Every schema is registered under its $id, so their references resolve offline.
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
        for s in schemas.values()
    )

    def check(name: str, instance: dict) -> None:
        cls = jsonschema.validators.validator_for(schemas[name], jsonschema.Draft202012Validator)
        cls(schemas[name], registry=registry).validate(instance)

    _, result = exported
    for plate_path in result.plates:
        plate = Path(plate_path)
        check("plate.schema", _attributes(plate))
        check("strict_plate.schema", _attributes(plate))
        for well in _attributes(plate)["ome"]["plate"]["wells"]:
            group = plate / well["path"]
            check("well.schema", _attributes(group))
            check("strict_well.schema", _attributes(group))
            for image in _attributes(group)["ome"]["well"]["images"]:
                check("image.schema", _attributes(group / image["path"]))
    with pytest.raises(jsonschema.ValidationError):
        bad = _attributes(Path(result.plates[0]))
        del bad["ome"]["plate"]["wells"]
        check("plate.schema", bad)


def test_the_plates_validate_with_ome_zarr_models(exported: tuple[RunStore, HcsExport]) -> None:
    from ome_zarr_models.v05.hcs import HCS
    from ome_zarr_models.v05.image import Image

    _, result = exported
    for plate_path in result.plates:
        group = zarr.open_group(plate_path, mode="r")
        model = HCS.from_zarr(group)
        wells = list(model.well_groups)
        assert len(wells) == 4
        for well, meta in zip(wells, model.ome_attributes.plate.wells, strict=True):
            for image in well.ome_attributes.well.images:
                Image.from_zarr(group[f"{meta.path}/{image.path}"])


def test_the_export_reads_back_as_the_same_images(exported: tuple[RunStore, HcsExport]) -> None:
    store, result = exported
    got = load_hcs(result.plates, result.plate_map)
    ds = xr.open_zarr(store.zarr_url)
    assert list(got.images["image_id"]) == [str(v) for v in ds["image_id"].values]
    for name in ("plate", "well", "row", "group", "treatment", "unit"):
        assert list(got.images[name]) == [str(v) for v in ds[name].values], name
    for name in ("column", "field", "day", "edge", "concentration"):
        np.testing.assert_array_equal(got.images[name].to_numpy(), ds[name].values)
    first = got.images["path"].iloc[0]
    assert read_field_header(first).format == HCS_FORMAT
    np.testing.assert_array_equal(read_field(first), ds["images"].values[0])
    # The folder holding the plates is a source too.
    assert find_plates(Path(result.plates[0]).parent) == result.plates


def test_export_refuses_to_overwrite_unless_asked(exported: tuple[RunStore, HcsExport]) -> None:
    store, result = exported
    before = Path(result.plates[0], "zarr.json").stat().st_mtime_ns
    with pytest.raises(InputError, match=r"P01\.ome\.zarr.*already exist.*overwrite"):
        export_ome_zarr(store, Path(result.plates[0]).parent)
    assert Path(result.plates[0], "zarr.json").stat().st_mtime_ns == before


def test_export_needs_plate_images(tmp_path: Path) -> None:
    from pipeline.io.ingest import IngestParams, ingest_images
    from tests.conftest import make_folder

    make_folder(tmp_path / "in", 2, shape=(8, 8))
    store = RunStore(str(tmp_path / "run"))
    ingest_images(RunContext(store), IngestParams(sources=[str(tmp_path / "in")]))
    with pytest.raises(StoreError, match="no plate, well, day, field coordinate"):
        export_ome_zarr(store, tmp_path / "out")


# -- plates other tools write -------------------------------------------------------------------


def _other_tool_plate(path: Path, version: str, data: dict[tuple[str, int], np.ndarray]) -> None:
    """A plate as ome-zarr-py writes it for another tool: acquisitions 0 and 1 named "Day 7"
    and "Day 10", zero-padded column names, (c, y, x) fields with one channel, no plate name."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV05() if version == "0.5" else FormatV04()
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_plate_metadata(
        root,
        list("ABCDEFGH"),
        [f"{c:02d}" for c in range(1, 13)],
        ["B/03", "C/04"],
        fmt=fmt,
        acquisitions=[{"id": 0, "name": "Day 7"}, {"id": 1, "name": "Day 10"}],
    )
    for well in ("B/03", "C/04"):
        row, column = well.split("/")
        group = root.require_group(row).require_group(column)
        images = [{"path": str(k), "acquisition": k // 2} for k in range(4)]
        write_well_metadata(group, images, fmt=fmt)
        for k in range(4):
            array = data[(f"{row}{column}", k)]
            write_image(
                array[np.newaxis],
                group.require_group(str(k)),
                axes=["c", "y", "x"],
                scale_factors=(),
                fmt=fmt,
            )


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_plate_another_tool_wrote_is_read_with_days_and_fields(
    tmp_path: Path, version: str
) -> None:
    rng = np.random.default_rng(1)
    data = {
        (w, k): rng.integers(0, 255, (12, 10), dtype=np.uint8)
        for w in ("B03", "C04")
        for k in range(4)
    }
    _other_tool_plate(tmp_path / "SCREEN-9.ome.zarr", version, data)
    got = load_hcs([str(tmp_path / "SCREEN-9.ome.zarr")])
    images = got.images
    assert list(images["image_id"]) == [
        f"SCREEN-9_{w}_d{d:02d}_f{f}" for w in ("B03", "C04") for d in (7, 10) for f in (1, 2)
    ]
    assert set(images["group"]) == {""} and images["concentration"].isna().all()
    assert list(got.wells["well"]) == ["B03", "C04"]
    for (_, row), k in zip(images.iterrows(), [0, 1, 2, 3] * 2, strict=True):
        assert row["path"].endswith(f"/{row['well'][0]}/{row['well'][1:]}/{k}")
        assert read_field_header(row["path"]).shape == (12, 10)
        np.testing.assert_array_equal(read_field(row["path"]), data[(row["well"], k)])


def test_fields_with_channels_or_planes(tmp_path: Path) -> None:
    from ome_zarr.writer import write_image

    rgb = np.arange(3 * 6 * 5, dtype=np.uint16).reshape(3, 6, 5)
    write_image(
        rgb,
        zarr.open_group(str(tmp_path / "rgb"), mode="w"),
        axes=["c", "y", "x"],
        scale_factors=(),
    )
    assert read_field_header(str(tmp_path / "rgb")).shape == (6, 5, 3)
    np.testing.assert_array_equal(read_field(str(tmp_path / "rgb")), np.moveaxis(rgb, 0, -1))
    stack = np.zeros((4, 6, 5), dtype=np.uint8)
    write_image(
        stack,
        zarr.open_group(str(tmp_path / "z"), mode="w"),
        axes=["z", "y", "x"],
        scale_factors=(),
    )
    assert "4 z planes" in read_field_header(str(tmp_path / "z")).reason
    assert "over the pixel budget" in read_field_header(str(tmp_path / "rgb"), 10).reason
    assert "not a readable OME-Zarr image" in read_field_header(str(tmp_path / "nope")).reason


def test_what_is_not_a_plate_is_a_plate_map_error(tmp_path: Path) -> None:
    with pytest.raises(PlateMapError, match="does not exist"):
        load_hcs([str(tmp_path / "missing.ome.zarr")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlateMapError, match="is not an OME-Zarr plate and holds none"):
        load_hcs([str(tmp_path / "empty")])
    group = zarr.open_group(str(tmp_path / "broken.ome.zarr"), mode="w")
    group.attrs["ome"] = {"version": "0.5", "plate": {"wells": "?"}}
    with pytest.raises(PlateMapError, match="is not a valid OME-Zarr plate"):
        load_hcs([str(tmp_path / "broken.ome.zarr")])
