"""Synthetic survey mosaics: one large single-channel sky image with known sources.

A mosaic stands in for a tiled survey field (or a deep field such as the Hubble
eXtreme Deep Field) that is too large to hold in memory comfortably. It holds
galaxies with Sersic-like light profiles (the morphology classes of
:mod:`pipeline.synth.galaxies`) and stars with a Gaussian PSF, on a flat sky with
Gaussian noise, in normalised image units in ``[0, 1]``. A truth table lists every
source.

Coordinate and angle conventions (those of :mod:`pipeline.synth.galaxies`):

* Pixel centres lie at integer coordinates. ``x`` is the column index and ``y`` the
  row index of the array as numpy sees it (``y`` increases *down* the image as
  displayed with row 0 at the top), so ``image[round(y), round(x)]`` is the pixel at
  a source centre. In a FITS file the first row of the array is the first row in the
  file, i.e. FITS pixel ``(x + 1, y + 1)`` in the 1-based FITS convention.
* ``angle_deg`` is the major-axis position angle in degrees in ``[0, 180)``,
  counter-clockwise from +x with the vertical axis pointing *up* the image displayed
  with row 0 at the top; the major axis points along ``(d_col, d_row) =
  (cos a, -sin a)``. FITS viewers that draw row 0 at the bottom show the image
  flipped vertically, where the same axis appears at ``180 - a``.
* ``ellipticity`` is ``1 - b/a``; ``r_e`` is the effective (half-light) radius
  along the major axis in pixels.

Sky coordinates: a FITS mosaic carries a celestial WCS by default (``wcs=True`` in
:func:`generate_mosaic`), a gnomonic (``RA---TAN`` / ``DEC--TAN``) projection in ICRS
centred on :data:`MOSAIC_CRVAL_DEG` (a COSMOS-like field) at the image centre (``CRPIX`` =
``((width + 1) / 2, (height + 1) / 2)`` in 1-based FITS pixels), with
:data:`MOSAIC_PIXEL_SCALE_ARCSEC` square pixels and the usual orientation: declination
grows with the row index ``y`` (north is up in a FITS viewer, which draws row 0 at the
bottom) and right ascension grows to the left (east is ``-x``, ``CD1_1 < 0``). The WCS
changes only the header: pixel values are the same with or without it. TIFF mosaics have
no WCS.

Memory: the image is rendered in bands of ``tile`` rows spanning the full width, and
each source adds a stamp truncated at 8 r_e (galaxies) or 5 sigma (stars) to every
band its stamp touches, so a 20000 x 20000 mosaic never exists as a whole array.
Pixel values do not depend on ``tile``: every stamp is evaluated on its full
(tile-independent) footprint, stamps are summed in source order, and the noise of
each row comes from its own seeded generator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.synth.galaxies import (
    CORE_SOFTENING_PX,
    GALAXY_CLASSES,
    Sersic,
    draw_galaxy,
    sersic_b,
)

__all__ = [
    "MOSAIC_CRVAL_DEG",
    "MOSAIC_NOISE_SIGMA",
    "MOSAIC_PIXEL_SCALE_ARCSEC",
    "MOSAIC_SKY_LEVEL",
    "MOSAIC_SUFFIXES",
    "MOSAIC_TRUTH_COLUMNS",
    "generate_mosaic",
    "hubble_deep_field_gray",
    "load_mosaic_truth",
    "render_mosaic",
]

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

MOSAIC_TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    "source_id",
    "kind",
    "galaxy_class",
    "x",
    "y",
    "r_e",
    "sigma",
    "angle_deg",
    "ellipticity",
    "peak",
)
"""Column order of the ``<stem>_truth.csv`` table written by :func:`generate_mosaic`."""

MOSAIC_SUFFIXES: Final[tuple[str, ...]] = (".fits", ".tif", ".tiff")
"""File suffixes :func:`generate_mosaic` can write (compared case-insensitively)."""

MOSAIC_SKY_LEVEL: Final = 0.03
"""Flat sky background of every mosaic, in normalised image units."""

MOSAIC_NOISE_SIGMA: Final = 0.007
"""Standard deviation of the per-pixel Gaussian noise, in normalised image units."""

MOSAIC_CRVAL_DEG: Final = (150.1, 2.2)
"""ICRS right ascension and declination (degrees) of the centre of a FITS mosaic's WCS."""

