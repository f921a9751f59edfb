"""Source Extractor's extraction and photometry (SEP), tile by tile, equal to the whole image.

:func:`extract_tile` extracts the sources whose centroid lies in one tile's *core*, reading
the core plus a halo through a callback, with the background of the shared
:class:`~pipeline.imaging.background.SkyMesh`. Its result equals SEP on the whole image (same
objects, same measurements to float rounding) by these rules:

* **Footprints.** An object is measured from its parent's pixels (the connected pixels above
  threshold that SEP deblends). Pixels closer to the window's edge than the filter kernel's
  half-size are filtered differently from the whole image's, so a parent that comes within
  :meth:`~pipeline.imaging.spec.ExtractParams.kernel_margin` of an edge that is not the
  image's edge (a *cut* parent) may differ. A cut parent that reaches into the core (it may
  hold this tile's sources, which only its whole footprint deblends) is found whole by
  reading around it, up to ``max_halo`` beyond (past it, its objects keep flag 32,
  "incomplete isophotal data", and a warning is logged), and extracted again from that
  window. Objects whose centroid lies in the halo are
  left to the tile that owns them: every pixel belongs to exactly one tile's core, by
  ``floor(y + 0.5)`` and ``floor(x + 0.5)``.
* **Deblending.** SEP hands a deblended parent's pixels to its children at random, from a
  generator seeded once per call, so a child's pixels depend on every deblend before it.
  Each deblended parent is therefore extracted again in a window of its own (its footprint
  grown by the margin): its children then depend on the parent alone, in a tile or in the
  whole image (:func:`extract_whole` does the same).
* **Cleaning.** SEP removes a faint object next to a brighter one whose profile covers it,
  comparing every pair within 10 (a1 + a2). A cut object brighter than a core object within
  that zone (its ``a`` raised by half, as the window holds only part of it) grows the halo.
  A bright galaxy wholly outside the window and still within a core object's cleaning zone
  is not seen; a larger ``halo`` covers it.
* **Apertures.** Photometry reads pixels out to each object's *reach*: the largest fixed
  aperture radius, 6 a for the Kron radius and the half-light radius, and the Kron ellipse
  of ``max(kron_fact * first moment, min_radius)`` a. Where the reach crosses an edge of the
  window that is not the image's, the object is measured again in a window around it that
  holds its reach (background-subtracted pixels are the same everywhere: the background is
  global).

Coordinates are 0-based pixels (numpy's; ``x`` the column), as SEP gives them; Source
Extractor's ``X_IMAGE``/``Y_IMAGE`` are the same plus one (FITS pixels are 1-based).
``theta`` is SEP's position angle (radians in [-pi/2, pi/2], counter-clockwise from +x
towards +y, i.e. as a FITS viewer shows the image with row 0 at the bottom).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.imaging.background import valid_pixels
from pipeline.imaging.spec import ExtractParams

__all__ = [
    "FLAG_APERTURE_INCOMPLETE",
    "FLAG_BLENDED",
    "FLAG_DEBLEND_OVERFLOW",
    "FLAG_ISOPHOTE_INCOMPLETE",
    "FLAG_NEIGHBOURS",
    "FLAG_SATURATED",
    "FLAG_TRUNCATED",
    "aperture_columns",
    "extract_tile",
    "extract_whole",
    "magnitudes",
]

log = logging.getLogger(__name__)

_SEP_LOCK = threading.Lock()

#: Source Extractor's ``FLAGS`` bits.
FLAG_NEIGHBOURS = 1  # masked or blank pixels inside the Kron aperture
FLAG_BLENDED = 2  # the object was deblended from a parent
FLAG_SATURATED = 4  # a pixel at or above the saturation level
FLAG_TRUNCATED = 8  # the object touches the image's edge
FLAG_APERTURE_INCOMPLETE = 16  # an aperture extends off the image
FLAG_ISOPHOTE_INCOMPLETE = 32  # the footprint did not fit in the largest halo
FLAG_DEBLEND_OVERFLOW = 64  # too many sub-objects to deblend

#: Reads rows ``[r0, r1)`` and columns ``[c0, c1)`` of the image (float32, NaN where blank).
Reader = Callable[[int, int, int, int], npt.NDArray[Any]]
Box = tuple[int, int, int, int]


class Sky(Protocol):
    """Background and RMS maps of an image, any part of them on request
    (:class:`~pipeline.imaging.background.SkyMesh`)."""

    @property
    def height(self) -> int:
        """Image rows."""
        ...

    @property
    def width(self) -> int:
        """Image columns."""
        ...

    def region(self, r0: int, r1: int, c0: int, c1: int) -> tuple[Any, Any]:
        """Background and RMS of rows ``[r0, r1)`` and columns ``[c0, c1)`` (float32)."""
        ...


# 2.5 / ln 10: magnitude error per relative flux error.
_MAG_PER_REL_FLUX = 2.5 / math.log(10.0)
_KRON_EXTENT = 6.0  # SEP's and Source Extractor's ellipse for the Kron radius, in a
_CLEAN_ZONE = 10.0  # SEP's CLEAN_ZONE: pairs farther than 10 (a1 + a2) are never cleaned
_HALF_LIGHT = 0.5


def aperture_columns(diameter: float) -> tuple[str, str]:
    """The flux and error columns of the fixed aperture of ``diameter`` px."""
    tag = f"{diameter:g}".replace(".", "p")
    return f"flux_aper_{tag}", f"fluxerr_aper_{tag}"


def magnitudes(
    flux: npt.NDArray[np.float64], fluxerr: npt.NDArray[np.float64], zeropoint: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``zeropoint - 2.5 log10(flux)`` and its error; NaN where the flux is not positive."""
    flux = np.asarray(flux, dtype=np.float64)
    ok = flux > 0
    safe = np.where(ok, flux, 1.0)
    mag = np.where(ok, zeropoint - 2.5 * np.log10(safe), np.nan)
    err = np.where(ok, _MAG_PER_REL_FLUX * np.asarray(fluxerr) / safe, np.nan)
    return mag, err


