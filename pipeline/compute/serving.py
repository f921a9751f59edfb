"""Serving a model on Dask workers: loaded once per worker, on its device, keyed by digest.

The model lives in a :class:`ModelPlugin` (a ``WorkerPlugin``) registered under a name made
of the model's kind and its checkpoint's digest (:func:`plugin_name`), not in a module global:
it is loaded by the worker's first task that needs it, kept for every later task, and
released when the plugin is unregistered (or the worker closes). The plugin travels to the
workers as its :class:`~pipeline.compute.checkpoints.CheckpointRef` only, so weights never
pass through the client or the scheduler. A subclass says how to build its model from the
checkpoint (:meth:`ModelPlugin.load_model`); tasks use it through :meth:`ModelPlugin.using`.

Where tasks go (GPU resources) is :mod:`pipeline.compute.dispatch`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.compute.checkpoints import CheckpointRef
from pipeline.errors import ParameterError

__all__ = [
    "LoadedModel",
    "ModelPlugin",
    "amp_dtype",
    "autocast",
    "pick_device",
    "plugin_name",
    "worker_plugin",
]

log = logging.getLogger(__name__)


def plugin_name(kind: str, ref: CheckpointRef) -> str:
    """Name of the worker plugin holding the ``kind`` model of checkpoint ``ref``."""
    return f"pipeline-{kind}-{ref.short}"


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
class LoadedModel:
    """A model held by a :class:`ModelPlugin`: the module, its device, and what the loader
    said about it (e.g. its config)."""

    model: torch.nn.Module
    device: torch.device
    info: Any


class ModelPlugin(WorkerPlugin):
    """Holds one checkpoint's model on a worker, loaded on first use.

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
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        self._threads = 1

    def __getstate__(self) -> dict[str, Any]:
        # The plugin travels to the workers as its reference only (no lock, never a model).
        return {"ref": self.ref, "device": self.device, "amp": self.amp}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def load_model(self, ref: CheckpointRef, device: torch.device) -> tuple[torch.nn.Module, Any]:
        """Build the model of checkpoint ``ref`` on ``device`` (in eval mode), and its info.

        Subclasses implement it; it runs on the worker, once.
        """
        raise NotImplementedError(f"{type(self).__name__} does not say how to load its model")

    def setup(self, worker: Any) -> None:
        """Remember the worker's thread count (the model is loaded by the first task)."""
        self._threads = int(getattr(worker.state, "nthreads", 1) or 1)

    def teardown(self, worker: Any) -> None:
        """Drop the model (and CUDA's cached memory) when unregistered or the worker closes."""
        with self._lock:
            on_cuda = self._loaded is not None and self._loaded.device.type == "cuda"
            self._loaded = None
            if on_cuda:
                torch.cuda.empty_cache()

    def _load(self) -> LoadedModel:
        if self._loaded is None:
            device = pick_device(self.device)
            if device.type == "cpu":
                # One forward pass at a time uses all of the worker's threads (the lock in
                # `using` serialises them), while the worker's other threads read data.
                torch.set_num_threads(self._threads)
            model, info = self.load_model(self.ref, device)
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._loaded = LoadedModel(model, device, info)
            self.loads += 1
            log.info("model %s loaded on %s (%s threads)", self.ref.short, device, self._threads)
        return self._loaded

    @contextlib.contextmanager
    def using(self) -> Iterator[LoadedModel]:
        """The loaded model, for one task's forward passes (one task at a time, under
        ``torch.inference_mode``)."""
        with self._lock:
            loaded = self._load()
            with torch.inference_mode():
                yield loaded

    @property
    def device_name(self) -> str:
        """The device the model is on ("" before it is loaded)."""
        return str(self._loaded.device) if self._loaded is not None else ""


def worker_plugin(name: str, kind: type[ModelPlugin]) -> Any:
    """The plugin registered as ``name`` on the worker running this task.

    Raises
    ------
    TypeError
        If no such plugin of that kind is registered there (the stage registers it before
        submitting its tasks).
    """
    plugin = get_worker().plugins.get(name)
    if not isinstance(plugin, kind):
        raise TypeError(f"no {kind.__name__} {name!r} is registered on this worker")
    return plugin