MOSAIC_PIXEL_SCALE_ARCSEC: Final = 0.2
"""Pixel side of a FITS mosaic's WCS, in arcseconds."""

MIN_SIZE: Final = 64
MIN_TILE: Final = 64
# TIFF requires tile widths and heights that are multiples of 16.
_TIFF_TILE_MULTIPLE: Final = 16
_UINT16_MAX: Final = 65535.0

# Galaxy half-light radii are log-uniform, so small galaxies outnumber large ones as
# in a real field.
_R_E_RANGE_PX: Final = (2.0, 12.0)
_STAR_SIGMA_RANGE_PX: Final = (1.0, 2.0)
# Peak above sky, log-uniform over about a decade (0.9 dex). The scale-normalised
# LoG response of an isolated source is about 0.43 * peak for stars and 0.2-0.4 *
# peak for galaxies, so with the usual blob_log threshold of 0.05 all stars and most
# galaxies are found, and only the faintest, flattest galaxies are missed. The bright
# end keeps an isolated source plus sky and 5 sigma of noise below 1, so only
# blended cores can saturate.
_PEAK_RANGE: Final = (0.12, 0.9)
# Half-light radius of a Gaussian in units of its sigma: sqrt(2 ln 2).
_GAUSS_R_E_PER_SIGMA: Final = math.sqrt(2.0 * math.log(2.0))

# Stamps are truncated where the profile has fallen far below the noise: at 8 r_e an
# n=4 profile is ~1e-4 of its peak, an n=1 profile ~1e-5; at 5 sigma a star ~4e-6.
_STAMP_EXTENT_RE: Final = 8.0
_STAMP_EXTENT_SIGMA: Final = 5.0

# Placement: most sources keep their centres more than _CLEAR_RE * (r_e_i + r_e_j)
# apart, so their bright parts are separated by a few r_e; a fraction
# _BLEND_FRACTION are placed as close companions of an earlier source instead, at
# (1 - 2) * (r_e_i + r_e_j) (at least _MIN_BLEND_SEP_PX), so their light overlaps
# while two peaks remain, as in a real field.
_CLEAR_RE: Final = 2.5
_BLEND_FRACTION: Final = 0.05
_BLEND_SEP_RANGE: Final = (1.0, 2.0)
_MIN_BLEND_SEP_PX: Final = 3.0
_PLACEMENT_TRIES: Final = 16

# Seed-sequence spawn keys: one stream for the catalogue, one for galaxy
# morphology, and one generator per image row for the noise.
_CATALOGUE_KEY: Final = 0
_MORPHOLOGY_KEY: Final = 1
_NOISE_KEY: Final = 2


@dataclass(frozen=True)
class _Source:
    """One source; ``bounds`` is its stamp footprint clipped to the image."""

    kind: str
    galaxy_class: str
    x: float
    y: float
    r_e: float
    sigma: float
    angle_deg: float
    ellipticity: float
    peak: float
    components: tuple[Sersic, ...]
    bounds: tuple[int, int, int, int]


# --- validation ---------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an int subclass, but True as a size or seed is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _validate(
    height: object,
    width: object,
    seed: object,
    density: object,
    star_fraction: object,
    tile: object,
) -> tuple[int, int, int, float, float, int]:
    height_ = _check_int("height", height, MIN_SIZE)
    width_ = _check_int("width", width, MIN_SIZE)
    seed_ = _check_int("seed", seed, 0)
    density_ = _check_float("density", density)
    if not math.isfinite(density_) or density_ <= 0.0:
        raise ValueError(f"density must be a finite number > 0, got {density!r}")
    fraction = _check_float("star_fraction", star_fraction)
    if not 0.0 <= fraction <= 1.0:  # also rejects NaN
        raise ValueError(f"star_fraction must be a number in [0, 1], got {star_fraction!r}")
    tile_ = _check_int("tile", tile, MIN_TILE)
    return height_, width_, seed_, density_, fraction, tile_


# --- catalogue ----------------------------------------------------------------------


