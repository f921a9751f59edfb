"""Ingest: what it writes, what it sets aside, how it resumes."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.chunks import chunk_graph
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import CollectionMismatchError, IngestError
from pipeline.io.imagefiles import read_header
from pipeline.io.ingest import IngestParams, chunk_args, ingest_images, plan_collection, write_chunk
from tests.conftest import make_folder, raise_if_dask_computes, smooth_image, write_image


def _ingest(client: Client, store: Path, sources: list[Path], **kw: object) -> object:
    params = IngestParams(sources=[str(s) for s in sources], **kw)  # type: ignore[arg-type]
    return ingest_images(RunContext(RunStore(str(store)), client), params)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(1, 9),
    h=st.integers(1, 19),
    w=st.integers(1, 19),
    channels=st.sampled_from([0, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    per_chunk=st.integers(1, 4),
)
def test_store_round_trip(
    client: Client, n: int, h: int, w: int, channels: int, dtype: type, per_chunk: int
) -> None:
    """What ingest writes opens with xarray.open_zarr: dims, dtype, chunks, coords, values."""
    shape = (h, w, channels) if channels else (h, w)
    suffix = ".tif" if dtype == np.uint16 and channels else ".png"
    with tempfile.TemporaryDirectory() as d:
        src = Path(d, "in")
        arrays = make_folder(src, n, shape=shape, suffix=suffix, dtype=dtype)
        image_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        chunk_mb = (per_chunk + 0.5) * image_bytes / 1e6  # half an image of slack for rounding
        _ingest(client, Path(d, "run"), [src], chunk_mb=chunk_mb)
        ds = xr.open_zarr(Path(d, "run", "store.zarr"))
        assert ds["images"].dims == ("image", "y", "x", "channel")[: 1 + len(shape)]
        assert ds["images"].dtype == dtype
        assert ds["images"].shape == (n, *shape)
        assert ds["images"].encoding["chunks"][0] == per_chunk
        assert [str(v) for v in ds["image_id"].values] == [f"img{i:03d}" for i in range(n)]
        assert [Path(str(v)).name for v in ds["source"].values] == [
            f"img{i:03d}{suffix}" for i in range(n)
        ]
        assert ds["valid"].values.all()
        np.testing.assert_array_equal(ds["images"].values, np.stack(arrays))


def test_zstd_compressed_and_about_32mb_chunks_by_default(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 3, shape=(40, 30, 3))
    _ingest(client, tmp_path / "run", [tmp_path / "in"])
    arr = RunStore(str(tmp_path / "run")).open_array("images", mode="r")
    assert [type(c).__name__ for c in arr.compressors] == ["ZstdCodec"]
    assert arr.metadata.zarr_format == 3
    # 32 MB of 40x30x3 uint8 images is 8888 images: the 3 images fit in one chunk.
    assert arr.chunks == (8888, 40, 30, 3)


def test_metadata_manifest_becomes_coordinates(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "plate", 4, suffix=".tif")
    pd.DataFrame(
        {
            "path": [f"plate/img{i:03d}.tif" for i in range(4)],
            "plate": ["P1"] * 4,
            "well": ["B02", "B03", "C02", "C03"],
            "row": ["B", "B", "C", "C"],
            "column": [2, 3, 2, 3],
            "field": [1, 1, 1, 1],
            "day": [7, 7, 8, 8],
            "treatment": ["untreated", "drugA", "untreated", "drugA"],
            "concentration": [0.0, 1.5, 0.0, 1.5],
        }
    ).to_csv(tmp_path / "plate.csv", index=False)
    _ingest(client, tmp_path / "run", [tmp_path / "plate.csv"])
    ds = xr.open_zarr(tmp_path / "run" / "store.zarr")
    for name in ("plate", "well", "row", "column", "field", "day", "treatment", "concentration"):
        assert name in ds.coords, name
    assert [str(v) for v in ds["well"].values] == ["B02", "B03", "C02", "C03"]
    assert ds["day"].values.tolist() == [7, 7, 8, 8]
    assert ds["concentration"].values.tolist() == [0.0, 1.5, 0.0, 1.5]
    table = read_table(RunStore(str(tmp_path / "run")), "images")
    assert table["treatment"].tolist() == ["untreated", "drugA", "untreated", "drugA"]


def _bad_folder(folder: Path) -> dict[str, str]:
    """Good JPEG/PNG/TIFF files plus every kind of bad one; returns bad name -> reason."""
    rng = np.random.default_rng(3)
    for i, suffix in enumerate([".jpg", ".png", ".tif", ".jpg", ".png"]):
        write_image(folder / f"good{i}{suffix}", smooth_image(rng, (32, 32, 3), np.uint8))
    good = (folder / "good0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG")
    write_image(folder / "other_size.png", smooth_image(rng, (20, 24, 3), np.uint8))
    return {
        "truncated.jpg": "truncated JPEG",
        "zero.jpg": "empty file",
        "text.jpg": "not an image",
        "other_size.png": "size 20x24 differs",
    }


def test_bad_files_are_quarantined_and_the_rest_ingested(client: Client, tmp_path: Path) -> None:
    bad = _bad_folder(tmp_path / "in")
    result = _ingest(client, tmp_path / "run", [tmp_path / "in"], shape_policy="quarantine")
    store = RunStore(str(tmp_path / "run"))
    ds = store.open_dataset()
    assert sorted(Path(str(s)).name for s in ds["source"].values) == [
        "good0.jpg",
        "good1.png",
        "good2.tif",
        "good3.jpg",
        "good4.png",
    ]
    q = read_table(store, "quarantine")
    reasons = {Path(p).name: r for p, r in zip(q["path"], q["reason"], strict=True)}
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert result["quarantined"] == len(bad)


def test_shape_policy_error_lists_shapes_and_files_and_writes_nothing(
    client: Client, tmp_path: Path
) -> None:
    _bad_folder(tmp_path / "in")
    with pytest.raises(IngestError) as exc:
        _ingest(client, tmp_path / "run", [tmp_path / "in"])
    msg = str(exc.value)
    assert "size 32x32: 5 file(s)" in msg
    assert "size 20x24: 1 file(s)" in msg and "other_size.png" in msg
    assert "--shape-policy" in msg
    assert not (tmp_path / "run" / "store.zarr").exists()


@pytest.mark.parametrize(
    ("policy", "shape", "expected"),
    [("resize", None, (32, 32)), ("pad", None, (32, 32)), ("resize", (16, 20), (16, 20))],
)
def test_resize_and_pad_bring_every_image_to_one_size(
    client: Client,
    tmp_path: Path,
    policy: str,
    shape: tuple[int, int] | None,
    expected: tuple[int, int],
) -> None:
    rng = np.random.default_rng(0)
    small = smooth_image(rng, (20, 24, 3), np.uint8)
    for i in range(3):
        write_image(tmp_path / "in" / f"a{i}.png", smooth_image(rng, (32, 32, 3), np.uint8))
    write_image(tmp_path / "in" / "b.png", small)
    _ingest(client, tmp_path / "run", [tmp_path / "in"], shape_policy=policy, shape=shape)
    ds = xr.open_zarr(tmp_path / "run" / "store.zarr")
    assert ds["images"].shape == (4, *expected, 3)
    last = ds["images"].values[3]
    if policy == "pad":
        np.testing.assert_array_equal(last[6:26, 4:28], small)
        assert last[:6].sum() == 0 and last[:, :4].sum() == 0


def test_mode_policies_for_mixed_gray_and_rgb(client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "a.png", smooth_image(rng, (8, 8, 3), np.uint8))
    write_image(tmp_path / "in" / "b.png", smooth_image(rng, (8, 8), np.uint8))
    with pytest.raises(IngestError, match=r"mix channels.*--mode"):
        _ingest(client, tmp_path / "keep", [tmp_path / "in"])
    _ingest(client, tmp_path / "gray", [tmp_path / "in"], mode="gray")
    assert xr.open_zarr(tmp_path / "gray" / "store.zarr")["images"].shape == (2, 8, 8)
    _ingest(client, tmp_path / "rgb", [tmp_path / "in"], mode="rgb")
    assert xr.open_zarr(tmp_path / "rgb" / "store.zarr")["images"].shape == (2, 8, 8, 3)


def test_corrupt_data_found_at_decode_is_quarantined_and_marked_invalid(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "in", 3, shape=(64, 64, 3))
    p = tmp_path / "in" / "img001.png"
    data = p.read_bytes()
    p.write_bytes(data[:100] + bytes(300) + data[400:])  # header and IEND intact
    result = _ingest(client, tmp_path / "run", [tmp_path / "in"])
    store = RunStore(str(tmp_path / "run"))
    ds = store.open_dataset()
    assert ds["valid"].values.tolist() == [True, False, True]
    assert ds["images"].values[1].sum() == 0
    q = read_table(store, "quarantine")
    assert [Path(x).name for x in q["path"]] == ["img001.png"]
    assert "cannot decode PNG" in q["reason"].iloc[0]
    assert result["quarantined"] == 1


def test_building_the_write_graph_computes_nothing_and_carries_no_pixels(
    tmp_path: Path,
) -> None:
    make_folder(tmp_path / "in", 6, shape=(64, 64, 3))
    infos = [read_header(str(p)) for p in sorted((tmp_path / "in").iterdir())]
    params = IngestParams(sources=[str(tmp_path / "in")], chunk_mb=0.03)
    kept, shape, dtype, _ = plan_collection(infos, params)
    from pipeline.io.ingest import IngestPlan

    plan = IngestPlan(
        files=tuple(i.path for i in kept),
        formats=tuple(i.format for i in kept),
        shape=shape,
        dtype=dtype,
        per_chunk=2,
        quarantine=(),
    )
    store = RunStore(str(tmp_path / "run"))
    with raise_if_dask_computes() as counter:
        tasks = chunk_graph(store, "ingest", write_chunk, chunk_args(plan, params, range(3)))
    assert counter.total_computes == 0
    assert len(tasks) == 3
    graph_bytes = sum(len(pickle.dumps(dict(t.__dask_graph__()))) for t in tasks)
    pixel_bytes = 6 * 64 * 64 * 3
    assert graph_bytes < pixel_bytes / 10


def test_same_ingest_twice_writes_nothing_the_second_time(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 5)
    first = _ingest(client, tmp_path / "run", [tmp_path / "in"], chunk_mb=0.002)
    again = _ingest(client, tmp_path / "run", [tmp_path / "in"], chunk_mb=0.002)
    assert first["chunks_written"] == first["chunks"] > 1
    assert again["chunks_written"] == 0


def test_a_store_holding_another_collection_is_refused_then_overwritten(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "a", 3, seed=1)
    make_folder(tmp_path / "b", 4, seed=2)
    _ingest(client, tmp_path / "run", [tmp_path / "a"])
    before = (tmp_path / "run" / "store.zarr" / "images" / "zarr.json").read_bytes()
    with pytest.raises(CollectionMismatchError, match="--overwrite"):
        _ingest(client, tmp_path / "run", [tmp_path / "b"])
    # Nothing already written was lost.
    assert (tmp_path / "run" / "store.zarr" / "images" / "zarr.json").read_bytes() == before
    assert xr.open_zarr(tmp_path / "run" / "store.zarr")["images"].shape[0] == 3
    _ingest(client, tmp_path / "run", [tmp_path / "b"], overwrite=True)
    assert xr.open_zarr(tmp_path / "run" / "store.zarr")["images"].shape[0] == 4


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_killed_ingest_resumes_to_the_same_bytes_as_a_clean_run(
    client: Client, tmp_path: Path
) -> None:
    """A real `pipeline ingest` process is killed mid-way; the rerun equals a clean run."""
    n = 400
    make_folder(tmp_path / "in", n, shape=(96, 96, 3))
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "ingest",
        str(tmp_path / "in"),
        "--store",
        str(tmp_path / "killed"),
        "--chunk-mb",
        "0.03",
        "--workers",
        "1",
        "--threads-per-worker",
        "1",
        "--dashboard-address",
        ":0",
        "-q",
    ]
    proc = subprocess.Popen(
        args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    markers = tmp_path / "killed" / "_progress" / "ingest"
    deadline = time.monotonic() + 120
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        written = len(list(markers.glob("*.json"))) if markers.exists() else 0
        if written >= 20:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 20 <= written < n, f"could not kill mid-way ({written} of {n} chunks written)"
    assert len(list(markers.glob("*.json"))) < n

    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _ingest(client, tmp_path / "clean", [tmp_path / "in"], chunk_mb=0.03)
    killed, clean = (
        _tree_bytes(tmp_path / "killed" / "store.zarr"),
        _tree_bytes(tmp_path / "clean" / "store.zarr"),
    )
    assert killed.keys() == clean.keys()
    assert all(killed[k] == clean[k] for k in clean)
    for table in ("images", "quarantine"):
        pd.testing.assert_frame_equal(
            read_table(RunStore(str(tmp_path / "killed")), table),
            read_table(RunStore(str(tmp_path / "clean")), table),
        )


def test_explicit_shape_under_policy_error_says_what_to_choose(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "in", 2, shape=(24, 20, 3))
    with pytest.raises(IngestError, match="are 24x20 but shape asks for 10x10"):
        _ingest(client, tmp_path / "run", [tmp_path / "in"], shape=(10, 10))


def test_relative_globs_resolve_against_the_working_directory(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(tmp_path / "in", 3)
    monkeypatch.chdir(tmp_path)
    params = IngestParams(sources=["in/img00[12].png"])
    result = ingest_images(RunContext(RunStore("run"), client), params)
    assert result["images"] == 2
    ds = xr.open_zarr(tmp_path / "run" / "store.zarr")
    assert [Path(str(s)) for s in ds["source"].values] == [
        tmp_path / "in" / "img001.png",
        tmp_path / "in" / "img002.png",
    ]


def test_a_store_can_be_an_fsspec_url(client: Client, tmp_path: Path) -> None:
    """memory:// stands in for s3:// and the like (in-process client: one memory)."""
    arrays = make_folder(tmp_path / "in", 4)
    store = RunStore(f"memory://pipeline-tests/{tmp_path.name}")
    ingest_images(
        RunContext(store, client), IngestParams(sources=[str(tmp_path / "in")], chunk_mb=0.002)
    )
    ds = store.open_dataset()
    np.testing.assert_array_equal(ds["images"].values, np.stack(arrays))
    assert read_table(store, "images")["image_id"].tolist() == [f"img{i:03d}" for i in range(4)]
    assert len(store.done_markers("ingest")) == 4


