"""The ``segment`` stage: a trained segmenter over images of any size, then its nuclei.

1. **Inference**, tiled (:mod:`.tiles`): one task per ``tiles_per_task`` tiles, on the GPU
   workers when the cluster has any (``resources={"GPU": 1}``, the model loaded once per
   worker by a :class:`~pipeline.workflows.nuclei.infer.SegmenterPlugin`); each task writes
   its tiles' cores of the probability (float16) and mask (uint8) arrays, one Zarr chunk each,
   and a marker per tile, so a killed run redoes only the unmarked tiles. With a halo of at
   least the network's receptive radius on the 16-pixel grid (the default, 160 px for the
   seed's network) the mask equals whole-image inference.
2. **Instances** (:mod:`.labels`): connected components split by the distance watershed per
   block, joined across block faces into one global label per nucleus, written as ``labels``
   ``uint32``, and a table of their measurements.

Only small tables and tile lists pass through the client.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from typing import Any

import numpy as np

from pipeline.compute.dispatch import gpu_workers, task_resources
from pipeline.core.chunks import prepare_array
from pipeline.core.context import RunContext
from pipeline.core.progress import gather_with_progress
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.workflows.nuclei.checkpoint import resolve_segmenter
from pipeline.workflows.nuclei.infer import SegmenterPlugin, plugin_name, preflight, segment_tiles
from pipeline.workflows.nuclei.labels import label_nuclei
from pipeline.workflows.nuclei.model import receptive_radius
from pipeline.workflows.nuclei.spec import SegmentParams, segment_outputs
from pipeline.workflows.nuclei.tiles import Tile, default_halo, plane_tiles

__all__ = ["input_planes", "run_segment"]

log = logging.getLogger(__name__)


def input_planes(store: RunStore, name: str) -> tuple[tuple[str, ...], int, int, int, int]:
    """Describe an array ``segment`` can take.

    Returns
    -------
    dims : tuple of str
        The outputs' dimensions: ``(image, y, x)`` or the 2-D array's own two.
    planes, height, width, channels : int

    Raises
    ------
    StoreError
        If it is missing or not images.
    """
    if not store.has_array(name):
        raise StoreError(
            f"segment: array {name!r} is not in {store.zarr_url}; run `ingest` (images) or "
            "`ingest_mosaic` (one large image) first"
        )
    array = store.open_array(name, mode="r")
    dims = tuple(str(d) for d in store.open_dataset()[name].dims)
    if array.ndim == 2:
        return dims, 1, int(array.shape[0]), int(array.shape[1]), 1
    if array.ndim in (3, 4) and dims[0] == "image":
        channels = int(array.shape[3]) if array.ndim == 4 else 1
        return dims[:3], int(array.shape[0]), int(array.shape[1]), int(array.shape[2]), channels
    raise StoreError(
        f"segment: {name!r} has dimensions {dims}; give (image, y, x[, channel]) images or a "
        "2-D image such as `mosaic`"
    )


def _tasks(tiles: list[Tile], per_task: int) -> list[list[Tile]]:
    return [tiles[i : i + per_task] for i in range(0, len(tiles), per_task)]


def run_segment(ctx: RunContext, params: SegmentParams) -> dict[str, int | float]:
    """Segment every plane of ``params.input`` and label its nuclei.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.client``: a distributed client; ``ctx.step`` names the outputs
        (:func:`~pipeline.workflows.nuclei.spec.segment_outputs`); ``ctx.forced`` redoes every
        tile; ``ctx.progress`` gets ``("segment", tiles done, tiles)`` and the labelling's.
    params : SegmentParams

    Returns
    -------
    dict
        ``tiles`` (all), ``inferred`` (this run), ``megapixels``, ``nuclei``, ``gpu_tasks``,
        ``infer_seconds``, ``label_seconds``.

    Raises
    ------
    CheckpointError
        No usable checkpoint (naming where it looked).
    ParameterError
        A halo smaller than the network's receptive field needs.
    """
    store, progress = ctx.store, ctx.progress
    client = ctx.require_client("segment")
    step = ctx.step_name("segment")
    out = segment_outputs(step)
    dims, planes, height, width, _ = input_planes(store, params.input)
    url, options = resolve_segmenter(store, params.checkpoint, params.segmenter)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    resources = task_resources(workers)
    ref, config = client.submit(
        preflight, url, options, params.device, resources=resources, pure=False
    ).result()
    need = default_halo(receptive_radius(config))
    halo = need if params.halo is None else params.halo
    if halo < need:
        raise ParameterError(
            f"segment: halo {halo} px is less than the network's receptive radius "
            f"({receptive_radius(config)} px, {need} on the 16 grid); tiles would differ from "
            f"whole-image inference. Leave halo unset or give at least {need}"
        )
    tile = min(params.tile, max(16, -(-max(height, width) // 16) * 16))
    chunks = (tile, tile) if len(dims) == 2 else (1, tile, tile)
    shape = (height, width) if len(dims) == 2 else (planes, height, width)
    task = f"{step}-infer"
    config_id = {
        "input": params.input,
        "checkpoint": ref.digest,
        "halo": halo,
        "threshold": params.threshold,
        "upstream": ctx.upstream,
    }
    done = prepare_array(
        store,
        task=task,
        name=out.probability,
        dims=dims,
        shape=shape,
        chunks=chunks,
        dtype=np.float16,
        config=config_id,
        attrs={"description": f"probability of nucleus ({step}, checkpoint {ref.short})"},
        redo=ctx.forced,
    )
    prepare_array(
        store,
        task=f"{task}-mask",
        name=out.mask,
        dims=dims,
        shape=shape,
        chunks=chunks,
        dtype=np.uint8,
        config={**config_id, "probability": store.task_key(task)},
        attrs={"description": f"nucleus mask, probability > {params.threshold} ({step})"},
        redo=ctx.forced,
    )
    tiles = plane_tiles(planes, height, width, tile, halo)
    todo = [t for t in tiles if t.index not in done]
    log.info(
        "segment: %d plane(s) of %d x %d px, %d tile(s) of %d px with a %d px halo, %d to do, "
        "on %s with segmenter %s",
        planes,
        height,
        width,
        len(tiles),
        tile,
        halo,
        len(todo),
        f"GPU workers {gpu_workers(workers)}" if resources else "all workers (CPU)",
        ref.short,
    )
    name = plugin_name(ref)
    t0 = time.perf_counter()
    reports: list[dict[str, Any]] = []
    if todo:
        client.register_plugin(SegmenterPlugin(ref, params.device, params.amp), name=name)
        token = uuid.uuid4().hex[:8]
        try:
            futures = [
                client.submit(
                    segment_tiles,
                    store.url,
                    dict(store.storage_options),
                    params.input,
                    (out.probability, out.mask),
                    group,
                    name,
                    params.threshold,
                    task,
                    resources=resources,
                    pure=False,
                    key=f"segment-{ref.short}-{group[0].index}-{token}",
                )
                for group in _tasks(todo, params.tiles_per_task)
            ]
            reports = gather_with_progress(client, futures, "segment", progress)
        finally:
            client.unregister_worker_plugin(name)
    infer_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    table = label_nuclei(
        store,
        client,
        mask=out.mask,
        intensity=params.input,
        target=out.labels,
        task=f"{step}-labels",
        max_extent=params.max_extent,
        h=params.h,
        min_size=params.min_size,
        redo=ctx.forced or bool(todo),
        progress=progress,
    )
    label_s = time.perf_counter() - t1
    table.insert(1, "image_id", _image_ids(store, params.input, planes, table["image"]))
    write_table(store, out.table, table, schema="nuclei")
    megapixels = planes * height * width / 1e6
    devices = Counter(r["device"] for r in reports)
    store.write_json(
        out.record,
        {
            "input": params.input,
            "probability": out.probability,
            "mask": out.mask,
            "labels": out.labels,
            "table": out.table,
            "checkpoint": ref.url,
            "digest": ref.digest,
            "halo": halo,
            "receptive_radius": receptive_radius(config),
            "tile": tile,
            "tiles": len(tiles),
            "inferred": len(todo),
            "megapixels": megapixels,
            "nuclei": len(table),
            "infer_seconds": infer_s,
            "label_seconds": label_s,
            "seconds": infer_s + label_s,
            "devices": dict(devices),
            "loads": {r["worker"]: r["loads"] for r in reports},
        },
    )
    log.info(
        "segment: %.1f MP in %.1f s inference + %.1f s labelling; %d nuclei",
        megapixels,
        infer_s,
        label_s,
        len(table),
    )
    return {
        "tiles": len(tiles),
        "inferred": len(todo),
        "megapixels": round(megapixels, 3),
        "nuclei": len(table),
        "gpu_tasks": sum(n for d, n in devices.items() if d.startswith("cuda")),
        "infer_seconds": round(infer_s, 2),
        "label_seconds": round(label_s, 2),
    }


def _image_ids(store: RunStore, name: str, planes: int, image: Any) -> list[str]:
    ds = store.open_dataset()
    if store.open_array(name, mode="r").ndim == 2:
        return [name] * len(image)
    ids = (
        np.asarray([str(v) for v in ds["image_id"].values])
        if "image_id" in ds.variables
        else np.asarray([str(i) for i in range(planes)])
    )
    return [str(v) for v in ids[np.asarray(image, dtype=int)]]