def _stamp_bounds(
    x: float, y: float, extent: float, height: int, width: int
) -> tuple[int, int, int, int]:
    r0 = max(0, math.floor(y - extent))
    r1 = min(height, math.ceil(y + extent) + 1)
    c0 = max(0, math.floor(x - extent))
    c1 = min(width, math.ceil(x + extent) + 1)
    return r0, r1, c0, c1


def _sersic_centre(comp: Sersic) -> float:
    """Value of one (softened) Sersic component at its own centre."""
    b = sersic_b(comp.n)
    return comp.i_e * math.exp(-b * ((CORE_SOFTENING_PX / comp.r_e) ** (1.0 / comp.n) - 1.0))


class _Grid:
    """Uniform grid of placed source centres, for fast clearance checks."""

    def __init__(self, cell: float) -> None:
        self.cell = cell
        self.cells: dict[tuple[int, int], list[tuple[float, float, float]]] = {}

    def _key(self, x: float, y: float) -> tuple[int, int]:
        return math.floor(x / self.cell), math.floor(y / self.cell)

    def add(self, x: float, y: float, clear: float) -> None:
        self.cells.setdefault(self._key(x, y), []).append((x, y, clear))

    def is_clear(self, x: float, y: float, clear: float) -> bool:
        # The cell is at least twice the largest clearance radius, so every centre
        # closer than clear_i + clear_j lies in the 3 x 3 block of cells around (x, y).
        kx, ky = self._key(x, y)
        for gx in (kx - 1, kx, kx + 1):
            for gy in (ky - 1, ky, ky + 1):
                for ox, oy, oclear in self.cells.get((gx, gy), ()):
                    if math.hypot(x - ox, y - oy) <= clear + oclear:
                        return False
        return True


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], count: int) -> FloatArray:
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return np.exp(rng.uniform(low, high, size=count))


