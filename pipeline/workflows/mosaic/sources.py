"""Sources of a survey mosaic: ``detect_sources`` finds them tile by tile and cuts them out.

With ``method: sep`` (the default) it builds a Source Extractor catalog
(:mod:`pipeline.workflows.mosaic.catalog`): ``tables/sources.parquet`` and the same table as
FITS, ``tables/sources.fits``. With ``log`` or ``doh`` it runs the blob detectors of
:mod:`pipeline.imaging.detect` over the mosaic's tiles with :func:`dask.array.map_overlap`
(the result equals whole-image detection exactly) and writes ``y, x, sigma``. Either way it
writes a ``cutouts`` collection of aligned cutouts around the sources, so a mosaic flows into
the same clustering as a collection of cutouts: SEP's sources are centred on their centroid
and turned by their ``theta``, blobs aligned by their moments
(:func:`pipeline.imaging.geometry.align_and_cut`).
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
from pipeline.imaging.extraction import aperture_columns
from pipeline.imaging.geometry import align_and_cut, cutout, to_gray
from pipeline.io.catalog_fits import write_catalog_fits
from pipeline.io.mosaic import INGEST_TASK, MOSAIC
from pipeline.workflows.mosaic.catalog import extract_catalog
from pipeline.workflows.mosaic.spec import SOURCE_CUTOUT_DIMS, SOURCE_CUTOUTS, SourceParams
from pipeline.workflows.mosaic.tables import SEP_COLUMNS, SEP_UNITS

__all__ = ["CATALOG_META", "DETECT_TASK", "detect_sources", "source_cutouts_chunk"]

log = logging.getLogger(__name__)

#: Marker folder and stage name.
DETECT_TASK = "detect_sources"
#: SEP's run facts beside the catalog.
CATALOG_META = "tables/sources_meta.json"


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
    """Cut out sources ``start ...`` (rows ``y, x, radius, angle_deg``), write their chunk and
    return their rows (one task).

    A NaN angle is measured from the source's moments (blobs); a given one (SEP's ``theta``)
    turns the cutout as it is. The mosaic is read once per tile group of the chunk, over the
    bounding box of its sources' windows.
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
        reach = np.array([_window(r, params) for r in sub[:, 2]])
        r0 = max(0, int(np.floor((sub[:, 0] - reach).min())))
        r1 = min(h, int(np.ceil((sub[:, 0] + reach).max())) + 1)
        c0 = max(0, int(np.floor((sub[:, 1] - reach).min())))
        c1 = min(w, int(np.ceil((sub[:, 1] + reach).max())) + 1)
        region = np.nan_to_num(to_gray(np.asarray(mosaic[r0:r1, c0:c1])), nan=0.0)
        for k, (y, x, r, given) in zip(members, sub, strict=True):
            radius = max(r, params.min_half_width / params.crop_factor)
            if math.isnan(given):
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
            else:
                angle = float(given)
                half = params.crop_factor * radius
                turn = angle if params.align else 0.0
                cut = cutout(region, y - r0, x - c0, half, turn, size, params.rescale)
            block[k] = cut
            angles[k] = angle
    rows = [
        {"image_id": str(i), "angle_deg": float(a)} for i, a in zip(image_ids, angles, strict=True)
    ]
    write_block(store, SOURCE_CUTOUTS, start, block)
    return {"rows": rows}


def _blob_sources(ctx: RunContext, params: SourceParams) -> tuple[pd.DataFrame, int]:
    """The blob detectors over the mosaic's tiles: ``y, x, sigma, tile`` per source."""
    store = ctx.store
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
    found["radius"] = params.radius_factor * found["sigma"]
    found["given_angle"] = math.nan
    return found, int(grid.size)


def _sep_sources(ctx: RunContext, params: SourceParams) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """SEP's catalog over the mosaic's tiles."""
    tile = int(ctx.store.open_array(MOSAIC, mode="r").chunks[0])
    found, info = extract_catalog(ctx, params.sep, tile)
    if not len(found):
        found = pd.DataFrame(columns=[c for c in SEP_COLUMNS if c != "image_id"])
    found["radius"] = params.radius_factor * found["a"].astype(float)
    found["given_angle"] = found["angle_deg"].astype(float)
    h, w = ctx.store.open_array(MOSAIC, mode="r").shape
    return found, math.ceil(h / tile) * math.ceil(w / tile), info


