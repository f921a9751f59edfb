"""Serving any model on workers: loaded once per worker from a verified weights-only
checkpoint, travelling as its reference only, gone when unregistered."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from distributed import Client, get_worker

from pipeline.compute.checkpoints import (
    CheckpointRef,
    load_payload,
    read_verified,
    save_payload,
)
from pipeline.compute.serving import ModelPlugin, pick_device, plugin_name, worker_plugin
from pipeline.core.store import RunStore
from pipeline.errors import ParameterError


class LinearPlugin(ModelPlugin):
    """A 4 -> 2 linear layer from a checkpoint: the smallest model a plugin can serve."""

    def load_model(self, ref: CheckpointRef, device: torch.device) -> tuple[torch.nn.Module, Any]:
        payload = load_payload(read_verified(ref), ref.url, "Save it again")
        model = torch.nn.Linear(4, 2)
        model.load_state_dict(payload["state_dict"])
        return model.eval().to(device), payload["note"]


def apply(name: str, x: np.ndarray) -> tuple[np.ndarray, int, str]:
    """A task: the plugin's model on ``x``, with the plugin's load count and info."""
    plugin: LinearPlugin = worker_plugin(name, LinearPlugin)
    with plugin.using() as loaded:
        y = loaded.model(torch.from_numpy(x)).numpy()
    return y, plugin.loads, str(loaded.info)


def test_a_model_is_loaded_once_per_worker_and_removed_after(
    client: Client, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    store = RunStore(str(tmp_path / "run"))
    file = save_payload(
        store,
        {"state_dict": model.state_dict(), "note": "tiny"},
        pointer="models/linear.json",
        prefix="linear",
        run_key="k",
    )
    ref = CheckpointRef(store.path("models", file), store.read_json("models/linear.json")["digest"])
    plugin = LinearPlugin(ref, "cpu")
    # What travels to the workers is the reference, never weights.
    assert len(pickle.dumps(plugin)) < 1000 and pickle.loads(pickle.dumps(plugin)).ref == ref
    name = plugin_name("linear", ref)
    assert name == f"pipeline-linear-{ref.short}"
    client.register_plugin(plugin, name=name)
    try:
        x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        results = [client.submit(apply, name, x, pure=False).result() for _ in range(3)]
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        for y, loads, info in results:
            np.testing.assert_allclose(y, expected, rtol=1e-6)
            assert loads == 1 and info == "tiny"
    finally:
        client.unregister_worker_plugin(name)
    gone = client.submit(lambda: name in get_worker().plugins, pure=False).result()
    assert not gone


def test_a_task_without_its_plugin_and_a_missing_device_say_so(client: Client) -> None:
    with pytest.raises(TypeError, match="no LinearPlugin 'pipeline-linear-x' is registered"):
        client.submit(apply, "pipeline-linear-x", np.zeros((1, 4), np.float32)).result()
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="torch sees no CUDA device"):
            pick_device("cuda")
    assert pick_device("cpu").type == "cpu"