def _catalogue(
    height: int, width: int, seed: int, density: float, star_fraction: float
) -> list[_Source]:
    """Draw every source of the mosaic; depends on the arguments but not on ``tile``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_CATALOGUE_KEY,)))
    # Morphology draws a class-dependent number of values; a separate stream keeps the
    # layout of the catalogue stream fixed.
    morph_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_MORPHOLOGY_KEY,)))

    count = int(rng.poisson(density * height * width / 1e6))
    is_star = rng.random(count) < star_fraction
    class_index = rng.integers(len(GALAXY_CLASSES), size=count)
    galaxy_r_e = _log_uniform(rng, _R_E_RANGE_PX, count)
    star_sigma = rng.uniform(*_STAR_SIGMA_RANGE_PX, size=count)
    peaks = _log_uniform(rng, _PEAK_RANGE, count)
    blended = rng.random(count) < _BLEND_FRACTION
    partner_u = rng.random(count)
    blend_sep = rng.uniform(*_BLEND_SEP_RANGE, size=count)
    blend_phi = rng.uniform(0.0, 2.0 * math.pi, size=count)
    # Half-light radius of every source: a star's is that of its Gaussian PSF.
    r_e_all = np.where(is_star, _GAUSS_R_E_PER_SIGMA * star_sigma, galaxy_r_e)

    grid = _Grid(2.0 * _CLEAR_RE * max(_R_E_RANGE_PX[1], float(r_e_all.max(initial=0.0))))
    span = np.array([width - 1.0, height - 1.0])
    xs: list[float] = []
    ys: list[float] = []
    sources: list[_Source] = []
    for i in range(count):
        r_e = float(r_e_all[i])
        clear = _CLEAR_RE * r_e
        # Always drawn, used or not, so one source's placement never shifts the
        # random stream of the next.
        candidates = rng.random((_PLACEMENT_TRIES, 2)) * span
        pos: tuple[float, float] | None = None
        if blended[i] and i > 0:
            j = int(partner_u[i] * i)
            sep = max(_MIN_BLEND_SEP_PX, float(blend_sep[i]) * (r_e + float(r_e_all[j])))
            phi = float(blend_phi[i])
            # Direction counter-clockwise from +x with y pointing up the image.
            bx, by = xs[j] + sep * math.cos(phi), ys[j] - sep * math.sin(phi)
            if 0.0 <= bx <= width - 1 and 0.0 <= by <= height - 1:
                pos = (bx, by)
        if pos is None:
            for cx, cy in candidates:
                if grid.is_clear(float(cx), float(cy), clear):
                    pos = (float(cx), float(cy))
                    break
            else:
                # A field too crowded for a clear spot: accept an overlap rather than
                # silently dropping the source and changing the requested density.
                pos = (float(candidates[-1, 0]), float(candidates[-1, 1]))
        x, y = pos
        grid.add(x, y, clear)
        xs.append(x)
        ys.append(y)
        peak = float(peaks[i])

        if is_star[i]:
            sigma = float(star_sigma[i])
            bounds = _stamp_bounds(x, y, _STAMP_EXTENT_SIGMA * sigma + 1.0, height, width)
            sources.append(
                _Source("star", "star", x, y, r_e, sigma, math.nan, 0.0, peak, (), bounds)
            )
            continue

        galaxy_class = GALAXY_CLASSES[int(class_index[i])]
        galaxy = draw_galaxy(morph_rng, galaxy_class, x, y, 1.0, 1.0, r_e=r_e)
        # Rescale every component by one factor, which keeps the class's bulge/disc
        # ratio, so that the summed profile at the centre equals the drawn peak.
        scale = peak / sum(_sersic_centre(c) for c in galaxy.components)
        components = tuple(replace(c, i_e=c.i_e * scale) for c in galaxy.components)
        extent = _STAMP_EXTENT_RE * max(c.r_e for c in components) + 3.0
        # Equivalent Gaussian blob scale: the Gaussian with the same circularised
        # half-light radius r_e * sqrt(b/a).
        sigma = r_e * math.sqrt(1.0 - galaxy.ellipticity) / _GAUSS_R_E_PER_SIGMA
        sources.append(
            _Source(
                "galaxy",
                galaxy_class,
                x,
                y,
                r_e,
                sigma,
                galaxy.angle_deg,
                galaxy.ellipticity,
                peak,
                components,
                _stamp_bounds(x, y, extent, height, width),
            )
        )
    return sources


def _truth_frame(sources: list[_Source]) -> pd.DataFrame:
    id_width = max(6, len(str(len(sources) - 1)))
    rows = [
        {
            "source_id": f"{i:0{id_width}d}",
            "kind": s.kind,
            "galaxy_class": s.galaxy_class,
            "x": s.x,
            "y": s.y,
            "r_e": s.r_e,
            "sigma": s.sigma,
            "angle_deg": s.angle_deg,
            "ellipticity": s.ellipticity,
            "peak": s.peak,
        }
        for i, s in enumerate(sources)
    ]
    frame = pd.DataFrame(rows, columns=list(MOSAIC_TRUTH_COLUMNS))
    # An empty frame would otherwise have object columns.
    float_cols = ["x", "y", "r_e", "sigma", "angle_deg", "ellipticity", "peak"]
    return frame.astype(dict.fromkeys(float_cols, np.float64))


# --- rendering ----------------------------------------------------------------------


def _stamp(source: _Source) -> FloatArray:
    """Noise-free light of one source over its whole footprint ``source.bounds``."""
    r0, r1, c0, c1 = source.bounds
    cols = np.arange(c0, c1, dtype=np.float64)
    rows = np.arange(r0, r1, dtype=np.float64)
    if source.kind == "star":
        gx = np.exp(-0.5 * ((cols - source.x) / source.sigma) ** 2)
        gy = np.exp(-0.5 * ((rows - source.y) / source.sigma) ** 2)
        return np.asarray(np.outer(gy, gx) * source.peak, dtype=np.float64)
    stamp = np.zeros((r1 - r0, c1 - c0), dtype=np.float64)
    for comp in source.components:
        dx = cols[None, :] - comp.x
        # Flip rows so the rotation is counter-clockwise as displayed (y up).
        dy = comp.y - rows[:, None]
        cos_a, sin_a = math.cos(comp.angle_rad), math.sin(comp.angle_rad)
        u = dx * cos_a + dy * sin_a
        v = (dy * cos_a - dx * sin_a) / comp.q
        r2 = u * u + v * v + CORE_SOFTENING_PX**2
        # I(r) = I_e exp(-b_n((r/r_e)^(1/n) - 1)) on the softened elliptical radius,
        # exactly as in pipeline.synth.galaxies.
        stamp += comp.i_e * np.exp(-sersic_b(comp.n) * ((r2 / comp.r_e**2) ** (0.5 / comp.n) - 1.0))
    return stamp


def _row_noise(seed: int, row: int, width: int) -> FloatArray:
    # One generator per row makes the noise independent of how rows are grouped into
    # bands, at a cost of a few tens of microseconds per row.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_NOISE_KEY, row)))
    return rng.standard_normal(width)


def _render_bands(
    sources: list[_Source], height: int, width: int, seed: int, band_rows: int
) -> Iterator[tuple[int, Float32Array]]:
    """Yield ``(row0, band)`` for consecutive bands of up to ``band_rows`` full rows."""
    bounds = np.array([s.bounds for s in sources], dtype=np.int64).reshape(-1, 4)
    # Stamps reaching into later bands are kept until their last band, so a stamp is
    # evaluated once however many bands it spans.
    cache: dict[int, FloatArray] = {}
    for row0 in range(0, height, band_rows):
        row1 = min(height, row0 + band_rows)
        band = np.zeros((row1 - row0, width), dtype=np.float64)
        # Ascending source index: each pixel sums its stamps in the same fixed order
        # whatever the band height, so pixel values are bit-identical for any tile.
        for i in np.flatnonzero((bounds[:, 0] < row1) & (bounds[:, 1] > row0)):
            index = int(i)
            stamp = cache.pop(index, None)
            if stamp is None:
                stamp = _stamp(sources[index])
            r0, r1, c0, c1 = sources[index].bounds
            if r1 > row1:
                cache[index] = stamp
            lo, hi = max(r0, row0), min(r1, row1)
            band[lo - row0 : hi - row0, c0:c1] += stamp[lo - r0 : hi - r0]
        band += MOSAIC_SKY_LEVEL
        for row in range(row0, row1):
            band[row - row0] += MOSAIC_NOISE_SIGMA * _row_noise(seed, row, width)
        # Normalised image units: noise can dip below 0 and blended cores can exceed
        # 1; clipping here makes the FITS and TIFF outputs hold the same image.
        np.clip(band, 0.0, 1.0, out=band)
        yield row0, band.astype(np.float32)


def _render_tiles(
    sources: list[_Source], height: int, width: int, seed: int, tile: int
) -> Iterator[tuple[int, int, Float32Array]]:
    for row0, band in _render_bands(sources, height, width, seed, tile):
        for col0 in range(0, width, tile):
            yield row0, col0, band[:, col0 : col0 + tile]


def render_mosaic(
    *,
    height: int,
    width: int,
    seed: int,
    density: float = 60.0,
    star_fraction: float = 0.3,
    tile: int = 1024,
) -> Iterator[tuple[int, int, Float32Array]]:
    """Render a synthetic survey mosaic tile by tile, without holding the whole image.

    Parameters
    ----------
    height, width : int
        Mosaic size in pixels (rows, columns); each at least 64.
    seed : int
        Non-negative seed; the same arguments give the same pixels.
    density : float, default 60.0
        Mean number of sources per 1000 x 1000 pixels; the actual count is
        Poisson-distributed. Must be finite and > 0.
    star_fraction : float, default 0.3
        Probability that a source is a star rather than a galaxy, in ``[0, 1]``.
    tile : int, default 1024
        Tile size in pixels, at least 64. Only memory use and the tiling of the
        output depend on it: pixel values are bit-identical for every ``tile``.

    Returns
    -------
    iterator of (int, int, numpy.ndarray)
        ``(row0, col0, pixels)`` for each tile in row-major order (left to right
        within a band of tiles, bands top to bottom). ``pixels`` is float32 of shape
        ``(min(tile, height - row0), min(tile, width - col0))`` in normalised image
        units clipped to ``[0, 1]`` and holds ``image[row0:row0 + tile,
        col0:col0 + tile]``. Tiles are views of one rendered band of ``tile`` full
        rows, so peak memory is roughly ``16 * tile * width`` bytes plus the stamps
        of the sources crossing the band.

    Raises
    ------
    ValueError
        If an argument is out of range; raised at the call, before iteration.

    Notes
    -----
    The catalogue is drawn when this function is called, the pixels as the iterator
    is consumed. See :func:`generate_mosaic` for the scene model.
    """
    height, width, seed, density, star_fraction, tile = _validate(
        height, width, seed, density, star_fraction, tile
    )
    sources = _catalogue(height, width, seed, density, star_fraction)
    return _render_tiles(sources, height, width, seed, tile)


# --- files --------------------------------------------------------------------------


def _truth_path(image_path: Path) -> Path:
    return image_path.with_name(f"{image_path.stem}_truth.csv")


def _write_fits(
    path: Path,
    sources: list[_Source],
    height: int,
    width: int,
    seed: int,
    density: float,
    star_fraction: float,
    tile: int,
    wcs: bool = True,
) -> None:
    # Imported here so that importing pipeline.synth stays cheap.
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = width
    header["NAXIS2"] = height
    header["ORIGIN"] = ("pipeline.synth.mosaic", "synthetic survey mosaic")
    header["SKYLEVEL"] = (MOSAIC_SKY_LEVEL, "flat sky background")
    header["SKYNOISE"] = (MOSAIC_NOISE_SIGMA, "Gaussian noise sigma")
    header["SEED"] = (seed, "generator seed")
    header["DENSITY"] = (density, "mean sources per 1000 x 1000 px")
    header["STARFRAC"] = (star_fraction, "probability a source is a star")
    header["NSOURCES"] = (len(sources), "sources in the truth table")
    if wcs:
        _add_wcs(header, height, width)
    # StreamingHDU appends to an existing file, so it must start from no file.
    path.unlink(missing_ok=True)
    with fits.StreamingHDU(str(path), header) as stream:
        for _, band in _render_bands(sources, height, width, seed, tile):
            # Rows go to the file in array order, so fits.getdata returns the array
            # with the same row order (row 0 = FITS y = 1).
            stream.write(band)


def _add_wcs(header: Any, height: int, width: int) -> None:
    """A TAN WCS centred on the image (see the module notes), in FITS's 1-based pixels."""
    scale = MOSAIC_PIXEL_SCALE_ARCSEC / 3600.0
    header["WCSAXES"] = (2, "celestial WCS")
    header["CTYPE1"] = ("RA---TAN", "gnomonic projection, ICRS right ascension")
    header["CTYPE2"] = ("DEC--TAN", "gnomonic projection, ICRS declination")
    header["CUNIT1"] = ("deg", "unit of CRVAL1 and CD1_j")
    header["CUNIT2"] = ("deg", "unit of CRVAL2 and CD2_j")
    header["CRPIX1"] = ((width + 1) / 2.0, "reference pixel: the image centre")
    header["CRPIX2"] = ((height + 1) / 2.0, "reference pixel: the image centre")
    header["CRVAL1"] = (MOSAIC_CRVAL_DEG[0], "[deg] RA at the reference pixel")
    header["CRVAL2"] = (MOSAIC_CRVAL_DEG[1], "[deg] Dec at the reference pixel")
    header["CD1_1"] = (-scale, f"[deg/px] {MOSAIC_PIXEL_SCALE_ARCSEC} arcsec/px, east left")
    header["CD1_2"] = (0.0, "[deg/px] no rotation")
    header["CD2_1"] = (0.0, "[deg/px] no rotation")
    header["CD2_2"] = (scale, f"[deg/px] {MOSAIC_PIXEL_SCALE_ARCSEC} arcsec/px, north up")
    header["RADESYS"] = ("ICRS", "celestial frame")
    header["EQUINOX"] = (2000.0, "equinox of the frame")


