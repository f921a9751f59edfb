"""Tiles for inference at any size: cores on the output's chunk grid, halos on the pooling grid.

Why tiled inference can equal whole-image inference exactly (up to float rounding):

* the network's output at a pixel depends only on input pixels within its receptive radius
  (153 px for the seed's architecture, :func:`~pipeline.workflows.nuclei.model.
  receptive_radius`), so a tile whose window reaches at least that far beyond its core sees
  all its core needs;
* the four 2 x 2 poolings group pixels in blocks of 16 counted from the window's origin, so
  every window starts on the 16-pixel grid of the image (tiles and halos are multiples of 16),
  and the poolings see the blocks they see on the whole image;
* at the image's edges a window stops where the image does, as does the whole-image pass:
  the network's own zero padding then acts at the same place in both. The whole image is
  padded with zeros at its bottom and right to the 16 grid (it must be, to pool), and so is a
  window that reaches the image's end.

So the default halo is the receptive radius rounded up to 16 (160 px), and the windows are
the cores grown by it and clipped to ``[0, padded size)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ParameterError
from pipeline.workflows.nuclei.model import DOWNSAMPLE

__all__ = ["Tile", "default_halo", "grid_size", "plane_tiles", "window_of"]


def grid_size(n: int) -> int:
    """``n`` rounded up to the pooling grid (a multiple of 16)."""
    return math.ceil(n / DOWNSAMPLE) * DOWNSAMPLE


def default_halo(radius: int) -> int:
    """The smallest halo on the pooling grid that holds a receptive radius of ``radius`` px."""
    return grid_size(radius)


@dataclass(frozen=True)
class Tile:
    """One output tile of one image plane, and the window the network reads for it.

    Attributes
    ----------
    index : int
        Flat index over (plane, tile row, tile column): the tile's marker.
    plane : int
        The image along ``image`` (0 for a 2-D input).
    y0, y1, x0, x1 : int
        The core, in image pixels (half-open), clipped to the image: one chunk of the outputs.
    wy0, wy1, wx0, wx1 : int
        The window, in image pixels (half-open): the core grown by the halo, clipped to
        ``[0, padded size)``; its sides are multiples of 16 and it may reach past the image
        (zeros there).
    """

    index: int
    plane: int
    y0: int
    y1: int
    x0: int
    x1: int
    wy0: int
    wy1: int
    wx0: int
    wx1: int

    @property
    def window_shape(self) -> tuple[int, int]:
        """(height, width) of the window (multiples of 16)."""
        return self.wy1 - self.wy0, self.wx1 - self.wx0


def plane_tiles(planes: int, height: int, width: int, tile: int, halo: int) -> list[Tile]:
    """Every tile of ``planes`` images of ``height`` x ``width`` px.

    Parameters
    ----------
    planes, height, width : int
    tile : int
        Core side (a multiple of 16); the last row and column of cores are clipped.
    halo : int
        Context on each side (a multiple of 16).

    Returns
    -------
    list of Tile
        In flat order (plane, then tile rows, then columns).

    Raises
    ------
    ParameterError
        If ``tile`` or ``halo`` is off the pooling grid.
    """
    if tile % DOWNSAMPLE or halo % DOWNSAMPLE or tile <= 0 or halo < 0:
        raise ParameterError(
            f"tile {tile} and halo {halo} must be multiples of {DOWNSAMPLE} (tile > 0): "
            "the windows must start on the network's pooling grid"
        )
    ph, pw = grid_size(height), grid_size(width)
    out = []
    k = 0
    for p in range(planes):
        for y0 in range(0, height, tile):
            for x0 in range(0, width, tile):
                y1, x1 = min(height, y0 + tile), min(width, x0 + tile)
                out.append(
                    Tile(
                        k,
                        p,
                        y0,
                        y1,
                        x0,
                        x1,
                        max(0, y0 - halo),
                        min(ph, grid_size(y1) + halo),
                        max(0, x0 - halo),
                        min(pw, grid_size(x1) + halo),
                    )
                )
                k += 1
    return out


def window_of(plane: Any, t: Tile) -> np.ndarray:
    """The window of tile ``t`` from an image plane ``(y, x[, c])``, zero beyond the image.

    Parameters
    ----------
    plane : array_like, shape (y, x) or (y, x, channel)
        Anything sliceable (a Zarr array's plane reads only the window).
    t : Tile

    Returns
    -------
    numpy.ndarray, shape (wh, ww) or (wh, ww, channel)
    """
    h, w = plane.shape[0], plane.shape[1]
    block = np.asarray(plane[t.wy0 : min(h, t.wy1), t.wx0 : min(w, t.wx1)])
    wh, ww = t.window_shape
    if block.shape[:2] == (wh, ww):
        return block
    out = np.zeros((wh, ww, *block.shape[2:]), dtype=block.dtype)
    out[: block.shape[0], : block.shape[1]] = block
    return out
