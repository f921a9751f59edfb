"""SimCLR training: the loss falls, the run is reproducible, and an interrupted run resumes to
the weights an uninterrupted one reaches."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import ParameterError, StoreError
from pipeline.workflows.embed.augment import AugmentParams
from pipeline.workflows.embed.checkpoint import LATEST, CheckpointRef, load_checkpoint
from pipeline.workflows.embed.models import EncoderConfig
from pipeline.workflows.embed.train import (
    LOSS_CSV,
    TrainEncoderParams,
    run_train_encoder,
    train_simclr,
)
from tests.workflows.embed.conftest import blobs, make_store, textures

SMALL = dict(arch="resnet_small", input_size=64, batch_size=16, lr=3e-3, checkpoint_every=1)


def _weights(store: RunStore) -> dict[str, torch.Tensor]:
    pointer = store.read_json(LATEST)
    ref = CheckpointRef(store.path("models", pointer["checkpoint"]), pointer["digest"])
    return load_checkpoint(ref).state_dict


def test_the_loss_falls_on_a_tiny_generated_set(client: Client, tmp_path: Path) -> None:
    store = make_store(tmp_path / "run", textures(32, 64, seed=1))
    augment = AugmentParams(crop_scale=(0.8, 1.0))
    params = TrainEncoderParams(epochs=16, augment=augment, **SMALL)  # type: ignore[arg-type]
    counts = run_train_encoder(RunContext(store, client, seed=0), params)
    loss = read_table(store, "training_loss")
    assert list(loss["epoch"]) == list(range(1, 17)) and counts["epochs"] == 16
    assert loss["loss"].iloc[-3:].mean() < 0.9 * loss["loss"].iloc[:2].mean()
    assert (loss["images"] == 32).all() and (loss["device"] == "cpu").all()
    # The CSV (written as training goes) says the same as the table.
    csv = pd.read_csv(io.BytesIO(store.read_bytes(LOSS_CSV)), keep_default_na=False)
    np.testing.assert_allclose(csv["loss"], loss["loss"])
    assert store.read_json(LATEST)["epoch"] == 16


class _Stop(Exception):
    pass


def _train(store: RunStore, params: TrainEncoderParams, stop_after: int | None = None) -> Any:
    config = EncoderConfig(arch=params.arch, in_channels=1, input_size=params.input_size)
    keep = np.ones(store.open_array("cutouts").shape[0], dtype=bool)
    keep[::5] = False  # a row selection, as the catalog's kept rows give

    def report(row: dict[str, Any]) -> None:
        if stop_after is not None and row["epoch"] == stop_after:
            raise _Stop

    return train_simclr(
        store.url,
        {},
        params,
        config,
        keep,
        seed=7,
        train_key="key",
        threads=1,
        resume=True,
        report=report,
    )


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    images = blobs(40, 64, seed=2)[0]
    params = TrainEncoderParams(epochs=4, **SMALL)  # type: ignore[arg-type]
    straight = make_store(tmp_path / "a", images)
    _train(straight, params)
    resumed = make_store(tmp_path / "b", images)
    with pytest.raises(_Stop):
        _train(resumed, params, stop_after=2)
    assert resumed.read_json(LATEST)["epoch"] == 2
    result = _train(resumed, params)
    assert result["start_epoch"] == 2 and result["epochs"] == 2
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    la = read_table(straight, "training_loss")
    lb = read_table(resumed, "training_loss")
    np.testing.assert_array_equal(la["loss"], lb["loss"])  # epochs 1-2 kept from the first try


def test_a_finished_run_resumes_only_on_the_inputs_it_was_trained_on(
    client: Client, tmp_path: Path
) -> None:
    # Re-cut crops keep their row count: only the steps before training tell them apart.
    store = make_store(tmp_path / "run", blobs(16, 64, seed=4)[0])
    params = TrainEncoderParams(epochs=1, **SMALL)  # type: ignore[arg-type]
    first = run_train_encoder(RunContext(store, client, upstream="crops-a"), params)
    again = run_train_encoder(RunContext(store, client, upstream="crops-a"), params)
    assert (first["epochs"], again["epochs"], again["start_epoch"]) == (1, 0, 1)
    recut = run_train_encoder(RunContext(store, client, upstream="crops-b"), params)
    assert (recut["epochs"], recut["start_epoch"]) == (1, 0)


def test_the_same_seed_trains_the_same_weights_and_another_seed_does_not(tmp_path: Path) -> None:
    images = blobs(24, 64, seed=3)[0]
    params = TrainEncoderParams(epochs=1, **SMALL)  # type: ignore[arg-type]
    one, two = make_store(tmp_path / "1", images), make_store(tmp_path / "2", images)
    _train(one, params)
    _train(two, params)
    assert one.read_json(LATEST)["digest"] == two.read_json(LATEST)["digest"]
    config = EncoderConfig(arch="resnet_small", in_channels=1, input_size=64)
    three = make_store(tmp_path / "3", images)
    keep = np.ones(24, dtype=bool)
    train_simclr(
        three.url, {}, params, config, keep, seed=8, train_key="k", threads=1, resume=False
    )
    assert three.read_json(LATEST)["digest"] != one.read_json(LATEST)["digest"]


def test_augmentations_are_configured_per_job() -> None:
    params = TrainEncoderParams.model_validate(
        {"augment": {"rot90": False, "crop_scale": [0.8, 1.0]}}
    )
    assert params.augment == AugmentParams(rot90=False, crop_scale=(0.8, 1.0))
    with pytest.raises(ValueError, match="input_size"):
        TrainEncoderParams(input_size=32)


def test_bad_input_stops_before_training(client: Client, tmp_path: Path) -> None:
    store = make_store(tmp_path / "run", blobs(1, 64, seed=0)[0])
    with pytest.raises(ParameterError, match="SimCLR needs at least 2"):
        run_train_encoder(RunContext(store, client), TrainEncoderParams(epochs=1, **SMALL))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="array 'images' is not in"):
        run_train_encoder(RunContext(store, client), TrainEncoderParams(input="images", **SMALL))  # type: ignore[arg-type]
    assert not store.exists(LATEST) and not store.exists("tables/training_loss.parquet")


def test_two_encoders_in_one_job_each_write_and_embed_under_their_step(
    client: Client, tmp_path: Path
) -> None:
    """Two train_encoder steps and an embed step per encoder: nothing is shared or lost."""
    from pipeline.core.jobs import build_job
    from pipeline.core.runner import run_job

    store = make_store(tmp_path / "run", textures(12, 64, seed=2))
    small = {"arch": "resnet_small", "input_size": 64, "batch_size": 6, "epochs": 1}
    spec = {
        "name": "two-encoders",
        "store": store.url,
        "stages": [
            {"stage": "train_encoder", "params": small},
            {"stage": "train_encoder", "name": "wide", "params": {**small, "projection_dim": 32}},
            {"stage": "embed", "params": {"rows": "all"}},
            {"stage": "embed", "name": "wide_features", "params": {"encoder": "wide"}},
            {
                "stage": "kmeans",
                "name": "kmeans_wide",
                "params": {"input": "wide_features", "k": 2},
            },
        ],
    }
    summary = run_job(build_job(spec), client=client)
    assert summary.ran == ["train_encoder", "wide", "embed", "wide_features", "kmeans_wide"]
    assert summary.counts["wide"]["final_loss"] > 0  # a number, not an int in disguise
    default, wide = store.read_json(LATEST), store.read_json("models/wide.json")
    assert default["checkpoint"].startswith("encoder-") and wide["checkpoint"].startswith("wide-")
    assert store.exists(f"models/{default['checkpoint']}") and store.exists(
        f"models/{wide['checkpoint']}"
    )
    assert len(read_table(store, "wide_training_loss", schema="training_loss")) == 1
    assert store.exists("models/wide_training_loss.csv") and store.exists(LOSS_CSV)
    # Each embedding used its own encoder, under its own array and dimension.
    ds = store.open_dataset()
    assert ds["embeddings"].dims == ("image", "feature")
    assert ds["wide_features"].dims == ("image", "wide_features_feature")
    assert store.read_json("models/embed.json")["digest"] == default["digest"]
    assert store.read_json("models/wide_features.json")["digest"] == wide["digest"]
    metrics = read_table(store, "cluster_metrics").set_index("method")
    assert metrics.loc["kmeans_wide", "space"] == "wide_features (128 features)"
    # An embed step naming no encoder of the job is refused before anything runs.
    spec["stages"][3]["params"] = {"encoder": "nope"}  # type: ignore[index]
    with pytest.raises(Exception, match="'nope' is not a train_encoder step of this job"):
        build_job(spec)