def _write_tiff(
    path: Path, sources: list[_Source], height: int, width: int, seed: int, tile: int
) -> None:
    import tifffile

    def tiles() -> Iterator[npt.NDArray[np.uint16]]:
        for _, _, pixels in _render_tiles(sources, height, width, seed, tile):
            # Values are already clipped to [0, 1]; round to the nearest count.
            yield np.rint(pixels * np.float32(_UINT16_MAX)).astype(np.uint16)

    # tifffile consumes the generator tile by tile (in TIFF tile order, which is
    # row-major) and zero-pads edge tiles; zlib needs no optional codec package.
    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width),
        dtype=np.uint16,
        tile=(tile, tile),
        photometric="minisblack",
        compression="zlib",
    )


def generate_mosaic(
    out_path: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    seed: int,
    density: float = 60.0,
    star_fraction: float = 0.3,
    tile: int = 1024,
    wcs: bool = True,
) -> pd.DataFrame:
    """Write a synthetic survey mosaic and its truth table ``<stem>_truth.csv``.

    Parameters
    ----------
    out_path : str or os.PathLike
        Image file to write; its parent directory is created if missing. The suffix
        picks the format (case-insensitively): ``.fits`` writes a float32 primary
        image streamed band by band with :class:`astropy.io.fits.StreamingHDU`;
        ``.tif``/``.tiff`` writes a zlib-compressed, tiled uint16 TIFF with
        ``round(value * 65535)`` and ``tile x tile`` tiles streamed one at a time.
        The image and ``<stem>_truth.csv`` beside it are overwritten (so
        ``field.fits`` and ``field.tif`` share ``field_truth.csv``).
    height, width : int
        Mosaic size in pixels (rows, columns); each at least 64.
    seed : int
        Non-negative seed. The same arguments give byte-identical files.
    density : float, default 60.0
        Mean number of sources per 1000 x 1000 pixels (Poisson count); finite, > 0.
    star_fraction : float, default 0.3
        Probability that a source is a star, in ``[0, 1]``.
    tile : int, default 1024
        Band height and TIFF tile size in pixels; at least 64, and for TIFF a
        multiple of 16. It bounds memory (roughly ``16 * tile * width`` bytes) and
        never changes pixel values, nor the bytes of a FITS file.
    wcs : bool, default True
        Write a celestial TAN WCS into a FITS file's header (see the module notes:
        :data:`MOSAIC_PIXEL_SCALE_ARCSEC` per pixel around :data:`MOSAIC_CRVAL_DEG`), so
        the truth's ``x``, ``y`` (0-based) have sky coordinates. Pixel values do not
        depend on it; TIFF files have no WCS either way.

    Returns
    -------
    pandas.DataFrame
        One row per source, columns :data:`MOSAIC_TRUTH_COLUMNS`, as also written to
        ``<stem>_truth.csv``:

        * ``source_id`` (str): zero-padded index (at least 6 digits), the order in
          which sources were drawn and summed.
        * ``kind`` (str): ``"galaxy"`` or ``"star"``.
        * ``galaxy_class`` (str): one of ``GALAXY_CLASSES`` for galaxies, ``"star"``
          for stars.
        * ``x``, ``y`` (float): centre column and row in pixels (see the module
          conventions), uniform over ``[0, width - 1] x [0, height - 1]``.
        * ``r_e`` (float): half-light radius in pixels; for galaxies along the major
          axis of the main (disc) component, log-uniform in [2, 12]; for stars the
          PSF's ``sqrt(2 ln 2) * sigma`` (1.18-2.35).
        * ``sigma`` (float): natural blob scale in pixels. Stars: the Gaussian PSF
          sigma, uniform in [1, 2]. Galaxies: the sigma of the Gaussian with the same
          circularised half-light radius, ``r_e * sqrt(1 - ellipticity) /
          sqrt(2 ln 2)`` (about ``r_e / 1.18`` for round galaxies).
        * ``angle_deg`` (float): major-axis position angle in [0, 180); NaN for stars.
        * ``ellipticity`` (float): ``1 - b/a``; 0 for stars.
        * ``peak`` (float): noise-free value of the source's own light at its centre
          ``(x, y)`` (its maximum) above the sky, in image units; log-uniform in
          [0.12, 0.9]. Pixels are sampled at pixel centres, so the brightest pixel
          can be lower, notably for cuspy n ~ 4 cores.

    Raises
    ------
    ValueError
        If the suffix of ``out_path`` is not one of :data:`MOSAIC_SUFFIXES`, or an
        argument is out of range (the message names it).

    Notes
    -----
    Scene model. Galaxies are drawn as in :mod:`pipeline.synth.galaxies`: classes
    ``round`` (n 3.5-4.5, ellipticity 0-0.15), ``elongated`` (n 0.8-1.2,
    ellipticity 0.6-0.85) and ``disc_bulge`` (n=1 disc, ellipticity 0.3-0.6, plus a
    compact n=4 bulge) with equal probability and uniform random orientation; each
    profile is softened within ~0.7 px and truncated at 8 r_e. Stars are circular
    Gaussians truncated at 5 sigma. The image is ``sky + sum of sources + noise``
    with sky :data:`MOSAIC_SKY_LEVEL` and noise sigma :data:`MOSAIC_NOISE_SIGMA`,
    clipped to [0, 1] (only blended bright cores reach 1).

    Placement: most sources keep their centres more than
    ``2.5 * (r_e_i + r_e_j)`` from every other; about 5 % are placed as companions
    of an earlier source at 1-2 times ``r_e_i + r_e_j`` (at least 3 px), so their
    light overlaps. In fields too crowded to find a clear spot in 16 tries a
    source is placed anyway, overlapping others, rather than dropped.

    Randomness: the catalogue, the galaxy morphologies and the noise of each row
    ``r`` come from ``SeedSequence(seed, spawn_key=k)`` with ``k`` = ``(0,)``,
    ``(1,)`` and ``(2, r)`` respectively.
    """
    path = Path(out_path)
    suffix = path.suffix.lower()
    if suffix not in MOSAIC_SUFFIXES:
        raise ValueError(
            f"out_path suffix must be one of {MOSAIC_SUFFIXES}, got {path.suffix!r} ({path.name})"
        )
    height, width, seed, density, star_fraction, tile = _validate(
        height, width, seed, density, star_fraction, tile
    )
    if suffix != ".fits" and tile % _TIFF_TILE_MULTIPLE:
        raise ValueError(
            f"tile must be a multiple of {_TIFF_TILE_MULTIPLE} for TIFF output, got {tile!r}"
        )
    sources = _catalogue(height, width, seed, density, star_fraction)

    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a hidden sibling and rename, so an interrupted run never leaves a
    # truncated image under the final name.
    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        if suffix == ".fits":
            _write_fits(
                partial, sources, height, width, seed, density, star_fraction, tile, wcs=wcs
            )
        else:
            _write_tiff(partial, sources, height, width, seed, tile)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)

    frame = _truth_frame(sources)
    frame.to_csv(_truth_path(path), index=False, lineterminator="\n")
    return frame


