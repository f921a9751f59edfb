"""Blob detection on whole images and on tiled Dask arrays, with identical results.

:func:`detect_blobs` runs scikit-image's determinant-of-Hessian (``"doh"``) or
Laplacian-of-Gaussian (``"log"``) blob detector on a 2-D numpy array, or tile by tile on a
2-D Dask array with :func:`dask.array.map_overlap`. The tiled result equals the whole-image
result exactly (same blobs, same sigma, same order) because:

* each tile carries a halo deep enough that every filter response in its core, and the
  3x3x3 peak search around it, sees the same pixels as on the whole image
  (:func:`halo_depth`); real image edges get no padding (``boundary="none"``), so they are
  treated as the whole-image call treats them;
* the threshold is absolute (a per-tile relative threshold would change results);
* a blob belongs to the one tile whose core holds its centre, so none is found twice;
* overlapping blobs are pruned in one global pass over the combined table, in the order the
  whole-image call sees them (strongest response first, then raster order);
* the determinant of Hessian is computed from box sums over an integral image. In floating
  point those sums depend on where the running sum starts, so a tile and the whole image
  would round differently; the image is therefore first put on a fixed-point grid
  (multiples of 2**-20) on which every box sum is exact wherever it starts
  (:func:`quantize`). The change is below 1e-6 of the value range.

Tile offsets come from ``block_id`` and the chunk sizes: ``block_info`` locations are those
of the un-padded array inside ``map_overlap`` in current Dask, which is wrong here.
"""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.ndimage as ndi
from dask.array.overlap import ensure_minimum_chunksize

# Private scikit-image helpers, used exactly as skimage.feature.blob_doh/blob_log use them,
# so results match those functions bit for bit.
from skimage.feature._hessian_det_appx import _hessian_matrix_det
from skimage.feature.blob import _prune_blobs
from skimage.transform import integral_image
from skimage.util import img_as_float

from pipeline.imaging.spec import BlobParams, Method

__all__ = [
    "BLOB_COLUMNS",
    "BlobParams",
    "blob_table",
    "blobs_in_block",
    "combine_tiles",
    "detect_blobs",
    "halo_depth",
    "order_and_prune",
    "quantize",
]

log = logging.getLogger(__name__)


#: Columns of the frame :func:`detect_blobs` returns.
BLOB_COLUMNS = ("y", "x", "sigma")

# Fixed-point step of :func:`quantize`. Box sums stay exact while the sum of |values| over
# the image is below 2**(53 - 20) = 8.6e9, e.g. a 90,000 x 90,000 mosaic of values <= 1.
_QUANT_BITS = 20


def halo_depth(params: BlobParams) -> int:
    """Halo (px) a tile needs so its core's responses equal the whole image's.

    Parameters
    ----------
    params : BlobParams

    Returns
    -------
    int
        For ``"log"``: scipy's Gaussian kernels reach ``int(4 * sigma + 0.5)`` px. For
        ``"doh"``: the box filters of scale ``sigma`` have side ``int(3 * sigma)`` (made odd)
        and reach half of it plus the integral image's one-pixel offset. Both add one pixel
        for the 3x3 peak search and one of margin.
    """
    s = float(params.sigma_list().max())
    reach = int(4.0 * s + 0.5) if params.method == "log" else (int(3.0 * s) + 1) // 2 + 1
    return reach + 2


