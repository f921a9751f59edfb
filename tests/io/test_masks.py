"""ingest_masks: every layout users bring masks in lands as the same instance labels, and a
missing or mis-sized mask stops the stage before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from skimage.measure import label as sk_label

from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import InputError, StageError
from pipeline.io.masks import mask_labels
from tests.conftest import write_image


def _labels(seed: int, shape: tuple[int, int] = (40, 36)) -> np.ndarray:
    """A label image of a few discs, two of which touch (so a binary mask joins them)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=np.uint16)
    centres = [(10, 10), (10, 17), (28, 24), (30, 8)]
    for k, (cy, cx) in enumerate(centres, start=1):
        r = 3.5 + rng.uniform(0, 0.5)
        out[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (out == 0)] = k
    return out


def _pairs(root: Path, n: int, mask: str = "label") -> list[np.ndarray]:
    """``root/images/nuc{i}.png`` and ``root/masks/nuc{i}.png`` (label or binary)."""
    truths = []
    for i in range(n):
        labels = _labels(i)
        image = (40 + 150 * (labels > 0)).astype(np.uint8)
        write_image(root / "images" / f"nuc{i}.png", image)
        m = labels if mask == "label" else ((labels > 0) * 255).astype(np.uint8)
        write_image(root / "masks" / f"nuc{i}.png", m)
        truths.append(labels)
    return truths


def _run(
    client: Client, tmp_path: Path, sources: list[str], masks: dict[str, Any], **ingest: Any
) -> RunStore:
    job = build_job(
        {
            "name": "masks",
            "store": str(tmp_path / "run"),
            "input": {"sources": sources, "chunk_mb": 0.003, **ingest},
            "stages": [{"stage": "ingest_masks", "params": masks}],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]
    return RunStore(str(tmp_path / "run"))


def _masks(store: RunStore) -> np.ndarray:
    return np.asarray(store.open_array("masks", mode="r")[:])


def test_label_masks_beside_the_images_land_as_they_are_chunk_by_chunk(
    client: Client, tmp_path: Path
) -> None:
    truths = _pairs(tmp_path / "data", 5)
    store = _run(client, tmp_path, [str(tmp_path / "data" / "images")], {})
    masks = _masks(store)
    assert masks.dtype == np.uint32 and masks.shape == (5, 40, 36)
    # Several images per chunk and several chunks: each mask lands on its own image.
    assert store.open_array("masks", mode="r").chunks[0] < 5
    ids = list(read_table(store, "images")["image_id"])
    for i, image_id in enumerate(ids):
        np.testing.assert_array_equal(masks[i], truths[int(image_id[3:])])
    table = read_table(store, "masks")
    assert list(table["format"]) == ["label"] * 5 and list(table["objects"]) == [4] * 5
    assert table["mask"].str.endswith(".png").all()


def test_binary_masks_become_their_connected_components(client: Client, tmp_path: Path) -> None:
    truths = _pairs(tmp_path / "data", 2, mask="binary")
    store = _run(client, tmp_path, [str(tmp_path / "data" / "images")], {"connectivity": 1})
    masks = _masks(store)
    for i in range(2):
        expected = sk_label(truths[i] > 0, connectivity=1)
        np.testing.assert_array_equal(masks[i], expected)
    # The two touching discs are one object in a binary mask: what label images are for.
    assert list(read_table(store, "masks")["objects"]) == [3, 3]


def test_per_nucleus_files_and_the_data_science_bowl_layout(client: Client, tmp_path: Path) -> None:
    truths = []
    for i in range(2):
        labels = _labels(i)
        root = tmp_path / "stage1_train" / f"id{i}"
        write_image(root / "images" / f"id{i}.png", (40 + 150 * (labels > 0)).astype(np.uint8))
        for k in range(1, 5):
            write_image(root / "masks" / f"m{k:02d}.png", ((labels == k) * 255).astype(np.uint8))
        truths.append(labels)
    store = _run(client, tmp_path, [str(tmp_path / "stage1_train" / "*" / "images" / "*.png")], {})
    masks = _masks(store)
    for i in range(2):
        np.testing.assert_array_equal(masks[i], truths[i])
    assert list(read_table(store, "masks")["format"]) == ["instances"] * 2


def test_a_manifest_names_each_mask(client: Client, tmp_path: Path) -> None:
    truths = _pairs(tmp_path / "d", 3)
    rows = [{"path": f"images/nuc{i}.png", "mask_path": f"masks/nuc{i}.png"} for i in range(3)]
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "pairs.csv", index=False)
    (tmp_path / "d" / "masks" / "nuc0.png").rename(tmp_path / "d" / "masks" / "other.png")
    rows[0]["mask_path"] = "masks/other.png"  # found by the manifest, not by its name
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "pairs.csv", index=False)
    store = _run(client, tmp_path, [str(tmp_path / "d" / "pairs.csv")], {})
    masks = _masks(store)
    for i, image_id in enumerate(read_table(store, "images")["image_id"]):
        np.testing.assert_array_equal(masks[i], truths[int(str(image_id)[3:])])


