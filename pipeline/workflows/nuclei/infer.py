"""The segmenter on a worker: a :class:`SegmenterPlugin` (one model per worker, keyed by its
checkpoint's digest, :mod:`pipeline.compute.serving`), the whole-image forward pass, and the
per-task tiled inference of ``segment``.

A task gets the store, an image array's name and a list of tiles; it reads each tile's window
from Zarr, infers the batch, crops the halos and writes the cores of the probability and
mask arrays (one chunk each) itself, then the tile's marker: neither pixels nor weights pass
through the scheduler or the client, and a killed run redoes only the tiles without a marker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from distributed import get_worker

from pipeline.compute.checkpoints import CheckpointRef
from pipeline.compute.serving import ModelPlugin, autocast, pick_device, worker_plugin
from pipeline.compute.serving import plugin_name as _plugin_name
from pipeline.core.store import RunStore
from pipeline.workflows.nuclei.checkpoint import (
    inspect_segmenter,
    load_segmenter,
    segmenter_from_checkpoint,
)
from pipeline.workflows.nuclei.data import pad_to_grid, to_channels, unit_scale
from pipeline.workflows.nuclei.model import SegmenterConfig, probabilities
from pipeline.workflows.nuclei.tiles import Tile, window_of

__all__ = [
    "SegmenterPlugin",
    "forward",
    "plugin_name",
    "predict_image",
    "preflight",
    "segment_tiles",
]

log = logging.getLogger(__name__)


def plugin_name(ref: CheckpointRef) -> str:
    """Name of the worker plugin holding the segmenter of checkpoint ``ref``."""
    return _plugin_name("segmenter", ref)


def forward(model: torch.nn.Module, x: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    """Probabilities of ``x`` (float32 ``(n, c, h, w)``, sides multiples of 16) -> ``(n, h, w)``.

    Runs under the caller's ``torch.inference_mode``; float32 on CPU, autocast on CUDA when
    ``amp``.
    """
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
    if device.type == "cuda":
        t = t.contiguous(memory_format=torch.channels_last)
    with autocast(device, amp):
        logits = model(t)
    return probabilities(logits)[:, 0].cpu().numpy()


def predict_image(
    model: torch.nn.Module,
    image: np.ndarray,
    config: SegmenterConfig,
    device: torch.device | str = "cpu",
    amp: bool = False,
) -> np.ndarray:
    """Whole-image inference: the reference that tiled inference equals.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, on ``device``.
    image : ndarray, shape (y, x) or (y, x, channel)
        In the units of its dtype (uint8, uint16 or float in [0, 1]).
    config : SegmenterConfig
    device : torch.device or str
    amp : bool

    Returns
    -------
    ndarray of float32, shape (y, x)
        Probability of "nucleus" (the image is zero-padded at its bottom and right to the
        16-pixel grid, and the padding cropped off).
    """
    h, w = image.shape[:2]
    x = pad_to_grid(to_channels(image[None], config.in_channels, unit_scale(image.dtype)))
    with torch.inference_mode():
        return forward(model, x, torch.device(device), amp)[0, :h, :w]


class SegmenterPlugin(ModelPlugin):
    """Holds one checkpoint's segmenter on a worker, loaded by the first task that uses it."""

    def load_model(self, ref: CheckpointRef, device: torch.device) -> tuple[torch.nn.Module, Any]:
        """The checkpoint's network in eval mode on ``device``; its info is the config."""
        ckpt = load_segmenter(ref)
        return segmenter_from_checkpoint(ckpt).eval().to(device), ckpt.config

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Probabilities of whole images (each ``(y, x[, c])``), one forward pass each."""
        with self.using() as loaded:
            return [
                predict_image(loaded.model, im, loaded.info, loaded.device, self.amp)
                for im in images
            ]

    def predict_windows(self, windows: np.ndarray, scale: float) -> np.ndarray:
        """Probabilities of same-shaped windows ``(n, wh, ww[, c])`` -> ``(n, wh, ww)``."""
        with self.using() as loaded:
            config: SegmenterConfig = loaded.info
            x = to_channels(windows, config.in_channels, scale)
            return forward(loaded.model, x, loaded.device, self.amp)


def preflight(url: str, options: Mapping[str, Any], device: str) -> tuple[CheckpointRef, Any]:
    """Check the device and the checkpoint where the tasks will run (a task)."""
    pick_device(device)
    return inspect_segmenter(url, options)


def _plane(array: Any, plane: int, planar: bool) -> Any:
    # A 2-D input (a mosaic) is one plane; an (image, ...) array is indexed lazily.
    return array if planar else array[plane]


def segment_tiles(
    store_url: str,
    storage_options: Mapping[str, Any],
    source: str,
    outputs: tuple[str, str],
    tiles: Sequence[Tile],
    plugin: str,
    threshold: float,
    task: str,
    batch_pixels: int = 1 << 20,
) -> dict[str, Any]:
    """One inference task: infer ``tiles`` of ``source`` and write their cores.

    Parameters
    ----------
    store_url, storage_options : str, mapping
    source : str
        ``(image, y, x[, channel])`` or 2-D image array.
    outputs : (str, str)
        The probability (float16) and mask (uint8 0/1) arrays, shaped as ``source``'s planes
        and chunked by the tiles' cores.
    tiles : sequence of Tile
    plugin : str
        The :class:`SegmenterPlugin` registered on this worker.
    threshold : float
        Probability above which a pixel is nucleus (taken before rounding to float16).
    task : str
        Marker folder: each tile's marker is written after its chunks.
    batch_pixels : int
        Window pixels per forward pass (at least one window).

    Returns
    -------
    dict
        ``worker``, ``device``, ``tiles``, ``megapixels`` (cores), ``loads``, ``seconds``
        (forward passes) and ``read_seconds``.
    """
    model: SegmenterPlugin = worker_plugin(plugin, SegmenterPlugin)
    store = RunStore(store_url, storage_options)
    src = store.open_array(source, mode="r")
    planar = src.ndim == 2
    prob = store.open_array(outputs[0]).with_config({"write_empty_chunks": True})
    mask = store.open_array(outputs[1]).with_config({"write_empty_chunks": True})
    scale = unit_scale(src.dtype)
    read_s = infer_s = 0.0
    pixels = 0
    # Same-shaped windows share a forward pass (edge tiles have smaller windows).
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.window_shape, []).append(t)
    batches = []
    for group in groups.values():
        h, w = group[0].window_shape
        # Bounded memory per forward pass: activations scale with the pixels of the batch.
        per = max(1, batch_pixels // (h * w))
        batches += [group[i : i + per] for i in range(0, len(group), per)]
    for group in batches:
        t0 = time.perf_counter()
        windows = np.stack([window_of(_plane(src, t.plane, planar), t) for t in group])
        t1 = time.perf_counter()
        p = model.predict_windows(windows, scale)
        t2 = time.perf_counter()
        read_s += t1 - t0
        infer_s += t2 - t1
        for t, pw in zip(group, p, strict=True):
            core = pw[t.y0 - t.wy0 : t.y1 - t.wy0, t.x0 - t.wx0 : t.x1 - t.wx0]
            region = (slice(t.y0, t.y1), slice(t.x0, t.x1))
            where = region if planar else (t.plane, *region)
            prob[where] = core.astype(np.float16)
            mask[where] = (core > threshold).astype(np.uint8)
            pixels += (t.y1 - t.y0) * (t.x1 - t.x0)
            store.mark_done(task, t.index, {"plane": t.plane})
    return {
        "worker": get_worker().address,
        "device": model.device_name or "none",
        "tiles": len(tiles),
        "megapixels": pixels / 1e6,
        "loads": model.loads,
        "seconds": infer_s,
        "read_seconds": read_s,
    }
