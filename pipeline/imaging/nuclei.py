"""Nuclei instances from a foreground mask, and the classical segmentation baseline.

:func:`split_touching` turns a binary mask into instance labels the way microscopists do
without a network: connected components, then a watershed of the distance transform that
cuts touching nuclei apart at their neck (markers: the distance's h-maxima, so shallow
necks and flat tops do not over-split). The network's mask goes through it too, so the
network and the baseline are compared on the same instance step.

:func:`otsu_nuclei` is the baseline itself (Otsu's threshold on the smoothed image, small
objects removed, then :func:`split_touching`), all scikit-image.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.ndimage as ndi
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

__all__ = ["otsu_nuclei", "split_touching"]

Labels = npt.NDArray[np.uint32]


def split_touching(
    mask: npt.ArrayLike, *, h: float = 1.0, min_size: int = 8, connectivity: int = 1
) -> Labels:
    """Instance labels of a binary mask, touching objects split by a distance watershed.

    Parameters
    ----------
    mask : array_like of bool, shape (y, x)
        Foreground.
    h : float, default 1.0
        Depth (px of distance to the background) a neck must have to cut two objects: the
        markers are the distance map's h-maxima, so a peak less than ``h`` above the saddle
        joining it to a higher one, or a flat top (a square's centre), is one marker.
    min_size : int, default 8
        Objects of fewer pixels are dropped (noise, not nuclei).
    connectivity : {1, 2}
        Pixel neighbourhood of a component and of the watershed.

    Returns
    -------
    numpy.ndarray of uint32, shape (y, x)
        0 background, 1..n objects numbered in raster order of their first pixel.
    """
    fg = np.asarray(mask, dtype=bool)
    components = label(fg, connectivity=connectivity)
    if min_size > 1 and components.max() > 0:
        # By component size directly: remove_small_objects changed its keyword in 0.26.
        small = np.bincount(components.ravel()) < min_size
        small[0] = False
        fg = fg & ~small[components]
    if not fg.any():
        return np.zeros(fg.shape, dtype=np.uint32)
    distance = ndi.distance_transform_edt(fg)
    # Every component holds a regional maximum, so every one gets at least one marker.
    markers = label(h_maxima(distance, h) & fg, connectivity=2)
    split = watershed(-distance, markers, mask=fg, connectivity=connectivity)
    # Renumbered in raster order, so the result does not depend on the markers' order.
    return _raster(split)


def _raster(labels: npt.NDArray[np.integer]) -> Labels:
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    keep = values > 0
    order = values[keep][np.argsort(first[keep])]
    lut = np.zeros(int(values.max()) + 1, dtype=np.uint32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    return lut[labels]


def otsu_nuclei(
    image: npt.ArrayLike,
    *,
    sigma: float = 1.0,
    h: float = 1.0,
    min_size: int = 8,
) -> Labels:
    """The classical baseline: Otsu threshold + distance-transform watershed.

    Parameters
    ----------
    image : array_like, shape (y, x) or (y, x, channel)
        Fluorescence (nuclei bright); channels are averaged.
    sigma : float, default 1.0
        Gaussian smoothing (px) before the threshold, against pixel noise.
    h, min_size
        As :func:`split_touching`.

    Returns
    -------
    numpy.ndarray of uint32, shape (y, x)
        Instance labels (0 background).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    smooth = gaussian(img, sigma=sigma, preserve_range=True) if sigma > 0 else img
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(img.shape, dtype=np.uint32)
    return split_touching(smooth > threshold_otsu(smooth), h=h, min_size=min_size)
