"""A survey mosaic's source catalog with SEP, tile by tile (``detect_sources``, ``method: sep``).

Two passes over the mosaic's tiles, each tile one task:

1. **Sky.** Every tile's background boxes (:func:`pipeline.imaging.background.box_statistics`)
   into ``store.zarr/sky_boxes``; the client then filters the whole mesh (a few thousand
   numbers) into ``sky_mesh``, the background and RMS every tile shares.
2. **Extraction.** Every tile extracts and measures the sources whose centroid lies in it
   (:func:`pipeline.imaging.extraction.extract_tile`), adds sky coordinates from the mosaic's
   FITS header when it has a WCS, and returns its rows in its marker, so a killed run resumes
   by tile.

The catalog equals SEP on the whole image; see :mod:`pipeline.imaging.extraction` for the
rules that make it so.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.chunks import prepare_array, run_chunks
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore, config_key
from pipeline.errors import StoreError
from pipeline.imaging.background import (
    SkyMesh,
    box_statistics,
    filter_mesh,
    mesh_shape,
)
from pipeline.imaging.extraction import aperture_columns, extract_tile, magnitudes
from pipeline.imaging.spec import ExtractParams
from pipeline.io.mosaic import INGEST_TASK, MOSAIC, mosaic_header

__all__ = [
    "EXTRACT_TASK",
    "SKY_BOXES",
    "SKY_MESH",
    "SKY_TASK",
    "extract_catalog",
    "extract_chunk",
    "load_sky",
    "sky_boxes_chunk",
]

log = logging.getLogger(__name__)

#: Marker folders of the two passes.
SKY_TASK = "sky_background"
EXTRACT_TASK = "extract_catalog"
#: Every box's raw statistics ``(3, ny, nx)``: background, RMS, valid.
SKY_BOXES = "sky_boxes"
#: The filtered mesh ``(2, ny, nx)``: background and RMS (image units).
SKY_MESH = "sky_mesh"


def _tiles(
    height: int, width: int, tile: int, tile_x: int | None = None
) -> list[tuple[int, int, int, int]]:
    """Every tile's ``(r0, r1, c0, c1)``, row by row (``tile`` rows by ``tile_x`` columns)."""
    tx = tile if tile_x is None else tile_x
    return [
        (r, min(height, r + tile), c, min(width, c + tx))
        for r in range(0, height, tile)
        for c in range(0, width, tx)
    ]


def _read(store: RunStore) -> Any:
    """A reader of mosaic windows as float32 (the extraction's callback)."""
    mosaic = store.open_array(MOSAIC, mode="r")

    def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.asarray(mosaic[r0:r1, c0:c1], dtype=np.float32)

    return read


def sky_boxes_chunk(
    store: RunStore, index: int, box: tuple[int, int, int, int], bw: int, bh: int
) -> dict[str, Any]:
    """One tile's background boxes into ``sky_boxes`` (one task, its own chunk)."""
    r0, r1, c0, c1 = box
    stats = box_statistics(_read(store)(r0, r1, c0, c1), None, bw, bh)
    out = store.open_array(SKY_BOXES)
    j, i = r0 // bh, c0 // bw
    out[:, j : j + stats.shape[1], i : i + stats.shape[2]] = stats
    return {}


