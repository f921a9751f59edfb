"""The ingest_plates stage: both ways in give the same store; problems stop it before any
work; it resumes, quarantines and flags wells as the ingest does."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import xarray as xr
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.jobs import parse_job
from pipeline.core.manifest import load_manifest
from pipeline.core.registry import default_registry
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import CollectionMismatchError, JobSpecError, PlateMapError
from pipeline.io.hcs import export_ome_zarr
from pipeline.io.plates import check_plates, ingest_plates
from pipeline.io.spec import IngestParams, PlateIngestParams
from tests.io.test_platemap import write_plates

COORDS = (
    "plate",
    "well",
    "row",
    "column",
    "field",
    "day",
    "treatment",
    "concentration",
    "unit",
    "group",
    "edge",
)


def _files_params(index: Path, plate_map: Path, **kw: object) -> PlateIngestParams:
    return PlateIngestParams(index=str(index), plate_map=str(plate_map), **kw)  # type: ignore[arg-type]


def test_the_stage_is_registered_with_its_preflight_and_outputs() -> None:
    stage = default_registry().stage("ingest_plates")
    assert stage.params_model is PlateIngestParams
    assert stage.load() is ingest_plates
    assert stage.load_preflight() is check_plates
    assert "tables/plate_wells.parquet" in stage.outputs("ingest_plates", None)  # type: ignore[arg-type]
    assert default_registry().table("plate_wells").columns["n_valid"]


def test_a_job_spec_names_it_with_either_input(tmp_path: Path) -> None:
    job = parse_job(
        "name: screen\nstore: runs/screen\nstages:\n"
        "  - stage: ingest_plates\n"
        "    params: {index: data/index.csv, plate_map: data/plate_map.csv, plate_format: 384}\n"
    )
    params = job.step("ingest_plates").params
    assert isinstance(params, PlateIngestParams) and params.plate_format == 384
    assert params.exclude_edge and params.groups[0] == "untreated"
    with pytest.raises(JobSpecError, match="give either index"):
        parse_job(
            "name: screen\nstore: runs/screen\nstages:\n"
            "  - stage: ingest_plates\n    params: {index: a.csv, plate_map: b.csv, hcs: [c]}\n"
        )
    with pytest.raises(JobSpecError, match="plate_format"):
        parse_job(
            "name: screen\nstore: runs/screen\nstages:\n"
            "  - stage: ingest_plates\n    params: {hcs: [c], plate_format: 100}\n"
        )


def test_the_ingest_options_are_those_of_ingest() -> None:
    plate_only = {"index", "plate_map", "hcs", "plate_format", "exclude_edge", "groups"}
    assert set(PlateIngestParams.model_fields) - plate_only == set(IngestParams.model_fields) - {
        "sources"
    }
    for name in set(IngestParams.model_fields) - {"sources"}:
        assert (
            PlateIngestParams.model_fields[name].default == IngestParams.model_fields[name].default
        )


def test_files_in_give_plate_coordinates_tables_and_wells(client: Client, tmp_path: Path) -> None:
    index, plate_map, arrays = write_plates(tmp_path / "in")
    store = RunStore(str(tmp_path / "run"))
    counts = ingest_plates(RunContext(store, client), _files_params(index, plate_map))
    assert counts["images"] == 32 and counts["excluded"] == 8 and counts["quarantined"] == 0
    assert (counts["plates"], counts["wells"]) == (2, 10)
    ds = xr.open_zarr(store.zarr_url)
    assert ds["images"].dims == ("image", "y", "x") and ds["images"].dtype == np.uint16
    for name in COORDS:
        assert ds[name].dims == ("image",), name
    ids = [str(v) for v in ds["image_id"].values]
    assert ids[:3] == ["P01_B02_d07_f1", "P01_B02_d07_f2", "P01_B02_d08_f1"]
    np.testing.assert_array_equal(ds["images"].values, np.stack([arrays[i] for i in ids]))
    table = read_table(store, "images")
    assert list(table["image_id"]) == ids and set(table["format"]) == {"tiff"}
    wells = read_table(store, "plate_wells")
    assert len(wells) == 10 and wells["excluded"].sum() == 2
    inner = wells[~wells["excluded"]]
    assert (inner["n_images"] == 4).all() and (inner["n_valid"] == 4).all()
    assert load_manifest(store).collection["params"]["sources"] == [str(index), str(plate_map)]


def test_the_preflight_lists_every_problem_before_any_work(tmp_path: Path) -> None:
    index, plate_map, _ = write_plates(tmp_path / "in", plates=("P01",), fields=(1,))
    pm = pd.read_csv(plate_map)
    pm.loc[2, "group"] = "treated"
    pm.loc[3, "unit"] = np.nan
    pm.to_csv(plate_map, index=False)
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(PlateMapError) as info:
        check_plates(store, _files_params(index, plate_map))
    assert len(info.value.problems) == 2
    assert "row 3: group 'treated'" in str(info.value)
    assert "row 4: concentration 0.5 has no unit" in str(info.value)
    assert not store.exists()
    with pytest.raises(PlateMapError):
        ingest_plates(RunContext(store), _files_params(index, plate_map))
    assert not store.exists()


def _same_store(a: RunStore, b: RunStore) -> None:
    da, db = xr.open_zarr(a.zarr_url), xr.open_zarr(b.zarr_url)
    np.testing.assert_array_equal(da["images"].values, db["images"].values)
    assert da["images"].encoding["chunks"] == db["images"].encoding["chunks"]
    assert set(da.coords) == set(db.coords)
    for name in da.coords:
        if name != "source":
            np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)
    ta, tb = read_table(a, "images"), read_table(b, "images")
    pd.testing.assert_frame_equal(
        ta.drop(columns=["source", "format"]), tb.drop(columns=["source", "format"])
    )
    pd.testing.assert_frame_equal(read_table(a, "plate_wells"), read_table(b, "plate_wells"))
    ca, cb = load_manifest(a).collection, load_manifest(b).collection
    assert ca is not None and cb is not None
    assert (ca["shape"], ca["dtype"], ca["per_chunk"]) == (
        cb["shape"],
        cb["dtype"],
        cb["per_chunk"],
    )


def test_files_and_ome_zarr_give_the_same_store(client: Client, tmp_path: Path) -> None:
    index, plate_map, _ = write_plates(tmp_path / "in", shape=(24, 28))
    files = RunStore(str(tmp_path / "files"))
    # Small chunks, so that the stores have several.
    ingest_plates(RunContext(files), _files_params(index, plate_map, chunk_mb=0.01))
    exported = export_ome_zarr(files, tmp_path / "hcs", client=client)
    hcs = RunStore(str(tmp_path / "from_hcs"))
    params = PlateIngestParams(
        hcs=[str(tmp_path / "hcs")], plate_map=exported.plate_map, chunk_mb=0.01
    )
    check_plates(hcs, params)
    counts = ingest_plates(RunContext(hcs, client), params)
    assert counts["chunks"] > 1 and counts["images"] == 32
    _same_store(files, hcs)
    assert set(read_table(hcs, "images")["format"]) == {"ome-zarr"}
    assert str(xr.open_zarr(hcs.zarr_url)["source"].values[0]).endswith("P01.ome.zarr/B/2/0")


def test_384_well_plates_both_ways(tmp_path: Path) -> None:
    wells = {
        "A01": ("untreated", "", "", ""),
        "C05": ("untreated", "", "", ""),
        "O23": ("single", "drug", "10", "nM"),
        "P24": ("screening", "drug+other", "1", "nM"),
    }
    index, plate_map, _ = write_plates(
        tmp_path / "in", plates=("P01",), wells=wells, days=(7,), fields=(1,), shape=(16, 16)
    )
    files = RunStore(str(tmp_path / "files"))
    counts = ingest_plates(RunContext(files), _files_params(index, plate_map, plate_format=384))
    assert counts["images"] == 2 and counts["excluded"] == 2
    exported = export_ome_zarr(files, tmp_path / "hcs")
    import zarr

    meta = dict(zarr.open_group(exported.plates[0], mode="r").attrs)["ome"]["plate"]
    assert len(meta["rows"]) == 16 and len(meta["columns"]) == 24
    hcs = RunStore(str(tmp_path / "from_hcs"))
    ingest_plates(
        RunContext(hcs),
        PlateIngestParams(hcs=exported.plates, plate_map=exported.plate_map, plate_format=384),
    )
    _same_store(files, hcs)


def test_an_ome_zarr_plate_checked_against_its_plate_map(tmp_path: Path) -> None:
    index, plate_map, _ = write_plates(tmp_path / "in", plates=("P01",), fields=(1,))
    files = RunStore(str(tmp_path / "files"))
    ingest_plates(RunContext(files), _files_params(index, plate_map))
    exported = export_ome_zarr(files, tmp_path / "hcs")
    pm = pd.read_csv(exported.plate_map)
    pd.concat([pm, pm.iloc[[1]].assign(well="D07")]).to_csv(tmp_path / "map.csv", index=False)
    with pytest.raises(PlateMapError, match=r"row 6: plate P01 well D07 has no image in"):
        check_plates(
            RunStore(str(tmp_path / "x")),
            PlateIngestParams(hcs=exported.plates, plate_map=str(tmp_path / "map.csv")),
        )
    # Without a plate map the plate's own wells are the wells, with no treatments.
    bare = RunStore(str(tmp_path / "bare"))
    ingest_plates(RunContext(bare), PlateIngestParams(hcs=exported.plates))
    assert set(read_table(bare, "plate_wells")["group"]) == {""}


def test_a_rerun_resumes_and_writes_only_what_is_missing(tmp_path: Path) -> None:
    index, plate_map, _ = write_plates(tmp_path / "in", plates=("P01",))
    store = RunStore(str(tmp_path / "run"))
    params = _files_params(index, plate_map, chunk_mb=0.005)
    first = ingest_plates(RunContext(store), params)
    before = xr.open_zarr(store.zarr_url)["images"].values
    assert ingest_plates(RunContext(store), params)["chunks_written"] == 0
    store.remove("_progress/ingest/00000001.json")  # as if chunk 1 had been interrupted
    again = ingest_plates(RunContext(store), params)
    assert again["chunks_written"] == 1 and again["chunks"] == first["chunks"] > 1
    np.testing.assert_array_equal(xr.open_zarr(store.zarr_url)["images"].values, before)


def test_an_image_that_cannot_be_decoded_is_quarantined_and_its_well_flagged(
    tmp_path: Path,
) -> None:
    index, plate_map, _ = write_plates(tmp_path / "in", plates=("P01",), fields=(1,))
    idx = pd.read_csv(index)
    # B03 day 8: corrupt compressed data (the header reads fine, decoding fails).
    bad = tmp_path / "in" / idx.loc[(idx["well"] == "B03") & (idx["day"] == 8), "file"].iloc[0]
    tifffile.imwrite(bad, np.ones((32, 32), np.uint16), compression="zlib")
    with tifffile.TiffFile(bad) as tif:
        start, size = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data = bytearray(bad.read_bytes())
    data[start + 2 : start + size - 4] = b"\xab" * (size - 6)
    bad.write_bytes(bytes(data))
    # C02 day 7: not an image at all (refused by the header step).
    empty = tmp_path / "in" / idx.loc[(idx["well"] == "C02") & (idx["day"] == 7), "file"].iloc[0]
    empty.write_bytes(b"")
    store = RunStore(str(tmp_path / "run"))
    counts = ingest_plates(RunContext(store), _files_params(index, plate_map))
    assert counts["quarantined"] == 2 and counts["images"] == 7
    ds = xr.open_zarr(store.zarr_url)
    valid = dict(zip((str(v) for v in ds["image_id"].values), ds["valid"].values, strict=True))
    assert valid["P01_B03_d08_f1"] is np.False_ and sum(valid.values()) == 6
    quarantine = read_table(store, "quarantine")
    assert sorted(Path(p).name for p in quarantine["path"]) == sorted([bad.name, empty.name])
    wells = read_table(store, "plate_wells").set_index("well")
    assert tuple(wells.loc["B03", ["n_images", "n_ingested", "n_valid"]]) == (2, 2, 1)
    assert tuple(wells.loc["C02", ["n_images", "n_ingested", "n_valid"]]) == (2, 1, 1)
    assert tuple(wells.loc["B02", ["n_images", "n_ingested", "n_valid"]]) == (2, 2, 2)


def _one_plate_first(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Two plates' files, an index and a plate map of P01 alone (``one.csv``,
    ``one_map.csv``); returns those and the two-plate index and plate map."""
    index, plate_map, _ = write_plates(tmp_path / "in", plates=("P01", "P02"), fields=(1,))
    idx, pm = pd.read_csv(index), pd.read_csv(plate_map)
    one, one_map = tmp_path / "in" / "one.csv", tmp_path / "in" / "one_map.csv"
    idx[idx["plate"] == "P01"].to_csv(one, index=False)
    pm[pm["plate"] == "P01"].to_csv(one_map, index=False)
    return one, one_map, index, plate_map


