"""Per-image galaxy preprocessing: find the central galaxy, reject bad cutouts, align, cut out.

This is the method of the galaxy notebook (``shared/seeds/000``), one image at a time, with
its intent kept and its bugs left behind:

* **Central galaxy**: determinant-of-Hessian blobs (``threshold`` 0.004, ``max_sigma`` 100,
  ``overlap`` 1); the largest blob whose centre lies within ``window`` px of the image centre
  along both axes is the galaxy. None: rejected ``no_galaxy``. Detection may run on an image
  downscaled by ``detect_downscale`` (blob scales scale with it), which is 4x cheaper at 2;
  1 is the notebook's full resolution.
* **Neighbour overlap**: each blob is a disc of radius ``radius_factor * sigma``
  (sqrt(2) sigma, as the notebook's ``Galaxy.radius``). Another blob overlaps the galaxy when
  the discs intersect: centre distance ``d < r_galaxy + r_other``. The notebook reaches the
  same test through the point of one circle closest to the other; written directly it is
  symmetric and needs no special cases. Blobs whose centre lies within
  ``same_source_fraction * r_galaxy`` of the galaxy's centre are structure of the galaxy
  itself (a bulge inside its disc), not neighbours. Rejected ``overlap``.
* **Black stripe**: in the galaxy's crop, rescaled to [0, 1], pixels darker than
  ``dark_threshold`` with bright light around them are suspicious. "Bright light around
  them" is made precise with a grey closing of width ``stripe_window`` (it fills dark
  features narrower than that which have light on both sides): the closing must exceed the
  pixel by ``bright_threshold``. Unlike the notebook's window mean, this does not flag the
  dark sky beside a bright edge-on disc, and it needs no per-pixel loops. More than
  ``min_dark_pixels`` suspicious pixels lying on a line reject the image as ``stripe``.
  "On a line" is measured by the stripe score ``((l1 - l2) / (l1 + l2))**2`` of the
  eigenvalues ``l1 >= l2`` of the suspicious pixels' coordinate covariance: the
  rotation-invariant form of the notebook's R^2 (equal to it for a stripe at 45 degrees),
  which unlike ``corrcoef(x, y)**2`` does not fail on horizontal or vertical stripes.
* **Blends**: the determinant of Hessian's coarse scales often merge a close neighbour
  into the galaxy's blob. The galaxy's light above ``deblend_level`` of its peak is
  therefore also checked: a second peak separated by a dip of ``deblend_contrast`` of its
  height, or a region that differs from one ellipse by more than ``max_ellipse_misfit``
  of its area (X, V and side-by-side pairs), is an ``overlap`` too. The stripe test runs
  before these, since a stripe also splits a galaxy's light in two; and a blend that
  disappears once dark lines up to ``stripe_fill`` px wide are filled (a grey closing) is
  a stripe across a thin disc, too short for the dark-pixel count, not a neighbour.
* **Alignment**: the major axis from the second moments of the galaxy's pixels: those above
  the isophote ``sky + moment_level * (peak - sky)`` connected to the centre, in a window of
  a few radii (the notebook's tight crop cuts elongated galaxies short, and it mixes up
  eigenvector rows and columns). The cutout is rotated so the major axis lies along +x.
* **Cutout**: a square of half-width ``crop_factor * radius`` around the galaxy's centroid,
  rotated and resampled in one interpolation straight to ``cutout_size`` px (anti-aliased
  when shrinking), then rescaled to [0, 1]. Pixels outside the image are 0, so a galaxy at
  the border still gives a full, centred cutout.

Angles are in degrees in [0, 180), counter-clockwise from +x (image columns) with y pointing
up the displayed image, as in :mod:`pipeline.synth.galaxies`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.ndimage as ndi
from skimage.feature import peak_local_max
from skimage.transform import downscale_local_mean

from pipeline.imaging.detect import blobs_in_block, order_and_prune
from pipeline.imaging.geometry import align_and_cut, crop, to_gray
from pipeline.imaging.spec import BlobParams
from pipeline.workflows.galaxy.spec import REASONS, GalaxyParams

__all__ = [
    "REASONS",
    "GalaxyParams",
    "GalaxyResult",
    "analyse_galaxy",
    "blended_neighbours",
    "central_blob",
    "ellipse_misfit",
    "find_blobs",
    "overlapping",
    "stripe_score",
]

FloatImage = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GalaxyResult:
    """What :func:`analyse_galaxy` finds for one image.

    Geometry is NaN where it was not measured; ``cutout`` is None for rejected images.
    """

    status: Literal["kept", "rejected"]
    reason: str
    x: float = math.nan
    y: float = math.nan
    sigma: float = math.nan
    radius: float = math.nan
    angle_deg: float = math.nan
    stripe_score: float = math.nan
    cutout: FloatImage | None = None

    def row(self) -> dict[str, Any]:
        """The catalog columns (everything but the cutout)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "x": self.x,
            "y": self.y,
            "sigma": self.sigma,
            "radius": self.radius,
            "angle_deg": self.angle_deg,
            "stripe_score": self.stripe_score,
        }


