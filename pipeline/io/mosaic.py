"""Survey mosaics: ingest one large image as the tiled ``mosaic`` array, detect its sources.

* ``ingest_mosaic`` reads a FITS, TIFF, PNG or JPEG image band by band (each band of tile
  rows is one task that reads its own rows from the file: FITS through a memory map, TIFF
  through tifffile's tile-wise selection) and writes ``mosaic (mosaic_y, mosaic_x)`` tiled
  ``tile`` x ``tile``. Colour images are converted to grayscale.
* ``detect_sources`` runs :mod:`pipeline.imaging.detect` over the tiles with
  :func:`dask.array.map_overlap` (the result equals whole-image detection exactly), writes
  ``tables/sources.parquet`` and a ``cutouts`` collection of aligned cutouts around the
  sources, so a mosaic flows into the same clustering as a collection of cutouts.

The mosaic's dimensions are ``mosaic_y``/``mosaic_x`` because xarray requires one size per
dimension name within a Dataset.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from distributed import Client
from pydantic import BaseModel, ConfigDict, Field, model_validator
from zarr.codecs import ZstdCodec
from zarr.core.array_spec import ArrayConfigParams

from pipeline.core.chunks import chunk_bounds, collect_rows, prepare_cutouts, write_cutout_chunk
from pipeline.core.progress import ProgressFn, gather_with_progress, no_progress
from pipeline.core.store import RunStore, config_key
from pipeline.core.tables import write_table
from pipeline.errors import ImageDecodeError, SourceError, StoreError
from pipeline.imaging.detect import BlobParams, blob_table, combine_tiles
from pipeline.io.imagefiles import probe_image, read_image
from pipeline.workflows.galaxy.preprocess import GalaxyParams, align_and_cut, to_gray

__all__ = [
    "MOSAIC_DIMS",
    "MosaicParams",
    "SourceParams",
    "check_mosaic",
    "detect_sources",
    "ingest_mosaic",
    "read_rows",
]

log = logging.getLogger(__name__)

#: Dimensions of the ``mosaic`` array.
MOSAIC_DIMS = ("mosaic_y", "mosaic_x")

INGEST_TASK = "ingest_mosaic"
DETECT_TASK = "detect_sources"


class MosaicParams(BaseModel):
    """Parameters of ``ingest_mosaic``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="the mosaic: a FITS, TIFF, PNG or JPEG file (path or URL)")
    tile: int = Field(2048, ge=64, le=16384, description="tile (chunk) side in pixels")


class SourceParams(BaseModel):
    """Parameters of ``detect_sources``: the detector, then the cutouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Laplacian of Gaussian by default: on survey fields of faint, small sources it finds
    # about 0.9 of them where blob_doh at the galaxy notebook's 0.004 finds under 0.2
    # (measured on `pipeline synth mosaic` fields).
    method: Literal["doh", "log"] = "log"
    min_sigma: float = Field(1.0, gt=0, description="smallest blob scale (px)")
    max_sigma: float = Field(15.0, gt=0, description="largest blob scale (px)")
    num_sigma: int = Field(10, ge=1, description="blob scales tried")
    threshold: float = Field(0.05, gt=0, description="absolute detector threshold")
    overlap: float = Field(0.5, ge=0, le=1, description="blob pruning overlap fraction")
    log_scale: bool = False
    radius_factor: float = Field(math.sqrt(2.0), gt=0, description="blob radius / sigma")
    moment_level: float = Field(0.25, gt=0, lt=1, description="alignment isophote")
    cutout_size: int = Field(128, ge=8, le=4096, description="cutout side (px)")
    crop_factor: float = Field(2.0, gt=0, description="cutout half-width in source radii")
    min_half_width: float = Field(8.0, gt=0, description="smallest cutout half-width (px)")
    rescale: bool = Field(True, description="rescale each cutout to [0, 1]")
    align: bool = Field(True, description="rotate each cutout's major axis to +x")
    cutouts_per_chunk: int = Field(256, ge=1, description="cutouts per chunk of `cutouts`")

    @model_validator(mode="after")
    def _sigma_order(self) -> SourceParams:
        self.blob_params()  # validates min_sigma <= max_sigma with the detector's message
        return self

    def blob_params(self) -> BlobParams:
        """The detector's parameters."""
        return BlobParams(
            method=self.method,
            min_sigma=self.min_sigma,
            max_sigma=self.max_sigma,
            num_sigma=self.num_sigma,
            threshold=self.threshold,
            overlap=self.overlap,
            log_scale=self.log_scale,
        )

    def galaxy_params(self) -> GalaxyParams:
        """The cutout settings, in the form ``align_and_cut`` takes."""
        return GalaxyParams(
            radius_factor=self.radius_factor,
            moment_level=self.moment_level,
            cutout_size=self.cutout_size,
            crop_factor=self.crop_factor,
            rescale=self.rescale,
        )


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def read_rows(path: str, fmt: str, r0: int, r1: int) -> npt.NDArray[Any]:
    """Rows ``[r0, r1)`` of an image file, reading no more of it than needed where possible.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    fmt : {"fits", "tiff", "png", "jpeg"}
    r0, r1 : int
        Row range.

    Returns
    -------
    numpy.ndarray, shape (r1 - r0, w) or (r1 - r0, w, c)
        Local FITS files are read through a memory map and local TIFFs tile by tile;
        PNG, JPEG and remote files are decoded whole (they are rarely mosaic-sized).

    Raises
    ------
    ImageDecodeError
        If the file cannot be read.
    """
    try:
        if _is_local(path) and fmt == "fits":
            from astropy.io import fits

            with fits.open(_local(path), memmap=True) as hdul:
                hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
                return np.array(hdu.section[r0:r1], copy=True)
        if _is_local(path) and fmt == "tiff":
            import tifffile

            return np.asarray(tifffile.imread(_local(path), selection=(slice(r0, r1),)))
    except (OSError, ValueError, KeyError, IndexError, StopIteration) as exc:
        raise ImageDecodeError(f"cannot read rows {r0}:{r1} of {path}: {exc}") from exc
    return read_image(path, fmt)[r0:r1]


