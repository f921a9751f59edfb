"""Segmenter checkpoints: weights-only files named by the hash of their bytes
(:mod:`pipeline.compute.checkpoints`).

A training step keeps two: the **best** (lowest validation loss; what evaluation and
``segment`` use, pointed at by ``models/segmenter.json``) and the **last** (weights, optimizer,
scheduler and early-stopping state after the latest epoch, pointed at by
``models/segmenter-last.json``), from which a stopped run resumes to the weights an
uninterrupted one would have reached.

``segment`` may take a checkpoint from anywhere: a file name under the store's ``models/``, a
path or URL of a ``.pt`` file, or another run store, whose latest trained segmenter is used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import torch
from pydantic import ValidationError

from pipeline.compute.checkpoints import (
    CheckpointRef,
    digest,
    load_payload,
    read_bytes,
    read_verified,
    save_payload,
    to_cpu,
)
from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError
from pipeline.workflows.nuclei.model import MultiResUNet, SegmenterConfig, build_segmenter
from pipeline.workflows.nuclei.spec import TrainOutputs, train_outputs

__all__ = [
    "FORMAT",
    "SegmenterCheckpoint",
    "inspect_segmenter",
    "last_pointer",
    "load_segmenter",
    "read_segmenter",
    "resolve_segmenter",
    "save_segmenter",
    "segmenter_from_checkpoint",
]

log = logging.getLogger(__name__)

#: Format tag of every segmenter checkpoint, checked on load.
FORMAT = "pipeline.multiresunet/1"
_RETRAIN = "Retrain with `train_segmenter`"


@dataclass(frozen=True)
class SegmenterCheckpoint:
    """A loaded segmenter checkpoint.

    Attributes
    ----------
    config : SegmenterConfig
    state_dict : dict of str to Tensor
    epoch : int
        Epochs trained when it was saved.
    train_key : str
        The training configuration (a resume continues only a matching run).
    state : dict
        Resume state (optimizer, scheduler, best loss, ...); empty in a best checkpoint.
    source : str
    """

    config: SegmenterConfig
    state_dict: dict[str, torch.Tensor]
    epoch: int
    train_key: str
    state: dict[str, Any]
    source: str


def last_pointer(out: TrainOutputs) -> str:
    """The pointer to a step's resume checkpoint (``models/segmenter-last.json``)."""
    return f"models/{out.prefix}-last.json"


def save_segmenter(
    store: RunStore,
    model: torch.nn.Module,
    config: SegmenterConfig,
    *,
    out: TrainOutputs,
    epoch: int,
    train_key: str,
    state: Mapping[str, Any] | None = None,
    **record: Any,
) -> str:
    """Write a checkpoint: the best one (``state`` None) or the resume one (with ``state``).

    Returns
    -------
    str
        The file name under ``models/``.
    """
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    last = state is not None
    return save_payload(
        store,
        {
            "format": FORMAT,
            "config": config.model_dump(mode="json"),
            "state_dict": weights,
            "epoch": int(epoch),
            "train_key": train_key,
            "state": to_cpu(dict(state or {})),
        },
        pointer=last_pointer(out) if last else out.pointer,
        prefix=f"{out.prefix}-last" if last else out.prefix,
        run_key=train_key,
        epoch=int(epoch),
        config=config.model_dump(mode="json"),
        **record,
    )


def read_segmenter(data: bytes, source: str) -> SegmenterCheckpoint:
    """Parse checkpoint bytes (weights only) and check that they are a segmenter's.

    Raises
    ------
    CheckpointError
        Naming ``source``: unreadable, not weights-only, another model's, or a config this
        version cannot build.
    """
    payload = load_payload(data, source, _RETRAIN)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {source} is not a pipeline segmenter checkpoint (format {found!r}, "
            f"expected {FORMAT!r}); use one written by `train_segmenter`"
        )
    try:
        config = SegmenterConfig.model_validate(payload.get("config"))
    except ValidationError as exc:
        raise CheckpointError(
            f"checkpoint {source} has a model config this version cannot build: "
            f"{exc.errors()[0]['msg']}. {_RETRAIN}"
        ) from None
    return SegmenterCheckpoint(
        config=config,
        state_dict=dict(payload["state_dict"]),
        epoch=int(payload.get("epoch", 0)),
        train_key=str(payload.get("train_key", "")),
        state=dict(payload.get("state") or {}),
        source=source,
    )


