"""Turn stored image batches into the float tensors the encoders take.

Images are stored channels-last (``(n, h, w)`` or ``(n, h, w, c)``) in any real dtype and in
their own units. :func:`to_tensor` makes them ``(n, c, h, w)`` float32 and standardises every
image and channel to mean 0 and standard deviation 1, so the encoder sees the same range
whatever the instrument, exposure or bit depth. :func:`prepare_batch` also resizes to the
encoder's input size; inference feeds the encoder with it, while training feeds it
``augment_batch(to_tensor(...))`` (the random resized crop produces the input size).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pipeline.errors import ParameterError
from pipeline.workflows.embed.models import EncoderConfig

__all__ = ["STD_FLOOR", "prepare_batch", "to_tensor"]

#: Smallest standard deviation divided by: a constant image becomes zeros, never NaN.
STD_FLOOR = 1e-6

# Float64 working memory of :func:`to_tensor` (bytes per block of images).
_BLOCK_BYTES = 32 * 2**20


def to_tensor(batch: npt.ArrayLike, in_channels: int) -> torch.Tensor:
    """Standardise a stored batch into a float32 ``(n, c, h, w)`` tensor.

    Parameters
    ----------
    batch : numpy.ndarray, shape (n, h, w) or (n, h, w, c)
        Grayscale or channels-last images of any real dtype (integers, floats, bool).
    in_channels : int
        Channels the encoder takes. Grayscale input (``(n, h, w)`` or ``c == 1``) is repeated
        to ``in_channels``; otherwise ``c`` must equal ``in_channels``.

    Returns
    -------
    torch.Tensor of float32, shape (n, in_channels, h, w)
        On the CPU. NaN and infinite pixels are set to 0 first; then every image and channel
        is shifted and scaled to mean 0 and standard deviation 1 (population std, floored at
        :data:`STD_FLOOR`, so a constant image becomes all zeros). Statistics are computed in
        float64, so large offsets (e.g. 16-bit data) lose no precision.

    Raises
    ------
    ParameterError
        If ``batch`` is not 3-D or 4-D, is empty along h or w, is not real-valued, or its
        channel count does not fit ``in_channels``.
    """
    arr = np.asarray(batch)
    if in_channels < 1:
        raise ParameterError(
            f"in_channels must be >= 1, got {in_channels}; use the encoder's in_channels"
        )
    if arr.ndim not in (3, 4):
        raise ParameterError(
            f"image batch must have shape (n, h, w) or (n, h, w, c), got shape {arr.shape}; "
            "stack the images along a first axis (a single image needs a leading axis of 1)"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ParameterError(
            f"image batch must hold real numbers, got dtype {arr.dtype}; "
            "convert it (e.g. take the magnitude of complex data) first"
        )
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ParameterError(
            f"images must have at least one pixel, got batch shape {arr.shape}; "
            "drop empty images before embedding"
        )
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    c = arr.shape[3]
    if c not in (1, in_channels):
        hint = (
            "convert the images to grayscale, or use in_channels=3"
            if in_channels == 1
            else f"give images with 1 or {in_channels} channels"
        )
        raise ParameterError(
            f"image batch has {c} channels (shape {arr.shape}) but the encoder takes "
            f"in_channels={in_channels}; {hint}"
        )
    n, h, w = arr.shape[:3]
    out_np: npt.NDArray[np.float32] = np.empty((n, c, h, w), dtype=np.float32)
    # Float64 statistics, a block of images at a time: a whole float64 copy of a large batch
    # (e.g. 256 RGB 424x424 cutouts: 1.1 GB) would be several times the float32 result.
    step = max(1, _BLOCK_BYTES // (8 * h * w * c))
    for start in range(0, n, step):
        x: npt.NDArray[Any] = arr[start : start + step].astype(np.float64)  # a copy: edit it
        x[~np.isfinite(x)] = 0.0
        x -= x.mean(axis=(1, 2), keepdims=True)
        std = np.sqrt(np.mean(x * x, axis=(1, 2), keepdims=True))
        x /= np.maximum(std, STD_FLOOR)
        out_np[start : start + step] = x.transpose(0, 3, 1, 2)
    out = torch.from_numpy(out_np)
    if c != in_channels:
        # Standardise once, then copy: cheaper than standardising the repeated channels.
        out = out.repeat(1, in_channels, 1, 1)
    return out


def prepare_batch(batch: npt.ArrayLike, config: EncoderConfig) -> torch.Tensor:
    """What inference feeds the encoder: :func:`to_tensor`, then resize to the input size.

    Parameters
    ----------
    batch : numpy.ndarray, shape (n, h, w) or (n, h, w, c)
        As :func:`to_tensor` takes.
    config : EncoderConfig
        Gives ``in_channels`` and ``input_size``.

    Returns
    -------
    torch.Tensor of float32, shape (n, in_channels, input_size, input_size)
        On the CPU. Images of another size are resized (non-square ones stretched) with
        antialiased bilinear interpolation (``F.interpolate(mode="bilinear",
        align_corners=False, antialias=True)``); images already of the input size are
        returned as :func:`to_tensor` makes them.

    Raises
    ------
    ParameterError
        As :func:`to_tensor`.
    """
    x = to_tensor(batch, config.in_channels)
    size = config.input_size
    if x.shape[2:] == (size, size):
        return x
    if x.shape[0] == 0:
        return x.new_zeros((0, x.shape[1], size, size))
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    ).contiguous()