def _detect(
    sub: npt.NDArray[np.float32],
    rms: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_] | None,
    params: ExtractParams,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int32]]:
    import sep

    kernel = None if params.filter_kernel is None else np.asarray(params.filter_kernel)
    # SEP allocates its pixel stack on every call, which costs more than extracting a small
    # window: ask for no more than the window could need, and grow it if SEP says it is full.
    stack = min(params.pixstack, sub.size + 1)
    while True:
        try:
            # The pixel stack's size is global to the process: set and use it under one
            # lock (SEP holds the GIL while it extracts, so threads lose nothing by it).
            with _SEP_LOCK:
                sep.set_extract_pixstack(stack)
                objs, seg = sep.extract(
                    sub,
                    params.thresh,
                    err=rms,
                    mask=mask,
                    minarea=params.minarea,
                    filter_kernel=kernel,
                    filter_type=params.filter_type,
                    deblend_nthresh=params.deblend_nthresh,
                    deblend_cont=params.deblend_cont,
                    clean=params.clean,
                    clean_param=params.clean_param,
                    segmentation_map=True,
                )
        except Exception as exc:  # SEP raises a bare Exception
            if "pixel buffer full" not in str(exc) or stack > sub.size:
                raise
            stack = min(4 * stack, sub.size + 1)
            continue
        return objs, seg


def _open_band(shape: tuple[int, int], open_edges: tuple[bool, bool, bool, bool], m: int) -> Any:
    """Pixels within ``m`` of the window's edges that are not the image's (top, bottom,
    left, right)."""
    band = np.zeros(shape, dtype=bool)
    top, bottom, left, right = open_edges
    if top:
        band[:m] = True
    if bottom:
        band[-m:] = True
    if left:
        band[:, :m] = True
    if right:
        band[:, -m:] = True
    return band


def _reach(
    a: npt.NDArray[np.float64], r_auto: npt.NDArray[np.float64], params: ExtractParams
) -> Any:
    """How far from its centroid an object's photometry reads (px), plus the subpixel edge."""
    aper = max(params.phot_apertures) / 2.0
    return np.maximum.reduce([np.full_like(a, aper), _KRON_EXTENT * a, r_auto * a]) + 2.0


