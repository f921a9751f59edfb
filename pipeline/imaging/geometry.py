"""Geometry of objects in images: grayscale, crops, major axes, aligned cutouts.

Pure numpy / scipy / scikit-image functions of one image, used by the galaxy preprocessing and
by the cutouts of mosaic sources alike; they know nothing of either.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.ndimage as ndi
from skimage.color import rgb2gray
from skimage.transform import AffineTransform, warp
from skimage.util import img_as_float

__all__ = ["align_and_cut", "crop", "cutout", "major_axis", "to_gray"]

FloatImage = npt.NDArray[np.float64]


def to_gray(image: npt.NDArray[Any]) -> FloatImage:
    """Grayscale float64 image of a stored image.

    Parameters
    ----------
    image : numpy.ndarray, shape (h, w) or (h, w, c) with c in {1, 3, 4}
        Integers are scaled to [0, 1]; floats are used as they are. RGB(A) is converted
        with :func:`skimage.color.rgb2gray` (alpha dropped).

    Returns
    -------
    numpy.ndarray of float64, shape (h, w)
    """
    img = img_as_float(np.asarray(image))
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[..., 0]
        elif img.shape[2] in (3, 4):
            img = rgb2gray(img[..., :3])
        else:
            raise ValueError(f"expected 1, 3 or 4 channels, got shape {image.shape}")
    elif img.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D image, got shape {image.shape}")
    return np.asarray(img, dtype=np.float64)


def crop(gray: FloatImage, y: float, x: float, half: float) -> FloatImage:
    """The square of half-side ``half`` (px) around ``(y, x)``, clipped to the image."""
    r0, r1 = max(0, round(y - half)), min(gray.shape[0], round(y + half) + 1)
    c0, c1 = max(0, round(x - half)), min(gray.shape[1], round(x + half) + 1)
    return gray[r0:r1, c0:c1]


def major_axis(
    gray: FloatImage, y: float, x: float, radius: float, level: float
) -> tuple[float, float, float, float]:
    """Centroid and major-axis angle of the galaxy around ``(y, x)``.

    Parameters
    ----------
    gray : numpy.ndarray, shape (h, w)
    y, x : float
        Approximate centre (px).
    radius : float
        Blob radius (px); the window searched is 4 radii (at least 12 px) around the centre.
    level : float
        Isophote as a fraction of the peak above sky.

    Returns
    -------
    y, x : float
        Centroid of the galaxy's pixels (px).
    angle_deg : float
        Major axis, degrees in [0, 180), counter-clockwise from +x with y up; NaN when the
        region is too small to measure.
    semi_major : float
        Semi-major axis of the region's equivalent uniform ellipse, ``2 sqrt(l1)`` (px);
        0 when unmeasured.
    """
    half = max(12.0, 4.0 * radius)
    r0, c0 = max(0, int(y - half)), max(0, int(x - half))
    win = gray[r0 : int(y + half) + 1, c0 : int(x + half) + 1]
    if win.size == 0:
        return y, x, math.nan, 0.0
    # Light smoothing so single noise pixels do not decide the isophote's edge.
    smooth = ndi.gaussian_filter(win, 1.0)
    sky = float(np.median(gray[::4, ::4]))
    cy, cx = round(y) - r0, round(x) - c0
    cy, cx = min(max(cy, 0), win.shape[0] - 1), min(max(cx, 0), win.shape[1] - 1)
    core = smooth[max(0, cy - 2) : cy + 3, max(0, cx - 2) : cx + 3]
    peak = float(core.max())
    if peak <= sky:
        return y, x, math.nan, 0.0
    mask = smooth > sky + level * (peak - sky)
    labels, _ = ndi.label(mask)
    target = labels[cy, cx]
    if target == 0:
        # The centre itself is under the isophote (a ring): take the largest region.
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        target = int(sizes.argmax())
        if target == 0:
            return y, x, math.nan, 0.0
    rows, cols = np.nonzero(labels == target)
    if rows.size < 5:
        return y, x, math.nan, 0.0
    my, mx = float(rows.mean()), float(cols.mean())
    # y points up for the angle convention: flip the row offsets.
    dx, du = cols - mx, -(rows - my)
    cxx, cuu, cxu = float(np.mean(dx * dx)), float(np.mean(du * du)), float(np.mean(dx * du))
    angle = 0.5 * math.degrees(math.atan2(2.0 * cxu, cxx - cuu)) % 180.0
    l1 = 0.5 * (cxx + cuu) + math.hypot(0.5 * (cxx - cuu), cxu)
    return my + r0, mx + c0, angle, 2.0 * math.sqrt(l1)


def cutout(
    gray: FloatImage,
    y: float,
    x: float,
    half_width: float,
    angle_deg: float,
    size: int,
    rescale: bool = True,
) -> FloatImage:
    """Square cutout centred on ``(y, x)``, rotated so ``angle_deg`` lies along +x.

    Parameters
    ----------
    gray : numpy.ndarray, shape (h, w)
    y, x : float
        Centre (px).
    half_width : float
        Half the side of the square taken from ``gray`` (px).
    angle_deg : float
        Direction brought to +x (degrees, counter-clockwise, y up); NaN means 0.
    size : int
        Output side (px).
    rescale : bool
        Stretch the result to [0, 1].

    Returns
    -------
    numpy.ndarray of float64, shape (size, size)
    """
    scale = 2.0 * half_width / size  # input px per output px
    src = gray
    if scale > 1.0:
        # Anti-alias before sampling, as skimage.transform.resize does when shrinking.
        src = ndi.gaussian_filter(gray, (scale - 1.0) / 2.0)
    a = 0.0 if math.isnan(angle_deg) else math.radians(angle_deg)
    c = (size - 1) / 2.0
    # Output (col u, row v) -> input: offsets along the major axis (cos a, -sin a) in
    # (col, row) and the minor axis (-sin a, -cos a) (y up), scaled.
    ca, sa = math.cos(a), math.sin(a)
    matrix = np.array(
        [
            [scale * ca, scale * sa, x - scale * (ca * c + sa * c)],
            [-scale * sa, scale * ca, y - scale * (-sa * c + ca * c)],
            [0.0, 0.0, 1.0],
        ]
    )
    out = warp(src, AffineTransform(matrix=matrix), output_shape=(size, size), order=1, cval=0.0)
    out = np.asarray(out, dtype=np.float64)
    if rescale:
        lo, hi = float(out.min()), float(out.max())
        out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return out


def align_and_cut(
    gray: FloatImage,
    y: float,
    x: float,
    radius: float,
    *,
    moment_level: float,
    crop_factor: float,
    size: int,
    rescale: bool = True,
    align: bool = True,
) -> tuple[float, float, float, FloatImage]:
    """Measure the major axis around ``(y, x)`` and cut out the aligned object.

    Parameters
    ----------
    gray : numpy.ndarray, shape (h, w)
    y, x : float
        Blob centre (px).
    radius : float
        Blob radius (px).
    moment_level : float
        Isophote of the axis measurement, fraction of the peak above sky (:func:`major_axis`).
    crop_factor : float
        Half the cutout's side in object radii.
    size : int
        Cutout side (px).
    rescale : bool
        Stretch the cutout to [0, 1].
    align : bool
        Rotate the major axis to +x (else only measure it).

    Returns
    -------
    y, x : float
        The galaxy's centroid (px).
    angle_deg : float
        Its major axis (degrees in [0, 180), counter-clockwise from +x, y up); NaN if
        unmeasurable (the cutout is then not rotated).
    cutout : numpy.ndarray of float64, shape (size, size)
    """
    cy, cx, angle, semi_major = major_axis(gray, y, x, radius, moment_level)
    # The blob radius (the notebook's crop) or, for elongated objects whose blob scale
    # follows the minor axis, the semi-major axis: the cutout holds the whole object.
    half = crop_factor * max(radius, semi_major)
    cut = cutout(gray, cy, cx, half, angle if align else 0.0, size, rescale)
    return cy, cx, angle, cut
