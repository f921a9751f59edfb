"""Weights-only checkpoints shared by every model: named by their hash, verified on load,
pruned with their run's history, and never unpickled."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from pipeline.compute.checkpoints import (
    CheckpointRef,
    load_payload,
    read_verified,
    save_payload,
)
from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError


def _save(store: RunStore, value: float, run_key: str = "run-a", keep: int = 1) -> str:
    payload = {"format": "test/1", "state_dict": {"w": torch.full((3,), value)}}
    return save_payload(
        store, payload, pointer="models/net.json", prefix="net", run_key=run_key, keep=keep, epoch=1
    )


def test_a_checkpoint_is_named_by_its_hash_and_pointed_at(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    name = _save(store, 1.0)
    pointer = store.read_json("models/net.json")
    assert name.startswith("net-") and name == pointer["checkpoint"] and pointer["epoch"] == 1
    assert name == f"net-{pointer['digest'][:16]}.pt"
    ref = CheckpointRef(store.path("models", name), pointer["digest"])
    payload = load_payload(read_verified(ref), ref.url, "Retrain")
    assert torch.equal(payload["state_dict"]["w"], torch.ones(3))
    assert _save(store, 1.0) == name  # the same weights, the same file


def test_older_checkpoints_of_the_same_run_are_pruned_others_kept(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    first = _save(store, 1.0)
    second = _save(store, 2.0, keep=2)
    third = _save(store, 3.0, keep=2)
    assert not store.exists(f"models/{first}")
    assert store.exists(f"models/{second}") and store.exists(f"models/{third}")
    other = _save(store, 4.0, run_key="run-b")  # another run: its history starts afresh
    assert store.exists(f"models/{third}") and store.read_json("models/net.json")["history"] == [
        other
    ]


def test_a_changed_or_missing_file_is_refused(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    name = _save(store, 1.0)
    ref = CheckpointRef(store.path("models", name), store.read_json("models/net.json")["digest"])
    Path(ref.url).write_bytes(Path(ref.url).read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="changed while in use"):
        read_verified(ref)
    Path(ref.url).unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        read_verified(ref)


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_a_file_that_pickles_code_is_not_loaded(capsys: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    torch.save({"state_dict": {}, "evil": _Boom()}, buf, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="is not a weights-only checkpoint"):
        load_payload(buf.getvalue(), "evil.pt", "Retrain with `train_encoder`")
    assert "this must never run" not in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_payload(b"not a torch file", "junk.pt", "Retrain")