def test_rerunning_a_complete_ingest_lists_each_quarantined_file_once(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "in", 3, shape=(64, 64, 3))
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    p = tmp_path / "in" / "img001.png"
    data = p.read_bytes()
    p.write_bytes(data[:100] + bytes(300) + data[400:])  # fails only when decoded
    for _ in range(2):
        result = _ingest(client, tmp_path / "run", [tmp_path / "in"])
    assert result["quarantined"] == 2
    store = RunStore(str(tmp_path / "run"))
    names = sorted(Path(x).name for x in read_table(store, "quarantine")["path"])
    assert names == ["empty.png", "img001.png"]
    from pipeline.core.manifest import load_manifest

    assert sorted(Path(q.path).name for q in load_manifest(store).quarantine) == names


def test_a_resumed_ingest_removes_the_temporaries_a_killed_writer_left(
    client: Client, tmp_path: Path
) -> None:
    """zarr writes ``<chunk>.<hex>.partial`` then renames it; kill -9 in between leaves it."""
    make_folder(tmp_path / "in", 4)
    _ingest(client, tmp_path / "clean", [tmp_path / "in"], chunk_mb=0.002)
    _ingest(client, tmp_path / "run", [tmp_path / "in"], chunk_mb=0.002)
    zarr_dir = tmp_path / "run" / "store.zarr"
    (tmp_path / "run" / "_progress" / "ingest" / "00000002.json").unlink()  # chunk 2 "killed"
    hexname = "0123456789abcdef0123456789abcdef"
    stale = [
        zarr_dir / "images" / "c" / "2" / "0" / "0" / f"0.{hexname}.partial",
        zarr_dir / "valid" / "c" / f"2.{hexname}.partial",
        zarr_dir / "images" / f"zarr.{hexname}.partial",
    ]
    # Only zarr's pattern inside the arrays being written is touched.
    kept = [zarr_dir / "images" / "c" / "notes.partial", zarr_dir / f"zarr.{hexname}.partial"]
    for p in stale + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a chunk")
    result = _ingest(client, tmp_path / "run", [tmp_path / "in"], chunk_mb=0.002)
    assert result["chunks_written"] == 1
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    for p in kept:
        p.unlink()
    assert _tree_bytes(zarr_dir) == _tree_bytes(tmp_path / "clean" / "store.zarr")


