"""The run store's building blocks: atomic files, markers, manifest, documented tables."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.manifest import Manifest, QuarantineEntry, load_manifest, save_manifest
from pipeline.core.store import RunStore, config_key
from pipeline.core.tables import documented_tables, read_table, write_table
from pipeline.errors import StoreError


def test_relative_and_file_urls_resolve_to_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert RunStore("runs/a").url == RunStore(f"file://{tmp_path}/runs/a").url
    assert RunStore("runs/a").zarr_url == f"{tmp_path}/runs/a/store.zarr"


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path))
    store.write_bytes("x/y.bin", b"1")
    store.write_bytes("x/y.bin", b"22")
    assert store.read_bytes("x/y.bin") == b"22"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["y.bin"]


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.integers(0, 10_000), st.lists(st.text(max_size=20), max_size=3)))
def test_markers_round_trip(markers: dict[int, list[str]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        for key, value in markers.items():
            store.mark_done("t", key, {"v": value})
        assert store.done_markers("t") == {k: {"v": v} for k, v in markers.items()}
        store.clear_markers("t")
        assert store.done_markers("t") == {}


def test_manifest_round_trip_and_versions(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path))
    assert load_manifest(store) == Manifest()
    m = Manifest(quarantine=[QuarantineEntry(path="/a.jpg", reason="empty file (0 bytes)")])
    save_manifest(store, m)
    back = load_manifest(store)
    assert back.quarantine == m.quarantine
    assert {"python", "numpy", "dask", "zarr"} <= set(back.versions)


def test_a_foreign_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"something": "else"}')
    with pytest.raises(StoreError, match="not a pipeline manifest"):
        load_manifest(RunStore(str(tmp_path)))


def test_tables_are_documented_and_enforced(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path))
    for schema in documented_tables().values():
        assert schema.description and all(schema.columns.values())
    ok = pd.DataFrame({"path": ["a"], "reason": ["b"], "stage": ["ingest"]})
    write_table(store, "quarantine", ok)
    pd.testing.assert_frame_equal(read_table(store, "quarantine"), ok)
    with pytest.raises(StoreError, match="missing columns"):
        write_table(store, "quarantine", ok.drop(columns=["stage"]))
    with pytest.raises(StoreError, match="undocumented columns"):
        write_table(store, "quarantine", ok.assign(extra=1))
    with pytest.raises(StoreError, match="unknown table"):
        write_table(store, "nope", ok)
    with pytest.raises(StoreError, match="run the stage that writes it"):
        read_table(RunStore(str(tmp_path / "empty")), "images")


def test_open_dataset_before_ingest_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="pipeline ingest"):
        RunStore(str(tmp_path)).open_dataset()


def test_task_configuration_decides_what_a_rerun_reuses(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    ds = xr.Dataset({"a": (("i",), da.zeros(4, chunks=2))})
    store.write_template(ds, {}, mode="a")
    key = config_key({"size": 3})
    assert config_key({"size": 3}) == key != config_key({"size": 4})
    assert not store.task_matches("t", key, "a")  # never started
    store.mark_done("t", 0, {})
    store.record_task("t", key)
    assert store.task_matches("t", key, "a") and store.task_key("t") == key
    assert not store.task_matches("t", config_key({"size": 4}), "a")
    store.reset_task("t", ["a"])
    assert store.done_markers("t") == {} and not store.has_array("a") and store.task_key("t") == ""
