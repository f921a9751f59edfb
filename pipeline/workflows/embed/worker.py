"""The encoder on a worker: an :class:`EncoderPlugin` (one model per worker, keyed by its
checkpoint's digest; :mod:`pipeline.compute.serving`) and the per-task inference.

A task gets the store and a row range, reads its images from Zarr, embeds them and writes its
own whole chunks of the output, so neither pixels nor weights travel through the scheduler or
the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from distributed import get_worker

from pipeline.compute.checkpoints import CheckpointRef
from pipeline.compute.serving import (
    ModelPlugin,
    amp_dtype,
    autocast,
    pick_device,
    worker_plugin,
)
from pipeline.compute.serving import plugin_name as _plugin_name
from pipeline.core.store import RunStore
from pipeline.workflows.embed.checkpoint import encoder_from_checkpoint, load_checkpoint
from pipeline.workflows.embed.inputs import prepare_batch
from pipeline.workflows.embed.models import EncoderConfig

__all__ = ["EncoderPlugin", "amp_dtype", "embed_rows", "pick_device", "plugin_name"]

log = logging.getLogger(__name__)


def plugin_name(ref: CheckpointRef) -> str:
    """Name of the worker plugin holding the encoder of checkpoint ``ref``."""
    return _plugin_name("encoder", ref)


class EncoderPlugin(ModelPlugin):
    """Holds one checkpoint's encoder on a worker, loaded on first use (see
    :class:`~pipeline.compute.serving.ModelPlugin`)."""

    def load_model(self, ref: CheckpointRef, device: torch.device) -> tuple[torch.nn.Module, Any]:
        """The checkpoint's encoder, in eval mode on ``device``; its info is the config."""
        ckpt = load_checkpoint(ref)
        return encoder_from_checkpoint(ckpt).eval().to(device), ckpt.config

    def embed(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """Encode ``images`` (n, h, w[, c]) in batches -> float32 (n, feature_dim)."""
        with self.using() as loaded:
            config: EncoderConfig = loaded.info
            out = np.empty((len(images), config.feature_dim), dtype=np.float32)
            for i in range(0, len(images), batch_size):
                x = prepare_batch(images[i : i + batch_size], config)
                x = x.to(loaded.device, non_blocking=True)
                if loaded.device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(loaded.device, self.amp):
                    h = loaded.model(x)
                out[i : i + len(x)] = h.float().cpu().numpy()
            return out


def embed_rows(
    store_url: str,
    storage_options: Mapping[str, Any],
    source: str,
    target: str,
    start: int,
    stop: int,
    keep: np.ndarray | None,
    plugin: str,
    batch_size: int,
) -> dict[str, Any]:
    """One inference task: embed rows ``start:stop`` of ``source`` into ``target``.

    Parameters
    ----------
    store_url, storage_options : str, mapping
        The run store.
    source : str
        Image array, ``(image, y, x[, channel])``.
    target : str
        Output array ``(image, feature)``, float32, chunked so that ``start:stop`` covers
        whole chunks.
    start, stop : int
        Row range.
    keep : ndarray of bool, shape (stop - start,), optional
        Rows to embed; the others are written as NaN (and not read through the model).
    plugin : str
        Name of the :class:`EncoderPlugin` registered on this worker.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    dict
        ``worker``, ``device``, ``rows`` embedded, ``loads`` (model loads on this worker so
        far), ``seconds`` (compute) and ``read_seconds``.
    """
    encoder: EncoderPlugin = worker_plugin(plugin, EncoderPlugin)
    store = RunStore(store_url, storage_options)
    t0 = time.perf_counter()
    images = store.open_array(source, mode="r")[start:stop]
    dst = store.open_array(target).with_config({"write_empty_chunks": True})
    out = np.full((stop - start, dst.shape[1]), np.nan, np.float32)
    rows = np.flatnonzero(keep) if keep is not None else np.arange(stop - start)
    t1 = time.perf_counter()
    if len(rows) == len(out):
        out[:] = encoder.embed(np.asarray(images), batch_size)  # no copy when all are kept
    elif len(rows):
        out[rows] = encoder.embed(np.asarray(images)[rows], batch_size)
    t2 = time.perf_counter()
    dst[start:stop] = out
    return {
        "worker": get_worker().address,
        "device": encoder.device_name or "none",
        "rows": len(rows),
        "loads": encoder.loads,
        "seconds": t2 - t1,
        "read_seconds": t1 - t0,
    }
