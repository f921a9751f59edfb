"""What runs on a worker: the encoder held once per worker, and the per-task inference.

The model lives in a :class:`EncoderPlugin` registered under a name keyed by the checkpoint's
hash, not in a module global: it is loaded on the worker's first task that needs it, kept for
every later task, and released when the plugin is unregistered. A task gets the store and a
row range, reads its images from Zarr, embeds them and writes its own whole chunks of the
output, so neither pixels nor weights travel through the scheduler or the client.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.core.store import RunStore
from pipeline.errors import ParameterError
from pipeline.workflows.embed.checkpoint import (
    CheckpointRef,
    encoder_from_checkpoint,
    load_checkpoint,
)
from pipeline.workflows.embed.inputs import prepare_batch
from pipeline.workflows.embed.models import EncoderConfig, ResNetEncoder

__all__ = ["EncoderPlugin", "embed_rows", "pick_device", "plugin_name"]

log = logging.getLogger(__name__)


def plugin_name(ref: CheckpointRef) -> str:
    """Name of the worker plugin holding the encoder of checkpoint ``ref``."""
    return f"pipeline-encoder-{ref.short}"


def pick_device(device: str) -> torch.device:
    """``auto``: the first CUDA device if torch sees one, else CPU; or exactly ``device``.

    Raises
    ------
    ParameterError
        If ``device`` asks for CUDA where torch sees none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(
            f"device {device!r}: torch sees no CUDA device on this worker; use device: auto "
            "(or cpu), or start the GPU workers where CUDA is available"
        )
    return torch.device(device)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (bfloat16 where supported, else float16); None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """``torch.autocast`` on CUDA when ``enabled``; nothing on CPU (float32 stays exact)."""
    dtype = amp_dtype(device)
    if enabled and dtype is not None:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
    else:
        yield


@dataclass
class _Loaded:
    encoder: ResNetEncoder
    config: EncoderConfig
    device: torch.device


class EncoderPlugin(WorkerPlugin):
    """Holds one checkpoint's encoder on a worker, loaded on first use.

    Parameters
    ----------
    ref : CheckpointRef
        The checkpoint (its bytes are checked against ``ref.digest`` on load).
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    amp : bool
        Autocast on CUDA.

    Attributes
    ----------
    loads : int
        How many times this worker loaded the model (1 after any number of tasks).
    """

    def __init__(self, ref: CheckpointRef, device: str = "auto", amp: bool = True) -> None:
        self.ref = ref
        self.device = device
        self.amp = amp
        self.loads = 0
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()
        self._threads = 1

    def __getstate__(self) -> dict[str, Any]:
        # The plugin travels to the workers as its reference only (no lock, never a model).
        return {"ref": self.ref, "device": self.device, "amp": self.amp}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def setup(self, worker: Any) -> None:
        """Remember the worker's thread count (the model is loaded by the first task)."""
        self._threads = int(getattr(worker.state, "nthreads", 1) or 1)

    def teardown(self, worker: Any) -> None:
        """Drop the model (and CUDA's cached memory) when unregistered or the worker closes."""
        with self._lock:
            if self._loaded is not None and self._loaded.device.type == "cuda":
                self._loaded = None
                torch.cuda.empty_cache()
            self._loaded = None

    def _load(self) -> _Loaded:
        if self._loaded is None:
            device = pick_device(self.device)
            if device.type == "cpu":
                # One forward pass at a time uses all of the worker's threads (the lock below
                # serialises them), while the worker's other threads read the next batches.
                torch.set_num_threads(self._threads)
            ckpt = load_checkpoint(self.ref)
            encoder = encoder_from_checkpoint(ckpt).eval().to(device)
            if device.type == "cuda":
                encoder = encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._loaded = _Loaded(encoder, ckpt.config, device)
            self.loads += 1
            log.info("encoder %s loaded on %s (%s threads)", self.ref.short, device, self._threads)
        return self._loaded

    def embed(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """Encode ``images`` (n, h, w[, c]) in batches -> float32 (n, feature_dim)."""
        with self._lock:
            loaded = self._load()
            out = np.empty((len(images), loaded.config.feature_dim), dtype=np.float32)
            with torch.inference_mode():
                for i in range(0, len(images), batch_size):
                    x = prepare_batch(images[i : i + batch_size], loaded.config)
                    x = x.to(loaded.device, non_blocking=True)
                    if loaded.device.type == "cuda":
                        x = x.contiguous(memory_format=torch.channels_last)
                    with autocast(loaded.device, self.amp):
                        h = loaded.encoder(x)
                    out[i : i + len(x)] = h.float().cpu().numpy()
            return out

    @property
    def device_name(self) -> str:
        """The device the model is on ("" before it is loaded)."""
        return str(self._loaded.device) if self._loaded is not None else ""


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
    worker = get_worker()
    encoder = worker.plugins[plugin]
    assert isinstance(encoder, EncoderPlugin)  # registered by run_embed under this name
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
        "worker": worker.address,
        "device": encoder.device_name or "none",
        "rows": len(rows),
        "loads": encoder.loads,
        "seconds": t2 - t1,
        "read_seconds": t1 - t0,
    }