def _mosaic_dtype(dtype: str) -> str:
    return dtype if dtype in ("uint8", "uint16") else "float32"


def _as_mosaic(rows: npt.NDArray[Any], dtype: str) -> npt.NDArray[Any]:
    if rows.ndim == 3:
        # Colour to luminance; integers keep their range so the store stays compact.
        gray = to_gray(rows)
        if dtype == "uint8":
            return np.asarray(np.rint(gray * 255), dtype=np.uint8)
        if dtype == "uint16":
            return np.asarray(np.rint(gray * 65535), dtype=np.uint16)
        return gray.astype(np.float32)
    return rows.astype(dtype, copy=False)


def write_band(
    store: RunStore, index: int, path: str, fmt: str, r0: int, r1: int, dtype: str
) -> None:
    """Read rows ``[r0, r1)`` of the file and write them to ``mosaic`` (one task)."""
    band = _as_mosaic(read_rows(path, fmt, r0, r1), dtype)
    config: ArrayConfigParams = {"write_empty_chunks": True}
    store.open_array("mosaic").with_config(config)[r0:r1] = band
    store.mark_done(INGEST_TASK, index, {})


def check_mosaic(store: RunStore, params: MosaicParams) -> None:
    """Preflight: the mosaic file exists and is a readable 2-D image.

    Raises
    ------
    SourceError
        If it does not, naming the file and what to do.
    """
    if _is_local(params.source) and not os.path.isfile(_local(params.source)):
        raise SourceError(
            f"mosaic source {params.source!r} does not exist; give the path of a FITS, TIFF, "
            "PNG or JPEG file (e.g. one made by `pipeline synth mosaic`)"
        )
    info = probe_image(params.source)
    if info.reason:
        raise SourceError(f"mosaic source {params.source!r}: {info.reason}")
    if len(info.shape) not in (2, 3):
        raise SourceError(f"mosaic source {params.source!r} has shape {info.shape}, not 2-D")