def test_padded_images_get_their_masks_padded_alike(client: Client, tmp_path: Path) -> None:
    truths = _pairs(tmp_path / "data", 1)
    small = _labels(5, (30, 30))
    write_image(
        tmp_path / "data" / "images" / "nuc9.png", (40 + 150 * (small > 0)).astype(np.uint8)
    )
    write_image(tmp_path / "data" / "masks" / "nuc9.png", small)
    store = _run(client, tmp_path, [str(tmp_path / "data" / "images")], {}, shape_policy="pad")
    masks = _masks(store)
    ids = list(read_table(store, "images")["image_id"])
    np.testing.assert_array_equal(masks[ids.index("nuc0")], truths[0])
    padded = np.zeros((40, 36), dtype=np.uint32)
    padded[5:35, 3:33] = small
    np.testing.assert_array_equal(masks[ids.index("nuc9")], padded)


def test_an_image_without_a_mask_is_named_and_nothing_is_written(
    client: Client, tmp_path: Path
) -> None:
    _pairs(tmp_path / "data", 3)
    (tmp_path / "data" / "masks" / "nuc1.png").unlink()
    with pytest.raises(StageError, match=r"1 of 3 image\(s\) have no mask, e.g. nuc1"):
        _run(client, tmp_path, [str(tmp_path / "data" / "images")], {})
    assert not RunStore(str(tmp_path / "run")).has_array("masks")


def test_a_mask_of_another_size_is_named_with_both_sizes(client: Client, tmp_path: Path) -> None:
    _pairs(tmp_path / "data", 2)
    write_image(tmp_path / "data" / "masks" / "nuc1.png", np.zeros((20, 20), dtype=np.uint8))
    expected = r"nuc1: mask .*nuc1\.png is 20 x 20 px, its image 40 x 36"
    with pytest.raises(StageError, match=expected):
        _run(client, tmp_path, [str(tmp_path / "data" / "images")], {})


def test_a_source_that_is_neither_folder_nor_manifest_says_what_to_give(tmp_path: Path) -> None:
    from pipeline.io.masks import match_masks
    from pipeline.io.spec import MaskIngestParams

    images = pd.DataFrame({"image_id": ["a"], "source": [str(tmp_path / "a.png")]})
    with pytest.raises(InputError, match="is not a folder or a CSV/Parquet manifest"):
        match_masks(images, MaskIngestParams(source=str(tmp_path / "nowhere")))


def test_mask_labels_of_instance_files_give_overlaps_to_the_first() -> None:
    a = np.zeros((4, 4), dtype=np.uint8)
    b = np.zeros((4, 4), dtype=np.uint8)
    a[:2, :3] = 255
    b[1:3, 2:] = 255
    labels, fmt = mask_labels([a, b], "instances")
    assert fmt == "instances" and labels[1, 2] == 1 and labels[2, 3] == 2 and labels[3, 0] == 0