def _photometry(
    sub: npt.NDArray[np.float32],
    rms: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_] | None,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    theta: npt.NDArray[np.float64],
    params: ExtractParams,
) -> dict[str, npt.NDArray[Any]]:
    """Kron radius, FLUX_AUTO, fixed apertures and half-light radius in one window."""
    import sep

    out: dict[str, npt.NDArray[Any]] = {}
    if not x.size:
        names = ["kron_radius", "flux_auto", "fluxerr_auto"]
        names += [c for d in params.phot_apertures for c in aperture_columns(d)]
        names += ["flux_radius", "reach"]
        out = {n: np.empty(0) for n in names}
        out["aper_flags"] = np.empty(0, dtype=np.int64)
        return out
    kw: dict[str, Any] = {"mask": mask, "subpix": params.subpix}
    kr, kflag = sep.kron_radius(sub, x, y, a, b, theta, _KRON_EXTENT, mask=mask)
    kr = np.where(np.isfinite(kr), kr, 0.0)
    r_auto = np.maximum(params.kron_fact * kr, params.min_radius)
    flux, ferr, aflag = sep.sum_ellipse(
        sub, x, y, a, b, theta, r_auto, err=rms, gain=params.gain, **kw
    )
    # Source Extractor's KRON_RADIUS is the aperture's: kron_fact x the first moment, at least
    # min_radius (in units of a and b).
    out.update(kron_radius=r_auto, flux_auto=flux, fluxerr_auto=ferr)
    flags = np.asarray(aflag | kflag, dtype=np.int64)
    for d in params.phot_apertures:
        f, fe, fl = sep.sum_circle(sub, x, y, d / 2.0, err=rms, gain=params.gain, **kw)
        fcol, ecol = aperture_columns(d)
        out[fcol], out[ecol] = f, fe
        flags |= fl
    rmax = _KRON_EXTENT * a
    positive = flux > 0
    fr = np.full(x.size, np.nan)
    if positive.any():
        p = np.flatnonzero(positive)
        fr[p], frf = sep.flux_radius(
            sub, x[p], y[p], rmax[p], _HALF_LIGHT, normflux=flux[p], mask=mask, subpix=5
        )
        flags[p] |= frf
    out["flux_radius"] = fr
    out["aper_flags"] = flags
    out["reach"] = _reach(a, r_auto, params)
    return out


def _window_around(x: float, y: float, reach: float, shape: tuple[int, int]) -> Box:
    h, w = shape
    return (
        max(0, math.floor(y - reach)),
        min(h, math.ceil(y + reach) + 1),
        max(0, math.floor(x - reach)),
        min(w, math.ceil(x + reach) + 1),
    )


def _inside(box: Box, region: Box, shape: tuple[int, int]) -> bool:
    """Whether ``box`` lies in ``region``, except where ``region`` reaches the image edge."""
    r0, r1, c0, c1 = region
    b0, b1, d0, d1 = box
    h, w = shape
    return (
        (r0 == 0 or b0 >= r0)
        and (r1 == h or b1 <= r1)
        and (c0 == 0 or d0 >= c0)
        and (c1 == w or d1 <= c1)
    )


def _prepare(read: Reader, sky: Sky, box: Box) -> tuple[Any, Any, Any, Any, Any]:
    """Raw pixels, background-subtracted pixels, background, RMS and mask of ``box`` (the
    mask None where every pixel is valid: SEP is faster without one)."""
    raw = np.asarray(read(*box), dtype=np.float32)
    back, rms = sky.region(*box)
    blank = ~np.isfinite(raw)
    if blank.any():
        sub = np.where(blank, np.float32(0.0), raw - back).astype(np.float32, copy=False)
        return raw, sub, back, rms, blank
    return raw, np.subtract(raw, back, dtype=np.float32), back, rms, None


