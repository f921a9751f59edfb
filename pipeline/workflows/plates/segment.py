"""Per-image segmentation of a bright-field spheroid well, and its quality checks.

One image of one well in, labels (0 background, 1 spheroid, 2 debris) and QC out; no Dask,
no store (the plate stages call this per image of a chunk). The method, in order:

* **Processing scale**: the image (gray float, integers scaled by their dtype) is shrunk by
  an integer factor, by block means, until its longer side is at most
  ``processing_size`` (256): a well's spheroid is 60-400 px across at 1024 px, far larger
  than what the shrink loses, and every step below costs 16x less. The outline is refined
  at full resolution at the end.
* **Flattening**: the illumination (vignetting, a gradient and the meniscus shadow, a dark
  crescent up to ~70 % deep near the border) is estimated by a Gaussian-weighted local
  quadratic regression (LOESS) of the background pixels at scale ``background_scale`` and
  divided out. A Gaussian or median background is pulled down by a large spheroid and
  lags behind the shadow's shoulder and at the border, and a grey closing (rolling ball)
  over-fills the border region: both turn the shadow into "spheroid". The fit is redone
  ``background_iterations`` times, each with the objects the previous one found (and
  their halo) masked out.
* **Threshold**: on the darkness ``1 - image / background``, lightly smoothed. The high
  threshold is scikit-image's ``threshold_method`` (Otsu), but at least ``min_darkness``
  and six noise sigmas (an empty well has nothing to split); the low one is
  ``hysteresis_fraction`` of it (but above three noise sigmas), and hysteresis keeps the
  pixels above it that touch a pixel above the high one, so a body's lighter rim and
  outline join its dark core, while faint shading alone never starts an object. Darkness
  rather than texture (local standard deviation): in bright field a spheroid is darker
  than the medium everywhere, most of all at its refractive outline, whereas texture
  peaks on both sides of an edge (growing the outline into the halo), answers to the
  noise of an empty well, and vanishes out of focus, where the darkness (and so the
  segmentation) stays. Texture is what the focus score measures instead.
* **Clean-up**: a closing (``closing_radius``) joins light cracks, holes are filled (a
  spheroid's lighter core), an opening (``opening_radius``) cuts one-pixel bridges.
* **Bodies and debris**: an opening by ``body_radius`` removes debris fragments and the
  debris bridges between bodies; of what remains, the largest body of at least
  ``min_spheroid_area`` whose centroid lies within ``centre_radius`` of the image centre
  is the spheroid (none: ``empty_well``). Bodies within ``debris_spread`` of it and of at
  least ``multiple_bodies_ratio`` of its area are comparable (``multiple_bodies``), and
  labelled 1 with it. The spheroid's label is the foreground within ``body_radius`` of
  these bodies (its ragged outline back); every other piece of foreground of at least
  ``min_debris_area`` within ``debris_spread`` of the spheroid is debris (label 2).
* **Refinement**: the smoothed darkness is interpolated to full resolution and
  thresholded at the low level in a band of one processing pixel around each outline.
* **QC**: ``touches_edge`` when the spheroid reaches the image border (within
  ``edge_margin`` px); ``focus_score`` the variance of the Laplacian of Gaussian
  (``focus_sigma``) of the flattened image around the objects. Whether that is out of
  focus depends on the optics and the plate, so :func:`flag_out_of_focus` decides it over a
  plate's scores (a robust z-score).

Lengths and areas in :class:`~pipeline.workflows.plates.segment_spec.SegmentParams` are
fractions of the image (one well fills one image whatever the camera), the small
morphology radii px of the processing image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.ndimage as ndi
from skimage import filters
from skimage.color import rgb2gray
from skimage.morphology import isotropic_dilation, isotropic_erosion, isotropic_opening
from skimage.transform import downscale_local_mean

from pipeline.errors import ParameterError
from pipeline.workflows.plates.segment_spec import SegmentParams

__all__ = ["SegmentResult", "flag_out_of_focus", "segment_spheroid", "to_gray"]

log = logging.getLogger(__name__)

BACKGROUND, SPHEROID, DEBRIS = 0, 1, 2
_EIGHT = np.ones((3, 3), dtype=bool)
#: MAD of a normal distribution is 0.6745 of its standard deviation.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class SegmentResult:
    """One well's segmentation and its per-image quality checks.

    Attributes
    ----------
    labels : ndarray of uint8, shape (y, x)
        0 background, 1 spheroid, 2 debris; the image's shape.
    focus_score : float
        Variance of the Laplacian of Gaussian of the flattened image around the spheroid and
        its debris (higher is sharper; unitless, as the flattened image is a ratio to the
        background). NaN for an empty well: there is nothing to focus on.
    empty_well : bool
        No dark body large enough to be a spheroid lies near the centre.
    touches_edge : bool
        The spheroid reaches the image border (its measures are truncated).
    multiple_bodies : bool
        A second body of comparable size lies beside the spheroid.
    """

    labels: npt.NDArray[np.uint8]
    focus_score: float
    empty_well: bool
    touches_edge: bool
    multiple_bodies: bool

    @property
    def ok(self) -> bool:
        """None of the per-image flags is set (``out_of_focus`` is the plate's to decide:
        combine this with :func:`flag_out_of_focus`)."""
        return not (self.empty_well or self.touches_edge or self.multiple_bodies)


def to_gray(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """One bright-field image as gray float32, integers scaled to [0, 1] by their dtype.

    Parameters
    ----------
    image : array_like, shape (y, x) or (y, x, 1|3|4)
        uint8, uint16 (or any integer), bool or float; RGB(A) is converted to gray with
        scikit-image's luminance weights. Float images keep their values.

    Returns
    -------
    ndarray of float32, shape (y, x)

    Raises
    ------
    ParameterError
        Not one 2-D gray or RGB image, or non-finite pixels.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = rgb2gray(arr[..., :3])
    elif arr.ndim != 2:
        raise ParameterError(
            f"image of shape {arr.shape} is neither (y, x) nor (y, x, 3|4) RGB; pass one "
            "well image per call"
        )
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        out = arr.astype(np.float32)
        if info.min:
            out -= info.min
        out *= 1.0 / (info.max - info.min)
        return out
    out = arr.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ParameterError(
            "image has NaN or infinite pixels; mask or replace them before segmenting"
        )
    return out