def test_a_plate_added_to_the_index_grows_the_collection_by_its_images_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A screen gains plates over weeks: the second ingest reads and decodes only the new
    plate's images, and the store is the one a single ingest of both plates writes."""
    import pipeline.io.plates as plates_module

    one, one_map, index, plate_map = _one_plate_first(tmp_path)
    store = RunStore(str(tmp_path / "run"))
    # 32x32 uint16 images, three per chunk: P01's eight end in a chunk of two.
    first = ingest_plates(RunContext(store), _files_params(one, one_map, chunk_mb=0.007))
    assert first["images"] == 8 and first["chunks"] == 3
    seen: list[str] = []
    for name in ("read_header", "read_image"):
        real = getattr(plates_module, name)

        def spy(path: str, *args: object, _real: object = real) -> object:
            seen.append(Path(path).name)
            return _real(path, *args)  # type: ignore[operator]

        monkeypatch.setattr(plates_module, name, spy)
    shutil.copy(index, one)
    shutil.copy(plate_map, one_map)
    params = _files_params(one, one_map, chunk_mb=0.007)
    check_plates(store, params)  # not "another collection"
    counts = ingest_plates(RunContext(store), params)
    assert counts["images"] == 16 and counts["images_added"] == counts["images_written"] == 8
    assert counts["plates"] == 2 and {n.split("_")[0] for n in seen} == {"P02"}
    assert len(seen) == 16  # each new image: its header once, its pixels once
    once = RunStore(str(tmp_path / "once"))
    ingest_plates(RunContext(once), _files_params(index, plate_map, chunk_mb=0.007))
    xr.testing.assert_identical(store.open_dataset().load(), once.open_dataset().load())
    for table in ("plate_wells", "quarantine"):
        pd.testing.assert_frame_equal(read_table(store, table), read_table(once, table))
    assert read_table(store, "plate_wells")["n_valid"].sum() == 16