def detect_sources(ctx: RunContext, params: SourceParams) -> dict[str, int]:
    """Detect the mosaic's sources tile by tile; write the sources table and cutouts.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds ``mosaic`` (from ``ingest_mosaic``); ``ctx.forced`` redoes every
        tile and cutout chunk; ``ctx.progress`` receives ``("sky", done, total)`` and
        ``("extract", ...)`` per tile (SEP) or ``("detect", ...)`` (blobs), then
        ``("cutouts", ...)``.
    params : SourceParams

    Returns
    -------
    dict
        ``sources``, ``tiles`` and ``chunks``; for SEP also ``largest_halo`` (px) and
        ``has_wcs`` (1 if the catalog has sky coordinates). SEP's run facts (saturation
        level, zero point, what the coordinates are, pixel scale) go to
        ``tables/sources_meta.json``.

    Raises
    ------
    StoreError
        If the store has no mosaic, or holds an image collection (the cutouts of a mosaic
        need a run store of their own).
    InputError
        If the background boxes do not divide the mosaic's tiles.
    """
    store = ctx.store
    if not store.has_array(MOSAIC):
        raise StoreError(f"{store.url} has no mosaic; run the ingest_mosaic stage first")
    extra: dict[str, Any] = {}
    if params.method == "sep":
        found, n_tiles, extra = _sep_sources(ctx, params)
    else:
        found, n_tiles = _blob_sources(ctx, params)
    # Tile order, then raster order within a tile: a chunk of cutouts reads few tiles.
    mosaic = store.open_array(MOSAIC, mode="r")
    cols = math.ceil(mosaic.shape[1] / mosaic.chunks[1])
    rank = found["tile"].map(lambda t: _tile_rank(str(t), cols))
    found = found.assign(_rank=rank).sort_values(["_rank", "y", "x"], kind="stable")
    found = found.drop(columns="_rank").reset_index(drop=True)
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
        config={
            "params": params.model_dump(mode="json"),
            "mosaic": mosaic_key,
            "sources": n,
        },
        coords={"image_id": ids},
        attrs={"description": "aligned cutouts, float32 in [0, 1]; 0 if none"},
        redo=ctx.forced,
    )
    rows = found[["y", "x", "radius", "given_angle"]].to_numpy(dtype=np.float64)
    tile_names = found["tile"].astype(str).tolist()
    args = {i: (s, rows[s:e], tile_names[s:e], ids[s:e], params) for i, (s, e) in enumerate(bounds)}
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
    found = found.drop(columns=["radius", "given_angle"]).assign(image_id=ids)
    if params.method == "sep":
        table = found[list(SEP_COLUMNS) + _aperture_names(params)]
        write_table(store, "sources", table)
        units = dict(SEP_UNITS)
        for name in _aperture_names(params):
            units[name] = "mag" if name.startswith("mag_") else "adu"
        write_catalog_fits(store, "tables/sources.fits", table, extra, units)
    else:
        table = found[["image_id", "y", "x", "sigma", "tile"]].copy()
        table["angle_deg"] = angles["angle_deg"].to_numpy() if n else np.empty(0)
        write_table(store, "sources", table, schema="blob_sources")
    log.info("detect_sources: %d sources (%s) in %d tiles", n, params.method, n_tiles)
    counts = {"sources": n, "tiles": n_tiles, "chunks": len(bounds)}
    if params.method == "sep":
        store.write_json(CATALOG_META, extra)
        counts["largest_halo"] = int(extra["largest_halo"])
        counts["has_wcs"] = int(extra["pixel_scale_arcsec"] is not None)
    return counts


def _tile_rank(name: str, n_cols: int) -> int:
    """Row-major rank of tile ``r{i}c{j}``."""
    i, j = name[1:].split("c")
    return int(i) * n_cols + int(j)


def _aperture_names(params: SourceParams) -> list[str]:
    names = []
    for d in params.sep.phot_apertures:
        fcol, ecol = aperture_columns(d)
        names += [fcol, ecol, fcol.replace("flux_", "mag_")]
    return names
