"""Source Extractor's sky background, computed tile by tile and shared by every tile.

SEP (Source Extractor as a library) estimates the sky on a mesh of ``bw`` x ``bh`` pixel
boxes: a clipped-histogram mode and RMS per box, then a median filter of ``fw`` x ``fh``
boxes over the mesh, then a bicubic spline through the mesh nodes. The spline is *global*:
the background of one pixel depends on a whole row and column of nodes, so a tile cannot
compute its own background from its own pixels and agree with the whole image.

The work therefore splits in two:

1. :func:`box_statistics` (one task per tile, tiles aligned to the mesh): each box's mode and
   RMS, by SEP itself on that box alone (a box's statistics depend only on its pixels, so a
   one-box ``sep.Background`` gives exactly the value the whole-image mesh holds).
2. :func:`filter_mesh` (on the client, on a mesh of a few thousand numbers): SEP's filling of
   boxes with too few valid pixels and its median filter, then :class:`SkyMesh`, which any
   tile asks for its background and RMS maps (:meth:`SkyMesh.region`).

SEP's C code (``src/background.c``: ``filterback``, ``makebackspline``,
``bkg_line_flt_internal``) does the last two steps on the whole image only, and its Python
API exposes neither the mesh nor a way to evaluate part of the map; the port below follows
its arithmetic in float32, step for step, so the maps equal ``sep.Background``'s to float
rounding (tested against it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SkyMesh", "box_statistics", "filter_mesh", "mesh_shape", "valid_pixels"]

F32 = np.float32
Float32Array = npt.NDArray[np.float32]
# SEP's BACK_MINGOODFRAC: a box with fewer valid pixels is filled from its neighbours.
_MIN_GOOD_FRACTION = 0.5


def mesh_shape(height: int, width: int, bw: int, bh: int) -> tuple[int, int]:
    """Boxes of the mesh along y and x (the last row and column may be partial).

    Parameters
    ----------
    height, width : int
        Image size (px).
    bw, bh : int
        Box width and height (px).

    Returns
    -------
    tuple of int
        ``(ny, nx)``, as SEP counts them.
    """
    return max(1, (height - 1) // bh + 1), max(1, (width - 1) // bw + 1)


def valid_pixels(data: npt.NDArray[Any], mask: npt.NDArray[np.bool_] | None) -> npt.NDArray[Any]:
    """Where pixels count: finite and not masked (NaN marks blank survey regions)."""
    good = np.isfinite(data)
    return good if mask is None else good & ~mask


def box_statistics(
    data: npt.NDArray[Any], mask: npt.NDArray[np.bool_] | None, bw: int, bh: int
) -> Float32Array:
    """The sky mode, RMS and validity of every mesh box of one tile.

    Parameters
    ----------
    data : numpy.ndarray, shape (h, w)
        A tile whose top-left corner lies on the mesh (row and column multiples of ``bh`` and
        ``bw``); only tiles at the image's bottom or right edge may hold partial boxes.
        NaN pixels are blank.
    mask : numpy.ndarray of bool, shape (h, w), optional
        True where pixels are to be ignored.
    bw, bh : int
        Box width and height (px).

    Returns
    -------
    numpy.ndarray of float32, shape (3, ceil(h / bh), ceil(w / bw))
        Per box: the background, its RMS, and 1 where the box has enough valid pixels
        (at least half, as in SEP) or 0 where SEP fills it from the nearest valid boxes.
    """
    import sep

    h, w = data.shape
    good = valid_pixels(data, mask)
    # SEP works in float32; NaN pixels are masked, and zeroed so nothing reads them.
    pixels = np.where(good, data, 0).astype(F32, copy=False)
    ny, nx = mesh_shape(h, w, bw, bh)
    out = np.zeros((3, ny, nx), dtype=F32)
    for j in range(ny):
        for i in range(nx):
            rows, cols = slice(j * bh, min(h, (j + 1) * bh)), slice(i * bw, min(w, (i + 1) * bw))
            box_good = good[rows, cols]
            n_box = box_good.size
            # SEP: (float)npix < (float)(bw * h * BACK_MINGOODFRAC) discards the box.
            if float(np.count_nonzero(box_good)) < float(n_box * _MIN_GOOD_FRACTION):
                continue
            box = np.ascontiguousarray(pixels[rows, cols])
            # No mask where every pixel counts: SEP is faster without one, same result.
            box_mask = None if box_good.all() else np.ascontiguousarray(~box_good)
            bkg = sep.Background(box, mask=box_mask, bw=box.shape[1], bh=box.shape[0], fw=1, fh=1)
            out[0, j, i] = bkg.globalback
            # The RMS map of a one-box mesh is the box's RMS (globalrms is 1 where that is 0).
            out[1, j, i] = bkg.rms()[0, 0]
            out[2, j, i] = 1.0
    return out


def _fill_holes(back: Float32Array, sigma: Float32Array, valid: npt.NDArray[np.bool_]) -> None:
    """SEP's ``filterback``, first part: a bad box takes the mean of its nearest valid boxes."""
    if valid.all():
        return
    vy, vx = np.nonzero(valid)  # raster order, as SEP scans
    vback, vsigma = back[vy, vx], sigma[vy, vx]
    for py, px in zip(*np.nonzero(~valid), strict=True):
        if not vy.size:
            back[py, px], sigma[py, px] = 0.0, 1.0
            continue
        d2 = (vx - px).astype(np.float64) ** 2 + (vy - py).astype(np.float64) ** 2
        near = np.flatnonzero(d2 == d2.min())
        val, sval = F32(0.0), F32(0.0)
        for k in near:  # float32 sums in SEP's order
            val, sval = F32(val + vback[k]), F32(sval + vsigma[k])
        back[py, px] = F32(val / F32(near.size))
        sigma[py, px] = F32(sval / F32(near.size))


