"""Making every image of a collection the same shape and channel layout.

Pure per-image functions used inside the ingest's chunk tasks; the policies themselves are
chosen in the ingest parameters (``mode``: gray / rgb / keep; ``shape_policy``: error /
quarantine / resize / pad).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skimage.color import rgb2gray
from skimage.transform import resize

from pipeline.io.spec import ModePolicy

__all__ = ["convert_mode", "fit_shape", "target_channels"]


def target_channels(mode: ModePolicy, channels: int) -> int:
    """Channels an image of ``channels`` channels has after :func:`convert_mode`."""
    return {"gray": 1, "rgb": 3}.get(mode, channels)


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def convert_mode(image: np.ndarray, mode: ModePolicy) -> np.ndarray:
    """Convert an image to grayscale or RGB, or leave it as it is.

    Parameters
    ----------
    image : numpy.ndarray
        ``(y, x)`` or ``(y, x, channel)`` with 1, 3 or 4 channels.
    mode : {"keep", "gray", "rgb"}
        ``gray`` uses luminance weights (``skimage.color.rgb2gray``) and drops alpha; ``rgb``
        repeats a gray plane three times and drops alpha.

    Returns
    -------
    numpy.ndarray
        Same dtype as ``image``; ``(y, x)`` for gray, ``(y, x, 3)`` for rgb.
    """
    if mode == "keep":
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if mode == "gray":
        if image.ndim == 2:
            return image
        rgb = image[..., :3]
        if np.issubdtype(image.dtype, np.integer):
            # rgb2gray works in [0, 1]; scale back to the integer range, rounding.
            scale = float(np.iinfo(image.dtype).max)
            return _cast_like(rgb2gray(rgb / scale) * scale, image.dtype)
        return _cast_like(rgb2gray(rgb), image.dtype)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def fit_shape(
    image: np.ndarray, height: int, width: int, policy: Literal["resize", "pad"]
) -> np.ndarray:
    """Bring an image to ``(height, width)``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(y, x)`` or ``(y, x, channel)``.
    height, width : int
        Target size in pixels.
    policy : {"resize", "pad"}
        ``resize``: bilinear with anti-aliasing (``skimage.transform.resize``), rounded back to
        the dtype. ``pad``: centred on a zero background; the caller guarantees the image is
        not larger than the target.

    Returns
    -------
    numpy.ndarray
        ``(height, width[, channel])`` in the dtype of ``image``.
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if policy == "resize":
        out = resize(
            image,
            (height, width, *image.shape[2:]),
            order=1,
            preserve_range=True,
            anti_aliasing=True,
        )
        return _cast_like(out, image.dtype)
    if h > height or w > width:
        raise ValueError(f"image of {h}x{w} is larger than the pad target {height}x{width}")
    out = np.zeros((height, width, *image.shape[2:]), dtype=image.dtype)
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = image
    return out
