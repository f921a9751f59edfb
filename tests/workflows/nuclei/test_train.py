"""train_segmenter: the seed's recipe learns nuclei, its split is seeded, its log and best
checkpoint are written, and a stopped run resumes to the weights an uninterrupted one reaches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from distributed import Client

from pipeline.compute.checkpoints import CheckpointRef, digest
from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import ParameterError
from pipeline.workflows.nuclei.checkpoint import load_segmenter, resolve_segmenter
from pipeline.workflows.nuclei.data import augment_pairs, split_rows
from pipeline.workflows.nuclei.spec import NucleiAugment, TrainSegmenterParams, train_outputs
from pipeline.workflows.nuclei.train import train_segmenter
from tests.workflows.nuclei.conftest import TINY


def _train(client: Client, store: RunStore, name: str, **params: Any) -> None:
    job = build_job(
        {
            "name": "train",
            "store": store.url,
            "seed": 1,
            "stages": [
                {
                    "name": name,
                    "stage": "train_segmenter",
                    "params": {"input_size": 48, "batch_size": 4, "lr": 3e-3, **TINY, **params},
                }
            ],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]


def _weights(store: RunStore, step: str) -> dict[str, torch.Tensor]:
    url, options = resolve_segmenter(store, None, step)
    data = Path(url).read_bytes()
    return load_segmenter(CheckpointRef(url, digest(data), options)).state_dict


def test_training_logs_every_epoch_and_keeps_the_best_validation_weights(
    client: Client, nuclei_store: RunStore
) -> None:
    _train(client, nuclei_store, "train_segmenter", epochs=4)
    log = read_table(nuclei_store, "segmenter_training")
    assert list(log["epoch"]) == [1, 2, 3, 4]
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert log["val_loss"].min() < log["val_loss"].iloc[0]
    for col in ("val_dice", "val_iou", "val_recall", "val_precision"):
        assert log[col].between(0, 1).all()
    best = int(log["val_loss"].idxmin())
    assert bool(log["best"].iloc[best])
    pointer = nuclei_store.read_json(train_outputs("train_segmenter").pointer)
    assert pointer["epoch"] == int(log["epoch"].iloc[best])
    assert nuclei_store.path("models", "segmenter_training.csv")
    split = read_table(nuclei_store, "segmentation_split")
    assert sorted(split["split"].value_counts().items()) == [
        ("test", 2),
        ("train", 6),
        ("validation", 2),
    ]


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(
    client: Client, nuclei_store: RunStore
) -> None:
    _train(client, nuclei_store, "whole", epochs=3)
    _train(client, nuclei_store, "parts", epochs=2)
    # The same job with more epochs continues from epoch 2 (a run stopped there).
    _train(client, nuclei_store, "parts", epochs=3)
    log = read_table(nuclei_store, "parts_training", schema="segmenter_training")
    assert list(log["epoch"]) == [1, 2, 3]
    whole, parts = _weights(nuclei_store, "whole"), _weights(nuclei_store, "parts")
    assert whole.keys() == parts.keys()
    for k in whole:
        torch.testing.assert_close(parts[k], whole[k], rtol=0, atol=0)


def test_the_split_is_seeded_and_covers_every_image() -> None:
    a, b = split_rows(20, (0.6, 0.2, 0.2), 0), split_rows(20, (0.6, 0.2, 0.2), 0)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(a).tolist() == [12, 4, 4]
    assert not np.array_equal(a, split_rows(20, (0.6, 0.2, 0.2), 1))
    with pytest.raises(ParameterError, match="at least 2"):
        split_rows(1, (0.6, 0.2, 0.2), 0)


def test_augmentation_moves_image_and_mask_together_and_keeps_the_mask_binary() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((6, 1, 16, 16), dtype=np.float32)
    mask = (image > 0.7).astype(np.float32)
    out = augment_pairs(
        torch.from_numpy(np.concatenate([image, mask], 1)),
        NucleiAugment(brightness=0, contrast=0),
        torch.Generator().manual_seed(0),
    ).numpy()
    np.testing.assert_array_equal(out[:, 1], (out[:, 0] > 0.7).astype(np.float32))
    # Geometry only permutes pixels.
    np.testing.assert_allclose(np.sort(out[:, 0].ravel()), np.sort(image.ravel()))


def test_bad_parameters_name_the_fix() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainSegmenterParams(input_size=100)
    with pytest.raises(ValueError, match="summing to 1"):
        TrainSegmenterParams(split=(0.5, 0.2, 0.2))


def test_train_segmenter_runs_in_process_on_the_cpu(nuclei_store: RunStore) -> None:
    params = TrainSegmenterParams(input_size=32, batch_size=4, epochs=1, device="cpu", **TINY)
    split = split_rows(10, params.split, 0)
    from pipeline.workflows.nuclei.model import SegmenterConfig

    result = train_segmenter(
        nuclei_store.url,
        {},
        params,
        SegmenterConfig(in_channels=1, **TINY),
        split,
        seed=0,
        train_key="direct",
        threads=1,
        resume=False,
        out=train_outputs("direct"),
    )
    assert result["epochs"] == 1 and result["device"] == "cpu"