def _median_filter(
    back: Float32Array, sigma: Float32Array, fw: int, fh: int, fthresh: float
) -> tuple[Float32Array, Float32Array]:
    """SEP's ``filterback``, second part: the median over a window that shrinks
    symmetrically at the mesh's edges; a box is replaced where the median differs from it
    by at least ``fthresh``."""
    ny, nx = back.shape
    npx, npy = fw // 2, fh // 2
    py, px = np.mgrid[0:ny, 0:nx]
    hy = np.minimum(np.minimum(npy, py), ny - 1 - py)
    hx = np.minimum(np.minimum(npx, px), nx - 1 - px)
    med_b = np.empty_like(back)
    med_s = np.empty_like(sigma)
    for a in np.unique(hy):
        for b in np.unique(hx):
            sel = (hy == a) & (hx == b)
            if not sel.any():
                continue
            cy, cx = py[sel], px[sel]
            dy, dx = np.mgrid[-a : a + 1, -b : b + 1]
            yy = cy[:, None] + dy.ravel()[None, :]
            xx = cx[:, None] + dx.ravel()[None, :]
            # Odd windows: the median is one of the values, exactly as SEP's.
            med_b[sel] = np.median(back[yy, xx], axis=1)
            med_s[sel] = np.median(sigma[yy, xx], axis=1)
    replace = np.abs(med_b - back).astype(np.float64) >= fthresh
    return np.where(replace, med_b, back), np.where(replace, med_s, sigma)