def _factor(shape: tuple[int, int], processing_size: int) -> int:
    """The integer shrink factor that brings the longer side to ``processing_size`` or less."""
    return max(1, math.ceil(max(shape) / processing_size))


def _block_mean(image: npt.NDArray[np.float32], step: int) -> npt.NDArray[np.float32]:
    """Means of ``step`` x ``step`` blocks; the last rows and columns that do not fill a
    block are dropped (zero padding would darken the border and look like a shadow)."""
    if step == 1:
        return image
    h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    return downscale_local_mean(image[:h, :w], (step, step)).astype(np.float32)


def _upsample(
    image: npt.NDArray[np.float32], step: int, shape: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """Bilinear interpolation of block means back to ``shape`` (pixel areas aligned; the
    rows and columns :func:`_block_mean` dropped repeat the last ones)."""
    if step == 1:
        return image
    up = ndi.zoom(image, step, order=1, grid_mode=True, mode="nearest")
    pad = ((0, shape[0] - up.shape[0]), (0, shape[1] - up.shape[1]))
    return np.pad(up, pad, mode="edge") if any(p[1] for p in pad) else up


def _local_quadratic(
    values: npt.NDArray[np.float64], weight: npt.NDArray[np.float64], sigma: float
) -> npt.NDArray[np.float64]:
    """Gaussian-weighted local quadratic regression of ``values`` (LOESS on a grid).

    At every pixel, the weighted least-squares quadratic in (x, y) through the pixels
    within a few ``sigma``, each weighted by ``weight`` times the Gaussian of its distance,
    evaluated at that pixel. Unlike a (normalised) Gaussian mean, it follows a ramp up to
    the image border and the curved shoulder of the meniscus shadow, and it bridges the
    hole a masked spheroid leaves with the curvature around it. Written out because no
    library fits masked local polynomials on a grid: the weighted moments are separable
    correlations (scipy), the 6 x 6 normal equations are solved per pixel (numpy). A small
    ridge on the non-constant terms lets a pixel with little data around it fall back to
    the local mean instead of extrapolating.
    """
    radius = max(1, math.ceil(3.0 * sigma))
    u = np.arange(-radius, radius + 1, dtype=np.float64) / sigma
    gauss = np.exp(-0.5 * u * u)
    kernels = [gauss * u**p for p in range(5)]

    def moment(a: npt.NDArray[np.float64], p: int, q: int) -> npt.NDArray[np.float64]:
        # Outside the image there is no data (weight 0), not a reflection of it.
        t = ndi.correlate1d(a, kernels[p], axis=1, mode="constant")
        return ndi.correlate1d(t, kernels[q], axis=0, mode="constant")

    terms = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    n = len(terms)
    cache: dict[tuple[int, int], npt.NDArray[np.float64]] = {}
    lhs = np.empty((*values.shape, n, n))
    rhs = np.empty((*values.shape, n))
    weighted = values * weight
    for i, (p1, q1) in enumerate(terms):
        rhs[..., i] = moment(weighted, p1, q1)
        for j, (p2, q2) in enumerate(terms[i:], start=i):
            key = (p1 + p2, q1 + q2)
            if key not in cache:
                cache[key] = moment(weight, *key)
            lhs[..., i, j] = lhs[..., j, i] = cache[key]
    total = np.maximum(lhs[..., 0, 0], 1e-12)
    idx = np.arange(1, n)
    lhs[..., idx, idx] += 1e-3 * total[..., None]
    lhs[..., 0, 0] = total
    coef = np.linalg.solve(lhs, rhs[..., None])[..., 0, 0]
    return np.asarray(coef, dtype=np.float64)


def _background(
    work: npt.NDArray[np.float32], foreground: npt.NDArray[np.bool_], sigma: float
) -> npt.NDArray[np.float32]:
    """Illumination under the image: a local quadratic fit to the background pixels.

    The illumination is smooth on the scale ``sigma``, so it is fitted on a grid of cells
    about ``sigma / 6`` wide (each cell the mean of its background pixels, weighted by how
    many there are) and interpolated back, which costs a few ms at any image size.
    """
    weight = (~foreground).astype(np.float32)
    if not weight.any():
        weight[:] = 1.0
    step = max(1, int(sigma // 6))
    num = _block_mean(work * weight, step).astype(np.float64)
    den = _block_mean(weight, step).astype(np.float64)
    mean = num / np.maximum(den, 1e-6)
    bg = _local_quadratic(mean, den, sigma / step).astype(np.float32)
    bg = _upsample(bg, step, work.shape)
    floor = max(float(np.abs(work).max()) * 1e-3, 1e-6)
    return np.maximum(bg, floor)


def _threshold(darkness: npt.NDArray[np.float32], params: SegmentParams) -> tuple[float, float]:
    """The hysteresis thresholds (low, high) of the darkness."""
    method = getattr(filters, f"threshold_{params.threshold_method}")
    try:
        high = float(method(darkness))
    except ValueError:  # a constant image has no threshold
        high = math.inf
    # The background's level and noise: the median and MAD of the whole image are those of
    # the background, which covers most of a well.
    values = darkness.ravel()
    med = float(np.median(values))
    noise = _MAD_TO_SIGMA * float(np.median(np.abs(values - med)))
    high = max(high, params.min_darkness, med + 6 * noise)
    low = max(params.hysteresis_fraction * high, params.min_darkness / 2, med + 3 * noise)
    return min(low, high), high


def _clean(fg: npt.NDArray[np.bool_], params: SegmentParams) -> npt.NDArray[np.bool_]:
    """Close light cracks, fill the spheroid's light core, cut thin bridges.

    The isotropic (distance transform) operations cost the same at any radius, and their
    erosion takes the outside as foreground: a body cut by the border continues beyond it
    and is not eaten away from the border in.
    """
    if params.closing_radius > 0:
        fg = isotropic_erosion(isotropic_dilation(fg, params.closing_radius), params.closing_radius)
    fg = ndi.binary_fill_holes(fg)
    if params.opening_radius > 0:
        fg = isotropic_opening(fg, params.opening_radius)
    return np.asarray(fg, dtype=bool)


@dataclass(frozen=True)
class _Work:
    """The processing-scale intermediates of one image."""

    flat: npt.NDArray[np.float32]  # image / background
    darkness: npt.NDArray[np.float32]  # 1 - flat, smoothed
    low: float
    high: float
    labels: npt.NDArray[np.uint8]
    empty_well: bool
    multiple_bodies: bool


def _segment_work(work: npt.NDArray[np.float32], params: SegmentParams) -> _Work:
    h, w = work.shape
    side = min(h, w)
    sigma = params.background_scale * side
    foreground = np.zeros(work.shape, bool)
    # The halo and the blurred outline of a body are not background either.
    grow = max(2.0, 0.02 * side)
    for _ in range(params.background_iterations):
        bg = _background(work, foreground, sigma)
        flat = work / bg
        darkness = 1.0 - flat
        if params.smoothing > 0:
            darkness = ndi.gaussian_filter(darkness, params.smoothing)
        low, high = _threshold(darkness, params)
        fg = filters.apply_hysteresis_threshold(darkness, low, high)
        foreground = isotropic_dilation(fg, grow)
    fg = _clean(fg, params)

    labels = np.zeros(work.shape, np.uint8)
    found = _select(fg, params)
    if found is None:
        return _Work(flat, darkness, low, high, labels, True, False)
    spheroid, debris, n_bodies = found
    labels[debris] = DEBRIS
    labels[spheroid] = SPHEROID
    return _Work(flat, darkness, low, high, labels, False, n_bodies > 1)


def _components(
    mask: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """8-connected components: label image, areas (px) and centroids (y, x) of 1..n."""
    comp, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:
        return comp, np.zeros(0), np.zeros((0, 2))
    idx = np.arange(1, n + 1)
    areas = np.bincount(comp.ravel(), minlength=n + 1)[1:].astype(np.float64)
    centroids = np.asarray(ndi.center_of_mass(mask, comp, idx), dtype=np.float64)
    return comp, areas, centroids.reshape(n, 2)


def _select(
    fg: npt.NDArray[np.bool_], params: SegmentParams
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], int] | None:
    """The spheroid, its debris and the number of comparable bodies; None: none found.

    Bodies are what survives an opening by a disc of ``body_radius``: debris fragments are
    thinner than that and vanish, and so do the debris bridges that join two bodies, which
    plain connected components would count as one.
    """
    h, w = fg.shape
    side = min(h, w)
    r = params.body_radius * side
    # The erosion takes the outside as foreground: a body cut by the border stays a body.
    opened = isotropic_opening(fg, r)
    body_comp, body_areas, body_centres = _components(opened & fg)
    min_body = params.min_spheroid_area * h * w
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    dist = np.hypot(*(body_centres - centre).T) if len(body_areas) else np.zeros(0)
    candidate = (body_areas >= min_body) & (dist <= params.centre_radius * side)
    if not candidate.any():
        return None
    best = int(np.flatnonzero(candidate)[np.argmax(body_areas[candidate])])
    reach = params.debris_spread * side
    near_body = np.hypot(*(body_centres - body_centres[best]).T) <= reach
    comparable = near_body & (
        body_areas >= max(min_body, params.multiple_bodies_ratio * body_areas[best])
    )
    comparable[best] = True
    seeds = np.isin(body_comp, np.flatnonzero(comparable) + 1)

    # The spheroid is the bodies plus the foreground within one opening radius of them:
    # that restores the ragged outline the opening rounded off, while fragments stuck to
    # the body reach further out and stay debris.
    spheroid = isotropic_dilation(seeds, r) & fg
    comp, areas, centres = _components(fg & ~spheroid)
    near = np.hypot(*(centres - body_centres[best]).T) <= reach
    keep = near & (areas >= params.min_debris_area * h * w)
    debris = np.concatenate([[False], keep])[comp]
    return spheroid, debris, int(comparable.sum())


def _focus(work: _Work, params: SegmentParams) -> float:
    """Variance of the Laplacian of Gaussian of the flattened image near the objects."""
    if work.empty_well:
        return math.nan
    region = isotropic_dilation(work.labels > 0, 3.0)
    log_img = ndi.gaussian_laplace(work.flat, params.focus_sigma)
    return float(np.var(log_img[region]))


def _refine(gray: npt.NDArray[np.float32], work: _Work, factor: int) -> npt.NDArray[np.uint8]:
    """The processing-scale labels at full resolution, their outlines re-thresholded.

    The smoothed darkness is interpolated (bilinear, pixel areas aligned) to full
    resolution and thresholded at the low hysteresis level within one processing pixel of
    each object's outline; inside and outside that band the coarse decision stands.
    """
    h, w = gray.shape
    out = np.zeros((h, w), np.uint8)
    if not work.labels.any():
        return out
    ys, xs = np.nonzero(work.labels)
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, work.labels.shape[0])
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, work.labels.shape[1])
    lab = work.labels[y0:y1, x0:x1]
    dark = ndi.zoom(work.darkness[y0:y1, x0:x1], factor, order=1, grid_mode=True, mode="nearest")
    fg = dark >= work.low

    def up(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)

    result = np.zeros(fg.shape, np.uint8)
    for value in (DEBRIS, SPHEROID):
        obj = lab == value
        if not obj.any():
            continue
        inner = up(ndi.binary_erosion(obj, _EIGHT, border_value=1))
        outer = up(ndi.binary_dilation(obj, _EIGHT))
        mask = (fg & outer) | inner
        if value == SPHEROID:
            mask = ndi.binary_fill_holes(mask)
        result[mask] = value
    # The rows and columns the shrink dropped (fewer than ``factor``) repeat the last ones.
    fy0, fx0 = y0 * factor, x0 * factor
    fy1, fx1 = min(fy0 + result.shape[0], h), min(fx0 + result.shape[1], w)
    out[fy0:fy1, fx0:fx1] = result[: fy1 - fy0, : fx1 - fx0]
    if y1 == work.labels.shape[0] and fy1 < h:
        out[fy1:, fx0:fx1] = out[fy1 - 1 : fy1, fx0:fx1]
    if x1 == work.labels.shape[1] and fx1 < w:
        out[:, fx1:] = out[:, fx1 - 1 : fx1]
    return out


def segment_spheroid(image: npt.ArrayLike, params: SegmentParams | None = None) -> SegmentResult:
    """Segment the spheroid and its debris in one bright-field well image.

    Parameters
    ----------
    image : array_like, shape (y, x) or (y, x, 3|4)
        One well: uint8, uint16 or float (RGB is converted to gray). Dark spheroid on a
        light background.
    params : SegmentParams, optional
        Defaults to ``SegmentParams()``.

    Returns
    -------
    SegmentResult
        Labels of shape (y, x) (0 background, 1 spheroid, 2 debris), the focus score and
        the per-image QC flags.

    Raises
    ------
    ParameterError
        Not one 2-D gray or RGB image, too small, or non-finite pixels.
    """
    params = params or SegmentParams()
    gray = to_gray(image)
    h, w = gray.shape
    if min(h, w) < 16:
        raise ParameterError(f"image of shape {gray.shape} is too small to segment (< 16 px)")
    factor = _factor((h, w), params.processing_size)
    work = _segment_work(_block_mean(gray, factor), params)
    labels = _refine(gray, work, factor) if factor > 1 else work.labels
    sph = labels == SPHEROID
    m = params.edge_margin
    touches = bool(sph[:m].any() or sph[-m:].any() or sph[:, :m].any() or sph[:, -m:].any())
    return SegmentResult(
        labels=labels,
        focus_score=_focus(work, params),
        empty_well=work.empty_well,
        touches_edge=touches,
        multiple_bodies=work.multiple_bodies,
    )


def flag_out_of_focus(
    focus_scores: npt.ArrayLike, params: SegmentParams | None = None
) -> npt.NDArray[np.bool_]:
    """Flag the images of one plate whose focus is an outlier below the plate's.

    Focus depends on the optics, the plate and the spheroids, so it has no absolute
    threshold: an image is out of focus when the robust z-score of its log focus score
    (median and MAD of the plate's finite scores) is below ``-params.focus_z``.

    Parameters
    ----------
    focus_scores : array_like of float, shape (image,)
        :attr:`SegmentResult.focus_score` of every image of one plate. NaN (empty wells)
        and non-positive scores are not scored and never flagged.
    params : SegmentParams, optional
        Defaults to ``SegmentParams()``.

    Returns
    -------
    ndarray of bool, shape (image,)
        True where out of focus. Nothing is flagged on a plate of fewer than 3 finite
        scores or one whose scores do not vary.
    """
    params = params or SegmentParams()
    scores = np.asarray(focus_scores, dtype=np.float64).ravel()
    flags = np.zeros(scores.shape, bool)
    ok = np.isfinite(scores) & (scores > 0)
    if ok.sum() < 3:
        log.warning("%d finite focus scores: too few to flag out-of-focus images", ok.sum())
        return flags
    logs = np.log(scores[ok])
    med = np.median(logs)
    spread = _MAD_TO_SIGMA * np.median(np.abs(logs - med))
    if spread <= 0:
        # More than half the scores are equal: the mean deviation still measures the rest.
        spread = 1.2533 * np.mean(np.abs(logs - med))
    if spread <= 0:
        return flags
    flags[ok] = (logs - med) / spread < -params.focus_z
    return flags
