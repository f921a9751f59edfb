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
import uuid
from collections import Counter
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from zarr.codecs import ZstdCodec

from pipeline.compute.dispatch import gpu_workers, task_bounds, task_resources
from pipeline.core.context import RunContext
from pipeline.core.progress import gather_with_progress
from pipeline.core.store import RunStore
from pipeline.errors import CheckpointError
from pipeline.features.matrix import open_matrix
from pipeline.workflows.embed.checkpoint import (
    CheckpointRef,
    inspect_checkpoint,
    resolve_checkpoint,
)
from pipeline.workflows.embed.data import image_array
from pipeline.workflows.embed.models import EncoderConfig
from pipeline.workflows.embed.spec import EmbedParams, embed_outputs
from pipeline.workflows.embed.worker import EncoderPlugin, embed_rows, pick_device, plugin_name

__all__ = ["EMBEDDINGS", "EmbedParams", "run_embed"]

log = logging.getLogger(__name__)

#: The array the step ``embed`` writes, ``(image, feature)`` (another step's is named after it:
#: :func:`~pipeline.workflows.embed.spec.embed_outputs`).
EMBEDDINGS = embed_outputs("embed").array
#: Where the step ``embed`` records which checkpoint made the embeddings and where tasks ran.
EMBED_RECORD = embed_outputs("embed").record


def _check_fits(config: EncoderConfig, channels: int, source: str, name: str) -> None:
    if channels == 3 and config.in_channels == 1:
        raise CheckpointError(
            f"checkpoint {source} is a 1-channel encoder, but {name!r} has 3 channels; train "
            "an encoder on this array (`train_encoder` with input: " + name + ")"
        )


def run_embed(ctx: RunContext, params: EmbedParams) -> dict[str, int]:
    """Embed the images of ``params.input`` with a checkpoint's encoder.

    The features go to the step's array (``embeddings`` for the step ``embed``). Everything
    is checked (the array, the checkpoint, read and loaded on a worker) before the old
    array is replaced, so a bad checkpoint loses nothing.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.client`` must be a distributed client; ``ctx.step`` names the outputs;
        ``ctx.progress`` receives ``("embed", done, total)``.
    params : EmbedParams

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
    store, progress = ctx.store, ctx.progress
    client = ctx.require_client("embed")
    out = embed_outputs(ctx.step_name("embed"))
    channels, shape, chunk_rows = image_array(store, params.input, "embed")
    positions = open_matrix(store, params.input, params.rows).positions
    url, options = resolve_checkpoint(store, params.checkpoint, params.encoder)
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
    store.reset_task(ctx.step_name("embed"), [out.array, out.dim])
    per_chunk = chunk_rows[0]
    template = xr.Dataset(
        {
            out.array: (
                ("image", out.dim),
                da.zeros((shape[0], d), chunks=(per_chunk, d), dtype=np.float32),
            )
        },
        coords={out.dim: np.arange(d)},
    )
    template[out.array].attrs["description"] = (
        f"encoder features of {params.input!r} (float32); NaN for images not embedded"
    )
    encoding = {out.array: {"chunks": (per_chunk, d), "compressors": [ZstdCodec(level=1)]}}
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
    token = uuid.uuid4().hex[:8]
    try:
        futures = [
            client.submit(
                embed_rows,
                store.url,
                dict(store.storage_options),
                params.input,
                out.array,
                start,
                stop,
                keep[start:stop],
                name,
                params.batch_size,
                resources=resources,
                pure=False,
                # A fresh token: a key still held from an earlier, failed run is cancelled.
                key=f"embed-{ref.short}-{start}-{token}",
            )
            for start, stop in bounds
        ]
        reports = gather_with_progress(client, futures, "embed", progress)
    finally:
        client.unregister_worker_plugin(name)
    seconds = time.perf_counter() - t0
    _record(store, out.record, params, ref, config, reports, seconds)
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
    record: str,
    params: EmbedParams,
    ref: CheckpointRef,
    config: EncoderConfig,
    reports: list[dict[str, Any]],
    seconds: float,
) -> None:
    """The step's record (``models/embed.json``): the checkpoint used and, per worker, tasks,
    device and loads."""
    per_worker: dict[str, dict[str, Any]] = {}
    for r in reports:
        w = per_worker.setdefault(r["worker"], {"tasks": 0, "rows": 0, "loads": 0, "device": ""})
        w["tasks"] += 1
        w["rows"] += r["rows"]
        w["loads"] = max(w["loads"], r["loads"])
        w["device"] = r["device"]
    devices = Counter(r["device"] for r in reports)
    store.write_json(
        record,
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
