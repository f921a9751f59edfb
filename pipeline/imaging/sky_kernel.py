"""The background maps' inner loops, compiled (numba): SEP's ``bkg_line_flt_internal`` per row.

Every row of a map needs a natural cubic spline solved along the whole row of mesh nodes,
a loop over the nodes that SEP runs in C. In numpy the loop costs a call per node per row
block, which grew a tile's cost with the mosaic's width (20 ms per tile at 64 nodes a row,
45 ms at 256, measured); compiled, it is a few milliseconds whatever the width. The
arithmetic is SEP's, in float32, in SEP's order (no fused multiply-adds: numba's default
keeps IEEE semantics), so the maps stay bit-equal to ``sep.Background``'s.

Importing this module imports numba: :mod:`pipeline.imaging.background` imports it only when
a map is evaluated.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["map_rows"]

f32 = np.float32


# cache=True: compiled once per installation (about 2 s), then loaded from numba's cache
# by every worker process.
@numba.njit(cache=True, nogil=True)
def _rows(  # pragma: no cover - compiled; tested through SkyMesh.region
    values: Any,
    dvalues: Any,
    r0: int,
    bh: int,
    seg: Any,
    dxs: Any,
    out: Any,
) -> None:
    n_maps, nby, nbx = values.shape
    n_rows, n_cols = out.shape[1], out.shape[2]
    one, two, four, six = f32(1.0), f32(2.0), f32(4.0), f32(6.0)
    node = np.empty(nbx, dtype=np.float32)
    dnode = np.zeros(nbx, dtype=np.float32)
    u = np.zeros(max(nbx - 1, 1), dtype=np.float32)
    for m in range(n_maps):
        for i in range(n_rows):
            if nby > 1:
                dy = f32(np.float64(f32(r0 + i) / f32(bh)) - 0.5)
                yl = int(dy)
                dy = f32(dy - f32(yl))
                if yl < 0:
                    yl = 0
                    dy = f32(dy - one)
                elif yl >= nby - 1:
                    yl = nby - 2
                    dy = f32(dy + one)
                cdy = f32(one - dy)
                dy3 = f32(f32(f32(dy * dy) * dy) - dy)
                cdy3 = f32(f32(f32(cdy * cdy) * cdy) - cdy)
                for k in range(nbx):
                    a = f32(cdy * values[m, yl, k])
                    a = f32(a + f32(dy * values[m, yl + 1, k]))
                    a = f32(a + f32(cdy3 * dvalues[m, yl, k]))
                    node[k] = f32(a + f32(dy3 * dvalues[m, yl + 1, k]))
                # Natural spline second derivatives along x (SEP's loop).
                dnode[:] = f32(0.0)
                if nbx > 2:
                    u[0] = f32(0.0)
                    for k in range(1, nbx - 1):
                        temp = f32(f32(-1.0) / f32(dnode[k - 1] + four))
                        dnode[k] = temp
                        curv = f32(f32(node[k + 1] + node[k - 1]) - f32(two * node[k]))
                        u[k] = f32(temp * f32(u[k - 1] - f32(six * curv)))
                    dnode[nbx - 1] = f32(0.0)
                    for k in range(nbx - 2, 0, -1):
                        prod = f32(f32(dnode[k] * dnode[k + 1]) + u[k])
                        dnode[k] = f32(np.float64(prod) / 6.0)
            else:
                for k in range(nbx):
                    node[k] = values[m, 0, k]
                    dnode[k] = f32(0.0)
            if nbx < 2:
                for j in range(n_cols):
                    out[m, i, j] = node[0]
                continue
            for j in range(n_cols):
                s = seg[j]
                dx = dxs[j]
                cdx = f32(one - dx)
                o = f32(dnode[s] * f32(f32(cdx * cdx) - one))
                o = f32(o + node[s])
                o = f32(o * cdx)
                t = f32(dnode[s + 1] * f32(f32(dx * dx) - one))
                t = f32(t + node[s + 1])
                t = f32(t * dx)
                out[m, i, j] = f32(o + t)


def map_rows(
    values: npt.NDArray[np.float32],
    dvalues: npt.NDArray[np.float32],
    rows: tuple[int, int],
    bh: int,
    seg: npt.NDArray[np.intp],
    dxs: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Maps of rows ``[rows[0], rows[1])`` at the columns whose spline segment and position
    are ``seg`` and ``dxs``.

    Parameters
    ----------
    values, dvalues : numpy.ndarray of float32, shape (n_maps, ny, nx)
        Mesh nodes and their second derivatives along y.
    rows : tuple of int
    bh : int
        Box height (px).
    seg, dxs : numpy.ndarray, shape (n_cols,)
        Each column's segment (left node) and position in it.

    Returns
    -------
    numpy.ndarray of float32, shape (n_maps, rows[1] - rows[0], n_cols)
    """
    out = np.empty((values.shape[0], rows[1] - rows[0], seg.size), dtype=np.float32)
    _rows(
        np.ascontiguousarray(values, dtype=np.float32),
        np.ascontiguousarray(dvalues, dtype=np.float32),
        int(rows[0]),
        int(bh),
        np.ascontiguousarray(seg, dtype=np.int64),
        np.ascontiguousarray(dxs, dtype=np.float32),
        out,
    )
    return out
