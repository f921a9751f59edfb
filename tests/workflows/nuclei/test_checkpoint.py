"""Segmenter checkpoints: where `segment` looks for one, and what a bad one says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError
from pipeline.workflows.nuclei.checkpoint import read_segmenter, resolve_segmenter


def test_a_store_without_a_trained_segmenter_names_the_fix(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match="run `train_segmenter` first"):
        resolve_segmenter(store, None)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(CheckpointError, match=f"run store {re.escape(str(other))}"):
        resolve_segmenter(store, str(other))


def test_a_missing_file_names_the_fix(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match="does not exist: check the name"):
        resolve_segmenter(store, "segmenter-0123456789abcdef.pt")
    with pytest.raises(CheckpointError, match=r"give a \.pt file, a run store"):
        resolve_segmenter(store, str(tmp_path / "nope.pt"))


def test_a_file_that_is_not_a_segmenter_is_refused(tmp_path: Path) -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"format": "pipeline.simclr/1", "state_dict": {}}, buf)
    with pytest.raises(CheckpointError, match="not a pipeline segmenter checkpoint"):
        read_segmenter(buf.getvalue(), "enc.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_segmenter(b"garbage", "bad.pt")
