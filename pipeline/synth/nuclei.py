"""Synthetic fluorescence nuclei with known instance truth.

The Multi-ResUNet report (seed 002) segments nuclei in the 2018 Data Science Bowl (DSB)
images: 2D fluorescence (and some bright-field) images of stained nuclei, each with one
mask per nucleus. Those images cannot be shipped with the project, so training,
evaluation and tiled-inference tests use these instead: DSB-like fluorescence images in
its flat-pair layout (``images/<id>.png`` beside ``masks/<id>.png``), every nucleus with
its own label, and optionally one huge tiled field.

Image model (lengths in px, intensities as fractions of full scale):

* **Nuclei**: ellipses of equivalent radius ``r`` (log-uniform in
  :attr:`NucleiSynthParams.radius_px`), axis ratio ``q`` and uniform orientation, whose
  boundary is modulated by low-order radial harmonics (``k = 2..4``). A nucleus is the set
  ``rho < 1`` of its gauge ``rho = r_n / R(phi)``, where ``r_n`` is the elliptical radius
  and ``R(phi)`` the harmonic boundary: ``rho`` grows linearly along every ray from the
  centre and is 1 on the boundary. Its light is ``brightness * (1 - dome * rho^2)``
  times a smoothstep soft edge of :attr:`~NucleiSynthParams.edge_width_px` centred on
  the boundary; overlapping nuclei show the brighter of their lights (a maximum, so the
  result does not depend on the order they are drawn in). Chromatin-like texture
  (white noise smoothed by a Gaussian of ``texture_scale_px``, a fixed field over the
  image) multiplies the light.
* **Sizes at scale**: about 100 nuclei in a 256 px image, about 80,000 in an 8192 px
  field (rendered in about 20 s on one core, in about 300 MB).
* **Placement**: nuclei come in groups: single nuclei and touching clusters (about
  :attr:`~NucleiSynthParams.cluster_fraction` of the nuclei). A single nucleus, or the
  first of a cluster, is placed by rejection sampling clear of every other nucleus (its
  bounding circle keeps :attr:`~NucleiSynthParams.min_gap_px` from every other's); each
  further member of a cluster is placed against an earlier member, overlapping it
  slightly, and clear of every nucleus outside its cluster. A nucleus that finds no spot
  in :attr:`~NucleiSynthParams.placement_tries` tries is left out.
* **Instance truth**: a pixel inside two nuclei belongs to the one with the smaller gauge
  ``rho`` there (the one it lies relatively deeper in; the split line of two equal circles
  is their bisector), ties to the earlier nucleus. Placement makes every nucleus own the
  pixel at its centre, so the labels ``1..n`` of an image are all present. Labels are
  drawn before any blur.
* **Optics**: a Gaussian PSF blurs the light; an uneven illumination (a linear gradient
  and quadratic vignetting, drawn per image) multiplies light plus background offset;
  shot noise (the Gaussian approximation of Poisson noise) and read noise are added; the
  result is clipped to ``[0, 1]`` and quantised (uint8 PNG, or uint16 in the large field).

Coordinates: ``x`` is the column and ``y`` the row index of a pixel centre (as in
:mod:`pipeline.synth.galaxies`), ``image[round(y), round(x)]``.

Seamless tiles: the nuclei of an image are drawn first (its *catalogue*); then any
rectangle of it is rendered from the nuclei whose stamps reach into it, with margins for
the texture and PSF blurs, and texture and noise drawn from fixed 128 px cells, each
with its own seeded generator. So a tile's pixels and labels equal those of the same
rectangle rendered in one piece, bit for bit, whatever the tile size; the large field is
rendered tile by tile in bounded memory.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.synth.nuclei_params import (
    _HARMONICS,
    NUCLEI_MASK_FORMATS,
    NUCLEI_TRUTH_COLUMNS,
    NucleiSynthParams,
    RenderedNuclei,
    _Catalogue,
    _draw_catalogue,
)

__all__ = [
    "NUCLEI_MASK_FORMATS",
    "NUCLEI_TRUTH_COLUMNS",
    "NucleiSynthParams",
    "RenderedNuclei",
    "generate_nuclei",
    "load_nuclei_truth",
    "render_nuclei",
]

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
UInt32Array = npt.NDArray[np.uint32]
Float32Array = npt.NDArray[np.float32]

MIN_SIZE: Final = 64
MIN_LARGE: Final = 256
MIN_TILE: Final = 64
# TIFF requires tile widths and heights that are multiples of 16.
_TIFF_TILE_MULTIPLE: Final = 16
_PNG_LABEL_MAX: Final = 65535
# Texture and noise come from cells of this side, each with its own seeded generator, so
# a pixel's random values do not depend on how the image is cut into tiles.
_CELL: Final = 128
# Largest number of pixels of nucleus stamps evaluated in one vectorised batch (about
# 2 MiB per float32 temporary).
_BATCH_PIXELS: Final = 1 << 19
_ZLIB_LEVEL: Final = 6
_TRUNCATE: Final = 4.0  # scipy.ndimage.gaussian_filter's default truncation, in sigmas

# Seed-sequence spawn keys: (purpose, group, index, ...); purpose 0 is the catalogue
# (nuclei_params._CATALOGUE_KEY). Group 0: the images (index i), group 1: the large field.
_TEXTURE_KEY: Final = 1
_NOISE_KEY: Final = 2
_IMAGE_GROUP: Final = 0
_FIELD_GROUP: Final = 1


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: object, minimum: int, hint: str = "") -> int:
    # bool is an int subclass, but True as a size or seed is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}{hint}")
    return int(value)


def _check_params(params: object) -> NucleiSynthParams:
    if params is None:
        return NucleiSynthParams()
    if not isinstance(params, NucleiSynthParams):
        raise TypeError(f"params must be a NucleiSynthParams or None, got {type(params).__name__}")
    return params


def _check_channels(channels: object) -> int:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey PNG) or 3 (RGB PNG), got {channels!r}")
    return int(channels)


# --------------------------------------------------------------------------- rendering

# rho bits all ones (above every rho < 1) and label 0.
_NO_OWNER: Final = np.uint64(0xFFFFFFFF00000000)


def _zigzag(k: int) -> int:
    # Spawn keys must be non-negative; cells left of or above the image (blur margins)
    # have negative indices.
    return 2 * k if k >= 0 else -2 * k - 1


def _cell_field(
    seed: int, key: tuple[int, ...], r0: int, r1: int, c0: int, c1: int, *, normal: bool
) -> Float32Array:
    """Rows ``r0:r1``, columns ``c0:c1`` of a fixed field of unit-variance noise, each
    cell from its own generator: standard normal, or (``normal=False``) uniform on
    ``[-sqrt 3, sqrt 3]``, four times cheaper to draw and as good once smoothed."""
    out = np.empty((r1 - r0, c1 - c0), dtype=np.float32)
    for cy in range(r0 // _CELL, (r1 - 1) // _CELL + 1):
        y0 = cy * _CELL
        ya, yb = max(r0, y0), min(r1, y0 + _CELL)
        for cx in range(c0 // _CELL, (c1 - 1) // _CELL + 1):
            x0 = cx * _CELL
            xa, xb = max(c0, x0), min(c1, x0 + _CELL)
            spawn = (*key, _zigzag(cy), _zigzag(cx))
            cell = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn))
            if normal:
                values = cell.standard_normal((_CELL, _CELL), dtype=np.float32)
            else:
                values = cell.random((_CELL, _CELL), dtype=np.float32) - np.float32(0.5)
                values *= np.float32(math.sqrt(12.0))
            out[ya - r0 : yb - r0, xa - c0 : xb - c0] = values[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


def _blur_radius(sigma: float) -> int:
    # The kernel radius scipy.ndimage.gaussian_filter uses.
    return int(_TRUNCATE * sigma + 0.5)


def _smoothed_noise_sd(sigma: float) -> float:
    """Standard deviation of unit white noise after scipy's 2D Gaussian filter."""
    radius = _blur_radius(sigma)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    w /= w.sum()
    # Separable kernel: the sum of the squared 2D weights is (sum w^2)^2.
    return float(np.sum(w * w))


