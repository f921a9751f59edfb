"""The ``embed`` stage: a trained encoder's features for every image, on GPU workers if any.

The client only decides and submits. It checks the checkpoint on a worker, registers an
``EncoderPlugin`` (keyed by the checkpoint's hash) so that each
worker loads the model once, and submits one task per run of whole chunks. When any worker
declares the ``GPU`` resource, every task asks for ``resources={"GPU": 1}``: they run only
there. (``dask.annotate(resources=...)`` is not used: graph optimisation drops annotations
in current dask, and futures submitted with ``resources=`` keep them.)
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from distributed import Client
from pydantic import BaseModel, ConfigDict, Field
from zarr.codecs import ZstdCodec

from pipeline.compute.dispatch import gpu_workers, task_bounds, task_resources
from pipeline.core.progress import ProgressFn, gather_with_progress, no_progress
from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError
from pipeline.features.matrix import RowSelection, open_matrix
from pipeline.workflows.embed.checkpoint import (
    CheckpointRef,
    inspect_checkpoint,
    resolve_checkpoint,
)
from pipeline.workflows.embed.data import image_array
from pipeline.workflows.embed.models import EncoderConfig
from pipeline.workflows.embed.worker import EncoderPlugin, embed_rows, pick_device, plugin_name

__all__ = ["EMBEDDINGS", "EmbedParams", "run_embed"]

log = logging.getLogger(__name__)

#: The array the stage writes, ``(image, feature)``.
EMBEDDINGS = "embeddings"
#: Where the stage records which checkpoint made the embeddings and where tasks ran.
EMBED_RECORD = "models/embed.json"


class EmbedParams(BaseModel):
    """Parameters of the ``embed`` stage.

    Attributes
    ----------
    input : str
        Image array to embed, ``(image, y, x[, channel])`` (``cutouts``, ``images``).
    rows : {"kept", "all"}
        ``kept``: the images the catalog kept; the other rows of ``embeddings`` are NaN.
    checkpoint : str, optional
        Unset: the latest checkpoint of ``train_encoder``. Else a file name under the store's
        ``models/``, a path or an fsspec URL that every worker can read.
    batch_size : int
        Images per forward pass.
    task_rows : int
        Rows per task (rounded to whole chunks of ``input``): larger tasks amortise more,
        smaller ones balance better across workers.
    device : str
        ``auto`` (CUDA where the worker has it, else CPU), ``cpu`` or ``cuda[:N]``.
    amp : bool
        Mixed precision (autocast) on CUDA; CPU always computes in float32.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = "cutouts"
    rows: RowSelection = "kept"
    checkpoint: str | None = None
    batch_size: int = Field(256, ge=1)
    task_rows: int = Field(1024, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    amp: bool = True


def _check_fits(config: EncoderConfig, channels: int, source: str, name: str) -> None:
    if channels == 3 and config.in_channels == 1:
        raise CheckpointError(
            f"checkpoint {source} is a 1-channel encoder, but {name!r} has 3 channels; train "
            "an encoder on this array (`train_encoder` with input: " + name + ")"
        )


def run_embed(
    store: RunStore,
    params: EmbedParams,
    client: Client,
    *,
    progress: ProgressFn = no_progress,
) -> dict[str, int]:
    """Embed the images of ``params.input`` with a checkpoint's encoder into ``embeddings``.

    Everything is checked (the array, the checkpoint, read and loaded on a worker) before the
    old ``embeddings`` are replaced, so a bad checkpoint loses nothing.

    Returns
    -------
    dict
        ``rows`` embedded, ``features`` per row, ``tasks``, ``gpu_tasks`` (on GPU workers).

    Raises
    ------
    CheckpointError
        Missing, truncated or mismatched checkpoint (naming the file).
    StoreError
        Missing input array.
    """
    channels, shape, chunk_rows = image_array(store, params.input, "embed")
    positions = open_matrix(store, params.input, params.rows).positions
    url, options = resolve_checkpoint(store, params.checkpoint)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    resources = task_resources(workers)
    # Checked where the tasks will run (a GPU worker if any), before anything is replaced.
    ref, config = client.submit(
        _preflight, url, options, params.device, resources=resources, pure=False
    ).result()
    _check_fits(config, channels, url, params.input)
    keep = np.zeros(shape[0], dtype=bool)
    keep[positions] = True

    d = config.feature_dim
    store.reset_task("embed", [EMBEDDINGS, "feature"])
    per_chunk = chunk_rows[0]
    template = xr.Dataset(
        {
            EMBEDDINGS: (
                ("image", "feature"),
                da.zeros((shape[0], d), chunks=(per_chunk, d), dtype=np.float32),
            )
        },
        coords={"feature": np.arange(d)},
    )
    template[EMBEDDINGS].attrs["description"] = (
        f"encoder features of {params.input!r} (float32); NaN for images not embedded"
    )
    encoding = {EMBEDDINGS: {"chunks": (per_chunk, d), "compressors": [ZstdCodec(level=1)]}}
    store.write_template(template, encoding, mode="a")

    name = plugin_name(ref)
    client.register_plugin(EncoderPlugin(ref, params.device, params.amp), name=name)
    bounds = task_bounds(chunk_rows, max(params.task_rows, per_chunk))
    log.info(
        "embed: %d image(s) in %d task(s) on %s with encoder %s (%s, %d features)",
        int(keep.sum()),
        len(bounds),
        f"GPU workers {gpu_workers(workers)}" if resources else "all workers (CPU)",
        ref.short,
        config.arch,
        d,
    )
    t0 = time.perf_counter()
    try:
        futures = [
            client.submit(
                embed_rows,
                store.url,
                dict(store.storage_options),
                params.input,
                EMBEDDINGS,
                start,
                stop,
                keep[start:stop],
                name,
                params.batch_size,
                resources=resources,
                pure=False,
                key=f"embed-{ref.short}-{start}",
            )
            for start, stop in bounds
        ]
        reports = gather_with_progress(client, futures, "embed", progress)
    finally:
        client.unregister_worker_plugin(name)
    seconds = time.perf_counter() - t0
    _record(store, params, ref, config, reports, seconds)
    n = int(keep.sum())
    gpu_tasks = sum(1 for r in reports if r["device"].startswith("cuda"))
    log.info("embed: %d image(s) in %.1f s (%.1f images/s)", n, seconds, n / max(seconds, 1e-9))
    return {"rows": n, "features": d, "tasks": len(bounds), "gpu_tasks": gpu_tasks}


def _preflight(
    url: str, options: dict[str, Any], device: str
) -> tuple[CheckpointRef, EncoderConfig]:
    pick_device(device)  # raises where the device is not there, e.g. cuda on a CPU worker
    return inspect_checkpoint(url, options)


def _record(
    store: RunStore,
    params: EmbedParams,
    ref: CheckpointRef,
    config: EncoderConfig,
    reports: list[dict[str, Any]],
    seconds: float,
) -> None:
    """``models/embed.json``: the checkpoint used and, per worker, tasks, device and loads."""
    per_worker: dict[str, dict[str, Any]] = {}
    for r in reports:
        w = per_worker.setdefault(r["worker"], {"tasks": 0, "rows": 0, "loads": 0, "device": ""})
        w["tasks"] += 1
        w["rows"] += r["rows"]
        w["loads"] = max(w["loads"], r["loads"])
        w["device"] = r["device"]
    devices = Counter(r["device"] for r in reports)
    store.write_json(
        EMBED_RECORD,
        {
            "checkpoint": ref.url,
            "digest": ref.digest,
            "config": config.model_dump(mode="json"),
            "params": params.model_dump(mode="json"),
            "seconds": seconds,
            "devices": dict(devices),
            "workers": per_worker,
        },
    )
    log.debug("embed record: %s", json.dumps(per_worker))