def _detection_image(gray: FloatImage, params: GalaxyParams) -> FloatImage:
    f = params.detect_downscale
    small = gray if f == 1 else downscale_local_mean(gray, (f, f))
    if params.detect_closing > 1:
        # A thin dark stripe across a galaxy can split or hide its blob; a grey closing
        # narrower than the galaxies fills it for detection only (the stripe test
        # still sees the original pixels).
        small = ndi.grey_closing(small, size=(params.detect_closing, params.detect_closing))
    return np.asarray(small, dtype=np.float64)


def find_blobs(
    gray: FloatImage, params: GalaxyParams, blob_params: BlobParams | None = None
) -> FloatImage:
    """Blobs of ``gray`` in full-resolution pixel coordinates.

    Parameters
    ----------
    gray : numpy.ndarray, shape (h, w)
    params : GalaxyParams
    blob_params : BlobParams, optional
        The detector at the detection scale; default ``params.blob_params()``.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        ``y``, ``x`` (px), ``sigma`` (px).
    """
    bp = params.blob_params() if blob_params is None else blob_params
    f = params.detect_downscale
    small = _detection_image(gray, params)
    blobs = order_and_prune(blobs_in_block(small, bp), bp.overlap)
    if f > 1 and len(blobs):
        # Pixel i of the shrunk image averages full-size pixels f*i .. f*i + f - 1.
        blobs = blobs.copy()
        blobs[:, 0:2] = blobs[:, 0:2] * f + (f - 1) / 2.0
        blobs[:, 2] *= f
    return blobs


def central_blob(blobs: FloatImage, shape: tuple[int, int], window: float) -> int | None:
    """Index of the galaxy: the largest blob within ``window`` of the centre on both axes.

    Ties in sigma go to the blob nearest the centre. ``None`` if no blob is in the window.
    """
    if len(blobs) == 0:
        return None
    cy, cx = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    dy, dx = np.abs(blobs[:, 0] - cy), np.abs(blobs[:, 1] - cx)
    inside = np.flatnonzero((dy < window) & (dx < window))
    if inside.size == 0:
        return None
    dist = np.hypot(dy[inside], dx[inside])
    best = np.lexsort((dist, -blobs[inside, 2]))[0]
    return int(inside[best])


def overlapping(
    blobs: FloatImage, galaxy: int, radius_factor: float, same_source_fraction: float
) -> npt.NDArray[np.intp]:
    """Indices of the blobs whose disc intersects the galaxy's (see the module notes)."""
    radii = radius_factor * blobs[:, 2]
    d = np.hypot(blobs[:, 0] - blobs[galaxy, 0], blobs[:, 1] - blobs[galaxy, 1])
    r_g = radii[galaxy]
    hit = (d < r_g + radii) & (d >= same_source_fraction * r_g)
    hit[galaxy] = False
    return np.flatnonzero(hit)