def _stamp_batch(
    cat: _Catalogue,
    idx: IntArray,
    side: int,
    region: tuple[int, int, int, int],
    params: NucleiSynthParams,
    signal: Float32Array,
    owner: npt.NDArray[np.uint64],
) -> None:
    """Add the nuclei ``idx`` (stamps of ``side`` px) to the flat region buffers.

    Every value is a function of the pixel's global position and the nucleus alone
    (elementwise IEEE arithmetic, no transcendental functions whose SIMD and scalar paths
    could differ), and the buffers combine them by maximum (light) and minimum (ownership
    keys), so the result does not depend on how nuclei are batched or the image tiled.
    """
    r0, r1, c0, c1 = region
    steps = np.arange(side, dtype=np.int64)
    rows = cat.bbox[idx, 0][:, None] + steps  # (n, side)
    cols = cat.bbox[idx, 1][:, None] + steps
    dy_rows = (rows - cat.y[idx][:, None]).astype(np.float32)
    dx_cols = (cols - cat.x[idx][:, None]).astype(np.float32)
    r2 = dy_rows[:, :, None] ** 2 + dx_cols[:, None, :] ** 2
    # Only pixels within the nucleus's reach plus its soft edge: about half the stamp.
    within = r2 <= cat.stamp_r2[idx][:, None, None]
    within &= ((rows >= r0) & (rows < r1))[:, :, None]
    within &= ((cols >= c0) & (cols < c1))[:, None, :]
    k, i, j = np.nonzero(within)
    flat = (rows[k, i] - r0) * (c1 - c0) + (cols[k, j] - c0)
    nucleus = idx[k]
    dy, dx, r2 = dy_rows[k, i], dx_cols[k, j], r2[k, i, j]

    ct, st = cat.cos_t[nucleus], cat.sin_t[nucleus]
    p = (dx * ct + dy * st) / cat.a[nucleus]
    q = (dy * ct - dx * st) / cat.b[nucleus]
    rn = np.sqrt(p * p + q * q)
    positive = rn > 0.0
    safe = np.where(positive, rn, np.float32(1.0))
    cos1, sin1 = p / safe, q / safe
    ck, sk = cos1, sin1
    boundary = np.ones_like(rn)
    for h in range(len(_HARMONICS)):
        # cos and sin of (h + 2) phi from those of (h + 1) phi.
        ck, sk = ck * cos1 - sk * sin1, sk * cos1 + ck * sin1
        boundary += cat.harm_c[nucleus, h] * ck + cat.harm_s[nucleus, h] * sk
    rho = rn / boundary
    # Distance to the boundary along the ray from the centre, in px (positive inside).
    px_per_unit = np.where(positive, np.sqrt(r2) / safe, cat.b[nucleus])
    depth = px_per_unit * (boundary - rn)
    t = np.clip(0.5 + depth / params.edge_width_px, 0.0, 1.0)
    dome = 1.0 - params.dome * np.minimum(rho, 1.0) ** 2
    light = cat.brightness[nucleus] * (t * t * (3.0 - 2.0 * t)) * dome

    lit = light > 0.0
    np.maximum.at(signal, flat[lit], light[lit])
    inside = rho < 1.0
    # Ownership key: rho's float32 bits (ordered as the non-negative floats) in the high
    # word, the label in the low word; the smallest key wins, ties to the smaller label.
    rho_bits = rho[inside].view(np.uint32).astype(np.uint64)
    labels = (nucleus[inside] + 1).astype(np.uint64)
    np.minimum.at(owner, flat[inside], (rho_bits << np.uint64(32)) | labels)


