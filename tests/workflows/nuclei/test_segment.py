"""segment: tiled inference equals whole-image inference (tiles that cut through nuclei),
the stitched labels equal whole-image labelling up to renumbering, a killed run resumes by
tile, and a model trained in one store segments another."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client
from skimage.measure import regionprops

from pipeline.compute.checkpoints import CheckpointRef, digest
from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import StageError
from pipeline.imaging.instances import instance_labels
from pipeline.workflows.nuclei.checkpoint import (
    load_segmenter,
    resolve_segmenter,
    segmenter_from_checkpoint,
)
from pipeline.workflows.nuclei.infer import predict_image
from pipeline.workflows.nuclei.tiles import plane_tiles
from tests.conftest import write_image
from tests.workflows.nuclei.conftest import TINY

FIELD = (544, 600)  # not multiples of the tile: the last row and column of tiles are clipped


@pytest.fixture(scope="module")
def trained(client: Client, nuclei_store: RunStore) -> RunStore:
    """The nuclei store with a segmenter trained for 2 epochs."""
    job = build_job(
        {
            "name": "train",
            "store": nuclei_store.url,
            "seed": 0,
            "stages": [
                {
                    "stage": "train_segmenter",
                    "params": {"input_size": 48, "batch_size": 4, "lr": 3e-3, "epochs": 2, **TINY},
                }
            ],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]
    return nuclei_store


def _field(tmp: Path) -> Path:
    from pipeline.synth.nuclei import render_nuclei

    image = render_nuclei(5, size=FIELD[1]).image
    return write_image(tmp / "field.png", np.ascontiguousarray(image[: FIELD[0]]))


def _segment(client: Client, store: Path, field: Path, checkpoint: str, **params: Any) -> RunStore:
    job = build_job(
        {
            "name": "segment",
            "store": str(store),
            "stages": [
                {"stage": "ingest_mosaic", "params": {"source": str(field), "tile": 128}},
                {
                    "stage": "segment",
                    "params": {"input": "mosaic", "checkpoint": checkpoint, "tile": 128, **params},
                },
            ],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]
    return RunStore(str(store))


def _model(store: RunStore) -> Any:
    url, options = resolve_segmenter(store, None)
    ckpt = load_segmenter(CheckpointRef(url, digest(Path(url).read_bytes()), options))
    return segmenter_from_checkpoint(ckpt).eval(), ckpt.config


def _bijective(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    fg = pairs[:, (pairs[0] > 0) | (pairs[1] > 0)]
    return (
        bool((fg > 0).all())
        and len(np.unique(fg[0])) == fg.shape[1]
        and len(np.unique(fg[1])) == fg.shape[1]
    )


def test_tiles_equal_whole_image_inference_and_labels_are_stitched(
    client: Client, trained: RunStore, tmp_path: Path
) -> None:
    field = _field(tmp_path)
    # The trained model is taken from the other run store.
    store = _segment(client, tmp_path / "run", field, trained.url)
    mosaic = np.asarray(store.open_array("mosaic", mode="r")[:])
    model, config = _model(trained)
    whole = predict_image(model, mosaic, config)
    prob = np.asarray(store.open_array("nuclei_probability", mode="r")[:], dtype=np.float32)
    mask = np.asarray(store.open_array("nuclei_mask", mode="r")[:])
    assert store.open_array("nuclei_mask", mode="r").chunks == (128, 128)
    np.testing.assert_allclose(prob, whole, atol=2e-3)  # float16 storage
    clear = np.abs(whole - 0.5) > 1e-4  # float rounding may flip a pixel at exactly 0.5
    np.testing.assert_array_equal(mask[clear], (whole > 0.5)[clear])
    assert 0.02 < mask.mean() < 0.6  # it found nuclei, not nothing or everything
    # The tiles' cores cut through nuclei: some foreground touches a tile boundary.
    assert mask[127:129].any() and mask[:, 255:257].any()

    labels = np.asarray(store.open_array("labels", mode="r")[:])
    assert labels.dtype == np.uint32
    reference = instance_labels(mask > 0, max_extent=96)
    assert labels.max() == reference.max() > 10
    assert _bijective(labels, reference)
    table = read_table(store, "nuclei")
    assert len(table) == labels.max() and set(table["label"]) == set(range(1, labels.max() + 1))
    props = {p.label: p for p in regionprops(labels)}
    for row in table.sample(10, random_state=0).itertuples():
        assert row.area == props[row.label].area
        np.testing.assert_allclose(
            (row.centroid_y, row.centroid_x), props[row.label].centroid, atol=1e-9
        )
    record = store.read_json("models/segment.json")
    assert record["halo"] == 160 and record["receptive_radius"] == 153
    assert record["tiles"] == len(plane_tiles(1, *FIELD, 128, 160)) == 25


def test_a_killed_run_resumes_by_tile(client: Client, trained: RunStore, tmp_path: Path) -> None:
    field = _field(tmp_path)
    store = _segment(client, tmp_path / "run", field, trained.url)
    before = np.asarray(store.open_array("labels", mode="r")[:])
    # As if killed: three tiles' markers and chunks gone, the labels not yet written.
    for i in (0, 7, 24):
        store.remove(f"_progress/segment-infer/{i:08d}.json")
    shutil.rmtree(store.path("store.zarr", "labels"))
    manifest = store.path("manifest.json")
    Path(manifest).unlink()  # the step is not recorded as done
    _segment(client, tmp_path / "run", field, trained.url)
    assert store.read_json("models/segment.json")["inferred"] == 3
    np.testing.assert_array_equal(np.asarray(store.open_array("labels", mode="r")[:]), before)


def test_a_halo_below_the_receptive_field_is_refused(
    client: Client, trained: RunStore, tmp_path: Path
) -> None:
    with pytest.raises(StageError, match="receptive radius"):
        _segment(client, tmp_path / "run", _field(tmp_path), trained.url, halo=64)


def test_segments_a_collection_of_images(client: Client, trained: RunStore) -> None:
    job = build_job(
        {
            "name": "train",
            "store": trained.url,
            "stages": [{"stage": "segment", "params": {"tile": 32}}],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]
    labels = np.asarray(trained.open_array("labels", mode="r")[:])
    assert labels.shape == (10, 64, 64)
    mask = np.asarray(trained.open_array("nuclei_mask", mode="r")[:])
    for i in range(10):
        assert _bijective(labels[i], instance_labels(mask[i] > 0, max_extent=96))
    table = read_table(trained, "nuclei")
    assert table.groupby("image")["label"].max().sum() == len(table)
    ids = list(read_table(trained, "images")["image_id"])
    assert set(table["image_id"]) <= set(ids)