def load_mosaic_truth(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the truth table written by :func:`generate_mosaic`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``<stem>_truth.csv`` file itself (any ``.csv`` path), or the mosaic image
        path, whose truth table ``<stem>_truth.csv`` beside it is read.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MOSAIC_TRUTH_COLUMNS` as documented in :func:`generate_mosaic`,
        with ``source_id`` kept as a zero-padded string and ``angle_deg`` NaN for
        stars.
    """
    csv_path = Path(path)
    if csv_path.suffix.lower() != ".csv":
        csv_path = _truth_path(csv_path)
    frame = pd.read_csv(
        csv_path,
        dtype={"source_id": str, "kind": str, "galaxy_class": str},
        # Only the empty field means missing, so no string is ever read as NaN.
        keep_default_na=False,
        na_values={"angle_deg": [""]},
    )
    float_cols = ["x", "y", "r_e", "sigma", "angle_deg", "ellipticity", "peak"]
    return frame.astype(dict.fromkeys(float_cols, np.float64))


def hubble_deep_field_gray() -> FloatArray:
    """The Hubble eXtreme Deep Field bundled with scikit-image, as grayscale.

    A real survey image to try detection code on; it ships inside scikit-image, so no
    download is needed.

    Returns
    -------
    numpy.ndarray of float64, shape (872, 1000)
        ``skimage.color.rgb2gray(skimage.data.hubble_deep_field())``: luminance in
        ``[0, 1]``, row 0 at the top.
    """
    from skimage import color, data

    return np.asarray(color.rgb2gray(data.hubble_deep_field()), dtype=np.float64)
