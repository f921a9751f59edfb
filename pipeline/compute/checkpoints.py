"""Model checkpoints as data: weights-only files named by the hash of their bytes.

Any model a stage trains (the SimCLR encoder, a segmentation network) is saved here the same
way:

* the payload (state dict, config, epoch, ...) is written with :func:`torch.save` and read
  back with ``torch.load(weights_only=True)``: no Python object is unpickled, so a checkpoint
  from elsewhere cannot run code;
* the file is ``models/<prefix>-<first 16 hex of sha256>.pt``, and a small JSON pointer names
  the latest one (with its digest and the run's history, so older ones can be pruned);
* a :class:`CheckpointRef` (path + digest) is what tasks and worker plugins receive; every
  load checks the bytes against the digest, so all workers use the same weights.

What a payload must hold (its format tag, its config) is the model's business; see
:mod:`pipeline.workflows.embed.checkpoint` for the encoder's.
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

from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError

__all__ = [
    "CheckpointRef",
    "checkpoint_name",
    "digest",
    "load_payload",
    "read_bytes",
    "read_verified",
    "save_payload",
    "to_cpu",
]

log = logging.getLogger(__name__)


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


def digest(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def checkpoint_name(sha256: str, prefix: str) -> str:
    """File name of a checkpoint with digest ``sha256``: ``<prefix>-<16 hex>.pt``."""
    return f"{prefix}-{sha256[:16]}.pt"


def read_bytes(url: str, storage_options: Mapping[str, Any]) -> bytes:
    """The bytes of the checkpoint file at ``url``.

    Raises
    ------
    CheckpointError
        If there is no such file (where this runs, e.g. on a worker).
    """
    try:
        with fsspec.open(url, "rb", **dict(storage_options)) as fh:
            return bytes(fh.read())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {url} does not exist (on the worker)") from None


def read_verified(ref: CheckpointRef) -> bytes:
    """The bytes of the checkpoint ``ref`` names, checked against its digest.

    Raises
    ------
    CheckpointError
        If the file is gone or changed since it was resolved.
    """
    try:
        with fsspec.open(ref.url, "rb", **dict(ref.storage_options)) as fh:
            data = bytes(fh.read())
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {ref.url} does not exist (it was there when the stage started; was "
            "it deleted?). Run the stage again"
        ) from None
    if digest(data) != ref.digest:
        raise CheckpointError(
            f"checkpoint {ref.url} changed while in use (sha256 {digest(data)[:16]}, expected "
            f"{ref.short}); run the stage again so every worker uses the same weights"
        )
    return data


def load_payload(data: bytes, source: str, retrain: str) -> Any:
    """Parse checkpoint bytes with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    data : bytes
    source : str
        Where they came from, for messages.
    retrain : str
        What makes a good checkpoint (e.g. "Retrain with `train_encoder`"), for messages.

    Returns
    -------
    object
        What the file holds (tensors, containers and plain values only); the caller checks
        that it is its model's payload.

    Raises
    ------
    CheckpointError
        Naming ``source`` and what is wrong: truncated or not a torch file, or not
        weights-only (it pickles Python objects).
    """
    import torch

    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not data.startswith((b"PK", b"\x80")):
            # Neither a torch zip archive nor a pickle: torch reports any bytes as unpickling.
            raise CheckpointError(
                f"checkpoint {source} cannot be read ({len(data)} bytes; not a torch file). "
                f"{retrain} or restore the file"
            ) from None
        raise CheckpointError(
            f"checkpoint {source} is not a weights-only checkpoint (it pickles Python objects, "
            f"which pipeline does not load: {str(exc).splitlines()[0]}). {retrain}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {source} cannot be read ({len(data)} bytes; truncated or not a torch "
            f"file: {str(exc).splitlines()[0]}). {retrain} or restore the file"
        ) from None
    return payload


def save_payload(
    store: RunStore,
    payload: Mapping[str, Any],
    *,
    pointer: str,
    prefix: str,
    run_key: str,
    keep: int = 1,
    **record: Any,
) -> str:
    """Write a checkpoint under ``models/`` and point ``pointer`` at it.

    Parameters
    ----------
    store : RunStore
    payload : mapping
        Tensors and JSON-able values only (CPU tensors: the file must load anywhere).
    pointer : str
        The JSON file (relative to the store) naming the latest checkpoint of this run.
    prefix : str
        File name prefix (the model's kind, or the training step's name).
    run_key : str
        The training configuration: checkpoints of a pointer with another key are not this
        run's history, and are not pruned.
    keep : int
        How many of this run's checkpoints to keep (older ones are deleted after the new one
        and the pointer are written, so a crash never leaves no checkpoint).
    **record
        Further JSON-able facts the pointer records (epoch, config, ...).

    Returns
    -------
    str
        The file name (``<prefix>-<hash>.pt``), relative to ``models/``.
    """
    import torch

    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    data = buf.getvalue()
    sha = digest(data)
    name = checkpoint_name(sha, prefix)
    store.write_bytes(f"models/{name}", data)
    history: list[str] = []
    if store.exists(pointer):
        old = store.read_json(pointer)
        if old.get("train_key") == run_key:
            history = [h for h in old.get("history", []) if h != name]
    history.append(name)
    store.write_json(
        pointer,
        {
            "checkpoint": name,
            "digest": sha,
            "train_key": run_key,
            **record,
            "history": history[-keep:],
        },
    )
    for stale in history[:-keep]:
        store.remove(f"models/{stale}")
    return name


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) moved to the CPU: an
    optimizer's state as a checkpoint stores it, loadable anywhere."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