def extract_tile(
    read: Reader,
    sky: Sky,
    core: Box,
    params: ExtractParams,
    *,
    saturation: float | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Extract and measure the sources whose centroid lies in ``core``.

    Parameters
    ----------
    read : callable
        ``read(r0, r1, c0, c1)`` returns those pixels of the image, float32, NaN where blank.
    sky : Sky
        The whole image's background (:func:`~pipeline.imaging.background.filter_mesh`).
    core : tuple of int
        ``(r0, r1, c0, c1)``, the tile this call owns (px).
    params : ExtractParams
    saturation : float, optional
        Raw pixel level at or above which an object is flagged saturated.

    Returns
    -------
    pandas.DataFrame
        One row per source (SEP's measurements with Source Extractor's names; see
        :func:`catalog_columns`), in SEP's order.
    dict
        ``halo`` (px) the tile ended with and ``remeasured`` (objects measured again in a
        window of their own).
    """
    shape = (sky.height, sky.width)
    h, w = shape
    r0c, r1c, c0c, c1c = core
    margin = params.kernel_margin()
    halo = params.halo
    while True:
        region = (max(0, r0c - halo), min(h, r1c + halo), max(0, c0c - halo), min(w, c1c + halo))
        raw, sub, back, rms, mask = _prepare(read, sky, region)
        found = _Found.detect(raw, sub, rms, mask, params, saturation is not None)
        edges = (region[0] > 0, region[1] < h, region[2] > 0, region[3] < w)
        band = _open_band(sub.shape, edges, margin)
        into: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        cleaner = False
        if found.seg[band].any():
            cut_labels = np.unique(found.parents[band & (found.seg > 0)])
            cut_labels = cut_labels[cut_labels > 0]
            found.cut = np.isin(found.parent, cut_labels)
            # A cut parent that reaches into the core may hold sources of this tile that
            # only its whole footprint deblends (a star on a galaxy's cut-off tail): it is
            # extracted again from a window that holds it whole (below).
            into = np.intersect1d(_labels_in(found.parents, band, core, region), cut_labels)
            into = into.astype(np.int64)
            if params.clean:
                cleaner = _may_clean(found, _owned(found.objs, region, core, slack=0.0))
        whole_image = region == (0, h, 0, w)
        if not cleaner or halo >= params.max_halo or whole_image:
            break
        # Cleaning compares every pair in the window: the cleaner must be in it whole.
        halo = min(params.max_halo, 2 * halo)
        log.debug("tile %s: a cut object may clean a core one; halo raised to %d px", core, halo)
    pixels = _Pixels(read, sky, region, (raw, sub, rms, mask))
    found = found.canonical(pixels, params, core, margin, into, band, saturation is not None)
    owned = _owned(found.objs, region, core, slack=0.0)
    cut = found.cut[owned]
    if cut.any():
        log.warning(
            "tile %s: %d object(s) extend past the largest halo (%d px) and are flagged "
            "incomplete (32); raise max_halo to measure them whole",
            core,
            int(cut.sum()),
            params.max_halo,
        )
    cols = _measure(found.objs[owned], raw, sub, back, rms, mask, params)
    cols["flags"] |= np.where(cut, FLAG_ISOPHOTE_INCOMPLETE, 0)
    if saturation is not None:
        cols["flags"] |= np.where(found.raw_max[owned] >= saturation, FLAG_SATURATED, 0)
    remeasured = _remeasure(cols, read, sky, region, params)
    for key in ("x", "xmin", "xmax"):
        cols[key] = cols[key] + region[2]
    for key in ("y", "ymin", "ymax"):
        cols[key] = cols[key] + region[0]
    for key in ("reach", "aper_flags"):
        cols.pop(key, None)
    return pd.DataFrame(cols), {"halo": halo, "remeasured": remeasured}


def _grow(box: Box, pad: int, shape: tuple[int, ...]) -> Box:
    """``box`` grown by ``pad`` px on every side, within ``shape``."""
    return (
        max(0, box[0] - pad),
        min(shape[0], box[1] + pad),
        max(0, box[2] - pad),
        min(shape[1], box[3] + pad),
    )


def _footprint(
    pixels: _Pixels,
    ys: npt.NDArray[np.intp],
    xs: npt.NDArray[np.intp],
    whole: ExtractParams,
    margin: int,
    params: ExtractParams,
) -> tuple[Box, npt.NDArray[np.bool_], bool]:
    """A parent's footprint: the pixels above threshold connected to the seed pixels
    ``ys, xs`` (image px), from SEP without deblending or cleaning (no random draws, so the
    same in every window that holds it), read as far as it goes (up to ``max_halo`` beyond
    the seed).

    Returns
    -------
    box : tuple of int
        The footprint's bounding box grown by ``margin``, within the image (image px).
    footprint : numpy.ndarray of bool
        The footprint, in ``box``.
    whole : bool
        False if it still reached its window's edge at ``max_halo``.
    """
    from scipy import ndimage

    shape = pixels.shape
    start: Box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    pad = margin + 16
    first = True
    while True:
        win = _grow(start, pad, shape)
        if first:
            # Within the tile's window first: a parent it holds whole needs no read.
            r0, r1, c0, c1 = pixels.region
            win = (max(win[0], r0), min(win[1], r1), max(win[2], c0), min(win[3], c1))
        _, sub, rms, mask = pixels.window(win)
        _, seg = _detect(sub, rms, mask, whole)
        members = np.unique(seg[ys - win[0], xs - win[2]])
        local = np.isin(seg, members[members > 0])
        found = ndimage.find_objects(local.astype(np.int8))
        if not found or found[0] is None:  # nothing above threshold here: keep the seed
            comp = start
        else:
            fr, fc = found[0]
            comp = (fr.start + win[0], fr.stop + win[0], fc.start + win[2], fc.stop + win[2])
        box = _grow(comp, margin, shape)
        complete = _inside(box, win, shape)
        if complete or pad >= params.max_halo or win == (0, shape[0], 0, shape[1]):
            # The footprint inside the final window, in ``box``'s coordinates.
            inner = np.zeros((box[1] - box[0], box[3] - box[2]), dtype=bool)
            b0, b1 = max(box[0], win[0]), min(box[1], win[1])
            d0, d1 = max(box[2], win[2]), min(box[3], win[3])
            inner[b0 - box[0] : b1 - box[0], d0 - box[2] : d1 - box[2]] = local[
                b0 - win[0] : b1 - win[0], d0 - win[2] : d1 - win[2]
            ]
            return (
                (
                    max(box[0], win[0]),
                    min(box[1], win[1]),
                    max(box[2], win[2]),
                    min(box[3], win[3]),
                ),
                inner[b0 - box[0] : b1 - box[0], d0 - box[2] : d1 - box[2]],
                complete,
            )
        if not first:
            pad *= 2
        start, first = comp, False


def _labels_in(labels: npt.NDArray[np.int32], band: Any, core: Box, region: Box) -> Any:
    """The labels of the groups that touch the band and have pixels in ``core``.

    A group with pixels both inside and outside the core has one on the core's outermost
    rows or columns; one wholly inside that touches the band touches it there. So the core's
    ring and the band's part of the core hold them all, without a pass over the core (a
    million pixels a tile).
    """
    r0, r1, c0, c1 = (
        core[0] - region[0],
        core[1] - region[0],
        core[2] - region[2],
        core[3] - region[2],
    )
    inner = labels[r0:r1, c0:c1]
    ring = [inner[0], inner[-1], inner[:, 0], inner[:, -1]]
    in_band = band[r0:r1, c0:c1]
    if in_band.any():
        ring.append(inner[in_band])
    return np.unique(np.concatenate(ring))


def _segment_max(values: npt.NDArray[Any], seg: npt.NDArray[np.int32], n: int) -> Any:
    """The largest of ``values`` over each of the ``n`` segments of ``seg`` (1-based).

    ``numpy.maximum.at`` over the segment pixels only: scipy.ndimage.maximum sorts the
    whole window, 20 times slower on a tile (measured).
    """
    flat = seg.ravel()
    where = np.flatnonzero(flat)
    out = np.full(n, -np.inf)
    np.maximum.at(out, flat[where] - 1, values.ravel()[where].astype(np.float64))
    return out


def _may_clean(found: _Found, owned: npt.NDArray[np.intp]) -> bool:
    """Whether a cut object could clean (remove) one of ``owned``, as SEP's cleaning compares
    every pair within ``CLEAN_ZONE (a1 + a2)`` and lets the brighter eat the fainter.

    A cut object's ``a`` is measured on what the window holds of it: raised by half here,
    so a large galaxy cut by the window counts with about its whole size.
    """
    cut = np.flatnonzero(found.cut)
    if not cut.size or not owned.size:
        return False
    o, n = found.objs[owned], found.objs[cut]
    dx = o["x"][:, None] - n["x"][None, :]
    dy = o["y"][:, None] - n["y"][None, :]
    reach = _CLEAN_ZONE * (o["a"][:, None] + 1.5 * n["a"][None, :])
    brighter = n["cflux"][None, :] > o["cflux"][:, None]
    return bool((brighter & (dx * dx + dy * dy <= reach * reach)).any())


def _owned(objs: npt.NDArray[Any], region: Box, core: Box, *, slack: float) -> Any:
    """Indices of the objects whose centroid pixel lies in ``core`` (grown by ``slack``)."""
    ry = np.floor(objs["y"] + region[0] + 0.5)
    rx = np.floor(objs["x"] + region[2] + 0.5)
    r0, r1, c0, c1 = core
    inside = (ry >= r0 - slack) & (ry < r1 + slack) & (rx >= c0 - slack) & (rx < c1 + slack)
    return np.flatnonzero(inside)


class _Found:
    """SEP's objects in one window, with their segments and parents."""

    def __init__(
        self,
        objs: npt.NDArray[Any],
        seg: npt.NDArray[np.int32],
        raw_max: npt.NDArray[np.float64],
    ) -> None:
        self.objs, self.seg, self.raw_max = objs, seg, raw_max
        self.cut = np.zeros(len(objs), dtype=bool)

    @functools.cached_property
    def parents(self) -> npt.NDArray[np.int32]:
        """Parent labels: 8-connected groups of segment pixels (a deblended parent's pixels
        all go to its children, so its children's segments touch). Computed when needed."""
        from scipy import ndimage

        labels, _ = ndimage.label(self.seg > 0, structure=np.ones((3, 3), dtype=bool))
        return np.asarray(labels, dtype=np.int32)

    @functools.cached_property
    def parent(self) -> npt.NDArray[np.int64]:
        """Each object's parent label."""
        # Every pixel of a segment has its parent's label: any one of them gives it.
        flat = self.seg.ravel()
        where = np.flatnonzero(flat)
        out = np.zeros(len(self.objs), dtype=np.int64)
        out[flat[where] - 1] = self.parents.ravel()[where]
        return out

    @classmethod
    def detect(
        cls, raw: Any, sub: Any, rms: Any, mask: Any, params: ExtractParams, peaks: bool
    ) -> _Found:
        """SEP on one window; with ``peaks``, each object's brightest raw pixel too."""
        objs, seg = _detect(sub, rms, mask, params)
        if peaks:
            pixels = raw if mask is None else np.where(mask, -np.inf, raw)
            top = _segment_max(pixels, seg, len(objs))
        else:
            top = np.full(len(objs), np.nan)
        return cls(objs, seg, top)

    def canonical(
        self,
        pixels: _Pixels,
        params: ExtractParams,
        core: Box,
        margin: int,
        into: npt.NDArray[np.int64],
        band: npt.NDArray[np.bool_],
        peaks: bool,
    ) -> _Found:
        """Deblended parents near ``core``, and cut parents reaching into it, extracted
        again, each in a window of its own that holds its whole footprint.

        SEP hands a deblended parent's pixels to its children at random, from a generator
        seeded once per ``sep.extract`` call, so what a child gets depends on every deblend
        before it in the window. Extracted alone, in its footprint's bounding box grown by
        ``margin`` (the same background-subtracted pixels whatever the tile), a parent's
        children depend on the parent only: tiles and the whole image agree. A parent the
        window cuts is found whole by reading around it (:func:`_footprint`).
        """
        import sep
        from scipy import ndimage

        region = pixels.region
        merged = (self.objs["flag"] & sep.OBJ_MERGED) > 0
        near = np.zeros(len(self.objs), dtype=bool)
        near[_owned(self.objs, region, core, slack=margin + 2.0)] = True
        labels = np.union1d(np.unique(self.parent[merged & near]), into)
        labels = labels[labels > 0]
        if not labels.size:
            return self
        keep = ~np.isin(self.parent, labels)
        objs, raw_max, cut = [self.objs[keep]], [self.raw_max[keep]], [self.cut[keep]]
        whole = params.model_copy(update={"deblend_cont": 1.0, "clean": False})
        done: set[Box] = set()
        # Each parent's bounding box: the seed pixels are looked for there, not in the
        # whole window.
        slices = ndimage.find_objects(self.parents, max_label=int(labels.max()))
        for label in labels:
            rows, cols = slices[label - 1]
            mine = self.parents[rows, cols] == label
            seed = mine & ~band[rows, cols]
            ys, xs = np.nonzero(seed if seed.any() else mine)
            ys, xs = ys + rows.start + region[0], xs + cols.start + region[2]
            box, footprint, whole_box = _footprint(pixels, ys, xs, whole, margin, params)
            if box in done:  # two pieces of one parent the window split
                continue
            done.add(box)
            crop = pixels.window(box)
            alone = _Found.detect(crop[0], crop[1], crop[2], crop[3], params, peaks)
            kids = np.unique(alone.seg[footprint & (alone.seg > 0)]) - 1
            o = alone.objs[kids].copy()
            for key in ("x", "xmin", "xmax"):
                o[key] += box[2] - region[2]
            for key in ("y", "ymin", "ymax"):
                o[key] += box[0] - region[0]
            objs.append(o)
            raw_max.append(alone.raw_max[kids])
            cut.append(np.full(kids.size, not whole_box))
        out = _Found.__new__(_Found)
        out.objs = np.concatenate(objs)
        out.raw_max = np.concatenate(raw_max)
        out.cut = np.concatenate(cut)
        return out


