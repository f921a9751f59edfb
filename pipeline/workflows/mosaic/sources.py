"""Sources of a survey mosaic: ``detect_sources`` finds them tile by tile and cuts them out.

It runs :mod:`pipeline.imaging.detect` over the mosaic's tiles with
:func:`dask.array.map_overlap` (the result equals whole-image detection exactly), writes
``tables/sources.parquet`` and a ``cutouts`` collection of aligned cutouts around the sources
(:func:`pipeline.imaging.geometry.align_and_cut`), so a mosaic flows into the same clustering
as a collection of cutouts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.core.chunks import chunk_bounds, collect_rows, prepare_array, run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.progress import compute_with_progress
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import StoreError
from pipeline.imaging.detect import blob_table, combine_tiles
from pipeline.imaging.geometry import align_and_cut, to_gray
from pipeline.io.mosaic import INGEST_TASK, MOSAIC
from pipeline.workflows.mosaic.spec import SOURCE_CUTOUT_DIMS, SOURCE_CUTOUTS, SourceParams

__all__ = ["DETECT_TASK", "detect_sources", "source_cutouts_chunk"]

log = logging.getLogger(__name__)

#: Marker folder and stage name.
DETECT_TASK = "detect_sources"


def _window(radius: float, params: SourceParams) -> int:
    # Room for the alignment window (4 radii) and a rotated square of the largest
    # half-width the cutout can take (crop_factor times up to those 4 radii).
    reach = max(24.0, 4.0 * radius) * max(1.0, params.crop_factor) * 1.5
    return math.ceil(max(reach, params.min_half_width * 1.5)) + 2


def source_cutouts_chunk(
    store: RunStore,
    index: int,
    start: int,
    sources: npt.NDArray[np.float64],
    tiles: Sequence[str],
    image_ids: Sequence[str],
    params: SourceParams,
) -> dict[str, list[dict[str, Any]]]:
    """Cut out sources ``start ...`` (rows ``y, x, sigma``), write their chunk and return
    their rows (one task).

    The mosaic is read once per tile group of the chunk, over the bounding box of its
    sources' windows.
    """
    mosaic = store.open_array(MOSAIC, mode="r")
    h, w = mosaic.shape
    size = params.cutout_size
    block = np.zeros((len(sources), size, size), dtype=np.float32)
    angles = np.full(len(sources), math.nan)
    tile_arr = np.asarray(tiles)
    for tile in dict.fromkeys(tiles):
        members = np.flatnonzero(tile_arr == tile)
        sub = sources[members]
        reach = np.array([_window(params.radius_factor * s, params) for s in sub[:, 2]])
        r0 = max(0, int(np.floor((sub[:, 0] - reach).min())))
        r1 = min(h, int(np.ceil((sub[:, 0] + reach).max())) + 1)
        c0 = max(0, int(np.floor((sub[:, 1] - reach).min())))
        c1 = min(w, int(np.ceil((sub[:, 1] + reach).max())) + 1)
        region = to_gray(np.asarray(mosaic[r0:r1, c0:c1]))
        for k, (y, x, sigma) in zip(members, sub, strict=True):
            radius = max(params.radius_factor * sigma, params.min_half_width / params.crop_factor)
            _, _, angle, cut = align_and_cut(
                region,
                y - r0,
                x - c0,
                radius,
                moment_level=params.moment_level,
                crop_factor=params.crop_factor,
                size=size,
                rescale=params.rescale,
                align=params.align,
            )
            block[k] = cut
            angles[k] = angle
    rows = [
        {"image_id": str(i), "angle_deg": float(a)} for i, a in zip(image_ids, angles, strict=True)
    ]
    write_block(store, SOURCE_CUTOUTS, start, block)
    return {"rows": rows}


def detect_sources(ctx: RunContext, params: SourceParams) -> dict[str, int]:
    """Detect the mosaic's sources tile by tile; write the sources table and cutouts.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds ``mosaic`` (from ``ingest_mosaic``); ``ctx.forced`` redoes every
        cutout chunk; ``ctx.progress`` receives ``("detect", done, total)`` per tile, then
        ``("cutouts", ...)``.
    params : SourceParams

    Returns
    -------
    dict
        ``sources``, ``tiles`` and ``chunks``.

    Raises
    ------
    StoreError
        If the store has no mosaic, or holds an image collection (the cutouts of a mosaic
        need a run store of their own).
    """
    store = ctx.store
    if not store.has_array(MOSAIC):
        raise StoreError(f"{store.url} has no mosaic; run the ingest_mosaic stage first")
    bp = params.blob_params()
    image = da.from_zarr(
        store.zarr_url,
        component=MOSAIC,
        storage_options=dict(store.storage_options) or None,
    )
    tiles = blob_table(image, bp)
    cells = tiles.to_delayed()
    flat = [cells[i, j] for i in range(cells.shape[0]) for j in range(cells.shape[1])]
    results = compute_with_progress(ctx.client, flat, "detect", ctx.progress)
    grid = np.empty(cells.shape, dtype=object)
    for k, res in enumerate(results):
        grid[divmod(k, cells.shape[1])] = res[0, 0]
    found = combine_tiles(grid, bp.overlap)
    # Tile order, then raster order within a tile: a chunk of cutouts reads few tiles.
    tile_rank = {t: k for k, t in enumerate(f"r{i}c{j}" for i, j in np.ndindex(grid.shape))}
    found["rank"] = found["tile"].map(tile_rank)
    found = found.sort_values(["rank", "y", "x", "sigma"], kind="stable").drop(columns="rank")
    found = found.reset_index(drop=True)
    n = len(found)
    width = max(7, len(str(max(n - 1, 0))))
    ids = [f"src{k:0{width}d}" for k in range(n)]
    # The mosaic's own key: cutouts of an earlier mosaic in this store are not reused.
    mosaic_key = store.task_key(INGEST_TASK)
    per_chunk = params.cutouts_per_chunk
    bounds = chunk_bounds(n, per_chunk)
    size = params.cutout_size
    prepare_array(
        store,
        task=DETECT_TASK,
        name=SOURCE_CUTOUTS,
        dims=SOURCE_CUTOUT_DIMS,
        shape=(n, size, size),
        chunks=(per_chunk, size, size),
        dtype=np.float32,
        config={"params": params.model_dump(mode="json"), "mosaic": mosaic_key},
        coords={"image_id": ids},
        attrs={"description": "aligned cutouts, float32 in [0, 1]; 0 if none"},
        redo=ctx.forced,
    )
    yxs = found[["y", "x", "sigma"]].to_numpy()
    tile_names = found["tile"].tolist()
    args = {i: (s, yxs[s:e], tile_names[s:e], ids[s:e], params) for i, (s, e) in enumerate(bounds)}
    run_chunks(
        store,
        ctx.client,
        DETECT_TASK,
        source_cutouts_chunk,
        args,
        label="cutouts",
        progress=ctx.progress,
    )
    angles = pd.DataFrame(
        collect_rows(store, DETECT_TASK, len(bounds)), columns=["image_id", "angle_deg"]
    )
    table = found.assign(image_id=ids)[["image_id", "y", "x", "sigma", "tile"]]
    table["angle_deg"] = angles["angle_deg"].to_numpy() if n else np.empty(0)
    write_table(store, "sources", table)
    return {"sources": n, "tiles": int(grid.size), "chunks": len(bounds)}