def load_segmenter(ref: CheckpointRef) -> SegmenterCheckpoint:
    """Read the checkpoint ``ref`` names, checked against its digest."""
    return read_segmenter(read_verified(ref), ref.url)


def segmenter_from_checkpoint(ckpt: SegmenterCheckpoint) -> MultiResUNet:
    """The network the checkpoint describes with its weights (strict), on the CPU.

    Raises
    ------
    CheckpointError
        If the weights do not fit the config.
    """
    model = build_segmenter(ckpt.config)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1:2] or str(exc).splitlines()[:1]
        raise CheckpointError(
            f"checkpoint {ckpt.source} holds weights that do not fit its config "
            f"({ckpt.config.widths}, {ckpt.config.in_channels} channel(s)): "
            f"{detail[0].strip()[:300]}. {_RETRAIN}"
        ) from None
    return model


def inspect_segmenter(
    url: str, storage_options: Mapping[str, Any]
) -> tuple[CheckpointRef, SegmenterConfig]:
    """Read and fully check a checkpoint (run it on a worker: the weights stay there).

    Returns
    -------
    ref : CheckpointRef
    config : SegmenterConfig
    """
    data = read_bytes(url, storage_options)
    ckpt = read_segmenter(data, url)
    segmenter_from_checkpoint(ckpt)
    return CheckpointRef(url, digest(data), dict(storage_options)), ckpt.config


def resolve_segmenter(
    store: RunStore, checkpoint: str | None, segmenter: str = "train_segmenter"
) -> tuple[str, dict[str, Any]]:
    """The checkpoint file a stage should use, without reading it.

    Parameters
    ----------
    store : RunStore
    checkpoint : str or None
        None: the best checkpoint of step ``segmenter`` in this store. A bare file name: that
        file under ``models/``. A path or URL ending in ``.pt``: that file. Any other path or
        URL: a run store, whose step ``segmenter``'s best checkpoint is used.
    segmenter : str
        The ``train_segmenter`` step.

    Returns
    -------
    url : str
    storage_options : dict

    Raises
    ------
    CheckpointError
        If there is no such file, or the run store has no trained segmenter.
    """
    pointer = train_outputs(segmenter).pointer
    if checkpoint is None:
        return _from_store(store, pointer, segmenter, "this store")
    if "/" not in checkpoint and "\\" not in checkpoint and checkpoint.endswith(".pt"):
        rel = f"models/{checkpoint}"
        if not store.exists(rel):
            raise CheckpointError(
                f"checkpoint {store.path(rel)} does not exist: check the name or run "
                "`train_segmenter` again"
            )
        return store.path(rel), dict(store.storage_options)
    fs, path = fsspec.core.url_to_fs(checkpoint)
    if not fs.exists(path):
        raise CheckpointError(
            f"checkpoint {checkpoint} does not exist: give a .pt file, a run store that "
            "holds a trained segmenter, or leave `checkpoint` unset"
        )
    if fs.isdir(path):
        return _from_store(RunStore(checkpoint), pointer, segmenter, f"run store {checkpoint}")
    return checkpoint, {}


def _from_store(
    store: RunStore, pointer: str, segmenter: str, where: str
) -> tuple[str, dict[str, Any]]:
    if not store.exists(pointer):
        raise CheckpointError(
            f"no trained segmenter of step {segmenter!r} in {where} ({store.path(pointer)} "
            "is missing): run `train_segmenter` first, or give `checkpoint:` (a .pt file or "
            "a run store that holds one)"
        )
    name = str(store.read_json(pointer)["checkpoint"])
    rel = f"models/{name}"
    if not store.exists(rel):
        raise CheckpointError(
            f"{store.path(pointer)} names {name}, which is not in {store.path('models')}; "
            "run `train_segmenter` again"
        )
    return store.path(rel), dict(store.storage_options)
