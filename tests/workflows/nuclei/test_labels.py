"""Nuclei labels of a chunked mask, block by block: the same labels as the whole plane, on
masks whose chunk faces and corners cut through nuclei, split clusters and big components,
in 2-D and 3-D, here and on a process cluster, and after a killed run resumes."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from skimage.draw import disk, line
from skimage.measure import regionprops
from skimage.morphology import dilation, footprint_rectangle

from pipeline.core.chunks import prepare_array
from pipeline.core.store import RunStore
from pipeline.errors import StoreError
from pipeline.imaging.instances import instance_labels
from pipeline.synth.nuclei import render_nuclei
from pipeline.workflows.nuclei.labels import LABEL_COLUMNS, label_nuclei

SHAPE = (128, 160)  # 4 x 4 blocks of 32 x 40 px
CHUNKS = (32, 40)
EXTENT = 24


def _plane(seed: int) -> np.ndarray:
    """Nuclei below; touching pairs cut by block faces; a thick snake over five blocks,
    through a block corner; two 1-px diagonals through block corners, one object each only
    when 8-connected (joined across the corner alone)."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[64:, :128] = render_nuclei(seed, size=128).labels[64:] > 0
    for cy, cx in [(32, 14), (64, 140), (96, 150)]:
        mask[disk((cy - 3, cx - 3), 5.5, shape=SHAPE)] = True
        mask[disk((cy + 3, cx + 4), 4.5, shape=SHAPE)] = True
    snake = np.zeros(SHAPE, dtype=bool)
    points = [(4, 50), (4, 150), (26, 150), (26, 126), (44, 108), (50, 108), (50, 150)]
    for (y0, x0), (y1, x1) in itertools.pairwise(points):
        snake[line(y0, x0, y1, x1)] = True
    mask |= dilation(snake, footprint_rectangle((3, 3)))
    t = np.arange(30)
    mask[17 + t, 25 + t] = True  # through (31, 39) | (32, 40): block (0, 0) to (1, 1)
    mask[17 + t, 94 - t] = True  # through (31, 80) | (32, 79): block (0, 2) to (1, 1)
    return mask


def _put(store: RunStore, name: str, data: np.ndarray, dims: tuple[str, ...]) -> None:
    chunks = (*(1,) * (data.ndim - 2 - (dims[-1] == "channel")), *CHUNKS)
    chunks = chunks + data.shape[len(chunks) :]
    prepare_array(
        store,
        task=f"put-{name}",
        name=name,
        dims=dims,
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        config={"test": name},
    )
    store.open_array(name)[...] = data


def _store(tmp_path: Path, planes: int | None, seed: int = 0) -> tuple[RunStore, np.ndarray]:
    store = RunStore(str(tmp_path / "run"))
    if planes is None:
        mask = _plane(seed).astype(np.uint8) * 255
        _put(store, "mask", mask, ("mosaic_y", "mosaic_x"))
    else:
        mask = np.stack([_plane(seed + i) for i in range(planes)]).astype(np.uint8)
        _put(store, "mask", mask, ("image", "y", "x"))
    return store, mask


def _whole(mask: np.ndarray, connectivity: int) -> np.ndarray:
    planes = mask[None] if mask.ndim == 2 else mask
    out = [instance_labels(p, max_extent=EXTENT, connectivity=connectivity) for p in planes]
    return np.stack(out).reshape(mask.shape)


