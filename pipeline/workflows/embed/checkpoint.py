"""Encoder checkpoints: a weights-only file named by the hash of its bytes.

A checkpoint holds the model's state dict, the :class:`EncoderConfig` that rebuilds it, the
epoch it was saved after, the training configuration key and the optimizer state (to resume).
It is stored as every model is (:mod:`pipeline.compute.checkpoints`): weights only, read with
``torch.load(weights_only=True)`` so that a checkpoint from elsewhere cannot run code, named
``encoder-<first 16 hex of sha256>.pt``, with ``models/encoder.json`` pointing at the latest
one (another training step's are named after the step).
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
    checkpoint_name,
    digest,
    load_payload,
    read_bytes,
    read_verified,
    save_payload,
    to_cpu,
)
from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError
from pipeline.workflows.embed.models import (
    EncoderConfig,
    ResNetEncoder,
    build_encoder,
    encoder_state_dict,
)
from pipeline.workflows.embed.spec import EncoderOutputs, encoder_outputs

__all__ = [
    "LATEST",
    "Checkpoint",
    "CheckpointRef",
    "checkpoint_name",
    "encoder_from_checkpoint",
    "inspect_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

#: Format tag stored in every checkpoint, checked on load.
FORMAT = "pipeline.simclr/1"
#: Pointer to the latest checkpoint of the step ``train_encoder``, relative to the store
#: (another step's is :func:`~pipeline.workflows.embed.spec.encoder_outputs`' ``pointer``).
LATEST = encoder_outputs("train_encoder").pointer


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    config : EncoderConfig
    state_dict : dict of str to Tensor
        The SimCLR model's parameters and buffers (``encoder.*`` and ``head.*``).
    epoch : int
        Epochs trained when it was saved.
    train_key : str
        Configuration key of the training run (resume only continues a matching run).
    optimizer : dict
        The optimizer's state dict (empty when not saved).
    source : str
        Where it was read from, for messages.
    """

    config: EncoderConfig
    state_dict: dict[str, torch.Tensor]
    epoch: int
    train_key: str
    optimizer: dict[str, Any]
    source: str


def save_checkpoint(
    store: RunStore,
    model: torch.nn.Module,
    config: EncoderConfig,
    *,
    epoch: int,
    epochs: int,
    train_key: str,
    optimizer: Mapping[str, Any] | None = None,
    keep: int = 1,
    outputs: EncoderOutputs | None = None,
) -> str:
    """Write a checkpoint under ``models/`` and point the step's pointer file at it.

    Parameters
    ----------
    store : RunStore
    model : torch.nn.Module
        The SimCLR model (its state dict is saved from CPU copies).
    config : EncoderConfig
    epoch, epochs : int
        Epochs done, and the run's total.
    train_key : str
        Configuration key of the training run.
    optimizer : mapping, optional
        The optimizer's state dict, for resuming.
    keep : int
        How many of this run's checkpoints to keep (older ones are deleted after the new one
        and the pointer are written, so a crash never leaves no checkpoint).
    outputs : EncoderOutputs, optional
        The training step's pointer and file prefix (default: the step ``train_encoder``'s,
        ``models/encoder.json`` and ``encoder-<hash>.pt``).

    Returns
    -------
    str
        The file name (``encoder-<hash>.pt``), relative to ``models/``.
    """
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    out = outputs or encoder_outputs("train_encoder")
    name = save_payload(
        store,
        {
            "format": FORMAT,
            "config": config.model_dump(mode="json"),
            "state_dict": state,
            "epoch": int(epoch),
            "train_key": train_key,
            "optimizer": to_cpu(dict(optimizer or {})),
        },
        pointer=out.pointer,
        prefix=out.prefix,
        run_key=train_key,
        keep=keep,
        epoch=int(epoch),
        epochs=int(epochs),
        config=config.model_dump(mode="json"),
    )
    log.info("train_encoder: saved %s after epoch %d", name, epoch)
    return name


