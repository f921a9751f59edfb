"""The CUDA paths of training and inference (AMP, channels_last): run where torch sees a GPU,
skipped elsewhere (CI has none)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.workflows.embed.augment import AugmentParams
from pipeline.workflows.embed.infer import EMBED_RECORD, EMBEDDINGS, EmbedParams, run_embed
from pipeline.workflows.embed.train import TrainEncoderParams, run_train_encoder
from tests.workflows.embed.conftest import make_store, textures

pytestmark = pytest.mark.gpu


def test_embed_on_cuda_with_amp_agrees_with_cpu(client: Client, cutout_store: RunStore) -> None:
    run_embed(RunContext(cutout_store, client), EmbedParams(device="cpu", batch_size=8))
    cpu = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    run_embed(RunContext(cutout_store, client), EmbedParams(device="cuda", amp=False, batch_size=8))
    fp32 = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    run_embed(RunContext(cutout_store, client), EmbedParams(device="cuda", amp=True, batch_size=8))
    amp = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    assert set(cutout_store.read_json(EMBED_RECORD)["devices"]) == {"cuda"}
    scale = np.abs(cpu).max()
    # TF32 convolutions and bf16/fp16 autocast: close, not equal.
    assert np.abs(fp32 - cpu).max() < 2e-2 * scale
    assert np.abs(amp - cpu).max() < 5e-2 * scale
    corr = np.corrcoef(amp.ravel(), cpu.ravel())[0, 1]
    assert corr > 0.999


def test_training_on_cuda_with_amp_lowers_the_loss(client: Client, tmp_path: Path) -> None:
    store = make_store(tmp_path / "run", textures(64, 64, seed=1))
    params = TrainEncoderParams(
        arch="resnet18",
        input_size=64,
        epochs=10,
        batch_size=32,
        lr=3e-3,
        device="cuda",
        amp=True,
        augment=AugmentParams(crop_scale=(0.8, 1.0)),
    )
    run_train_encoder(RunContext(store, client, seed=0), params)
    loss = read_table(store, "training_loss")
    assert (loss["device"].str.startswith("cuda")).all()
    assert np.isfinite(loss["loss"]).all()
    assert loss["loss"].iloc[-3:].mean() < loss["loss"].iloc[:2].mean()
    assert torch.cuda.is_available()