def test_the_source_column_holds_the_resolved_path_of_a_manifest_row(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "blobs", 2)
    (tmp_path / "plate").mkdir()
    (tmp_path / "plate" / "A01.png").symlink_to(tmp_path / "blobs" / "img000.png")
    pd.DataFrame({"path": ["A01.png", "../blobs/img001.png"]}).to_csv(
        tmp_path / "plate" / "m.csv", index=False
    )
    _ingest(client, tmp_path / "run", [tmp_path / "plate" / "m.csv"])
    store = RunStore(str(tmp_path / "run"))
    real = str((tmp_path / "blobs").resolve())
    # In the order of the paths as given ("<plate>/../blobs/img001.png" first).
    expected = [f"{real}/img001.png", f"{real}/img000.png"]
    assert read_table(store, "images")["source"].tolist() == expected
    assert [str(s) for s in store.open_dataset()["source"].values] == expected
    assert read_table(store, "images")["image_id"].tolist() == ["img001", "A01"]


def test_an_overwrite_whose_sources_cannot_be_ingested_keeps_the_old_collection(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "a", 3, seed=1)
    _ingest(client, tmp_path / "run", [tmp_path / "a"])
    before = _tree_bytes(tmp_path / "run" / "store.zarr")
    make_folder(tmp_path / "b", 2, shape=(10, 10, 3))
    make_folder(tmp_path / "b" / "other", 1, shape=(12, 10, 3))
    with pytest.raises(IngestError, match="differ in size"):
        _ingest(client, tmp_path / "run", [tmp_path / "b"], overwrite=True)
    assert _tree_bytes(tmp_path / "run" / "store.zarr") == before