def resolve_checkpoint(
    store: RunStore, checkpoint: str | None, encoder: str = "train_encoder"
) -> tuple[str, dict[str, Any]]:
    """Find the checkpoint file an ``embed`` run should use, without reading it.

    Parameters
    ----------
    store : RunStore
    checkpoint : str or None
        None: the latest one the ``encoder`` step wrote (for ``train_encoder``:
        ``models/encoder.json``). A bare file name (``encoder-….pt``): that file under the
        store's ``models/``. Otherwise an absolute path or fsspec URL.
    encoder : str
        The ``train_encoder`` step whose latest checkpoint ``checkpoint=None`` means.

    Returns
    -------
    url : str
        Absolute path or URL of the file.
    storage_options : dict
        fsspec options to open it (the store's, for files inside the store).

    Raises
    ------
    CheckpointError
        If there is no such file.
    """
    if checkpoint is None:
        pointer = encoder_outputs(encoder).pointer
        if not store.exists(pointer):
            raise CheckpointError(
                f"no encoder checkpoint of step {encoder!r} in {store.path('models')} (no "
                f"{pointer}): run the `train_encoder` stage first (as step {encoder!r}), or give "
                "`checkpoint:` (a file name under models/, a path or a URL)"
            )
        checkpoint = str(store.read_json(pointer)["checkpoint"])
    if "/" not in checkpoint and "\\" not in checkpoint:
        rel = f"models/{checkpoint}"
        if not store.exists(rel):
            raise CheckpointError(
                f"checkpoint {store.path(rel)} does not exist: check the name (checkpoints "
                f"there: {_listing(store)}) or run `train_encoder` again"
            )
        return store.path(rel), dict(store.storage_options)
    fs, path = fsspec.core.url_to_fs(checkpoint)
    if not fs.exists(path):
        raise CheckpointError(
            f"checkpoint {checkpoint} does not exist: give an existing file (or leave "
            "`checkpoint` unset to use the latest from `train_encoder`)"
        )
    return checkpoint, {}


def inspect_checkpoint(
    url: str, storage_options: Mapping[str, Any]
) -> tuple[CheckpointRef, EncoderConfig]:
    """Read and fully check a checkpoint, returning the reference workers load it by.

    Run it as a task on a worker: it checks the file where the model will be loaded, and the
    weights never pass through the client.

    Returns
    -------
    ref : CheckpointRef
    config : EncoderConfig

    Raises
    ------
    CheckpointError
        If the file is unreadable or its weights do not fit its config.
    """
    data = read_bytes(url, storage_options)
    ckpt = read_checkpoint(data, url)
    encoder_from_checkpoint(ckpt)
    return CheckpointRef(url, digest(data), dict(storage_options)), ckpt.config


def _listing(store: RunStore) -> str:
    if not store.exists("models"):
        return "none"
    names = store.listdir("models")
    pts = [n for n in names if n.endswith(".pt")]
    return ", ".join(pts) or "none"


def read_checkpoint(data: bytes, source: str) -> Checkpoint:
    """Parse checkpoint bytes with ``torch.load(weights_only=True)`` and check their format.

    Raises
    ------
    CheckpointError
        Naming ``source`` and what is wrong: truncated or not a torch file, not weights-only,
        not a pipeline encoder checkpoint, or a model config this version cannot build.
    """
    payload = load_payload(data, source, "Retrain with `train_encoder`")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {source} is not a pipeline encoder checkpoint (format {found!r}, "
            f"expected {FORMAT!r}): it was made by another program or another architecture. "
            "Use a checkpoint written by `train_encoder`"
        )
    try:
        config = EncoderConfig.model_validate(payload.get("config"))
    except ValidationError as exc:
        raise CheckpointError(
            f"checkpoint {source} has a model config this version cannot build: "
            f"{exc.errors()[0]['msg']}. Retrain with `train_encoder`"
        ) from None
    return Checkpoint(
        config=config,
        state_dict=dict(payload["state_dict"]),
        epoch=int(payload.get("epoch", 0)),
        train_key=str(payload.get("train_key", "")),
        optimizer=dict(payload.get("optimizer") or {}),
        source=source,
    )


def load_checkpoint(ref: CheckpointRef) -> Checkpoint:
    """Read the checkpoint ``ref`` names and check that its bytes match its digest.

    Raises
    ------
    CheckpointError
        If the file is gone, changed since it was resolved, or unreadable.
    """
    return read_checkpoint(read_verified(ref), ref.url)


def encoder_from_checkpoint(ckpt: Checkpoint) -> ResNetEncoder:
    """Build the encoder the checkpoint's config describes and load its weights (strict).

    Raises
    ------
    CheckpointError
        If the weights are for another architecture (missing, unexpected or mis-shaped keys).
    """
    encoder = build_encoder(ckpt.config)
    weights = encoder_state_dict(ckpt.state_dict)
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t", 2)
        detail = "; ".join(s.strip() for s in first[1:2]) or str(exc).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {ckpt.source} holds weights of another architecture than its config "
            f"({ckpt.config.arch}, {ckpt.config.in_channels} channel(s)): {detail[:300]}. Use "
            "the checkpoint `train_encoder` wrote with this config"
        ) from None
    return encoder