def quantize(image: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Put ``image`` on the fixed-point grid on which box sums are exact.

    Parameters
    ----------
    image : numpy.ndarray, shape (h, w)
        Any real dtype; integers are scaled to [0, 1] as :func:`skimage.util.img_as_float`
        does.

    Returns
    -------
    numpy.ndarray of float64, shape (h, w)
        Values rounded to multiples of ``2**-20``.
    """
    f = np.asarray(img_as_float(image), dtype=np.float64)
    return np.ldexp(np.rint(np.ldexp(f, _QUANT_BITS)), -_QUANT_BITS)


def _response_cube(image: npt.NDArray[Any], params: BlobParams) -> npt.NDArray[np.float64]:
    """Scale-space response, shape (h, w, num_sigma), as scikit-image's blob_* builds it."""
    sigmas = params.sigma_list()
    if params.method == "doh":
        # One integral image for every scale, as blob_doh does (hessian_matrix_det would
        # recompute it per scale).
        integral = integral_image(quantize(image))
        cube = np.empty((*integral.shape, len(sigmas)), dtype=np.float64)
        for j, s in enumerate(sigmas):
            cube[..., j] = _hessian_matrix_det(integral, float(s))
        return cube
    img = np.asarray(img_as_float(image), dtype=np.float64)
    cube = np.empty((*img.shape, len(sigmas)), dtype=np.float64)
    for j, s in enumerate(sigmas):
        # The scale-normalised LoG, negated so that bright blobs are maxima (as blob_log).
        cube[..., j] = -ndi.gaussian_laplace(img, float(s)) * float(s) ** 2
    return cube


def _local_maxima(cube: npt.NDArray[np.float64], threshold: float) -> npt.NDArray[np.intp]:
    """``peak_local_max(cube, threshold_abs=threshold, footprint=ones((3, 3, 3)),
    exclude_border=False)``, computed only where the cube exceeds the threshold.

    A full 3x3x3 maximum filter costs as much as building the cube; above an absolute
    threshold there are few candidates, each compared with its 26 neighbours (indices
    clamped at the edges, as the filter's ``mode="nearest"``). Same peaks, same order.
    """
    if cube.size == 0 or cube.max() == cube.min():
        # peak_local_max finds no peak in a constant image.
        return np.empty((0, cube.ndim), dtype=np.intp)
    cand = np.nonzero(cube > threshold)
    values = cube[cand]
    keep = np.ones(values.shape, dtype=bool)
    upper = [n - 1 for n in cube.shape]
    for offset in np.ndindex(3, 3, 3):
        if offset == (1, 1, 1):
            continue
        idx = tuple(np.clip(c + (o - 1), 0, u) for c, o, u in zip(cand, offset, upper, strict=True))
        keep &= values >= cube[idx]
    coords = np.transpose([c[keep] for c in cand])
    order = np.argsort(-values[keep], kind="stable")
    return np.asarray(coords[order], dtype=np.intp).reshape(-1, cube.ndim)


def blobs_in_block(
    block: npt.NDArray[Any],
    params: BlobParams,
    core: tuple[int, int, int, int] | None = None,
) -> npt.NDArray[np.float64]:
    """Local maxima of the response over ``threshold`` in a (padded) block, unpruned.

    Parameters
    ----------
    block : numpy.ndarray, shape (h, w)
        The block with its halo.
    params : BlobParams
    core : (row0, row1, col0, col1), optional
        The block's core in block coordinates; only maxima whose centre lies inside it are
        returned. Default: the whole block.

    Returns
    -------
    numpy.ndarray of float64, shape (n, 5)
        Columns ``y``, ``x`` (block coordinates), ``sigma`` (px), the response and the
        scale index, ordered by decreasing response then raster order as in
        :func:`skimage.feature.peak_local_max`.
    """
    img = np.asarray(block)
    if img.ndim != 2:
        raise ValueError(f"blob detection needs a 2-D image, got shape {img.shape}")
    if img.size == 0:
        return np.empty((0, 5))
    cube = _response_cube(img, params)
    peaks = _local_maxima(cube, params.threshold)
    if core is not None and len(peaks):
        r0, r1, c0, c1 = core
        inside = (peaks[:, 0] >= r0) & (peaks[:, 0] < r1) & (peaks[:, 1] >= c0)
        peaks = peaks[inside & (peaks[:, 1] < c1)]
    out = np.empty((len(peaks), 5), dtype=np.float64)
    out[:, 0:2] = peaks[:, 0:2]
    out[:, 2] = params.sigma_list()[peaks[:, 2]]
    out[:, 3] = cube[peaks[:, 0], peaks[:, 1], peaks[:, 2]]
    out[:, 4] = peaks[:, 2]
    return out


def order_and_prune(raw: npt.NDArray[np.float64], overlap: float) -> npt.NDArray[np.float64]:
    """Prune overlapping blobs from ``raw`` (columns y, x, sigma, response, scale index)."""
    if len(raw) == 0:
        return np.empty((0, 3))
    # The whole-image order: np.nonzero's raster order over (y, x, scale), stably sorted by
    # decreasing response. _prune_blobs' outcome depends on this order.
    order = np.lexsort((raw[:, 4], raw[:, 1], raw[:, 0], -raw[:, 3]))
    lm = np.ascontiguousarray(raw[order, 0:3])
    return np.asarray(_prune_blobs(lm, overlap))


def _block_blobs(
    block: npt.NDArray[Any],
    *,
    params: BlobParams,
    in_chunks: tuple[tuple[int, ...], tuple[int, ...]],
    depths: tuple[int, ...],
    block_id: tuple[int, int] | None = None,
) -> npt.NDArray[np.object_]:
    """map_overlap body: the blobs whose centre is in this block's core, in image coords."""
    assert block_id is not None  # dask always passes it to a function that accepts it
    starts = []
    cores = []
    for axis in (0, 1):
        i = block_id[axis]
        core_start = int(sum(in_chunks[axis][:i]))
        # boundary="none": the first block along an axis has no halo before its core.
        pad = 0 if i == 0 else depths[axis]
        starts.append(core_start - pad)
        cores.append((pad, pad + in_chunks[axis][i]))
    found = blobs_in_block(block, params, core=(*cores[0], *cores[1]))
    found[:, 0] += starts[0]
    found[:, 1] += starts[1]
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = found
    return out


def blob_table(image: da.Array, params: BlobParams) -> da.Array:
    """Build (not compute) the per-tile detection graph of a 2-D Dask array.

    Parameters
    ----------
    image : dask.array.Array, shape (h, w)
    params : BlobParams

    Returns
    -------
    dask.array.Array of object, shape (tiles_y, tiles_x)
        Element ``[i, j]`` is the float64 array ``(n, 5)`` of :func:`blobs_in_block` for
        tile ``(i, j)`` in image coordinates, unpruned. Combine with :func:`combine_tiles`.
    """
    if image.ndim != 2:
        raise ValueError(f"blob detection needs a 2-D image, got shape {image.shape}")
    halo = halo_depth(params)
    depths = []
    chunks = []
    for size, axis_chunks in zip(image.shape, image.chunks, strict=True):
        if halo >= size:
            # The halo would span the whole axis: one block along it, needing no halo.
            chunks.append((int(size),))
            depths.append(0)
        else:
            # Every chunk must be at least as deep as the halo it lends its neighbour.
            chunks.append(tuple(ensure_minimum_chunksize(halo, axis_chunks)))
            depths.append(halo)
    if tuple(chunks) != image.chunks:
        image = image.rechunk(tuple(chunks))
    ny, nx = image.numblocks
    in_chunks = (tuple(int(c) for c in image.chunks[0]), tuple(int(c) for c in image.chunks[1]))
    return da.map_overlap(
        _block_blobs,
        image,
        depth={0: depths[0], 1: depths[1]},
        boundary="none",
        trim=False,
        dtype=object,
        # One object element per tile: its blob array.
        chunks=((1,) * ny, (1,) * nx),
        meta=np.empty((0, 0), dtype=object),
        params=params,
        in_chunks=in_chunks,
        depths=tuple(depths),
    )


def combine_tiles(tiles: npt.NDArray[np.object_], overlap: float) -> pd.DataFrame:
    """Join per-tile blobs and prune overlaps globally.

    Parameters
    ----------
    tiles : numpy.ndarray of object, shape (tiles_y, tiles_x)
        The computed :func:`blob_table`.
    overlap : float

    Returns
    -------
    pandas.DataFrame
        Columns ``y``, ``x``, ``sigma`` (px), ``tile`` (``"r{i}c{j}"``).
    """
    parts = []
    names = []
    for (i, j), arr in np.ndenumerate(tiles):
        parts.append(arr)
        names.extend([f"r{i}c{j}"] * len(arr))
    raw = np.concatenate(parts) if parts else np.empty((0, 5))
    tile_of = {(float(r[0]), float(r[1]), float(r[2])): n for r, n in zip(raw, names, strict=True)}
    pruned = order_and_prune(raw, overlap)
    frame = pd.DataFrame(pruned, columns=list(BLOB_COLUMNS))
    frame["tile"] = [tile_of[(float(y), float(x), float(s))] for y, x, s in pruned]
    return frame


def detect_blobs(
    image: npt.NDArray[Any] | da.Array, method: Method = "doh", **params: Any
) -> pd.DataFrame:
    """Detect blobs in a 2-D image, whole or tiled.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array, shape (h, w)
        A grayscale image. Integer images are scaled to [0, 1]; float images are used as
        they are. A Dask array is processed tile by tile (its chunks) and gives exactly the
        numpy result.
    method : {"doh", "log"}
        Determinant of Hessian (scikit-image's ``blob_doh``) or Laplacian of Gaussian
        (``blob_log``).
    **params
        ``min_sigma``, ``max_sigma``, ``num_sigma``, ``threshold`` (absolute),
        ``overlap``, ``log_scale``: see :class:`BlobParams`.

    Returns
    -------
    pandas.DataFrame
        One row per blob: ``y`` (row, px), ``x`` (column, px), ``sigma`` (px); ordered by
        decreasing detector response.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or a parameter is out of range.

    Notes
    -----
    For ``"doh"`` the result equals ``skimage.feature.blob_doh(quantize(image), ...)``
    exactly, and ``blob_doh(image, ...)`` up to the rounding of :func:`quantize`.
    """
    p = BlobParams(method=method, **params)
    if isinstance(image, da.Array):
        tiles = blob_table(image, p).compute()
        return combine_tiles(tiles, p.overlap).drop(columns="tile")
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"blob detection needs a 2-D image, got shape {arr.shape}")
    pruned = order_and_prune(blobs_in_block(arr, p), p.overlap)
    return pd.DataFrame(pruned, columns=list(BLOB_COLUMNS))
