"""Encoder checkpoints: a weights-only file named by the hash of its bytes.

A checkpoint holds the model's state dict, the :class:`EncoderConfig` that rebuilds it, the
epoch it was saved after, the training configuration key and the optimizer state (to resume).
It is written with :func:`torch.save` and read with ``torch.load(weights_only=True)``: no
Python object is unpickled, so a checkpoint from elsewhere cannot run code. Its name is
``encoder-<first 16 hex of sha256>.pt``; ``models/encoder.json`` points at the latest one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch
from pydantic import ValidationError

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
class CheckpointRef:
    """Where a checkpoint is, picklable and small: what a task or worker plugin is given.

    Attributes
    ----------
    url : str
        Absolute path or fsspec URL of the file.
    digest : str
        Full sha256 hex digest of the file's bytes (checked on every load).
    storage_options : mapping
        fsspec options for remote URLs.
    """

    url: str
    digest: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """The first 16 hex digits of the digest: the checkpoint's name."""
        return self.digest[:16]


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


def checkpoint_name(digest: str, prefix: str = "encoder") -> str:
    """File name of a checkpoint with sha256 ``digest``: ``<prefix>-<16 hex>.pt``."""
    return f"{prefix}-{digest[:16]}.pt"


def _to_bytes(payload: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    return buf.getvalue()


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
    data = _to_bytes(
        {
            "format": FORMAT,
            "config": config.model_dump(mode="json"),
            "state_dict": state,
            "epoch": int(epoch),
            "train_key": train_key,
            "optimizer": _cpu(dict(optimizer or {})),
        }
    )
    out = outputs or encoder_outputs("train_encoder")
    digest = hashlib.sha256(data).hexdigest()
    name = checkpoint_name(digest, out.prefix)
    store.write_bytes(f"models/{name}", data)
    history: list[str] = []
    if store.exists(out.pointer):
        old = store.read_json(out.pointer)
        if old.get("train_key") == train_key:
            history = [h for h in old.get("history", []) if h != name]
    history.append(name)
    store.write_json(
        out.pointer,
        {
            "checkpoint": name,
            "digest": digest,
            "epoch": int(epoch),
            "epochs": int(epochs),
            "train_key": train_key,
            "config": config.model_dump(mode="json"),
            "history": history[-keep:],
        },
    )
    for stale in history[:-keep]:
        store.remove(f"models/{stale}")
    log.info("train_encoder: saved %s after epoch %d", name, epoch)
    return name


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu(v) for v in obj)
    return obj


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
    try:
        with fsspec.open(url, "rb", **dict(storage_options)) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {url} does not exist (on the worker)") from None
    ckpt = read_checkpoint(data, url)
    encoder_from_checkpoint(ckpt)
    return CheckpointRef(url, _digest(data), dict(storage_options)), ckpt.config


def _listing(store: RunStore) -> str:
    if not store.exists("models"):
        return "none"
    names = store.listdir("models")
    pts = [n for n in names if n.endswith(".pt")]
    return ", ".join(pts) or "none"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(data: bytes, source: str) -> Checkpoint:
    """Parse checkpoint bytes with ``torch.load(weights_only=True)`` and check their format.

    Raises
    ------
    CheckpointError
        Naming ``source`` and what is wrong: truncated or not a torch file, not weights-only,
        not a pipeline encoder checkpoint, or a model config this version cannot build.
    """
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {source} is not a weights-only checkpoint (it pickles Python objects, "
            f"which pipeline does not load: {str(exc).splitlines()[0]}). Save the state dict "
            "and config as `train_encoder` does"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {source} cannot be read ({len(data)} bytes; truncated or not a torch "
            f"file: {str(exc).splitlines()[0]}). Retrain with `train_encoder` or restore the file"
        ) from None
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
    try:
        with fsspec.open(ref.url, "rb", **dict(ref.storage_options)) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {ref.url} does not exist (it was there when the stage started; was "
            "it deleted?). Run the stage again"
        ) from None
    if _digest(data) != ref.digest:
        raise CheckpointError(
            f"checkpoint {ref.url} changed while in use (sha256 {_digest(data)[:16]}, expected "
            f"{ref.short}); run the stage again so every worker uses the same weights"
        )
    return read_checkpoint(data, ref.url)


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