def _sky_noise(gray: FloatImage) -> tuple[float, float]:
    """Sky level and noise sigma of an image, robustly (median and scaled MAD)."""
    sample = gray[::2, ::2]
    sky = float(np.median(sample))
    return sky, 1.4826 * float(np.median(np.abs(sample - sky)))


@dataclass(frozen=True)
class _Region:
    """The galaxy's light above an isophote, in a window around it."""

    smooth: FloatImage  # the window, lightly smoothed
    mask: npt.NDArray[np.bool_]  # the isophote region connected to the galaxy's peak
    peak: tuple[int, int]  # the galaxy's peak (window px)
    origin: tuple[int, int]  # the window's top-left corner in the image (px)
    sky: float
    noise: float


def _galaxy_region(
    gray: FloatImage, y: float, x: float, radius: float, level: float, fill: int = 0
) -> _Region | None:
    half = max(24.0, 4.0 * radius)
    r0, c0 = max(0, int(y - half)), max(0, int(x - half))
    win = gray[r0 : int(y + half) + 1, c0 : int(x + half) + 1]
    if win.size == 0:
        return None
    if fill > 1:
        win = ndi.grey_closing(win, size=(fill, fill))
    sky, noise = _sky_noise(gray)
    smooth = ndi.gaussian_filter(win, 1.0)
    cy = min(max(round(y) - r0, 0), win.shape[0] - 1)
    cx = min(max(round(x) - c0, 0), win.shape[1] - 1)
    reach = max(2, int(0.5 * radius))
    core = smooth[max(0, cy - reach) : cy + reach + 1, max(0, cx - reach) : cx + reach + 1]
    py, px = np.unravel_index(int(np.argmax(core)), core.shape)
    py, px = int(py) + max(0, cy - reach), int(px) + max(0, cx - reach)
    height = float(smooth[py, px]) - sky
    if height <= 0:
        return None
    labels, _ = ndi.label(smooth > sky + level * height)
    return _Region(smooth, labels == labels[py, px], (py, px), (r0, c0), sky, noise)


def blended_neighbours(
    gray: FloatImage, y: float, x: float, radius: float, params: GalaxyParams
) -> npt.NDArray[np.float64]:
    """Second peaks inside the galaxy's light: neighbours the detector merged with it.

    Parameters
    ----------
    gray : numpy.ndarray, shape (h, w)
    y, x : float
        The galaxy's centre (px).
    radius : float
        The galaxy's blob radius (px); the search window is 4 radii (at least 24 px).
    params : GalaxyParams
        ``deblend_level`` sets the isophote (fraction of the galaxy's peak above sky)
        whose region, connected to the galaxy, is searched; ``deblend_contrast`` the dip
        (fraction of the second peak's height above sky) that must separate the peaks.

    Returns
    -------
    numpy.ndarray, shape (n, 2)
        ``y``, ``x`` (px) of each blended neighbour's peak.
    """
    region = _galaxy_region(gray, y, x, radius, params.deblend_level)
    if region is None:
        return np.empty((0, 2))
    return _second_peaks(region, params.deblend_contrast)