def _sky(ctx: RunContext, params: ExtractParams, tile: int) -> SkyMesh:
    """Pass 1 and the mesh filter; writes ``sky_boxes`` and ``sky_mesh``."""
    store = ctx.store
    mosaic = store.open_array(MOSAIC, mode="r")
    h, w = (int(n) for n in mosaic.shape)
    # Pass 1 reads blocks of whole boxes near the tile's size (the mosaic's own tiles
    # where the boxes divide them, as with the defaults).
    by = max(1, round(tile / params.bh)) * params.bh
    bx = max(1, round(tile / params.bw)) * params.bw
    ny, nx = mesh_shape(h, w, params.bw, params.bh)
    config = {
        "mosaic": store.task_key(INGEST_TASK),
        "bw": params.bw,
        "bh": params.bh,
        "block": [by, bx],
    }
    prepare_array(
        store,
        task=SKY_TASK,
        name=SKY_BOXES,
        dims=("sky_stat", "sky_y", "sky_x"),
        shape=(3, ny, nx),
        chunks=(3, by // params.bh, bx // params.bw),
        dtype=np.float32,
        config=config,
        attrs={"description": "SEP background boxes: mode, RMS, valid (1) or filled (0)"},
        redo=ctx.forced,
    )
    tiles = _tiles(h, w, by, bx)
    args = {k: (t, params.bw, params.bh) for k, t in enumerate(tiles)}
    run_chunks(
        store, ctx.client, SKY_TASK, sky_boxes_chunk, args, label="sky", progress=ctx.progress
    )
    boxes = np.asarray(store.open_array(SKY_BOXES, mode="r")[:])
    mesh = filter_mesh(
        boxes,
        fw=params.fw,
        fh=params.fh,
        fthresh=params.fthresh,
        bw=params.bw,
        bh=params.bh,
        shape=(h, w),
    )
    _write_mesh(store, mesh, params)
    log.info(
        "detect_sources: sky mesh %d x %d boxes of %d x %d px, background %.6g, RMS %.6g, "
        "%d box(es) filled from neighbours",
        ny,
        nx,
        params.bw,
        params.bh,
        mesh.global_back,
        mesh.global_rms,
        mesh.n_filled,
    )
    return mesh


def _write_mesh(store: RunStore, mesh: SkyMesh, params: ExtractParams) -> None:
    import zarr

    arr = zarr.create_array(
        store.zarr_store(),
        name=SKY_MESH,
        shape=(2, *mesh.back.shape),
        dtype=np.float32,
        chunks=(2, *mesh.back.shape),
        overwrite=True,
        dimension_names=("sky_map", "sky_y", "sky_x"),
        attributes={
            "description": "SEP's filtered background mesh: [0] background, [1] RMS",
            "bw": mesh.bw,
            "bh": mesh.bh,
            "fw": params.fw,
            "fh": params.fh,
            "height": mesh.height,
            "width": mesh.width,
            "global_back": mesh.global_back,
            "global_rms": mesh.global_rms,
            "n_filled": mesh.n_filled,
        },
    )
    arr[:] = np.stack([mesh.back, mesh.sigma])


def _mesh_digest(mesh: SkyMesh) -> str:
    """A digest of the mesh's contents: which mesh a worker's cached copy is."""
    h = hashlib.sha256(np.ascontiguousarray(mesh.back).tobytes())
    h.update(np.ascontiguousarray(mesh.sigma).tobytes())
    h.update(repr((mesh.bw, mesh.bh, mesh.height, mesh.width)).encode())
    return h.hexdigest()[:16]


#: The meshes this worker process read, by store and digest (the last two).
_SKY_CACHE: dict[tuple[str, str], SkyMesh] = {}


def _cached_sky(store: RunStore, digest: str) -> SkyMesh:
    """The mesh ``digest`` names, read once per worker process (its spline's x steps are
    cached on it too), not once per tile."""
    key = (store.url, digest)
    mesh = _SKY_CACHE.get(key)
    if mesh is None:
        mesh = load_sky(store)
        if _mesh_digest(mesh) != digest:  # rewritten since the client read it
            raise StoreError(
                f"{store.url}: the sky mesh changed while the catalog was being extracted; "
                "run detect_sources again"
            )
        while len(_SKY_CACHE) >= 2:
            _SKY_CACHE.pop(next(iter(_SKY_CACHE)))
        _SKY_CACHE[key] = mesh
    return mesh


def load_sky(store: RunStore) -> SkyMesh:
    """The filtered background mesh ``detect_sources`` wrote."""
    arr = store.open_array(SKY_MESH, mode="r")
    a: dict[str, Any] = dict(arr.attrs)
    data = np.asarray(arr[:], dtype=np.float32)
    return SkyMesh(
        back=data[0],
        sigma=data[1],
        bw=int(a["bw"]),
        bh=int(a["bh"]),
        height=int(a["height"]),
        width=int(a["width"]),
        global_back=float(a["global_back"]),
        global_rms=float(a["global_rms"]),
        n_filled=int(a["n_filled"]),
    )


def _header_value(header: str | None, *keys: str) -> float | None:
    if not header:
        return None
    from astropy.io import fits

    try:
        hdr = fits.Header.fromstring(header)
    except Exception:  # a header we stored ourselves; unreadable means no keyword
        return None
    for key in keys:
        value = hdr.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def extract_chunk(
    store: RunStore,
    index: int,
    core: tuple[int, int, int, int],
    tile_name: str,
    params: ExtractParams,
    saturation: float | None,
    zeropoint: float,
    sky: str,
) -> dict[str, Any]:
    """Extract and measure the sources of one tile; return its columns (one task).

    ``sky`` is the digest of the shared sky mesh (read once per worker).
    """
    mesh = _cached_sky(store, sky)
    table, info = extract_tile(_read(store), mesh, core, params, saturation=saturation)
    table = _finish(table, params, zeropoint)
    table.insert(0, "tile", tile_name)
    if info["halo"] > params.halo or info["remeasured"]:
        log.info(
            "tile %s: halo %d px, %d object(s) measured in a window of their own",
            tile_name,
            info["halo"],
            info["remeasured"],
        )
    return {"columns": table.to_dict("list"), "halo": info["halo"]}


def _finish(table: pd.DataFrame, params: ExtractParams, zeropoint: float) -> pd.DataFrame:
    """Source Extractor's derived columns: 1-based positions, angles, magnitudes."""
    out = table.copy()
    out["x_image"] = out["x"] + 1.0
    out["y_image"] = out["y"] + 1.0
    out["theta_image"] = np.degrees(out["theta"])
    # The cutouts' convention (y up as displayed with row 0 on top): the mirror of theta.
    out["angle_deg"] = np.mod(-np.degrees(out["theta"]), 180.0)
    out["elongation"] = out["a"] / out["b"]
    out["ellipticity"] = 1.0 - out["b"] / out["a"]
    out["mag_auto"], out["magerr_auto"] = magnitudes(
        out["flux_auto"].to_numpy(), out["fluxerr_auto"].to_numpy(), zeropoint
    )
    for d in params.phot_apertures:
        fcol, ecol = aperture_columns(d)
        mcol = fcol.replace("flux_", "mag_")
        out[mcol], _ = magnitudes(out[fcol].to_numpy(), out[ecol].to_numpy(), zeropoint)
    return out


def extract_catalog(
    ctx: RunContext, params: ExtractParams, tile: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Both passes over the mosaic; the catalog in tile order, SEP's order within a tile.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.progress`` receives ``("sky", done, total)``, then ``("extract", ...)``.
    params : ExtractParams
    tile : int
        The mosaic's tile (its Zarr chunk, px).

    Returns
    -------
    pandas.DataFrame
        The catalog (columns of the ``sources`` table but ``image_id``).
    dict
        ``saturation``, ``mag_zeropoint``, ``wcs`` (a sentence: what the coordinates are),
        ``largest_halo`` (px) and the sky's ``global_back``/``global_rms``.
    """
    from pipeline.io.wcs import pixel_scale_arcsec, pixel_to_sky, read_wcs

    store = ctx.store
    mesh = _sky(ctx, params, tile)
    header = mosaic_header(store)
    mosaic = store.open_array(MOSAIC, mode="r")
    saturation = params.saturation
    if saturation is None:
        saturation = _header_value(header, "SATURATE", "SATLEVEL")
    if saturation is None and np.dtype(mosaic.dtype).kind == "u":
        saturation = float(np.iinfo(mosaic.dtype).max)
    zeropoint = params.mag_zeropoint
    if zeropoint is None:
        zeropoint = _header_value(header, "MAGZERO", "MAGZPT", "ZEROPT") or 0.0
    wcs, wcs_text = read_wcs(
        header, source=str(store.open_array(MOSAIC, mode="r").attrs.get("source", store.url))
    )
    scale = pixel_scale_arcsec(wcs) if wcs is not None else None
    tiles = _tiles(mesh.height, mesh.width, tile)
    digest = _mesh_digest(mesh)
    n_cols = math.ceil(mesh.width / tile)
    names = [f"r{k // n_cols}c{k % n_cols}" for k in range(len(tiles))]
    key = config_key(
        {
            "params": params.model_dump(mode="json"),
            "mosaic": store.task_key(INGEST_TASK),
            "saturation": saturation,
            "zeropoint": zeropoint,
            "sky": digest,
            "marker": "columns",
        }
    )
    if ctx.forced or not store.task_matches(EXTRACT_TASK, key, SKY_MESH):
        store.reset_task(EXTRACT_TASK, [])
        store.record_task(EXTRACT_TASK, key)
    args = {
        k: (t, names[k], params, saturation, float(zeropoint), digest) for k, t in enumerate(tiles)
    }
    markers = run_chunks(
        store,
        ctx.client,
        EXTRACT_TASK,
        extract_chunk,
        args,
        label="extract",
        progress=ctx.progress,
    )
    parts = [pd.DataFrame(markers[k]["columns"]) for k in range(len(tiles))]
    table = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    # Sky coordinates for the whole catalog at once (a WCS parsed once, not per tile).
    if wcs is not None and len(table):
        table["ra"], table["dec"] = pixel_to_sky(wcs, table["x"].to_numpy(), table["y"].to_numpy())
    else:
        table["ra"], table["dec"] = np.nan, np.nan
    info = {
        "saturation": saturation,
        "mag_zeropoint": float(zeropoint),
        "wcs": wcs_text,
        "pixel_scale_arcsec": scale,
        "largest_halo": max(int(markers[k]["halo"]) for k in range(len(tiles))),
        "global_back": mesh.global_back,
        "global_rms": mesh.global_rms,
    }
    return table, info
