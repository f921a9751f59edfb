"""Checkpoints: weights-only files named by their hash; bad ones stop ``embed`` with a message
naming the file, and the embeddings already written stay."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError, ParameterError
from pipeline.workflows.embed.checkpoint import (
    LATEST,
    CheckpointRef,
    encoder_from_checkpoint,
    inspect_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from pipeline.workflows.embed.infer import EMBEDDINGS, EmbedParams, run_embed
from pipeline.workflows.embed.models import EncoderConfig, build_encoder, build_simclr


def _latest(store: RunStore) -> Path:
    return Path(store.path("models", store.read_json(LATEST)["checkpoint"]))


def test_a_checkpoint_is_weights_only_and_named_by_the_hash_of_its_bytes(
    cutout_store: RunStore,
) -> None:
    path = _latest(cutout_store)
    data = path.read_bytes()
    assert path.name == f"encoder-{hashlib.sha256(data).hexdigest()[:16]}.pt"
    payload = torch.load(path, weights_only=True)  # no Python object is unpickled
    assert payload["config"]["arch"] == "resnet_small"
    ref, config = inspect_checkpoint(str(path), {})
    assert ref.digest == hashlib.sha256(data).hexdigest() and config.input_size == 64
    # The encoder rebuilt from it equals the model that was saved.
    saved = build_simclr(config, seed=3).encoder.eval()
    loaded = encoder_from_checkpoint(load_checkpoint(ref)).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), saved(x), rtol=0, atol=0)


def test_saving_again_keeps_only_the_latest_checkpoint_of_a_run(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path))
    config = EncoderConfig(arch="resnet_small")
    model = build_simclr(config, seed=0)
    first = save_checkpoint(store, model, config, epoch=1, epochs=2, train_key="k")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    second = save_checkpoint(store, model, config, epoch=2, epochs=2, train_key="k")
    assert first != second
    assert not store.exists(f"models/{first}") and store.exists(f"models/{second}")
    assert store.read_json(LATEST)["checkpoint"] == second


def _truncated(store: RunStore) -> str:
    path = _latest(store)
    bad = path.with_name("encoder-truncated.pt")
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return bad.name


def _pickled_module(store: RunStore) -> str:
    bad = Path(store.path("models", "encoder-pickled.pt"))
    torch.save(build_encoder(EncoderConfig(arch="resnet_small")), bad)  # a whole nn.Module
    return bad.name


def _other_architecture(store: RunStore) -> str:
    # A resnet18's weights under a config that says resnet_small.
    big = build_simclr(EncoderConfig(arch="resnet18"), seed=0)
    save_checkpoint(
        store, big, EncoderConfig(arch="resnet_small"), epoch=1, epochs=1, train_key="other"
    )
    name = str(store.read_json(LATEST)["checkpoint"])
    return name


def _plain_state_dict(store: RunStore) -> str:
    bad = Path(store.path("models", "encoder-plain.pt"))
    torch.save(build_encoder(EncoderConfig(arch="resnet_small")).state_dict(), bad)
    return bad.name


def _missing(store: RunStore) -> str:
    return "encoder-0123456789abcdef.pt"


BAD = [
    (_missing, r"encoder-0123456789abcdef\.pt does not exist"),
    (_truncated, r"encoder-truncated\.pt cannot be read .*truncated"),
    (_pickled_module, r"encoder-pickled\.pt is not a weights-only checkpoint"),
    (_plain_state_dict, r"encoder-plain\.pt is not a pipeline encoder checkpoint"),
    (_other_architecture, r"encoder-\w+\.pt holds weights of another architecture"),
]


@pytest.mark.parametrize(("make", "message"), BAD, ids=lambda v: getattr(v, "__name__", ""))
def test_a_bad_checkpoint_stops_embed_and_keeps_the_old_embeddings(
    client: Client, cutout_store: RunStore, make: object, message: str
) -> None:
    params = EmbedParams(batch_size=8, task_rows=16)
    run_embed(RunContext(cutout_store, client), params)
    before = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    record = cutout_store.read_bytes("models/embed.json")
    name = make(cutout_store)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=message):
        run_embed(RunContext(cutout_store, client), params.model_copy(update={"checkpoint": name}))
    np.testing.assert_array_equal(cutout_store.open_array(EMBEDDINGS, mode="r")[:], before)
    assert cutout_store.read_bytes("models/embed.json") == record


def test_asking_for_cuda_where_there_is_none_keeps_the_old_embeddings(
    client: Client, cutout_store: RunStore
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run_embed(RunContext(cutout_store, client), EmbedParams(batch_size=8))
    before = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    with pytest.raises(ParameterError, match="device 'cuda': torch sees no CUDA device"):
        run_embed(RunContext(cutout_store, client), EmbedParams(device="cuda"))
    np.testing.assert_array_equal(cutout_store.open_array(EMBEDDINGS, mode="r")[:], before)


def test_embed_without_any_checkpoint_says_to_train_first(tmp_path: Path, client: Client) -> None:
    from tests.workflows.embed.conftest import blobs, make_store

    store = make_store(tmp_path / "s", blobs(8, 64, 0)[0])
    with pytest.raises(CheckpointError, match="run the `train_encoder` stage first"):
        run_embed(RunContext(store, client), EmbedParams())
    assert not store.has_array(EMBEDDINGS)


def test_a_checkpoint_changed_after_it_was_resolved_is_refused(cutout_store: RunStore) -> None:
    url, options = resolve_checkpoint(cutout_store, None)
    ref, _ = inspect_checkpoint(url, options)
    Path(url).write_bytes(Path(url).read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match=re.escape(f"{url} changed while in use")):
        load_checkpoint(ref)


def test_a_path_outside_the_store_is_accepted(cutout_store: RunStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(_latest(cutout_store).read_bytes())
    url, _ = resolve_checkpoint(cutout_store, str(outside))
    ref, config = inspect_checkpoint(url, {})
    assert isinstance(ref, CheckpointRef) and config.arch == "resnet_small"
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(cutout_store, str(tmp_path / "nope.pt"))
