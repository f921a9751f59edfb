"""What the segmenter sees: images scaled to ``[0, 1]``, the seeded split, training patches and
their augmentations, and validation batches padded to the pooling grid.

Intensities are scaled by the input's type (8-bit by 255, 16-bit by 65535, floats as they
are), never per image or per tile: a tile of a slide must see the values the whole slide has,
so tiled inference can equal whole-image inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import torch

from pipeline.errors import ParameterError
from pipeline.workflows.nuclei.model import DOWNSAMPLE
from pipeline.workflows.nuclei.spec import NucleiAugment

__all__ = [
    "SPLITS",
    "augment_pairs",
    "pad_to_grid",
    "random_patches",
    "split_rows",
    "to_channels",
    "unit_scale",
]

#: The split names, in the order of ``split``'s fractions.
SPLITS = ("train", "validation", "test")


def unit_scale(dtype: npt.DTypeLike) -> float:
    """The factor that maps values of ``dtype`` to ``[0, 1]``: 1 / the integer type's maximum
    (e.g. 1 / 255 for uint8), 1 for floats (taken to be in ``[0, 1]`` already)."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return 1.0
    if np.issubdtype(dt, np.integer):
        return 1.0 / float(np.iinfo(dt).max)
    return 1.0


def to_channels(images: np.ndarray, in_channels: int, scale: float) -> np.ndarray:
    """Images ``(n, y, x)`` or ``(n, y, x, c)`` -> float32 ``(n, in_channels, y, x)`` in [0, 1].

    A grey image given to a 3-channel network is repeated; RGB to a 1-channel one averaged.
    """
    x = np.asarray(images, dtype=np.float32) * np.float32(scale)
    x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
    if x.shape[1] != in_channels:
        x = (
            np.repeat(x, in_channels, axis=1)
            if x.shape[1] == 1
            else x.mean(axis=1, keepdims=True, dtype=np.float32)
        )
    return np.ascontiguousarray(x)


def split_rows(n: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """A seeded train / validation / test split of ``n`` images.

    Parameters
    ----------
    n : int
        Images (>= 2: training and validation need one each).
    fractions : (float, float, float)
        Train, validation and test fractions (summing to 1).
    seed : int

    Returns
    -------
    numpy.ndarray of int8, shape (n,)
        0 train, 1 validation, 2 test (indices into :data:`SPLITS`). Validation and test get
        ``round(fraction * n)`` images (validation at least 1), training the rest.

    Raises
    ------
    ParameterError
        If ``n`` is too small for a training and a validation image.
    """
    if n < 2:
        raise ParameterError(
            f"train_segmenter: {n} image(s) with masks; training needs at least 2 (one to "
            "train on, one to validate), 5 or more for a test split too"
        )
    n_val = max(1, round(fractions[1] * n))
    n_test = round(fractions[2] * n)
    if n - n_val - n_test < 1:
        n_test = n - n_val - 1
    order = np.random.default_rng(np.random.SeedSequence([seed, 2002])).permutation(n)
    out = np.zeros(n, dtype=np.int8)
    out[order[n - n_val - n_test : n - n_test]] = 1
    out[order[n - n_test :]] = 2
    return out


def random_patches(pairs: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random ``size`` x ``size`` patch of each image (zero-padded where smaller).

    Parameters
    ----------
    pairs : ndarray, shape (n, c + 1, y, x)
        Images with their mask as the last channel.
    size : int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n, c + 1, size, size)
    """
    n, c, h, w = pairs.shape
    out = np.zeros((n, c, size, size), dtype=pairs.dtype)
    for i in range(n):
        y0 = int(rng.integers(0, h - size + 1)) if h > size else 0
        x0 = int(rng.integers(0, w - size + 1)) if w > size else 0
        crop = pairs[i, :, y0 : y0 + size, x0 : x0 + size]
        out[i, :, : crop.shape[1], : crop.shape[2]] = crop
    return out


def augment_pairs(
    batch: torch.Tensor, augment: NucleiAugment, gen: torch.Generator
) -> torch.Tensor:
    """Flip, rotate and change the intensity of a batch of image/mask pairs.

    Parameters
    ----------
    batch : Tensor, shape (n, c + 1, s, s)
        Images with their mask as the last channel (square: rotations keep the shape).
    augment : NucleiAugment
    gen : torch.Generator
        CPU generator every draw comes from (seed it per epoch for reproducible epochs).

    Returns
    -------
    Tensor, shape (n, c + 1, s, s)
        Geometry applied to image and mask alike; brightness and contrast to the image only
        (clipped to [0, 1]).
    """
    n = batch.shape[0]
    out = batch.clone()
    if augment.flips:
        h = torch.rand(n, generator=gen) < 0.5
        v = torch.rand(n, generator=gen) < 0.5
        out[h] = out[h].flip(-1)
        out[v] = out[v].flip(-2)
    if augment.rot90:
        k = torch.randint(0, 4, (n,), generator=gen)
        for turns in (1, 2, 3):
            sel = k == turns
            if sel.any():
                out[sel] = torch.rot90(out[sel], turns, dims=(-2, -1))
    image = out[:, :-1]
    if augment.contrast > 0:
        factor = 1 + (torch.rand(n, generator=gen) * 2 - 1) * augment.contrast
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image = (image - mean) * factor.view(n, 1, 1, 1).to(image) + mean
    if augment.brightness > 0:
        shift = (torch.rand(n, generator=gen) * 2 - 1) * augment.brightness
        image = image + shift.view(n, 1, 1, 1).to(image)
    out[:, :-1] = image.clamp(0, 1)
    return out


def pad_to_grid(x: np.ndarray, grid: int = DOWNSAMPLE) -> np.ndarray:
    """Zero-pad the last two axes at the end to multiples of ``grid``."""
    h, w = x.shape[-2:]
    ph, pw = math.ceil(h / grid) * grid - h, math.ceil(w / grid) * grid - w
    if not (ph or pw):
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad)


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches of ``size`` over ``n`` items."""
    for s in range(0, n, size):
        yield s, min(n, s + size)