def ingest_mosaic(
    store: RunStore,
    params: MosaicParams,
    client: Client,
    *,
    redo: bool = False,
    progress: ProgressFn = no_progress,
) -> dict[str, int]:
    """Write the mosaic file into ``store.zarr/mosaic``, one band of tile rows per task.

    Returns
    -------
    dict
        ``height``, ``width`` (px), ``tiles`` and ``bands_written``.

    Raises
    ------
    SourceError
        If the file is missing or not an image.
    """
    check_mosaic(store, params)
    info = probe_image(params.source)
    height, width = int(info.shape[0]), int(info.shape[1])
    dtype = _mosaic_dtype(info.dtype)
    key = config_key({"source": params.source, "tile": params.tile, "shape": info.shape})
    if redo or not store.task_matches(INGEST_TASK, key, "mosaic"):
        store.reset_task(INGEST_TASK, ["mosaic"])
        tile = params.tile
        data = da.zeros((height, width), chunks=(tile, tile), dtype=dtype)
        ds = xr.Dataset({"mosaic": (MOSAIC_DIMS, data)})
        ds["mosaic"].attrs["source"] = params.source
        encoding = {"mosaic": {"chunks": (tile, tile), "compressors": [ZstdCodec(level=1)]}}
        store.write_template(ds, encoding, mode="a")
        store.record_task(INGEST_TASK, key, source=params.source)
    done = set(store.done_markers(INGEST_TASK))
    bands = chunk_bounds(height, params.tile)
    todo = [i for i in range(len(bands)) if i not in done]
    log.info(
        "ingest_mosaic: %d x %d %s, %d bands (%d to write)",
        height,
        width,
        dtype,
        len(bands),
        len(todo),
    )
    tasks = [
        dask.delayed(write_band, pure=True)(
            store,
            i,
            params.source,
            info.format,
            *bands[i],
            dtype,
            dask_key_name=f"mosaic-band-{i:08d}",
        )
        for i in todo
    ]
    if tasks:
        gather_with_progress(client, client.compute(tasks), "mosaic", progress)
    n_tiles = len(bands) * math.ceil(width / params.tile)
    return {"height": height, "width": width, "tiles": n_tiles, "bands_written": len(todo)}


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
) -> int:
    """Cut out sources ``start ...`` (rows ``y, x, sigma``) and write their chunk (one task).

    The mosaic is read once per tile group of the chunk, over the bounding box of its
    sources' windows.
    """
    mosaic = store.open_array("mosaic", mode="r")
    h, w = mosaic.shape
    gp = params.galaxy_params()
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
            _, _, angle, cut = align_and_cut(region, y - r0, x - c0, radius, gp, align=params.align)
            block[k] = cut
            angles[k] = angle
    rows = [
        {"image_id": str(i), "angle_deg": float(a)} for i, a in zip(image_ids, angles, strict=True)
    ]
    write_cutout_chunk(store, DETECT_TASK, index, start, block, rows)
    return len(rows)


def detect_sources(
    store: RunStore,
    params: SourceParams,
    client: Client,
    *,
    redo: bool = False,
    progress: ProgressFn = no_progress,
) -> dict[str, int]:
    """Detect the mosaic's sources tile by tile; write the sources table and cutouts.

    Parameters
    ----------
    store : RunStore
        Holds ``mosaic`` (from ``ingest_mosaic``).
    params : SourceParams
    client : distributed.Client
    redo : bool
        Redo every cutout chunk.
    progress : ProgressFn
        Receives ``("detect", done, total)`` per tile, then ``("cutouts", ...)``.

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
    if not store.has_array("mosaic"):
        raise StoreError(f"{store.url} has no mosaic; run the ingest_mosaic stage first")
    bp = params.blob_params()
    image = da.from_zarr(
        store.zarr_url,
        component="mosaic",
        storage_options=dict(store.storage_options) or None,
    )
    tiles = blob_table(image, bp)
    cells = tiles.to_delayed()
    flat = [cells[i, j] for i in range(cells.shape[0]) for j in range(cells.shape[1])]
    results = gather_with_progress(client, client.compute(flat), "detect", progress)
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
    done = prepare_cutouts(
        store,
        task=DETECT_TASK,
        n=n,
        size=params.cutout_size,
        per_chunk=per_chunk,
        config={"params": params.model_dump(mode="json"), "mosaic": mosaic_key},
        coords={"image_id": ids},
        redo=redo,
    )
    yxs = found[["y", "x", "sigma"]].to_numpy()
    tile_names = found["tile"].tolist()
    tasks = [
        dask.delayed(source_cutouts_chunk, pure=True)(
            store,
            i,
            s,
            yxs[s:e],
            tile_names[s:e],
            ids[s:e],
            params,
            dask_key_name=f"source-cutouts-{i:08d}",
        )
        for i, (s, e) in enumerate(bounds)
        if i not in done
    ]
    if tasks:
        gather_with_progress(client, client.compute(tasks), "cutouts", progress)
    angles = pd.DataFrame(
        collect_rows(store, DETECT_TASK, len(bounds)), columns=["image_id", "angle_deg"]
    )
    table = found.assign(image_id=ids)[["image_id", "y", "x", "sigma", "tile"]]
    table["angle_deg"] = angles["angle_deg"].to_numpy() if n else np.empty(0)
    write_table(store, "sources", table)
    return {"sources": n, "tiles": int(grid.size), "chunks": len(bounds)}