class _Pixels:
    """Windows of the image: crops of the tile's window where they fit in it, else read
    (and background-subtracted) anew."""

    def __init__(
        self, read: Reader, sky: Sky, region: Box, arrays: tuple[Any, Any, Any, Any]
    ) -> None:
        self.read, self.sky, self.region, self.arrays = read, sky, region, arrays
        self.shape = (sky.height, sky.width)

    def window(self, box: Box) -> list[Any]:
        """Raw, background-subtracted, RMS and mask (or None) of ``box`` (image px)."""
        r0, r1, c0, c1 = self.region
        if box[0] >= r0 and box[1] <= r1 and box[2] >= c0 and box[3] <= c1:
            win = (slice(box[0] - r0, box[1] - r0), slice(box[2] - c0, box[3] - c0))
            return [None if a is None else np.ascontiguousarray(a[win]) for a in self.arrays]
        raw, sub, _, rms, mask = _prepare(self.read, self.sky, box)
        return [raw, sub, rms, mask]


def _measure(
    objs: npt.NDArray[Any],
    raw: Any,
    sub: Any,
    back: Any,
    rms: Any,
    mask: Any,
    params: ExtractParams,
) -> dict[str, npt.NDArray[Any]]:
    """The catalog columns of ``objs`` (window coordinates)."""
    x = objs["x"].astype(np.float64)
    y = objs["y"].astype(np.float64)
    a = objs["a"].astype(np.float64)
    b = objs["b"].astype(np.float64)
    # float32 pi/2 exceeds pi/2 in float64, which SEP's apertures refuse.
    theta = np.clip(objs["theta"].astype(np.float64), -math.pi / 2, math.pi / 2)
    phot = _photometry(sub, rms, mask, x, y, a, b, theta, params)
    iy = np.clip(np.floor(y + 0.5).astype(np.intp), 0, sub.shape[0] - 1)
    ix = np.clip(np.floor(x + 0.5).astype(np.intp), 0, sub.shape[1] - 1)
    import sep

    sep_flags = objs["flag"].astype(np.int64)
    flags = np.zeros(len(objs), dtype=np.int64)
    flags |= np.where(sep_flags & sep.OBJ_MERGED, FLAG_BLENDED, 0)
    flags |= np.where(sep_flags & sep.OBJ_TRUNC, FLAG_TRUNCATED, 0)
    flags |= np.where(sep_flags & sep.OBJ_DOVERFLOW, FLAG_DEBLEND_OVERFLOW, 0)
    table: dict[str, npt.NDArray[Any]] = {
        "x": x,
        "y": y,
        "xmin": objs["xmin"].astype(np.int64),
        "xmax": objs["xmax"].astype(np.int64),
        "ymin": objs["ymin"].astype(np.int64),
        "ymax": objs["ymax"].astype(np.int64),
        "npix": objs["npix"].astype(np.int64),
        "a": a,
        "b": b,
        "theta": theta,
        "flux": objs["flux"].astype(np.float64),
        "peak": objs["peak"].astype(np.float64),
        "thresh": objs["thresh"].astype(np.float64),
        "background": back[iy, ix].astype(np.float64),
        "background_rms": rms[iy, ix].astype(np.float64),
        "flags": flags,
        "sep_flags": sep_flags,
    }
    table.update(phot)
    if x.size:
        table["flags"] |= _aperture_flags(table["aper_flags"])
    return table