def _median(values: Float32Array) -> float:
    """SEP's ``fqmedian``: the middle value, or the mean of the two middle ones."""
    v = np.sort(values.ravel())
    n = v.size
    return float(v[n // 2]) if n & 1 else float(F32(float(F32(v[n // 2 - 1] + v[n // 2])) / 2.0))


def filter_mesh(
    boxes: Float32Array,
    *,
    fw: int,
    fh: int,
    fthresh: float,
    bw: int,
    bh: int,
    shape: tuple[int, int],
) -> SkyMesh:
    """The whole mesh from every tile's :func:`box_statistics`, filtered as SEP filters it.

    Parameters
    ----------
    boxes : numpy.ndarray of float32, shape (3, ny, nx)
        The tiles' box statistics, assembled.
    fw, fh : int
        Median filter size (boxes).
    fthresh : float
        Filter threshold (image units): boxes are replaced only where the median differs
        from them by at least this (SEP's default 0 replaces every one).
    bw, bh : int
        Box size (px).
    shape : tuple of int
        Image ``(height, width)`` (px).

    Returns
    -------
    SkyMesh
    """
    back = np.array(boxes[0], dtype=F32)
    sigma = np.array(boxes[1], dtype=F32)
    valid = boxes[2] > 0
    _fill_holes(back, sigma, valid)
    back, sigma = _median_filter(back, sigma, fw, fh, fthresh)
    return SkyMesh(
        back=back.astype(F32),
        sigma=sigma.astype(F32),
        bw=bw,
        bh=bh,
        height=int(shape[0]),
        width=int(shape[1]),
        global_back=_median(back),
        global_rms=_median(sigma),
        n_filled=int((~valid).sum()),
    )


def _second_derivatives(values: Float32Array) -> Float32Array:
    """Natural cubic spline second derivatives along axis 0 of ``values`` (unit node
    spacing), in float32 as SEP's ``makebackspline`` computes them; vectorised over axis 1."""
    n = values.shape[0]
    d = np.zeros_like(values)
    if n < 3:
        return d
    u = np.zeros_like(values[: n - 1])
    for y in range(1, n - 1):
        temp = F32(-1.0) / (d[y - 1] + F32(4.0))
        d[y] = temp
        u[y] = temp * (
            u[y - 1] - F32(6.0) * ((values[y + 1] + values[y - 1]) - F32(2.0) * values[y])
        )
    for y in range(n - 2, 0, -1):
        d[y] = ((d[y] * d[y + 1] + u[y]).astype(np.float64) / 6.0).astype(F32)
    return d


@functools.lru_cache(maxsize=16)
def _x_steps(width: int, bw: int, nbx: int) -> tuple[npt.NDArray[np.intp], Float32Array]:
    """For every column of the image: its spline segment and position in it, as SEP's
    row interpolation steps through them (float32 accumulation included)."""
    seg = np.zeros(width, dtype=np.intp)
    dxs = np.zeros(width, dtype=F32)
    xstep = F32(1.0 / bw)
    changepoint = bw // 2
    dx = F32((xstep - F32(1.0)) / F32(2.0))
    dx0 = F32(F32((bw + 1) % 2) * xstep / F32(2.0))
    s = x = i = 0
    for col in range(width):
        if i == changepoint and 0 < x < nbx - 1:
            s += 1
            dx = dx0
        seg[col], dxs[col] = s, dx
        if i == bw:
            x += 1
            i = 0
        i += 1
        dx = F32(dx + xstep)
    return seg, dxs


@dataclass(frozen=True)
class SkyMesh:
    """The filtered background mesh of a whole image; evaluates any part of its maps.

    Attributes
    ----------
    back, sigma : numpy.ndarray of float32, shape (ny, nx)
        Background and RMS of each box, after filling and median filtering (image units).
    bw, bh : int
        Box size (px).
    height, width : int
        Image size (px).
    global_back, global_rms : float
        Medians of the mesh (SEP's ``globalback`` and, where positive, ``globalrms``).
    n_filled : int
        Boxes with too few valid pixels, filled from their neighbours.
    """

    back: Float32Array
    sigma: Float32Array
    bw: int
    bh: int
    height: int
    width: int
    global_back: float
    global_rms: float
    n_filled: int

    def __post_init__(self) -> None:
        # Both maps at once, and their y second derivatives once per mesh (not per window).
        nodes = np.stack([self.back, self.sigma]).astype(F32)
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_dnodes", _second_derivatives(nodes.transpose(1, 0, 2)))

    def region(self, r0: int, r1: int, c0: int, c1: int) -> tuple[Float32Array, Float32Array]:
        """Background and RMS maps of rows ``[r0, r1)`` and columns ``[c0, c1)``.

        Returns
        -------
        tuple of numpy.ndarray of float32, each shape (r1 - r0, c1 - c0)
            Equal to ``sep.Background(image).back()[r0:r1, c0:c1]`` and ``.rms()[...]``.
        """
        both = self._maps(r0, r1, c0, c1)
        return both[0], both[1]

    def _maps(self, r0: int, r1: int, c0: int, c1: int) -> Float32Array:
        """Both maps, shape (2, r1 - r0, c1 - c0): SEP's ``bkg_line_flt_internal`` per row,
        compiled (:mod:`pipeline.imaging.sky_kernel`)."""
        from pipeline.imaging.sky_kernel import map_rows

        values: Float32Array = self._nodes  # type: ignore[attr-defined]
        dvalues: Float32Array = self._dnodes.transpose(1, 0, 2)  # type: ignore[attr-defined]
        nbx = values.shape[2]
        seg, dxs = _x_steps(self.width, self.bw, nbx)
        return map_rows(values, dvalues, (r0, r1), self.bh, seg[c0:c1], dxs[c0:c1])
