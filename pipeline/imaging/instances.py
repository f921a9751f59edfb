"""Nuclei instances of a binary mask, computed so that any window of a plane gives the same
answer as the whole plane: the algorithm behind the tiled labelling of huge planes.

Semantics, for a mask plane ``(y, x)`` and a size limit ``max_extent`` ``E`` (px):

- the foreground's connected components (``connectivity`` 1: 4-connected, 2: 8-connected)
  whose bounding box is at most ``E`` px tall **and** at most ``E`` px wide are *small*: each
  goes through :func:`~pipeline.imaging.nuclei.split_touching` (``h``, ``min_size``) **on
  its own** (a crop of its bounding box plus a 1-px margin holding only it) and yields one
  or more nuclei, or none when it has fewer than ``min_size`` px;
- a larger component is *big*: one object, kept whole and not split (a region that large is
  no nucleus the watershed can judge).

Splitting each component on its own is what makes the result local, and deterministic. It
equals :func:`split_touching` of the whole plane wherever that call treats components
independently, which it mostly does for ``h <= 1``; it does not always: scikit-image's
watershed pushes all markers with the same age, so two markers of equal height in one
component are flooded in an order the rest of the plane decides, and with ``connectivity=1``
two components touching only diagonally can share a marker.

Every object gets a *global id* computed from its own pixels, so windows agree without
communicating:

- a nucleus of a small component: ``1 + y * width + x`` of its first pixel in raster order;
- a big component: ``1 + width * height + y * width + x`` of its first pixel inside the
  window's *core* (the region the window answers for). Different cores of one big component
  give different provisional ids, joined later by :func:`face_pairs` and :func:`join_ids`;
  the smallest id of the joined group is its first pixel's in the whole plane.

:func:`window_instances` computes the ids of a core from a window that holds the core grown
by ``E + 2`` px on each side (clipped to the plane). It is exact because a small component
with a pixel in the core lies, with its 1-px margin, inside the window; a component with a
core pixel that touches a window edge which is not the plane's edge spans more than ``E``
px, so it is big; and any other component inside the window is complete. Final labels are
the ranks of the ids (nuclei in raster order of their first pixel, then the big objects in
raster order of theirs): :func:`instance_labels` does this on a whole in-memory plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.ndimage as ndi

from pipeline.errors import ParameterError
from pipeline.imaging.nuclei import split_touching

__all__ = [
    "SHAPE_COLUMNS",
    "SHAPE_PROPS",
    "WindowInstances",
    "face_pairs",
    "halo",
    "instance_labels",
    "join_ids",
    "rank_ids",
    "window_instances",
]

Labels = npt.NDArray[np.uint32]
Ids = npt.NDArray[np.int64]

#: Shape measurements of a nucleus, from its whole region, and the scikit-image
#: ``regionprops`` property each is (orientation in radians, lengths in px).
SHAPE_PROPS = {
    "eccentricity": "eccentricity",
    "solidity": "solidity",
    "orientation": "orientation",
    "major_axis_length": "axis_major_length",
    "minor_axis_length": "axis_minor_length",
    "perimeter": "perimeter",
}
#: Their column names.
SHAPE_COLUMNS = tuple(SHAPE_PROPS)


def halo(max_extent: int) -> int:
    """Pixels a window grows its core by on each side: ``max_extent + 2``."""
    return int(max_extent) + 2


def _check(max_extent: int, connectivity: int) -> None:
    if int(max_extent) < 1:
        raise ParameterError(
            f"max_extent must be a positive number of pixels (the largest nucleus' bounding "
            f"box side), got {max_extent}"
        )
    if connectivity not in (1, 2):
        raise ParameterError(
            f"connectivity must be 1 (4-connected) or 2 (8-connected), got {connectivity}"
        )


@dataclass
class WindowInstances:
    """What :func:`window_instances` found for one core.

    Attributes
    ----------
    ids : numpy.ndarray of int64, shape (core_y, core_x)
        Global id of every core pixel (0 background), see the module docstring.
    shapes : dict of int to tuple of float
        For each nucleus (from a small component) whose first pixel lies in the core: its
        :data:`SHAPE_COLUMNS`, measured on its whole region. Empty unless asked for.
    """

    ids: Ids
    shapes: dict[int, tuple[float, ...]] = field(default_factory=dict)


def window_instances(
    mask: npt.ArrayLike,
    *,
    origin: Sequence[int],
    plane_shape: Sequence[int],
    core: tuple[slice, slice],
    max_extent: int,
    h: float = 1.0,
    min_size: int = 8,
    connectivity: int = 1,
    shapes: bool = False,
) -> WindowInstances:
    """Global instance ids of a core of a plane, from a window around it.

    Parameters
    ----------
    mask : array_like, shape (window_y, window_x)
        The window of the mask plane (non-zero = foreground). It must hold the core grown by
        :func:`halo` px on each side, clipped to the plane, for the ids to be exact.
    origin : (int, int)
        Plane coordinates (px) of the window's first pixel.
    plane_shape : (int, int)
        The whole plane's ``(height, width)`` (px): ids and the plane's edges depend on it.
    core : (slice, slice)
        The core, in window coordinates.
    max_extent : int
        Largest bounding-box side (px) of a component that is split into nuclei.
    h, min_size, connectivity
        As :func:`~pipeline.imaging.nuclei.split_touching`.
    shapes : bool, default False
        Also measure the shapes of the nuclei whose first pixel lies in the core.

    Returns
    -------
    WindowInstances
    """
    _check(max_extent, connectivity)
    fg = np.asarray(mask) != 0
    wy, wx = fg.shape
    oy, ox = int(origin[0]), int(origin[1])
    height, width = int(plane_shape[0]), int(plane_shape[1])
    cy, cx = core
    ids = np.zeros(fg.shape, dtype=np.int64)
    comp, _ = ndi.label(fg, structure=ndi.generate_binary_structure(2, connectivity))
    in_core = comp[cy, cx]
    present, first = np.unique(in_core, return_index=True)
    keep = present > 0
    present, first = present[keep], first[keep]
    if not len(present):
        return WindowInstances(ids[cy, cx])
    objects = ndi.find_objects(comp, max_label=int(present.max()))
    # Plane coordinates of the core's first pixel and of each component's first core pixel.
    core_y0, core_x0 = oy + (cy.start or 0), ox + (cx.start or 0)
    core_w = in_core.shape[1]
    first_y, first_x = core_y0 + first // core_w, core_x0 + first % core_w
    # Which window edges are cuts through the plane (a component touching one goes on).
    cut = (oy > 0, oy + wy < height, ox > 0, ox + wx < width)
    big_lut = np.zeros(int(present.max()) + 1, dtype=np.int64)
    shape_out: dict[int, tuple[float, ...]] = {}
    core_box = (core_y0, core_y0 + in_core.shape[0], core_x0, core_x0 + core_w)
    for k, fy, fx in zip(present.tolist(), first_y.tolist(), first_x.tolist(), strict=True):
        sy, sx = objects[k - 1]
        touches = (
            (cut[0] and sy.start == 0)
            or (cut[1] and sy.stop == wy)
            or (cut[2] and sx.start == 0)
            or (cut[3] and sx.stop == wx)
        )
        if touches or sy.stop - sy.start > max_extent or sx.stop - sx.start > max_extent:
            big_lut[k] = 1 + height * width + fy * width + fx
            continue
        split = _split_one(comp, k, (sy, sx), (oy, ox), width, h, min_size, connectivity, ids)
        if shapes and split is not None:
            shape_out.update(_shapes_one(*split, width, core_box))
    big = big_lut[comp[cy, cx]]
    out = ids[cy, cx]
    out[big > 0] = big[big > 0]
    return WindowInstances(np.ascontiguousarray(out), shape_out)


def _split_one(
    comp: npt.NDArray[np.integer],
    k: int,
    box: tuple[slice, slice],
    origin: tuple[int, int],
    width: int,
    h: float,
    min_size: int,
    connectivity: int,
    ids: Ids,
) -> tuple[Labels, Ids] | None:
    """Split component ``k`` on its own and write its nuclei's global ids into ``ids``.

    Returns its split (labels 1..m of the crop) and each label's global id, or None when
    the component is too small to keep.
    """
    sy, sx = box
    # A 1-px margin: the distance transform needs the background around the component.
    y0, x0 = max(sy.start - 1, 0), max(sx.start - 1, 0)
    crop = (slice(y0, sy.stop + 1), slice(x0, sx.stop + 1))
    alone = comp[crop] == k
    if int(alone.sum()) < min_size:
        return None
    split = split_touching(alone, h=h, min_size=min_size, connectivity=connectivity)
    values, first = np.unique(split.ravel(), return_index=True)
    lut = np.zeros(int(values.max()) + 1, dtype=np.int64)
    crop_w = split.shape[1]
    gy, gx = origin[0] + y0 + first // crop_w, origin[1] + x0 + first % crop_w
    lut[values] = 1 + gy * width + gx
    lut[0] = 0
    target = ids[crop]
    target[alone] = lut[split[alone]]
    return split, lut


def _shapes_one(
    split: Labels, lut: Ids, width: int, core_box: tuple[int, int, int, int]
) -> dict[int, tuple[float, ...]]:
    """Shape measurements of the nuclei of one split whose first pixel is in the core."""
    from skimage.measure import regionprops

    out: dict[int, tuple[float, ...]] = {}
    for prop in regionprops(split):
        gid = int(lut[prop.label])
        ay, ax = divmod(gid - 1, width)
        if core_box[0] <= ay < core_box[1] and core_box[2] <= ax < core_box[3]:
            out[gid] = tuple(float(getattr(prop, name)) for name in SHAPE_PROPS.values())
    return out


def instance_labels(
    mask: npt.ArrayLike,
    *,
    max_extent: int,
    h: float = 1.0,
    min_size: int = 8,
    connectivity: int = 1,
) -> Labels:
    """Instance labels of a whole mask plane: small components split, big ones kept whole.

    The reference the tiled labelling (``pipeline.workflows.nuclei.labels``) equals; see the
    module docstring for the semantics.

    Parameters
    ----------
    mask : array_like, shape (y, x)
        Foreground where non-zero.
    max_extent : int
        A component whose bounding box is at most this many px tall and wide is split into
        nuclei by :func:`~pipeline.imaging.nuclei.split_touching`; a larger one is one object.
    h : float, default 1.0
        Watershed marker depth (px of distance), as :func:`split_touching`.
    min_size : int, default 8
        Small components of fewer pixels are dropped (px).
    connectivity : {1, 2}
        4- or 8-connected components (and watershed neighbourhood).

    Returns
    -------
    numpy.ndarray of uint32, shape (y, x)
        0 background; 1..n the nuclei in raster order of their first pixel, then the big
        objects in raster order of theirs.
    """
    fg = np.asarray(mask)
    if fg.ndim != 2:
        raise ParameterError(f"instance_labels needs one (y, x) plane, got shape {fg.shape}")
    found = window_instances(
        fg,
        origin=(0, 0),
        plane_shape=fg.shape,
        core=(slice(None), slice(None)),
        max_extent=max_extent,
        h=h,
        min_size=min_size,
        connectivity=connectivity,
    )
    return rank_ids(found.ids)


def rank_ids(ids: Ids) -> Labels:
    """Labels 1..n from global ids (0 stays 0), in the order of the ids."""
    values, inverse = np.unique(ids, return_inverse=True)
    start = 1 if values[0] == 0 else 0
    ranks = np.arange(len(values), dtype=np.uint32) + np.uint32(1 - start)
    return ranks[inverse.reshape(ids.shape)]


def face_pairs(a: npt.ArrayLike, b: npt.ArrayLike, connectivity: int = 1) -> Ids:
    """Pairs of ids that touch across a face between two blocks.

    Parameters
    ----------
    a, b : array_like of int, shape (n,)
        The pixel lines on each side of the face (e.g. the last row of one block's core and
        the first row of the core below it), position ``i`` of ``a`` next to position ``i``
        of ``b``; 0 where nothing is to be joined.
    connectivity : {1, 2}
        2 also pairs the diagonal neighbours ``(a[i], b[i±1])``.

    Returns
    -------
    numpy.ndarray of int64, shape (m, 2)
        The distinct pairs with both ids non-zero.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    pairs = [np.stack([a, b], axis=1)]
    if connectivity == 2 and len(a) > 1:
        pairs += [np.stack([a[:-1], b[1:]], axis=1), np.stack([a[1:], b[:-1]], axis=1)]
    out = np.concatenate(pairs)
    out = out[(out[:, 0] > 0) & (out[:, 1] > 0)]
    return np.unique(out, axis=0) if len(out) else out.reshape(0, 2)


def join_ids(ids: npt.ArrayLike, pairs: npt.ArrayLike) -> Ids:
    """The smallest id of each id's group, groups joined by ``pairs`` (union-find).

    Parameters
    ----------
    ids : array_like of int, shape (n,)
        Every id to place in a group.
    pairs : array_like of int, shape (m, 2)
        Ids that belong together (each in ``ids``).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        The group representative of each of ``ids``, in their order.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.asarray(ids, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    nodes = np.unique(ids)
    n = len(nodes)
    if not n:
        return ids.copy()
    rows, cols = np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1])
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    smallest = np.full(group.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, group, nodes)
    return smallest[group[np.searchsorted(nodes, ids)]]
