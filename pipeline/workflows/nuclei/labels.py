"""Instance labels of a chunked nuclei mask, joined across blocks: exactly the whole-plane
labelling, for planes far larger than memory.

What the labels are (see :mod:`pipeline.imaging.instances`): with ``max_extent`` ``E``, a
connected foreground component whose bounding box is at most ``E`` px tall and wide is
*small* and split into nuclei by :func:`~pipeline.imaging.nuclei.split_touching` (``h``,
``min_size``, on its own); a larger one is *big* and kept whole as one object. The result
equals :func:`~pipeline.imaging.instances.instance_labels` of each whole plane, label for
label: 1..n per plane, the nuclei in raster order of their first pixel, then the big objects
in raster order of theirs.

How (:func:`label_nuclei`), with the mask's Zarr chunks as blocks, flat block index over
``(image, block_row, block_col)``:

1. *scan* (task ``<task>-scan``): each block reads its core grown by ``E + 2`` px on each side
   and computes the core's global ids (nuclei: ``1 +`` first pixel's raster index; big
   components: a provisional id from their first pixel in this core). Its marker holds the
   ids present, the big ids along the core's four edges, per-id partial measurements over
   the core (area, coordinate and intensity sums, bounding box) and the shapes of the nuclei
   whose first pixel lies in the core;
2. on the client: big ids touching across block faces (and corners, for
   ``connectivity=2``) are joined by connected components of their pair graph, as
   dask-image's ``ndmeasure.label`` does; each object's final label is its rank per plane;
   each block gets the lookup table of just the ids it reported;
3. *write* (task ``<task>-write``): each block recomputes its ids (deterministic), maps them
   to labels and writes its core of ``target``.

Both passes go through the resumable chunk loop, so a killed run resumes block by block; no
pixels pass through the client. The scan restarts when the mask or intensity arrays change
(their files' sizes and modification times) or a parameter does; the write restarts when
the scan's results do. The table of objects is aggregated from the scan's markers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.ndimage as ndi

from pipeline.core.chunks import prepare_array, run_chunks
from pipeline.core.progress import ProgressFn, no_progress
from pipeline.core.store import ZARR_NAME, RunStore, config_key
from pipeline.errors import ParameterError, StoreError
from pipeline.imaging.instances import (
    SHAPE_COLUMNS,
    face_pairs,
    halo,
    join_ids,
    window_instances,
)

if TYPE_CHECKING:
    import distributed

__all__ = ["LABEL_COLUMNS", "label_nuclei", "scan_block", "write_labels_block"]

log = logging.getLogger(__name__)

#: Columns of :func:`label_nuclei`'s table, one row per object.
LABEL_COLUMNS = (
    "image",
    "label",
    "area",
    "centroid_y",
    "centroid_x",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "mean_intensity",
    *SHAPE_COLUMNS,
    "whole",
)

_EDGES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class _Grid:
    """The blocks of a mask array: planes, and the chunk grid of each plane."""

    planes: int
    height: int
    width: int
    ty: int
    tx: int
    flat: bool  # a 2-D array: no image dimension

    @property
    def rows(self) -> int:
        return -(-self.height // self.ty)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tx)

    def index(self, plane: int, row: int, col: int) -> int:
        return (plane * self.rows + row) * self.cols + col

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """``(index, plane, row, col)`` of every block."""
        return [
            (self.index(p, r, c), p, r, c)
            for p in range(self.planes)
            for r in range(self.rows)
            for c in range(self.cols)
        ]

    def core(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of a block's core (px, half-open)."""
        y0, x0 = row * self.ty, col * self.tx
        return y0, min(y0 + self.ty, self.height), x0, min(x0 + self.tx, self.width)


