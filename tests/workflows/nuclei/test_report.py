"""The nuclei report section, rendered from a store built by hand: the tables and arrays the
nuclei stages write (``train_segmenter``, ``evaluate_segmentation``, ``segment``)."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from pipeline.core.manifest import load_manifest
from pipeline.core.store import RunStore
from pipeline.report.context import ReportContext
from pipeline.report.figures import plain_text
from pipeline.report.spec import ReportParams
from pipeline.workflows.nuclei.report import THUMBNAIL, nuclei_section

N_IMAGES, SIDE = 10, 48
TEST_ROWS = [1, 3, 4, 6, 7, 8, 9]  # 7 test images: the gallery shows the first 6
EPOCHS = 5
VAL_LOSS = [0.60, 0.45, 0.41, 0.43, 0.39]  # best epochs 1, 2, 3 and 5: the kept one is 5
METRICS = {
    "network": [0.951, 0.872, 0.773, 0.861, 0.884, 0.812, 0.801, 0.553],
    "otsu": [0.912, 0.764, 0.618, 0.702, 0.839, 0.654, 0.712, 0.401],
}
NAMES = [
    "accuracy",
    "f1",
    "jaccard",
    "recall",
    "precision",
    "object_f1",
    "matched_iou",
    "dsb_ap",
]


def _section(store: RunStore) -> str | None:
    """The nuclei section as the report page renders it (inside ``plain_text``)."""
    with plain_text():
        return nuclei_section(ReportContext(store, load_manifest(store), ReportParams()))


def _table(store: RunStore, name: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    store.write_bytes(f"tables/{name}.parquet", buf.getvalue())


def _array(store: RunStore, name: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    arr = zarr.open_array(
        store.zarr_store(), path=name, mode="w", shape=data.shape, chunks=chunks, dtype=data.dtype
    )
    arr[...] = data


def _disks(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """Instance labels of ``n`` non-overlapping-ish disks."""
    from skimage.draw import disk

    labels = np.zeros(shape, dtype=np.uint32)
    r = max(3, min(shape) // 16)
    for k in range(1, n + 1):
        cy, cx = rng.integers(r, shape[0] - r), rng.integers(r, shape[1] - r)
        rr, cc = disk((cy, cx), r, shape=shape)
        labels[rr, cc] = k
    return labels


def _training(store: RunStore) -> None:
    best, low = [], np.inf
    for v in VAL_LOSS:
        best.append(v < low)
        low = min(low, v)
    _table(
        store,
        "segmenter_training",
        pd.DataFrame(
            {
                "epoch": np.arange(1, EPOCHS + 1),
                "loss": np.linspace(0.7, 0.3, EPOCHS),
                "val_loss": VAL_LOSS,
                "val_dice": [0.50, 0.66, 0.71, 0.70, 0.7654],
                "val_iou": [0.33, 0.49, 0.55, 0.54, 0.6123],
                "val_recall": np.linspace(0.5, 0.8, EPOCHS),
                "val_precision": np.linspace(0.6, 0.9, EPOCHS),
                "lr": [1e-4] * 4 + [1e-5],
                "seconds": [2.0] * EPOCHS,
                "device": ["cpu"] * EPOCHS,
                "checkpoint": [
                    f"models/segmenter_epoch{e}.pt" if b else ""
                    for e, b in zip(range(1, EPOCHS + 1), best, strict=True)
                ],
                "best": best,
            }
        ),
    )
    split = [
        "test" if r in TEST_ROWS else ("train" if r < 2 else "validation") for r in range(N_IMAGES)
    ]
    _table(
        store,
        "segmentation_split",
        pd.DataFrame(
            {
                "row": np.arange(N_IMAGES),
                "image_id": [f"img{r}" for r in range(N_IMAGES)],
                "split": split,
            }
        ),
    )


def _evaluation(store: RunStore) -> None:
    rng = np.random.default_rng(0)
    masks = np.stack([_disks(rng, (SIDE, SIDE), 4) for _ in range(N_IMAGES)])
    images = (80 + 150 * (masks > 0) + rng.integers(0, 20, masks.shape)).astype(np.uint8)
    predicted = np.zeros_like(masks)
    predicted[TEST_ROWS] = masks[TEST_ROWS]
    _array(store, "images", images, (4, SIDE, SIDE))
    _array(store, "masks", masks, (4, SIDE, SIDE))
    _array(store, "predicted_masks", predicted, (4, SIDE, SIDE))
    rows = []
    for method, values in METRICS.items():
        for r in TEST_ROWS:
            counts = {"true_objects": 4.0, "predicted_objects": 4.0, "matched": 3.0}
            rows.append(
                {
                    "row": r,
                    "image_id": f"img{r}",
                    "method": method,
                    **dict(zip(NAMES, values, strict=True)),
                    **counts,
                }
            )
    scores = pd.DataFrame(rows)
    _table(store, "segmentation_scores", scores)
    summary = scores.drop(columns=["row", "image_id"]).groupby("method", sort=False).mean()
    summary["images"] = len(TEST_ROWS)
    _table(store, "segmentation_summary", summary.reset_index())


def _segmented(store: RunStore, side: int, chunk: int) -> None:
    rng = np.random.default_rng(1)
    labels = _disks(rng, (side, side), 60)
    image = (50 + 180 * (labels > 0)).astype(np.uint8)
    _array(store, "mosaic", image, (chunk, chunk))
    _array(store, "labels", labels, (chunk, chunk))
    store.write_json(
        "models/segment.json",
        {
            "input": "mosaic",
            "probability": "nuclei_probability",
            "mask": "nuclei_mask",
            "labels": "labels",
            "table": "nuclei",
            "checkpoint": "models/segmenter_epoch5.pt",
            "halo": 160,
            "tile": 1024,
            "tiles": 9,
            "seconds": 4.5,
            "megapixels": side * side / 1e6,
            "nuclei": 60,
            "devices": {"tcp://127.0.0.1:1": "cpu"},
        },
    )
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    _table(
        store,
        "nuclei",
        pd.DataFrame(
            {
                "image": ["mosaic"] * areas.size,
                "label": np.arange(1, areas.size + 1),
                "area": areas,
                "centroid_y": rng.uniform(0, side, areas.size),
                "centroid_x": rng.uniform(0, side, areas.size),
            }
        ),
    )


def _images(page: str) -> list[str]:
    return re.findall(r"<img src='([^']+)'", page)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, str]:
    store = RunStore(str(tmp_path_factory.mktemp("nuclei_report")))
    _training(store)
    _evaluation(store)
    _segmented(store, 300, 128)
    page = _section(store)
    assert page is not None
    return store, page


def test_empty_store_has_no_section(tmp_path: Path) -> None:
    assert _section(RunStore(str(tmp_path / "empty"))) is None


def test_training_curves_and_best_epoch(rendered: tuple[RunStore, str]) -> None:
    store, page = rendered
    text = html.unescape(page)
    assert "Best epoch 5" in text
    assert "validation Dice 0.765" in text and "IoU 0.612" in text
    assert "segmenter_epoch5.pt" in text
    assert "1 train, 2 validation, 7 test" in text
    assert "nuclei_training.png" in _images(page)
    assert store.exists("report/nuclei_training.png")


def test_metrics_table_both_methods(rendered: tuple[RunStore, str]) -> None:
    _, page = rendered
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    cells = {
        re.findall(r"<td>(.*?)</td>", r)[0]: re.findall(r"<td>(.*?)</td>", r)[1:]
        for r in rows
        if "<td>" in r
    }
    network = cells["network (Multi-ResUNet)"]
    otsu = cells["Otsu + watershed baseline"]
    assert network == ["7", *(f"{v:.3f}" for v in METRICS["network"])]
    assert otsu == ["7", *(f"{v:.3f}" for v in METRICS["otsu"])]
    assert "object F1 (IoU 0.5)" in page and "DSB mean AP" in page
    assert "21 of 28 true nuclei matched" in page


def test_gallery_one_triptych_per_test_image(rendered: tuple[RunStore, str]) -> None:
    store, page = rendered
    gallery = [s for s in _images(page) if s.startswith("nuclei_gallery_")]
    assert gallery == [f"nuclei_gallery_{k}.png" for k in range(6)]
    for k in range(6):
        assert f"test image img{TEST_ROWS[k]}" in page
        with Image.open(io.BytesIO(store.read_bytes(f"report/nuclei_gallery_{k}.png"))) as im:
            assert im.width > 2 * im.height  # three panels side by side
    assert f"test image img{TEST_ROWS[6]}" not in page


def test_segmented_thumbnail_counts_and_areas(rendered: tuple[RunStore, str]) -> None:
    _, page = rendered
    assert {"nuclei_segmented.png", "nuclei_areas.png"} <= set(_images(page))
    for cell in ("<td>nuclei</td><td>60</td>", "<td>tile (px)</td><td>1024</td>"):
        assert cell in page
    assert "<td>halo (px)</td><td>160</td>" in page
    assert "<td>megapixels / s</td><td>0.02</td>" in page
    assert "nuclei in <code>tables/nuclei.parquet</code>" in page


class _Recording:
    """A Zarr array that records how many elements each read returns."""

    def __init__(self, arr: Any, name: str, reads: list[tuple[str, int]]) -> None:
        self._arr, self._name, self._reads = arr, name, reads

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._arr, attr)

    def __getitem__(self, key: Any) -> Any:
        out = self._arr[key]
        self._reads.append((self._name, int(np.asarray(out).size)))
        return out


def test_large_labels_are_read_strided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(str(tmp_path / "large"))
    side = 3000
    _segmented(store, side, 1024)
    reads: list[tuple[str, int]] = []
    plain_open = RunStore.open_array

    def recording(self: RunStore, name: str, mode: str = "r+") -> Any:
        return _Recording(plain_open(self, name, mode), name, reads)

    monkeypatch.setattr(RunStore, "open_array", recording)
    page = _section(store)
    assert page is not None and "nuclei_segmented.png" in _images(page)
    assert {name for name, _ in reads} == {"labels", "mosaic"}
    assert max(n for _, n in reads) <= THUMBNAIL * THUMBNAIL
    with Image.open(io.BytesIO(store.read_bytes("report/nuclei_segmented.png"))) as im:
        assert max(im.size) <= THUMBNAIL