def test_a_changed_well_of_an_ingested_plate_is_another_collection(tmp_path: Path) -> None:
    one, one_map, index, plate_map = _one_plate_first(tmp_path)
    store = RunStore(str(tmp_path / "run"))
    ingest_plates(RunContext(store), _files_params(one, one_map, chunk_mb=0.007))
    shutil.copy(index, one)
    pm = pd.read_csv(plate_map)
    pm.loc[(pm["plate"] == "P01") & (pm["well"] == "B03"), "concentration"] = 99.0
    pm.to_csv(one_map, index=False)
    params = _files_params(one, one_map, chunk_mb=0.007)
    with pytest.raises(CollectionMismatchError, match="already holds a different collection"):
        check_plates(store, params)
    counts = ingest_plates(RunContext(store), params.model_copy(update={"overwrite": True}))
    assert counts["images"] == 16 and counts["chunks_written"] == counts["chunks"]
    assert counts["images_added"] == 0


def _job(store: Path, index: Path, plate_map: Path) -> str:
    return (
        f"name: screen\nstore: {store}\nstages:\n  - stage: ingest_plates\n"
        f"    params: {{index: {index}, plate_map: {plate_map}, chunk_mb: 0.005}}\n"
    )


def test_a_job_runs_the_preflight_first_and_skips_a_complete_step(
    client: Client, tmp_path: Path
) -> None:
    from pipeline.core.runner import run_job

    index, plate_map, _ = write_plates(tmp_path / "in", plates=("P01", "P02"), fields=(1,))
    idx, pm = pd.read_csv(index), pd.read_csv(plate_map)
    one, one_map = tmp_path / "in" / "one.csv", tmp_path / "in" / "one_map.csv"
    idx[idx["plate"] == "P01"].to_csv(one, index=False)
    pm[pm["plate"] == "P01"].assign(group="typo").to_csv(one_map, index=False)
    store = tmp_path / "run"
    with pytest.raises(PlateMapError, match="group 'typo'"):
        run_job(parse_job(_job(store, one, one_map)), client=client)
    assert not RunStore(str(store)).exists("store.zarr")
    pm[pm["plate"] == "P01"].to_csv(one_map, index=False)
    summary = run_job(parse_job(_job(store, one, one_map)), client=client)
    assert summary.ran == ["ingest_plates"] and summary.counts["ingest_plates"]["images"] == 8
    summary = run_job(parse_job(_job(store, one, one_map)), client=client)
    assert summary.skipped == ["ingest_plates"]
    # A second plate appended to the same files: the step's parameters are unchanged, its
    # inputs are not, so it runs again and adds the new plate's images.
    shutil.copy(index, one)
    shutil.copy(plate_map, one_map)
    summary = run_job(parse_job(_job(store, one, one_map)), client=client)
    assert summary.ran == ["ingest_plates"]
    assert summary.counts["ingest_plates"]["images_added"] == 8
    assert xr.open_zarr(RunStore(str(store)).zarr_url).sizes["image"] == 16