def _grid(store: RunStore, mask: str) -> tuple[_Grid, tuple[str, ...]]:
    if not store.has_array(mask):
        raise StoreError(
            f"mask array {mask!r} is not in {store.zarr_url}; run the stage that writes it "
            "first (a segmentation, or `ingest_masks`), or name another array as `mask`"
        )
    array = store.open_array(mask, mode="r")
    dims = tuple(str(d) for d in store.open_dataset()[mask].dims)
    shape, chunks = tuple(array.shape), tuple(array.chunks)
    if len(shape) == 2:
        return _Grid(1, shape[0], shape[1], chunks[0], chunks[1], True), dims
    if len(shape) == 3:
        return _Grid(shape[0], shape[1], shape[2], chunks[1], chunks[2], False), dims
    raise StoreError(
        f"mask array {mask!r} has shape {shape}; it must be (y, x) or (image, y, x): name a "
        "binary mask array"
    )


def _read(store: RunStore, name: str, plane: int | None, ys: slice, xs: slice) -> np.ndarray:
    array = store.open_array(name, mode="r")
    return np.asarray(array[ys, xs] if plane is None else array[plane, ys, xs])


def _runs(line: npt.NDArray[np.int64]) -> list[list[int]]:
    """``[start, stop, id]`` of each run of one non-zero id along ``line``."""
    if not len(line):
        return []
    change = np.flatnonzero(np.diff(line)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(line)]])
    return [
        [int(a), int(b), int(line[a])] for a, b in zip(starts, stops, strict=True) if line[a] != 0
    ]


def _unruns(runs: Sequence[Sequence[int]], n: int) -> npt.NDArray[np.int64]:
    line = np.zeros(n, dtype=np.int64)
    for start, stop, value in runs:
        line[start:stop] = value
    return line


def _window(
    store: RunStore,
    mask: str,
    plane: int | None,
    core: Sequence[int],
    plane_shape: Sequence[int],
    params: Mapping[str, Any],
    shapes: bool,
) -> tuple[npt.NDArray[np.int64], dict[int, tuple[float, ...]]]:
    """The core's global ids (and shapes), from the window around it."""
    y0, y1, x0, x1 = core
    height, width = plane_shape
    grow = halo(params["max_extent"])
    wy0, wy1 = max(y0 - grow, 0), min(y1 + grow, height)
    wx0, wx1 = max(x0 - grow, 0), min(x1 + grow, width)
    window = _read(store, mask, plane, slice(wy0, wy1), slice(wx0, wx1))
    found = window_instances(
        window,
        origin=(wy0, wx0),
        plane_shape=(height, width),
        core=(slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)),
        shapes=shapes,
        **params,
    )
    return found.ids, found.shapes