def _illumination(cat: _Catalogue, r0: int, r1: int, c0: int, c1: int) -> Float32Array:
    w = np.arange(r0, r1, dtype=np.float64) / max(cat.height - 1, 1) - 0.5
    u = np.arange(c0, c1, dtype=np.float64) / max(cat.width - 1, 1) - 0.5
    g, phi, vig = cat.gradient, cat.gradient_angle, cat.vignetting
    # Quadratic loss reaching `vignetting` at the corners, where u^2 + w^2 = 1/2.
    along_rows = g * math.sin(phi) * w - 2.0 * vig * w * w
    along_cols = g * math.cos(phi) * u - 2.0 * vig * u * u
    return (1.0 + (along_rows[:, None] + along_cols[None, :])).astype(np.float32)


def _render_tile(
    cat: _Catalogue,
    seed: int,
    key: tuple[int, int],
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    params: NucleiSynthParams,
) -> tuple[Float32Array, UInt32Array]:
    """Render rows ``r0:r1``, columns ``c0:c1`` of an image.

    Returns
    -------
    values : numpy.ndarray of float32, shape (r1 - r0, c1 - c0)
        Intensities in ``[0, 1]`` (before quantisation).
    labels : numpy.ndarray of uint32, shape (r1 - r0 + 1, c1 - c0 + 1)
        Labels of rows ``r0:r1 + 1`` and columns ``c0:c1 + 1`` (one more row and column,
        possibly beyond the image, for adjacency across the tile's far faces).
    """
    from scipy import ndimage

    # Light is rendered on the tile plus the PSF's reach (and at least the one extra
    # row and column of labels), beyond the image border too: the image is a window on
    # a larger scene.
    m = max(1, _blur_radius(params.psf_sigma_px))
    region = (r0 - m, r1 + m, c0 - m, c1 + m)
    height, width = r1 - r0 + 2 * m, c1 - c0 + 2 * m
    signal = np.zeros(height * width, dtype=np.float32)
    owner = np.full(height * width, _NO_OWNER, dtype=np.uint64)
    first_row, first_col, side = cat.bbox[:, 0], cat.bbox[:, 1], cat.stamp
    hit = np.flatnonzero(
        (first_row < region[1])
        & (first_row + side > region[0])
        & (first_col < region[3])
        & (first_col + side > region[2])
    )
    sides = side[hit]
    for s in np.unique(sides).tolist():
        members = hit[sides == s]
        step = max(1, _BATCH_PIXELS // (s * s))
        for start in range(0, len(members), step):
            _stamp_batch(cat, members[start : start + step], s, region, params, signal, owner)
    # The no-owner key holds label 0 in its low word.
    labels = (owner & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    labels = labels.reshape(height, width)[m : m + r1 - r0 + 1, m : m + c1 - c0 + 1]

    light = signal.reshape(height, width)
    mt = _blur_radius(params.texture_scale_px)
    noise = _cell_field(
        seed,
        (_TEXTURE_KEY, *key),
        region[0] - mt,
        region[1] + mt,
        region[2] - mt,
        region[3] + mt,
        normal=False,
    )
    texture = ndimage.gaussian_filter(noise, params.texture_scale_px, truncate=_TRUNCATE)
    texture = texture[mt : mt + height, mt : mt + width]
    scale = params.texture_amplitude / _smoothed_noise_sd(params.texture_scale_px)
    texture *= np.float32(scale)
    texture += np.float32(1.0)
    light *= np.maximum(texture, np.float32(0.0))
    blurred = ndimage.gaussian_filter(light, params.psf_sigma_px, truncate=_TRUNCATE)
    blurred = blurred[m : m + r1 - r0, m : m + c1 - c0]

    # Float32 throughout: ample for counts quantised to 16 bits, half the memory traffic.
    values = _illumination(cat, r0, r1, c0, c1)
    values *= blurred + np.float32(cat.offset)
    sd = np.maximum(values, np.float32(0.0))
    sd *= np.float32(1.0 / params.full_scale_photons)
    sd += np.float32(params.read_noise**2)
    np.sqrt(sd, out=sd)
    sd *= _cell_field(seed, (_NOISE_KEY, *key), r0, r1, c0, c1, normal=True)
    values += sd
    np.clip(values, 0.0, 1.0, out=values)
    return values, labels


# --------------------------------------------------------------------------- truth


class _Truth:
    """Per-label sums over rendered tiles, from which the truth table is derived."""

    def __init__(self, cat: _Catalogue) -> None:
        self.cat = cat
        n1 = cat.n + 1
        # count, sum dy, sum dx, sum dy^2, sum dx^2, sum dy dx, sum of written values
        # (over channels), with dy, dx from the pixel holding the drawn centre: integers,
        # summed exactly in float64 in any order, so the truth of a field is the same
        # whatever its tiles, and moments keep their precision far from the origin.
        self.sums = np.zeros((7, n1), dtype=np.float64)
        self.touching = np.zeros(n1, dtype=bool)
        self.channels = 1
        self.anchor_y = np.concatenate([[0], np.floor(cat.y).astype(np.int64)])
        self.anchor_x = np.concatenate([[0], np.floor(cat.x).astype(np.int64)])

    def add(self, labels: UInt32Array, values: npt.NDArray[np.generic], r0: int, c0: int) -> None:
        """Add a tile: ``labels`` (h, w) and written ``values`` (h, w) or (h, w, channels)."""
        flat = labels.ravel()
        nz = np.flatnonzero(flat)
        lab = flat[nz].astype(np.intp)
        rr, cc = np.divmod(nz, labels.shape[1])
        dy = (rr + r0 - self.anchor_y[lab]).astype(np.float64)
        dx = (cc + c0 - self.anchor_x[lab]).astype(np.float64)
        per_pixel = values.reshape(flat.size, -1)
        self.channels = per_pixel.shape[1]
        intensity = per_pixel[nz].sum(axis=1, dtype=np.int64).astype(np.float64)
        n1 = self.sums.shape[1]
        for row, weights in enumerate((None, dy, dx, dy * dy, dx * dx, dy * dx, intensity)):
            self.sums[row] += np.bincount(lab, weights=weights, minlength=n1)

    def touch(self, labels: UInt32Array) -> None:
        """Mark labels 4-adjacent to another label within ``labels``."""
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
            pair = (a != b) & (a > 0) & (b > 0)
            self.touching[a[pair]] = True
            self.touching[b[pair]] = True

    def frame(self, image_id: str) -> pd.DataFrame:
        count, sdy, sdx, syy, sxx, sxy, sv = self.sums[:, 1:]
        area = np.maximum(count, 1.0)
        my, mx = sdy / area, sdx / area
        var_r = np.maximum(syy / area - my * my, 0.0)
        var_c = np.maximum(sxx / area - mx * mx, 0.0)
        cov = sxy / area - my * mx
        mean = 0.5 * (var_r + var_c)
        root = np.sqrt((0.5 * (var_r - var_c)) ** 2 + cov * cov)
        # As skimage.measure.regionprops: axes 4 sqrt(eigenvalue) of the covariance,
        # orientation the angle between the row axis and the major axis.
        diff = var_r - var_c
        orientation = np.where(
            diff == 0.0,
            np.where(cov > 0.0, math.pi / 4.0, -math.pi / 4.0),
            0.5 * np.arctan2(2.0 * cov, diff),
        )
        n = self.cat.n
        return pd.DataFrame(
            {
                "image_id": [image_id] * n,
                "label": np.arange(1, n + 1, dtype=np.int64),
                "y": self.anchor_y[1:] + my,
                "x": self.anchor_x[1:] + mx,
                "area": count.astype(np.int64),
                "equivalent_radius": np.sqrt(count / math.pi),
                "major_axis": 4.0 * np.sqrt(mean + root),
                "minor_axis": 4.0 * np.sqrt(np.maximum(mean - root, 0.0)),
                "orientation": orientation,
                "mean_intensity": sv / (area * self.channels),
                "cluster_id": self.cat.cluster,
                "touching": self.touching[1:],
            },
            columns=list(NUCLEI_TRUTH_COLUMNS),
        )


# --------------------------------------------------------------------------- images


def _quantise_image(values: Float32Array, cat: _Catalogue, channels: int) -> npt.NDArray[np.uint8]:
    if channels == 3:
        # DSB stores its grey fluorescence images as RGB(A); a mild per-image tint keeps
        # a reader from assuming the channels are equal.
        rgb = values[:, :, None] * cat.tint[None, None, :]
        return np.rint(rgb * 255.0).astype(np.uint8)
    return np.rint(values * 255.0).astype(np.uint8)


def _render_image(
    seed: int, index: int, size: int, channels: int, params: NucleiSynthParams
) -> tuple[npt.NDArray[np.uint8], UInt32Array, pd.DataFrame, str]:
    cat = _draw_catalogue(seed, _IMAGE_GROUP, index, size, size, params)
    values, labels_ext = _render_tile(cat, seed, (_IMAGE_GROUP, index), 0, size, 0, size, params)
    labels = np.ascontiguousarray(labels_ext[:size, :size])
    image = _quantise_image(values, cat, channels)
    truth = _Truth(cat)
    truth.add(labels, image, 0, 0)
    truth.touch(labels)
    image_id = f"nuclei_{index:04d}"
    return image, labels, truth.frame(image_id), image_id


def render_nuclei(
    seed: int,
    *,
    index: int = 0,
    size: int = 256,
    channels: int = 1,
    params: NucleiSynthParams | None = None,
) -> RenderedNuclei:
    """Render one synthetic fluorescence nuclei image in memory, with its truth.

    Parameters
    ----------
    seed : int
        Non-negative seed.
    index : int, default 0
        Image number: ``render_nuclei(seed, index=i)`` is image ``i`` (``nuclei_000i``) of
        :func:`generate_nuclei` with the same seed, size, channels and params.
    size : int, default 256
        Image side in px, at least 64.
    channels : {1, 3}
        Grey, or RGB (grey times a mild per-image tint).
    params : NucleiSynthParams, optional
        Generator parameters; defaults to ``NucleiSynthParams()``.

    Returns
    -------
    RenderedNuclei
        ``image`` (uint8, (size, size) or (size, size, 3)), ``labels`` (uint32, (size,
        size), 0 background, 1..n) and ``truth`` (columns :data:`NUCLEI_TRUTH_COLUMNS`, see
        :func:`generate_nuclei`; ``image_id`` ``"nuclei_<index>"``).

    Raises
    ------
    ValueError
        If an argument is out of range (the message names it).
    """
    seed = _check_int("seed", seed, 0)
    index = _check_int("index", index, 0)
    size = _check_int("size", size, MIN_SIZE, " (the image side in px)")
    channels = _check_channels(channels)
    params = _check_params(params)
    image, labels, truth, _ = _render_image(seed, index, size, channels, params)
    return RenderedNuclei(image=image, labels=labels, truth=truth)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    # PIL writes no time stamp into a PNG, so the same pixels give the same bytes.
    Image.fromarray(array).save(path, format="PNG")


def _mask_array(labels: UInt32Array, mask_format: str) -> np.ndarray:
    if mask_format == "binary":
        return np.where(labels > 0, 255, 0).astype(np.uint8)
    return labels.astype(np.uint16)


# --------------------------------------------------------------------------- large field


def _field_tiles(
    cat: _Catalogue,
    seed: int,
    tile: int,
    params: NucleiSynthParams,
    truth: _Truth,
    label_tiles: list[bytes],
    progress: Callable[[], None],
) -> Iterator[npt.NDArray[np.uint16]]:
    """Render the field tile by tile in TIFF tile order, yielding uint16 tiles; the zlib-
    encoded label tiles (zero-padded to ``tile x tile``) go to ``label_tiles``."""
    height, width = cat.height, cat.width
    for r0 in range(0, height, tile):
        r1 = min(height, r0 + tile)
        for c0 in range(0, width, tile):
            c1 = min(width, c0 + tile)
            values, labels_ext = _render_tile(cat, seed, (_FIELD_GROUP, 0), r0, r1, c0, c1, params)
            pixels = np.rint(values * 65535.0).astype(np.uint16)
            labels = labels_ext[: r1 - r0, : c1 - c0]
            truth.add(labels, pixels, r0, c0)
            # The extra row and column reach into the next tiles (within the image), so
            # nuclei touching across a tile face are found.
            truth.touch(labels_ext[: min(r1 + 1, height) - r0, : min(c1 + 1, width) - c0])
            padded = np.zeros((tile, tile), dtype=np.uint32)
            padded[: r1 - r0, : c1 - c0] = labels
            label_tiles.append(zlib.compress(padded.tobytes(), _ZLIB_LEVEL))
            # Before the yield: the writer stops at the last tile without resuming.
            progress()
            yield pixels


def _write_field(
    folder: Path,
    side: int,
    seed: int,
    tile: int,
    params: NucleiSynthParams,
    progress: Callable[[], None],
) -> pd.DataFrame:
    import tifffile

    density = 0.5 * (params.density[0] + params.density[1])
    cat = _draw_catalogue(seed, _FIELD_GROUP, 0, side, side, params, density=density)
    truth = _Truth(cat)
    label_tiles: list[bytes] = []
    folder.mkdir(parents=True, exist_ok=True)
    image_path, labels_path = folder / "field.tif", folder / "field_labels.tif"
    # Hidden siblings renamed at the end: an interrupted run leaves no truncated field.
    partial = [p.with_name(f".{p.name}.partial.tif") for p in (image_path, labels_path)]
    try:
        # metadata=None: no ImageDescription (shape JSON), so the same pixels give the
        # same bytes. The image stays uncompressed (shot noise leaves zlib little to
        # gain, at a few seconds per 8192 px field); labels compress ~50x. Label tiles are
        # encoded as they are rendered and written afterwards, so the field is rendered
        # once and never held whole.
        tifffile.imwrite(
            partial[0],
            _field_tiles(cat, seed, tile, params, truth, label_tiles, progress),
            shape=(side, side),
            dtype=np.uint16,
            tile=(tile, tile),
            photometric="minisblack",
            metadata=None,
        )
        tifffile.imwrite(
            partial[1],
            iter(label_tiles),
            shape=(side, side),
            dtype=np.uint32,
            tile=(tile, tile),
            photometric="minisblack",
            compression="zlib",
            metadata=None,
        )
        os.replace(partial[0], image_path)
        os.replace(partial[1], labels_path)
    finally:
        for p in partial:
            p.unlink(missing_ok=True)
    frame = truth.frame("field")
    frame.to_csv(folder / "truth.csv", index=False, lineterminator="\n")
    return frame


# --------------------------------------------------------------------------- files


def generate_nuclei(
    out: str | os.PathLike[str],
    *,
    count: int = 100,
    size: int = 256,
    seed: int = 0,
    channels: int = 1,
    mask_format: str = "label",
    large: int | None = None,
    tile: int = 1024,
    params: NucleiSynthParams | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write synthetic fluorescence nuclei images, their instance masks and truth.

    Parameters
    ----------
    out : str or os.PathLike
        Output folder, created if missing. The files below are overwritten; nothing else is
        touched.
    count : int, default 100
        Number of images, at least 1.
    size : int, default 256
        Image side in px, at least 64 (about 100 nuclei at 256 px with default params).
    seed : int, default 0
        Non-negative seed. The same arguments give byte-identical files; image ``i`` does
        not depend on ``count``, ``mask_format`` or ``large``, and its labels not on
        ``channels``.
    channels : {1, 3}
        1: 8-bit grey PNG images; 3: 8-bit RGB PNGs, the grey image times a per-image
        gain in ``[1 - params.tint, 1]`` per channel.
    mask_format : {"label", "binary"}
        ``"label"``: 16-bit PNG label images (0 background, ``1..n`` the nuclei);
        ``"binary"``: 8-bit PNGs, 0 background and 255 nuclei.
    large : int, optional
        Also write one ``large x large`` field (at least 256; e.g. 8192 for about 80,500
        nuclei) under ``large/``, rendered tile by tile in bounded memory.
    tile : int, default 1024
        Tile side of the large field's TIFFs, at least 64 and a multiple of 16. It never
        changes pixel values or labels (tiles are seamless).
    params : NucleiSynthParams, optional
        Generator parameters; defaults to ``NucleiSynthParams()``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each image and each large-field tile
        (``total = count + tiles``).

    Returns
    -------
    pandas.DataFrame
        The images' truth as written to ``truth.csv`` (columns
        :data:`NUCLEI_TRUTH_COLUMNS`), one row per nucleus, in image and label order.
        Every value is measured on the written mask and image:

        * ``image_id`` (str): ``"nuclei_0000"``, ... (sortable; the PNG stem).
        * ``label`` (int): the nucleus's value in the label mask, ``1..n`` per image.
        * ``y``, ``x`` (float): centroid of its mask pixels (row, column), px.
        * ``area`` (int): mask pixels; ``equivalent_radius`` ``sqrt(area / pi)``, px.
        * ``major_axis``, ``minor_axis`` (float): ``4 sqrt`` of the eigenvalues of the
          pixels' covariance, px, and ``orientation`` (rad, in ``[-pi/2, pi/2]``, from
          the row axis to the major axis): ``skimage.measure.regionprops``'s
          ``axis_major_length``, ``axis_minor_length`` and ``orientation``.
        * ``mean_intensity`` (float): mean written value over its pixels (0-255, averaged
          over the channels of an RGB image; 0-65535 in the large field).
        * ``cluster_id`` (int): its touching cluster, ``0..`` per image; -1 when isolated.
        * ``touching`` (bool): whether a pixel of it is 4-adjacent to another nucleus's.
          Isolated nuclei never touch (with ``min_gap_px >= 1``); most cluster members do.

    Raises
    ------
    ValueError
        If an argument is out of range (the message names it), checked before anything
        is written; or if ``mask_format="label"`` and an image could hold more than 65535
        nuclei (a 16-bit PNG's limit: use smaller images or ``"binary"``).

    Notes
    -----
    Files written under ``out`` (the Data Science Bowl's flat-pair layout, images and
    masks matched by name):

    * ``images/nuclei_0000.png``, ...: the images; ``masks/nuclei_0000.png``, ...: masks.
    * ``truth.csv``: the returned table.
    * With ``large``: ``large/field.tif`` (tiled uint16 TIFF, uncompressed),
      ``large/field_labels.tif`` (tiled uint32 labels, zlib) and ``large/truth.csv``
      (the same columns, ``image_id`` ``"field"``; its density is the midpoint of
      ``params.density``). Read it with :func:`load_nuclei_truth` on ``out / "large"``.

    Seeds: image ``i`` draws its nuclei and optics from ``SeedSequence(seed, spawn_key=(0,
    0, i))``, the texture and noise of its 128 px cell ``(cy, cx)`` from ``(1, 0, i, cy',
    cx')`` and ``(2, 0, i, cy', cx')`` (``k' = 2k`` for ``k >= 0``, else ``-2k - 1``);
    the large field uses group 1, index 0 in place of ``0, i``.
    """
    count = _check_int("count", count, 1, " (the number of images)")
    size = _check_int("size", size, MIN_SIZE, " (the image side in px)")
    seed = _check_int("seed", seed, 0)
    channels = _check_channels(channels)
    if mask_format not in NUCLEI_MASK_FORMATS:
        raise ValueError(
            f"mask_format must be one of {NUCLEI_MASK_FORMATS} (16-bit labels or 8-bit "
            f"0/255), got {mask_format!r}"
        )
    if large is not None:
        large = _check_int(
            "large", large, MIN_LARGE, " (the large field's side in px), or None for no field"
        )
    tile = _check_int("tile", tile, MIN_TILE, " (the large field's TIFF tile side in px)")
    if tile % _TIFF_TILE_MULTIPLE:
        raise ValueError(
            f"tile must be a multiple of {_TIFF_TILE_MULTIPLE} (a TIFF rule), got {tile!r}"
        )
    params = _check_params(params)
    most = round(params.density[1] * size * size / 1e4)
    if mask_format == "label" and most > _PNG_LABEL_MAX:
        raise ValueError(
            f"size {size} can hold up to {most} nuclei, more than a 16-bit PNG label mask "
            f"holds ({_PNG_LABEL_MAX}); use a smaller size, lower params.density, or "
            'mask_format="binary"'
        )

    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    n_tiles = math.ceil(large / tile) ** 2 if large is not None else 0
    total = count + n_tiles
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    frames: list[pd.DataFrame] = []
    for i in range(count):
        image, labels, truth, image_id = _render_image(seed, i, size, channels, params)
        _write_png(root / "images" / f"{image_id}.png", image)
        _write_png(root / "masks" / f"{image_id}.png", _mask_array(labels, mask_format))
        frames.append(truth)
        step()
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(root / "truth.csv", index=False, lineterminator="\n")
    logger.info("wrote %d nuclei images (%d nuclei) to %s", count, len(table), root)
    if large is not None:
        field = _write_field(root / "large", large, seed, tile, params, step)
        logger.info(
            "wrote a %d x %d field with %d nuclei to %s", large, large, len(field), root / "large"
        )
    return table


def load_nuclei_truth(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``truth.csv`` written by :func:`generate_nuclei`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, or the folder that holds ``truth.csv`` (``out`` for the images,
        ``out / "large"`` for the large field).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`NUCLEI_TRUTH_COLUMNS`: ``image_id`` as str, ``label``, ``area``
        and ``cluster_id`` as int64, ``touching`` as bool, the rest float64.

    Raises
    ------
    FileNotFoundError
        If there is no such file (or no ``truth.csv`` in the folder).
    ValueError
        If the file lacks columns of :data:`NUCLEI_TRUTH_COLUMNS` or holds values of the
        wrong type.
    """
    csv_path = Path(path)
    if csv_path.is_dir():
        csv_path = csv_path / "truth.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path}: no nuclei truth table here; generate_nuclei (or `pipeline synth "
            "nuclei OUT`) writes OUT/truth.csv and, with a large field, OUT/large/truth.csv"
        )
    frame = pd.read_csv(csv_path, dtype={"image_id": str}, keep_default_na=False, na_values={})
    missing = [c for c in NUCLEI_TRUTH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{csv_path} is not a nuclei truth table: it lacks the column(s) "
            f"{', '.join(missing)} (expected {', '.join(NUCLEI_TRUTH_COLUMNS)})"
        )
    frame = frame[list(NUCLEI_TRUTH_COLUMNS)]
    touching = frame["touching"].astype(str)
    if not touching.isin(["True", "False"]).all():
        bad = touching[~touching.isin(["True", "False"])].iloc[0]
        raise ValueError(f"{csv_path}: column touching must hold True or False, got {bad!r}")
    try:
        floats = [c for c in NUCLEI_TRUTH_COLUMNS[2:-2] if c != "area"]
        ints = dict.fromkeys(("label", "area", "cluster_id"), np.int64)
        frame = frame.astype({**ints, **dict.fromkeys(floats, np.float64)})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{csv_path}: a numeric column holds a non-number ({exc})") from None
    frame["touching"] = touching.eq("True")
    return frame