def _bijection(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """The one-to-one map of ``a``'s labels onto ``b``'s (background onto background)."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    forward = dict(pairs)
    assert len(forward) == len(pairs), "a label of the first is split in the second"
    assert len(set(forward.values())) == len(forward), "two labels of the first are merged"
    assert forward.get(0, 0) == 0
    return forward


def _run(store: RunStore, client: Client | None, connectivity: int, **kw: object) -> pd.DataFrame:
    return label_nuclei(
        store,
        client,
        mask="mask",
        intensity=kw.pop("intensity", None),  # type: ignore[arg-type]
        target="labels",
        task="nuclei_labels",
        max_extent=EXTENT,
        connectivity=connectivity,
        **kw,  # type: ignore[arg-type]
    )


def _check(store: RunStore, mask: np.ndarray, table: pd.DataFrame, connectivity: int) -> None:
    got = np.asarray(store.open_array("labels", mode="r")[...])
    want = _whole(mask, connectivity)
    assert got.dtype == np.uint32 and got.shape == mask.shape
    planes = (got[None], want[None]) if got.ndim == 2 else (got, want)
    assert list(table.columns) == list(LABEL_COLUMNS)
    for i, (g, w) in enumerate(zip(*planes, strict=True)):
        forward = _bijection(g, w)
        # Exactly the reference's numbering, 1..n per plane, one table row per label.
        np.testing.assert_array_equal(g, w)
        n = int(g.max())
        assert sorted(forward) == list(range(n + 1))
        rows = table[table["image"] == i]
        assert rows["label"].tolist() == list(range(1, n + 1))
        props = {p.label: p for p in regionprops(w)}
        row: dict[str, Any]
        for row in rows.to_dict("records"):  # type: ignore[assignment]
            p = props[forward[row["label"]]]
            assert row["area"] == p.area
            assert row["centroid_y"] == pytest.approx(p.centroid[0])
            assert row["centroid_x"] == pytest.approx(p.centroid[1])
            box = (row["bbox_y0"], row["bbox_x0"], row["bbox_y1"], row["bbox_x1"])
            assert box == p.bbox
            assert row["whole"] == (max(box[2] - box[0], box[3] - box[1]) > EXTENT)
            if row["whole"]:
                assert np.isnan(row["eccentricity"]) and np.isnan(row["perimeter"])
            else:
                for name in ("eccentricity", "solidity", "orientation", "perimeter"):
                    assert row[name] == pytest.approx(getattr(p, name))
                assert row["major_axis_length"] == pytest.approx(p.axis_major_length)
                assert row["minor_axis_length"] == pytest.approx(p.axis_minor_length)
        assert rows["whole"].any() and not rows["whole"].all()


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("planes", [None, 2], ids=["2d", "3d"])
def test_blocks_give_the_whole_planes_labels(
    tmp_path: Path, planes: int | None, connectivity: int
) -> None:
    store, mask = _store(tmp_path, planes)
    table = _run(store, None, connectivity)
    _check(store, mask, table, connectivity)
    dims = store.open_dataset()["labels"].dims
    assert dims == (("mosaic_y", "mosaic_x") if planes is None else ("image", "y", "x"))


@pytest.mark.parametrize("connectivity", [1, 2])
def test_a_corner_diagonal_is_one_object_only_when_8_connected(
    tmp_path: Path, connectivity: int
) -> None:
    store, _ = _store(tmp_path, None)
    table = _run(store, None, connectivity)
    labels = np.asarray(store.open_array("labels", mode="r")[...])
    corners = [labels[31, 39], labels[32, 40], labels[31, 80], labels[32, 79]]
    if connectivity == 1:
        assert corners == [0, 0, 0, 0]  # single pixels, under min_size
    else:
        assert corners[0] == corners[1] != corners[2] == corners[3] != 0
        whole = table.set_index("label")["whole"]
        assert whole[corners[0]] and whole[corners[2]]


def test_on_a_process_cluster(tmp_path: Path) -> None:
    store, mask = _store(tmp_path, 2, seed=4)
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        table = _run(store, client, 2)
    _check(store, mask, table, 2)


def test_a_killed_run_resumes_with_the_same_labels(tmp_path: Path) -> None:
    store, mask = _store(tmp_path, 2)
    rng = np.random.default_rng(0)
    intensity = rng.integers(0, 200, size=(*mask.shape, 2), dtype=np.uint8)
    _put(store, "images", intensity, ("image", "y", "x", "channel"))
    first = _run(store, None, 1, intensity="images")
    before = np.asarray(store.open_array("labels", mode="r")[...])
    scan_marker = Path(store.path("_progress", "nuclei_labels-scan", "00000000.json"))
    scanned_at = os.stat(scan_marker).st_mtime_ns
    # Kill: blocks (plane, row, col) (0, 0, 1), (0, 1, 1), (1, 1, 2) lost markers and data.
    target = store.open_array("labels")
    for index in (1, 5, 16 + 4 + 2):
        store.remove(f"_progress/nuclei_labels-write/{index:08d}.json")
    target[0, :64, 40:80] = 0
    target[1, 32:64, 80:120] = 0
    second = _run(store, None, 1, intensity="images")
    np.testing.assert_array_equal(store.open_array("labels", mode="r")[...], before)
    pd.testing.assert_frame_equal(first, second)
    assert os.stat(scan_marker).st_mtime_ns == scanned_at  # the scan was not redone
    _check(store, mask, second, 1)
    means = intensity.astype(np.float64).mean(axis=3)
    for i in range(2):
        for p in regionprops(before[i], intensity_image=means[i]):
            row = second[(second["image"] == i) & (second["label"] == p.label)].iloc[0]
            assert row.mean_intensity == pytest.approx(p.intensity_mean)


def test_a_changed_mask_is_scanned_and_written_anew(tmp_path: Path) -> None:
    store, mask = _store(tmp_path, None)
    _run(store, None, 1)
    changed = mask.copy()
    changed[100:112, 4:12] = 255  # a new nucleus
    changed[:, 60:63] = 0  # the snake cut
    store.open_array("mask")[...] = changed
    table = _run(store, None, 1)
    _check(store, changed, table, 1)


def test_missing_arrays_are_named(tmp_path: Path) -> None:
    store, _ = _store(tmp_path, None)
    with pytest.raises(StoreError, match="'nope'"):
        label_nuclei(store, None, mask="nope", intensity=None, target="t", task="t", max_extent=10)
    with pytest.raises(StoreError, match=r"'images'.*intensity=None"):
        _run(store, None, 1, intensity="images")