def scan_block(
    store: RunStore,
    index: int,
    mask: str,
    intensity: str | None,
    plane: int | None,
    core: Sequence[int],
    plane_shape: Sequence[int],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Pass 1 for one block: its core's ids, edge strips and partial measurements.

    Parameters
    ----------
    store : RunStore
    index : int
        Flat block index (the marker's key).
    mask, intensity : str, str or None
        The mask array and the intensity array (same plane shape, optionally a trailing
        channel dimension, averaged) or None.
    plane : int or None
        The plane along ``image`` (None: a 2-D array).
    core : (y0, y1, x0, x1)
        The block's core (px, half-open).
    plane_shape : (height, width)
        The plane's size (px).
    params : mapping
        ``max_extent``, ``h``, ``min_size``, ``connectivity``.

    Returns
    -------
    dict
        JSON-able: ``ids`` (sorted, distinct, non-zero), per id ``area``, ``sum_y``,
        ``sum_x`` (px), ``sum_intensity``, ``y0``, ``x0``, ``y1``, ``x1`` (bounding box of
        the core's part, half-open); ``shape_ids`` and ``shapes`` (:data:`SHAPE_COLUMNS`
        per nucleus anchored here); ``edges``: runs ``[start, stop, id]`` of big ids along
        the core's ``top``, ``bottom``, ``left`` and ``right`` lines.
    """
    ids, shapes = _window(store, mask, plane, core, plane_shape, params, shapes=True)
    y0, y1, x0, x1 = core
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape)
    # Compact labels: 0 background, 1..m the ids present (find_objects and bincount want them).
    compact = inverse + (0 if values[0] == 0 else 1)
    values = values[values > 0]
    m = len(values)
    yy, xx = np.indices(ids.shape)
    flat = compact.ravel()
    area = np.bincount(flat, minlength=m + 1)[1:]
    sum_y = np.bincount(flat, weights=(yy + y0).ravel(), minlength=m + 1)[1:]
    sum_x = np.bincount(flat, weights=(xx + x0).ravel(), minlength=m + 1)[1:]
    if intensity is not None and m:
        pixels = _read(store, intensity, plane, slice(y0, y1), slice(x0, x1)).astype(np.float64)
        if pixels.ndim == 3:
            pixels = pixels.mean(axis=2)
        sum_i = np.bincount(flat, weights=pixels.ravel(), minlength=m + 1)[1:].tolist()
    else:
        sum_i = [float("nan")] * m
    boxes = ndi.find_objects(compact, max_label=m) if m else []
    big = np.where(ids > plane_shape[0] * plane_shape[1], ids, 0)
    lines = {"top": big[0], "bottom": big[-1], "left": big[:, 0], "right": big[:, -1]}
    anchored = sorted(shapes)
    log.debug("scan block %d: %d object(s), %d anchored", index, m, len(anchored))
    return {
        "ids": values.tolist(),
        "area": area.tolist(),
        "sum_y": np.rint(sum_y).astype(np.int64).tolist(),
        "sum_x": np.rint(sum_x).astype(np.int64).tolist(),
        "sum_intensity": sum_i,
        "y0": [b[0].start + y0 for b in boxes],
        "y1": [b[0].stop + y0 for b in boxes],
        "x0": [b[1].start + x0 for b in boxes],
        "x1": [b[1].stop + x0 for b in boxes],
        "shape_ids": anchored,
        "shapes": [list(shapes[i]) for i in anchored],
        "edges": {name: _runs(line) for name, line in lines.items()},
    }


def write_labels_block(
    store: RunStore,
    index: int,
    target: str,
    mask: str,
    plane: int | None,
    core: Sequence[int],
    plane_shape: Sequence[int],
    params: Mapping[str, Any],
    ids: Sequence[int],
    labels: Sequence[int],
) -> dict[str, Any]:
    """Pass 2 for one block: recompute its ids, map them to labels, write its core.

    Parameters
    ----------
    store, index, mask, plane, core, plane_shape, params
        As :func:`scan_block`.
    target : str
        The uint32 label array written (the block's core region of it).
    ids, labels : sequences of int
        The block's lookup table: every id its scan reported (sorted) and its final label.

    Returns
    -------
    dict
        ``{"objects": number of labels in the core}``.
    """
    found, _ = _window(store, mask, plane, core, plane_shape, params, shapes=False)
    keys = np.asarray(ids, dtype=np.int64)
    out = np.zeros(found.shape, dtype=np.uint32)
    fg = found > 0
    if fg.any():
        where = np.searchsorted(keys, found[fg])
        if len(keys) == 0 or np.any(where >= len(keys)) or np.any(keys[where] != found[fg]):
            raise StoreError(
                f"block {index} of {mask!r} holds objects its scan did not report: the mask "
                "changed between the two passes; rerun with redo=True"
            )
        out[fg] = np.asarray(labels, dtype=np.uint32)[where]
    y0, y1, x0, x1 = core
    array = store.open_array(target).with_config({"write_empty_chunks": True})
    if plane is None:
        array[y0:y1, x0:x1] = out
    else:
        array[plane, y0:y1, x0:x1] = out
    return {"objects": len(np.unique(out[fg]))}


def _fingerprint(store: RunStore, name: str) -> list[list[Any]]:
    """Every file of an array with its size and modification time: changes when it is
    rewritten (content hashing would read the whole, far-larger-than-memory array)."""
    root = store.fs_path(f"{ZARR_NAME}/{name}")
    files = store.fs.find(root, detail=True)
    stamp = ("size", "mtime", "LastModified", "ETag", "md5Hash", "generation")
    return [
        [str(path)[len(root) :], *(str(info[k]) for k in stamp if k in info)]
        for path, info in sorted(files.items())
    ]


def _check_intensity(store: RunStore, intensity: str, grid: _Grid) -> None:
    if not store.has_array(intensity):
        raise StoreError(
            f"intensity array {intensity!r} is not in {store.zarr_url}; ingest the images "
            "first, or pass intensity=None (mean_intensity is then NaN)"
        )
    shape = tuple(store.open_array(intensity, mode="r").shape)
    plane = (grid.height, grid.width) if grid.flat else (grid.planes, grid.height, grid.width)
    if shape[: len(plane)] != plane or len(shape) > len(plane) + 1:
        raise StoreError(
            f"intensity array {intensity!r} has shape {shape}, but the mask's planes are "
            f"{plane}: name the images the mask was made from"
        )


def _join(
    grid: _Grid, scans: Mapping[int, Mapping[str, Any]], connectivity: int
) -> dict[int, dict[int, int]]:
    """Final label of every id, per plane: big ids joined across faces, then ranked."""
    out: dict[int, dict[int, int]] = {}
    big_from = grid.height * grid.width
    for plane in range(grid.planes):
        ids: list[int] = []
        pairs: list[npt.NDArray[np.int64]] = []
        for row in range(grid.rows):
            for col in range(grid.cols):
                scan = scans[grid.index(plane, row, col)]
                ids.extend(scan["ids"])
                pairs.extend(_block_pairs(grid, scans, plane, row, col, connectivity))
        every = np.unique(np.asarray(ids, dtype=np.int64))
        rep = every.copy()
        is_big = every > big_from
        if is_big.any():
            joined = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
            rep[is_big] = join_ids(every[is_big], joined)
        order = np.unique(rep)
        labels = np.searchsorted(order, rep) + 1
        out[plane] = dict(zip(every.tolist(), labels.tolist(), strict=True))
    return out


def _block_pairs(
    grid: _Grid,
    scans: Mapping[int, Mapping[str, Any]],
    plane: int,
    row: int,
    col: int,
    connectivity: int,
) -> list[npt.NDArray[np.int64]]:
    """Big-id pairs across the faces (and, 8-connected, corners) below and right of a block."""

    def line(r: int, c: int, edge: str) -> npt.NDArray[np.int64]:
        y0, y1, x0, x1 = grid.core(r, c)
        n = x1 - x0 if edge in ("top", "bottom") else y1 - y0
        return _unruns(scans[grid.index(plane, r, c)]["edges"][edge], n)

    out = []
    if row + 1 < grid.rows:
        out.append(face_pairs(line(row, col, "bottom"), line(row + 1, col, "top"), connectivity))
    if col + 1 < grid.cols:
        out.append(face_pairs(line(row, col, "right"), line(row, col + 1, "left"), connectivity))
    if connectivity == 2 and row + 1 < grid.rows:
        corners = []
        if col + 1 < grid.cols:
            corners.append((line(row, col, "bottom")[-1], line(row + 1, col + 1, "top")[0]))
        if col > 0:
            corners.append((line(row, col, "bottom")[0], line(row + 1, col - 1, "top")[-1]))
        pairs = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
        out.append(pairs[(pairs > 0).all(axis=1)])
    return out


def _table(
    grid: _Grid,
    scans: Mapping[int, Mapping[str, Any]],
    final: Mapping[int, Mapping[int, int]],
) -> pd.DataFrame:
    """One row per object: the scan's partial measurements summed per final label."""
    parts = []
    shape_parts = []
    for index, plane, _, _ in grid.blocks():
        scan = scans[index]
        if not scan["ids"]:
            continue
        lut = final[plane]
        part = pd.DataFrame({k: scan[k] for k in _PARTIAL})
        part["image"] = plane
        part["label"] = [lut[i] for i in scan["ids"]]
        part["whole"] = np.asarray(scan["ids"], dtype=np.int64) > grid.height * grid.width
        parts.append(part)
        if scan["shape_ids"]:
            shape = pd.DataFrame(scan["shapes"], columns=list(SHAPE_COLUMNS))
            shape["image"] = plane
            shape["label"] = [lut[i] for i in scan["shape_ids"]]
            shape_parts.append(shape)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in LABEL_COLUMNS})
    every = pd.concat(parts, ignore_index=True)
    sums = every.groupby(["image", "label"], sort=True).agg(
        area=("area", "sum"),
        sum_y=("sum_y", "sum"),
        sum_x=("sum_x", "sum"),
        sum_intensity=("sum_intensity", "sum"),
        bbox_y0=("y0", "min"),
        bbox_x0=("x0", "min"),
        bbox_y1=("y1", "max"),
        bbox_x1=("x1", "max"),
        whole=("whole", "first"),
    )
    # min_count: a sum of NaN (no intensity array) stays NaN rather than 0.
    sums["sum_intensity"] = every.groupby(["image", "label"], sort=True)["sum_intensity"].sum(
        min_count=1
    )
    table = sums.reset_index()
    table["centroid_y"] = table["sum_y"] / table["area"]
    table["centroid_x"] = table["sum_x"] / table["area"]
    table["mean_intensity"] = table["sum_intensity"] / table["area"]
    if shape_parts:
        shapes = pd.concat(shape_parts, ignore_index=True)
        table = table.merge(shapes, on=["image", "label"], how="left")
    else:
        for name in SHAPE_COLUMNS:
            table[name] = np.nan
    return table[list(LABEL_COLUMNS)].astype({c: _dtype(c) for c in LABEL_COLUMNS})


_PARTIAL = ("area", "sum_y", "sum_x", "sum_intensity", "y0", "x0", "y1", "x1")


def _dtype(column: str) -> str:
    if column == "whole":
        return "bool"
    if column in ("image", "label", "area") or column.startswith("bbox_"):
        return "int64"
    return "float64"


def label_nuclei(
    store: RunStore,
    client: distributed.Client | None,
    *,
    mask: str,
    intensity: str | None,
    target: str,
    task: str,
    max_extent: int,
    h: float = 1.0,
    min_size: int = 8,
    connectivity: int = 1,
    redo: bool = False,
    progress: ProgressFn = no_progress,
) -> pd.DataFrame:
    """Label the nuclei of a chunked mask block by block, equal to whole-plane labelling.

    Parameters
    ----------
    store : RunStore
    client : distributed.Client or None
        Where the block tasks run (None: here, one after the other).
    mask : str
        A store array ``(image, y, x)`` chunked ``(1, ty, tx)``, or ``(y, x)`` (e.g. a
        mosaic's ``mosaic_y, mosaic_x``) chunked ``(ty, tx)``; any dtype, non-zero is
        foreground. Its chunks are the blocks.
    intensity : str or None
        A store array of the same plane shape (optionally with a trailing channel dimension,
        averaged) measured as ``mean_intensity``; None gives NaN there.
    target : str
        The uint32 label array written: the mask's dims, shape and chunks (a 3-D mask's
        chunks along ``image`` are 1 here, one plane per block). 0 background, 1..n per
        plane.
    task : str
        Marker prefix: the passes are ``<task>-scan`` and ``<task>-write``.
    max_extent : int
        Largest bounding-box side (px) of a component split into nuclei; a larger component
        is one whole object. Also sets the blocks' overlap (``max_extent + 2`` px a side).
    h : float, default 1.0
        Watershed marker depth (px of distance), as
        :func:`~pipeline.imaging.nuclei.split_touching`.
    min_size : int, default 8
        Small components of fewer pixels are dropped (px).
    connectivity : {1, 2}
        4- or 8-connected components.
    redo : bool
        Scan and write everything again even where markers say it is done.
    progress : ProgressFn

    Returns
    -------
    pandas.DataFrame
        One row per object, ordered by ``image`` then ``label``: :data:`LABEL_COLUMNS`.
        ``area`` (px), ``centroid_y``/``centroid_x`` (px, plane coordinates), half-open
        ``bbox_*`` (px), ``mean_intensity``, the shape measurements of scikit-image's
        ``regionprops`` (NaN for whole objects), and ``whole`` (True for a big component
        kept whole).

    Raises
    ------
    StoreError
        If ``mask`` or ``intensity`` is not in the store, or their shapes disagree.
    ParameterError
        If ``max_extent`` or ``connectivity`` is out of range.
    """
    if int(max_extent) < 1 or connectivity not in (1, 2):
        raise ParameterError(
            f"label_nuclei: max_extent must be >= 1 px and connectivity 1 or 2, got "
            f"{max_extent} and {connectivity}"
        )
    grid, dims = _grid(store, mask)
    if intensity is not None:
        _check_intensity(store, intensity, grid)
    params = {
        "max_extent": int(max_extent),
        "h": float(h),
        "min_size": int(min_size),
        "connectivity": int(connectivity),
    }
    plane_shape = (grid.height, grid.width)

    def plane_of(p: int) -> int | None:
        return None if grid.flat else p

    scan_task = f"{task}-scan"
    # A rewritten mask changes its files' stamps: both passes start over.
    mask_files = config_key({"files": _fingerprint(store, mask)})
    intensity_files = config_key({"files": _fingerprint(store, intensity)}) if intensity else ""
    scan_key = config_key(
        {"mask": mask, "intensity": intensity, **params, "files": [mask_files, intensity_files]}
    )
    if redo or store.task_key(scan_task) != scan_key:
        store.clear_markers(scan_task)
        store.record_task(scan_task, scan_key)
    blocks = grid.blocks()
    scans = run_chunks(
        store,
        client,
        scan_task,
        scan_block,
        {
            i: (mask, intensity, plane_of(p), grid.core(r, c), plane_shape, params)
            for i, p, r, c in blocks
        },
        label=f"{task}: scan",
        progress=progress,
    )
    final = _join(grid, scans, connectivity)
    luts = {i: (scans[i]["ids"], [final[p][k] for k in scans[i]["ids"]]) for i, p, _, _ in blocks}
    shape = plane_shape if grid.flat else (grid.planes, *plane_shape)
    chunks = (grid.ty, grid.tx) if grid.flat else (1, grid.ty, grid.tx)
    write_task = f"{task}-write"
    prepare_array(
        store,
        task=write_task,
        name=target,
        dims=dims,
        shape=shape,
        chunks=chunks,
        dtype=np.uint32,
        config={"mask": mask, **params, "files": mask_files, "scan": config_key({"luts": luts})},
        attrs={
            "description": "nuclei instance labels: 0 background, 1..n per plane; big "
            f"components (over {max_extent} px) kept whole"
        },
        redo=redo,
    )
    run_chunks(
        store,
        client,
        write_task,
        write_labels_block,
        {
            i: (target, mask, plane_of(p), grid.core(r, c), plane_shape, params, *luts[i])
            for i, p, r, c in blocks
        },
        label=f"{task}: write",
        progress=progress,
    )
    table = _table(grid, scans, final)
    kept = int(table["whole"].sum())
    log.info("%s: %d object(s) in %d plane(s), %d kept whole", task, len(table), grid.planes, kept)
    return table
