"""Growing a collection: sources that extend the store's collection add only their images."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client

import pipeline.io.ingest as ingest_module
from pipeline.core.context import RunContext
from pipeline.core.manifest import load_manifest
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import CollectionMismatchError, IngestError, StageError
from pipeline.io.ingest import IngestParams, check_ingest, ingest_images
from tests.conftest import make_folder, write_image

SHAPE = (24, 20, 3)
#: Two images per chunk: five images end in a half-full chunk.
CHUNK_MB = 2.5 * int(np.prod(SHAPE)) / 1e6


def _params(sources: list[Path], **kw: Any) -> IngestParams:
    return IngestParams(sources=[str(s) for s in sources], chunk_mb=CHUNK_MB, **kw)


def _ingest(store: Path, sources: list[Path], **kw: Any) -> dict[str, int]:
    return dict(ingest_images(RunContext(RunStore(str(store))), _params(sources, **kw)))


def _split_folder(tmp_path: Path, n_old: int, n_new: int) -> tuple[Path, list[Path]]:
    """``in/`` with the first ``n_old`` of ``n_old + n_new`` images; the rest wait in
    ``later/`` (moved in, unchanged, when the collection grows)."""
    make_folder(tmp_path / "all", n_old + n_new, shape=SHAPE)
    (tmp_path / "in").mkdir()
    (tmp_path / "later").mkdir()
    for i in range(n_old + n_new):
        name = f"img{i:03d}.png"
        shutil.move(tmp_path / "all" / name, tmp_path / ("in" if i < n_old else "later") / name)
    return tmp_path / "in", sorted((tmp_path / "later").iterdir())


def _add(folder: Path, files: list[Path]) -> None:
    for f in files:
        shutil.move(f, folder / f.name)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The files whose header the ingest reads, and those it decodes (in this process)."""
    calls: dict[str, list[str]] = {"header": [], "read": []}

    def spy(kind: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(path: str, *args: Any) -> Any:
            calls[kind].append(Path(path).name)
            return func(path, *args)

        return wrapped

    monkeypatch.setattr(ingest_module, "read_header", spy("header", ingest_module.read_header))
    monkeypatch.setattr(ingest_module, "read_image", spy("read", ingest_module.read_image))
    return calls


def test_files_added_to_the_folder_grow_the_collection_decoding_only_them(
    tmp_path: Path, recorded: dict[str, list[str]]
) -> None:
    folder, later = _split_folder(tmp_path, 5, 3)
    first = _ingest(tmp_path / "run", [folder])
    assert first["images"] == 5 and first["images_added"] == 0
    recorded["header"].clear()
    recorded["read"].clear()
    _add(folder, later)
    grown = _ingest(tmp_path / "run", [folder])
    assert grown["images"] == 8 and grown["images_added"] == 3 and grown["images_written"] == 3
    # The half-full last chunk keeps its image: only the new files are read at all.
    assert recorded["header"] == recorded["read"] == ["img005.png", "img006.png", "img007.png"]
    # The same store as one ingest of all eight.
    _ingest(tmp_path / "once", [folder])
    run, once = RunStore(str(tmp_path / "run")), RunStore(str(tmp_path / "once"))
    xr.testing.assert_identical(run.open_dataset().load(), once.open_dataset().load())
    pd.testing.assert_frame_equal(read_table(run, "images"), read_table(once, "images"))
    for name in ("images", "valid"):
        chunks = sorted((tmp_path / "once" / "store.zarr" / name / "c").rglob("*"))
        for chunk in (c for c in chunks if c.is_file()):
            twin = tmp_path / "run" / chunk.relative_to(tmp_path / "once")
            assert twin.read_bytes() == chunk.read_bytes(), twin
    assert load_manifest(run).collection["grown"][0]["from"] == 5  # type: ignore[index]
    again = _ingest(tmp_path / "run", [folder])
    assert again["images_written"] == 0 and again["images_added"] == 0


def test_new_files_come_after_the_collection_whatever_their_names(
    tmp_path: Path, recorded: dict[str, list[str]]
) -> None:
    folder, _ = _split_folder(tmp_path, 3, 0)
    _ingest(tmp_path / "run", [folder])
    new = write_image(folder / "a_first.png", np.full(SHAPE, 7, np.uint8))
    recorded["read"].clear()
    _ingest(tmp_path / "run", [folder])
    assert recorded["read"] == [new.name]
    ds = RunStore(str(tmp_path / "run")).open_dataset()
    assert [str(v) for v in ds["image_id"].values] == ["img000", "img001", "img002", "a_first"]
    assert (ds["images"].values[3] == 7).all() and ds["valid"].values.all()


def test_a_changed_old_file_is_another_collection_and_nothing_is_lost(tmp_path: Path) -> None:
    folder, later = _split_folder(tmp_path, 4, 1)
    _ingest(tmp_path / "run", [folder])
    before = (tmp_path / "run" / "store.zarr" / "images" / "zarr.json").read_bytes()
    _add(folder, later)
    old = folder / "img001.png"
    os.utime(old, (1_000_000_000, 1_000_000_000))  # "modified": a different file now
    with pytest.raises(CollectionMismatchError, match="already holds a different collection"):
        check_ingest(RunStore(str(tmp_path / "run")), _params([folder]))
    with pytest.raises(CollectionMismatchError, match="--overwrite"):
        _ingest(tmp_path / "run", [folder])
    assert (tmp_path / "run" / "store.zarr" / "images" / "zarr.json").read_bytes() == before
    assert _ingest(tmp_path / "run", [folder], overwrite=True)["images"] == 5


def test_changed_options_are_another_collection(tmp_path: Path) -> None:
    folder, later = _split_folder(tmp_path, 3, 1)
    _ingest(tmp_path / "run", [folder])
    _add(folder, later)
    with pytest.raises(CollectionMismatchError, match="options differ: mode"):
        _ingest(tmp_path / "run", [folder], mode="gray")


def test_a_new_file_that_cannot_join_stops_before_anything_is_written(tmp_path: Path) -> None:
    folder, _ = _split_folder(tmp_path, 3, 0)
    _ingest(tmp_path / "run", [folder])
    store = RunStore(str(tmp_path / "run"))
    before = {
        p: (tmp_path / "run" / p).read_bytes()
        for p in ("manifest.json", "store.zarr/zarr.json", "tables/images.parquet")
    }
    write_image(folder / "img900.png", np.zeros((30, 20, 3), np.uint8))
    with pytest.raises(IngestError, match=r"collection's 24x20 images: .*img900.png \(30x20\)"):
        _ingest(tmp_path / "run", [folder])
    assert {p: (tmp_path / "run" / p).read_bytes() for p in before} == before
    assert store.open_dataset().sizes["image"] == 3
    # Under the quarantine policy the odd file is set aside and the rest still grows it.
    (folder / "img900.png").unlink()
    _ingest(tmp_path / "run2", [folder], shape_policy="quarantine")
    write_image(folder / "img900.png", np.zeros((30, 20, 3), np.uint8))
    make_folder(tmp_path / "more", 1, shape=SHAPE, seed=5)
    shutil.move(tmp_path / "more" / "img000.png", folder / "img901.png")
    counts = _ingest(tmp_path / "run2", [folder], shape_policy="quarantine")
    assert counts["images"] == 4 and counts["quarantined"] == 1
    quarantine = read_table(RunStore(str(tmp_path / "run2")), "quarantine")
    assert [Path(p).name for p in quarantine["path"]] == ["img900.png"]


def test_an_interrupted_growth_resumes_to_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, later = _split_folder(tmp_path, 5, 4)
    _ingest(tmp_path / "run", [folder])
    _add(folder, later)
    real = ingest_module.read_image

    def failing(path: str, *args: Any) -> np.ndarray:
        if Path(path).name == "img008.png":
            raise RuntimeError("worker lost")
        return real(path, *args)

    monkeypatch.setattr(ingest_module, "read_image", failing)
    with pytest.raises(RuntimeError, match="worker lost"):
        _ingest(tmp_path / "run", [folder])
    monkeypatch.setattr(ingest_module, "read_image", real)
    resumed = _ingest(tmp_path / "run", [folder])
    assert resumed["images"] == 9 and resumed["images_written"] == 1
    _ingest(tmp_path / "once", [folder])
    run, once = RunStore(str(tmp_path / "run")), RunStore(str(tmp_path / "once"))
    xr.testing.assert_identical(run.open_dataset().load(), once.open_dataset().load())
    pd.testing.assert_frame_equal(read_table(run, "images"), read_table(once, "images"))


def test_new_metadata_may_widen_a_column(tmp_path: Path) -> None:
    make_folder(tmp_path / "img", 4, shape=SHAPE, suffix=".tif")
    rows = pd.DataFrame(
        {
            "path": [f"img/img{i:03d}.tif" for i in range(4)],
            "well": ["B02", "B03", "C02", "C03"],
            "concentration": [0, 1, 2, 0.5],
        }
    )
    manifest = tmp_path / "plate.csv"
    rows.iloc[:3].astype({"concentration": int}).to_csv(manifest, index=False)
    _ingest(tmp_path / "run", [manifest])
    rows.to_csv(manifest, index=False)  # the old rows now read 0.0, 1.0, 2.0: the same values
    counts = _ingest(tmp_path / "run", [manifest])
    assert counts["images_added"] == 1
    ds = RunStore(str(tmp_path / "run")).open_dataset()
    assert ds["concentration"].values.tolist() == [0.0, 1.0, 2.0, 0.5]
    rows.assign(well=["B02", "XXX", "C02", "C03"]).to_csv(manifest, index=False)
    with pytest.raises(CollectionMismatchError):
        _ingest(tmp_path / "run", [manifest])


def test_a_forced_ingest_reads_everything_again(
    tmp_path: Path, recorded: dict[str, list[str]]
) -> None:
    folder, later = _split_folder(tmp_path, 3, 1)
    _ingest(tmp_path / "run", [folder])
    _add(folder, later)
    recorded["read"].clear()
    store = RunStore(str(tmp_path / "run"))
    ctx = RunContext(store, forced=True)
    counts = ingest_images(ctx, _params([folder]))
    assert counts["images_written"] == 4 and len(recorded["read"]) == 4
    assert counts["images_added"] == 0


def test_a_job_reruns_its_ingest_when_files_are_added(client: Client, tmp_path: Path) -> None:
    from pipeline.core.jobs import parse_job
    from pipeline.core.runner import run_job

    folder, later = _split_folder(tmp_path, 3, 1)
    spec = (
        f"name: grow\nstore: {tmp_path / 'run'}\ninput:\n  sources: [{folder}]\n"
        f"  chunk_mb: {CHUNK_MB}\nstages: []\n"
    )
    job = parse_job(spec)
    assert run_job(job, client=client).ran == ["ingest"]
    assert run_job(job, client=client).skipped == ["ingest"]
    # The job's parameters are the same; its inputs are not.
    _add(folder, later)
    summary = run_job(job, client=client)
    assert summary.ran == ["ingest"] and summary.counts["ingest"]["images_added"] == 1
    assert run_job(job, client=client).skipped == ["ingest"]
    write_image(folder / "img900.png", np.zeros((30, 20, 3), np.uint8))
    with pytest.raises(StageError, match="differ in size"):
        run_job(job, client=client)
    assert RunStore(str(tmp_path / "run")).open_dataset().sizes["image"] == 4