def _second_peaks(region: _Region, contrast: float) -> npt.NDArray[np.float64]:
    smooth, (py, px), (r0, c0) = region.smooth, region.peak, region.origin
    # Smoothing by 1 px divides white noise by about 3.5; 5 sigma of that is the floor.
    floor = 5.0 * region.noise / 3.5
    found = peak_local_max(
        smooth, min_distance=2, labels=region.mask.astype(np.int32), exclude_border=False
    )
    out = []
    for qy, qx in found:
        d = math.hypot(qy - py, qx - px)
        if d < 3.0:
            continue
        # The lowest point on the straight path between the peaks is (close to) the saddle.
        n = math.ceil(d) + 1
        path = ndi.map_coordinates(
            smooth, [np.linspace(py, qy, n), np.linspace(px, qx, n)], order=1
        )
        height = float(smooth[qy, qx]) - region.sky
        dip = float(smooth[qy, qx]) - float(path.min())
        if dip > max(contrast * height, floor):
            out.append((float(qy + r0), float(qx + c0)))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _is_blend(region: _Region | None, params: GalaxyParams) -> bool:
    if region is None:
        return False
    if len(_second_peaks(region, params.deblend_contrast)):
        return True
    limit = params.max_ellipse_misfit
    return limit is not None and ellipse_misfit(region.mask) > limit


def ellipse_misfit(mask: npt.NDArray[np.bool_]) -> float:
    """How far a region is from one ellipse: ``|region xor ellipse| / |region|``.

    The ellipse is the uniform one with the region's centroid and second moments
    (semi-axes ``2 sqrt(l1)``, ``2 sqrt(l2)``). About 0.01-0.04 for the isophote of a single
    galaxy (pixelisation and noise); two blended galaxies in an X, V or offset pair give
    0.3 and more.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (h, w)

    Returns
    -------
    float
        In [0, 2]; 0 for an empty region.
    """
    rows, cols = np.nonzero(mask)
    if rows.size < 5:
        return 0.0
    my, mx = rows.mean(), cols.mean()
    cov = np.cov(np.vstack([rows, cols]).astype(np.float64), bias=True)
    lam, vec = np.linalg.eigh(cov)
    lam = np.maximum(lam, 1e-6)
    rr, cc = np.mgrid[: mask.shape[0], : mask.shape[1]]
    d = np.stack([rr - my, cc - mx], axis=-1) @ vec
    ellipse = (d[..., 0] ** 2 / (4 * lam[0]) + d[..., 1] ** 2 / (4 * lam[1])) <= 1.0
    return float((mask ^ ellipse).sum() / rows.size)


def stripe_score(crop: FloatImage, params: GalaxyParams) -> tuple[float, int]:
    """Line score of the dark-in-bright pixels of a galaxy crop.

    Parameters
    ----------
    crop : numpy.ndarray, shape (h, w)
        The galaxy's crop (any range; it is rescaled to [0, 1] here).
    params : GalaxyParams

    Returns
    -------
    score : float
        ``((l1 - l2) / (l1 + l2))**2`` for the suspicious pixels' coordinates (1: a line,
        0: an isotropic cloud); 0 when there are fewer than two.
    count : int
        Number of suspicious pixels.
    """
    lo, hi = float(crop.min(initial=0.0)), float(crop.max(initial=0.0))
    if crop.size == 0 or hi <= lo:
        return 0.0, 0
    img = (crop - lo) / (hi - lo)
    # "Dark pixels whose neighbourhood is bright", made precise: a grey closing fills dark
    # features narrower than the window that have bright light on both sides, so the
    # closing minus the image (the black top-hat) is the brightness a pixel is surrounded
    # by. Sky beside a bright edge-on disc is dark with light on one side only and is not
    # filled, unlike with the notebook's window mean.
    closed = ndi.grey_closing(img, size=(params.stripe_window, params.stripe_window))
    suspicious = (img < params.dark_threshold) & (closed - img > params.bright_threshold)
    rows, cols = np.nonzero(suspicious)
    n = int(rows.size)
    if n < 2:
        return 0.0, n
    cov = np.cov(np.vstack([rows, cols]).astype(np.float64))
    l2, l1 = np.linalg.eigvalsh(cov)
    if l1 + l2 <= 0:
        return 0.0, n
    return float(((l1 - l2) / (l1 + l2)) ** 2), n