def _aperture_flags(aper: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    import sep

    out = np.where(aper & (sep.APER_HASMASKED | sep.APER_ALLMASKED), FLAG_NEIGHBOURS, 0)
    out |= np.where(aper & sep.APER_TRUNC, FLAG_APERTURE_INCOMPLETE, 0)
    return out.astype(np.int64)


def _remeasure(
    cols: dict[str, npt.NDArray[Any]], read: Reader, sky: Sky, region: Box, params: ExtractParams
) -> int:
    """Photometry again, in a window of their own, for the objects whose reach leaves the
    window (in place; positions stay in ``region``'s coordinates)."""
    shape = (sky.height, sky.width)
    count = 0
    for k in range(cols["x"].size):
        gx, gy = float(cols["x"][k]) + region[2], float(cols["y"][k]) + region[0]
        around = region
        for _ in range(4):  # the reach grows with the Kron radius measured
            box = _window_around(gx, gy, float(cols["reach"][k]), shape)
            if _inside(box, around, shape):
                break
            count += 1
            around = box
            _, sub, _, rms, mask = _prepare(read, sky, box)
            one = _photometry(
                sub,
                rms,
                mask,
                np.array([gx - box[2]]),
                np.array([gy - box[0]]),
                cols["a"][k : k + 1],
                cols["b"][k : k + 1],
                cols["theta"][k : k + 1],
                params,
            )
            for key, values in one.items():
                cols[key][k] = values[0]
            cols["flags"][k] &= ~(FLAG_NEIGHBOURS | FLAG_APERTURE_INCOMPLETE)
            cols["flags"][k] |= _aperture_flags(one["aper_flags"])[0]
    return count


class _Maps:
    """Whole-image background and RMS maps behind :class:`Sky`'s interface."""

    def __init__(self, back: npt.NDArray[np.float32], rms: npt.NDArray[np.float32]) -> None:
        self.back, self.rms = back, rms
        self.height, self.width = back.shape

    def region(self, r0: int, r1: int, c0: int, c1: int) -> tuple[Any, Any]:
        return self.back[r0:r1, c0:c1], self.rms[r0:r1, c0:c1]


def extract_whole(
    image: npt.NDArray[Any], params: ExtractParams, *, saturation: float | None = None
) -> pd.DataFrame:
    """SEP on a whole in-memory image, through the same measurements as the tiles: the
    reference the tiled catalog equals (and the one-process baseline of the benchmark).

    Parameters
    ----------
    image : numpy.ndarray, shape (h, w)
        Pixels; NaN where blank.
    params : ExtractParams
    saturation : float, optional

    Returns
    -------
    pandas.DataFrame
        As :func:`extract_tile`'s table, with the background from ``sep.Background`` on the
        whole image.
    """
    import sep

    data = np.asarray(image, dtype=np.float32)
    mask = ~valid_pixels(data, None)
    pixels = np.where(mask, np.float32(0.0), data)
    bkg = sep.Background(
        pixels,
        mask=mask,
        bw=params.bw,
        bh=params.bh,
        fw=params.fw,
        fh=params.fh,
        fthresh=params.fthresh,
    )
    maps = _Maps(bkg.back(), bkg.rms())

    def read(r0: int, r1: int, c0: int, c1: int) -> npt.NDArray[Any]:
        return data[r0:r1, c0:c1]

    h, w = data.shape
    table, _ = extract_tile(read, maps, (0, h, 0, w), params, saturation=saturation)
    return table