def analyse_galaxy(image: npt.NDArray[Any], params: GalaxyParams) -> GalaxyResult:
    """Find, check, align and cut out the central galaxy of one image.

    Parameters
    ----------
    image : numpy.ndarray, shape (h, w) or (h, w, c)
        One stored image (see :func:`to_gray`).
    params : GalaxyParams

    Returns
    -------
    GalaxyResult
        ``kept`` with the cutout ``(cutout_size, cutout_size)`` in [0, 1], or ``rejected``
        with the first failing check's reason (:data:`REASONS`). Never raises for image
        content (blank, NaN-bearing, tiny images are rejected with a reason).
    """
    gray = to_gray(image)
    if not np.isfinite(gray).all():
        return GalaxyResult("rejected", "non_finite")
    if gray.size == 0 or np.ptp(gray) == 0:
        # Blank (all black, all white): nothing to find, and the detector's clamped
        # box sums respond at the edges of a bright constant image.
        return GalaxyResult("rejected", "no_galaxy")
    blobs = find_blobs(gray, params)
    shape = (gray.shape[0], gray.shape[1])
    g = central_blob(blobs, shape, params.window)
    fallback = params.fallback_params()
    if g is None and fallback is not None:
        # The determinant of the Hessian vanishes along a line (one curvature is ~0), so
        # it misses thin edge-on discs however bright; the Laplacian sums the curvatures.
        blobs = find_blobs(gray, params, fallback)
        g = central_blob(blobs, shape, params.window)
    if g is None:
        return GalaxyResult("rejected", "no_galaxy")
    y, x, sigma = (float(v) for v in blobs[g])
    radius = params.radius_factor * sigma
    # The stripe test runs first: a stripe across a galaxy splits its light in two, which
    # the overlap tests would otherwise take for two sources.
    score, n_dark = stripe_score(crop(gray, y, x, radius), params)
    found = GalaxyResult("rejected", "", x, y, sigma, radius, stripe_score=score)
    if n_dark > params.min_dark_pixels and score > params.stripe_r2:
        return replace(found, reason="stripe")
    region = _galaxy_region(gray, y, x, radius, params.deblend_level)
    others = overlapping(blobs, g, params.radius_factor, params.same_source_fraction)
    if region is not None and others.size:
        # A thin edge-on disc gives several blobs along its length; blobs inside the
        # galaxy's own light are judged by the blend tests below (a neighbour there shows
        # as a second peak or a non-elliptical outline), those outside by their discs.
        r0, c0 = region.origin
        rows = np.clip(np.round(blobs[others, 0]).astype(int) - r0, 0, region.mask.shape[0] - 1)
        cols = np.clip(np.round(blobs[others, 1]).astype(int) - c0, 0, region.mask.shape[1] - 1)
        h, w = region.mask.shape
        ys, xs = blobs[others, 0], blobs[others, 1]
        in_window = (ys >= r0) & (ys < r0 + h) & (xs >= c0) & (xs < c0 + w)
        inside = region.mask[rows, cols] & in_window
        others = others[~inside]
    if others.size:
        return replace(found, reason="overlap")
    if _is_blend(region, params):
        # A thin dark line across the light also splits it (a stripe crossing a thin
        # edge-on disc leaves too few dark pixels for the stripe test): if filling dark
        # lines up to stripe_fill px wide makes the light one source again, it is a stripe.
        fill = params.stripe_fill
        filled = _galaxy_region(gray, y, x, radius, params.deblend_level, fill)
        if fill > 1 and not _is_blend(filled, params):
            return replace(found, reason="stripe")
        return replace(found, reason="overlap")
    cy, cx, angle, cut = align_and_cut(
        gray,
        y,
        x,
        radius,
        moment_level=params.moment_level,
        crop_factor=params.crop_factor,
        size=params.cutout_size,
        rescale=params.rescale,
    )
    return replace(found, status="kept", x=cx, y=cy, angle_deg=angle, cutout=cut)
