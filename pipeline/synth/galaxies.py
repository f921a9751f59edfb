"""Synthetic galaxy-survey cutouts with known truth.

Real survey cutouts (e.g. Galaxy Zoo) cannot be downloaded at run time, so tests and
demos use these images instead. Each cutout is a square RGB image holding a central
galaxy with a Sersic-like light profile, a few field stars, small faint background
galaxies, sky background and Gaussian noise. Some cutouts carry a defect that a
quality-control step is expected to reject: an overlapping second galaxy, a black
imaging stripe, or no central galaxy at all.

Coordinate and angle conventions (used by every truth value):

* Pixel centres lie at integer coordinates. ``x`` is the column index (increasing to
  the right) and ``y`` is the row index of the array (increasing *down* the image), so
  ``image[round(y), round(x)]`` is the pixel at the galaxy centre.
* ``angle_deg`` is the position angle of the major axis in degrees in ``[0, 180)``,
  measured counter-clockwise from the +x axis (image columns, pointing right) with
  the vertical axis pointing *up* the image as displayed. A major axis along
  ``angle_deg`` therefore points along ``(dx, drow) = (cos a, -sin a)`` in array
  coordinates: 0 is horizontal, 45 runs from bottom-left to top-right as displayed
  (towards smaller row indices), 90 is vertical.
* ``ellipticity`` is ``1 - b/a`` where ``b/a`` is the minor-to-major axis ratio.
* ``radius_px`` is the effective (half-light) radius along the major axis in pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from PIL import Image

__all__ = [
    "CORE_SOFTENING_PX",
    "GALAXY_CLASSES",
    "IMAGE_KINDS",
    "MANIFEST_FILENAME",
    "TRUTH_COLUMNS",
    "TRUTH_FILENAME",
    "GalaxyFractions",
    "Sersic",
    "draw_galaxy",
    "generate_galaxies",
    "load_truth",
    "render_galaxy_image",
    "sersic_b",
]

FloatArray = npt.NDArray[np.float64]

GALAXY_CLASSES: Final[tuple[str, ...]] = ("round", "elongated", "disc_bulge")
"""Morphology classes of the central galaxy."""

IMAGE_KINDS: Final[tuple[str, ...]] = ("normal", "overlap", "stripe", "no_galaxy")
"""Kinds of cutout; every kind except ``"normal"`` is expected to be rejected."""

TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    "image_id",
    "galaxy_class",
    "kind",
    "x",
    "y",
    "angle_deg",
    "radius_px",
    "ellipticity",
    "expected_status",
    "expected_reason",
    "file",
)
"""Column order of ``truth.csv`` and of the frame returned by :func:`generate_galaxies`."""

TRUTH_FILENAME: Final = "truth.csv"
"""Name of the truth table that :func:`generate_galaxies` writes next to the JPEGs."""
MANIFEST_FILENAME: Final = "manifest.csv"
"""Name of the ingest manifest written beside: ``file``, ``image_id``, ``galaxy_class``, ``kind``
(the truth columns an ingest may carry as metadata; ``x``/``y`` are reserved names there)."""
MIN_SIZE: Final = 64

# Geometry is specified for the 424 px Galaxy Zoo cutout size and scaled linearly so
# that smaller test images look like shrunken versions of the same scene.
_REFERENCE_SIZE: Final = 424.0
_CENTRE_JITTER_PX: Final = 15.0
_RADIUS_RANGE_PX: Final = (8.0, 25.0)
_MIN_RADIUS_PX: Final = 1.5
# Radius, in units of r_e, kept clear of field objects around each galaxy; it reaches
# past the faint n=4 wings so that a normal cutout has one isolated central source.
_CLEAR_RADIUS_RE: Final = 4.0
# Radius, in r_e, out to which a galaxy stands clearly above the sky noise.
_VISIBLE_RE: Final = 1.5
_MIN_SEPARATION_PX: Final = 3.0
# Profiles are truncated far enough out that the cut is below one display count.
_STAMP_EXTENT_RE: Final = 8.0
# Linear flux at the effective radius. Normalising at r_e (not at the peak) gives
# n=1 and n=4 galaxies a similar visible size for the same r_e; n=4 cores saturate,
# as bright elliptical cores do in survey composites.
_I_E_RANGE: Final = (0.05, 0.12)
# Softening of the profile core, standing in for the PSF so n=4 cusps stay finite.
CORE_SOFTENING_PX: Final = 0.7

# Linear flux -> display mapping: an asinh stretch, as used for survey colour
# composites, lifts faint outskirts while bright cores approach saturation.
_STRETCH_SOFTENING: Final = 0.05
_DISPLAY_GAIN: Final = 235.0
_SKY_RANGE: Final = (8.0, 20.0)
_NOISE_SIGMA_RANGE: Final = (2.0, 5.0)
_STRIPE_MAX_VALUE: Final = 4

_CLASS_TINTS: Final[dict[str, tuple[float, float, float]]] = {
    # Early types are redder, discs bluer; the jitter added per galaxy is small.
    "round": (1.0, 0.88, 0.72),
    "elongated": (0.88, 0.92, 1.0),
    "disc_bulge": (0.85, 0.9, 1.0),
    "bulge": (1.0, 0.88, 0.72),
}


@dataclass(frozen=True)
class GalaxyFractions:
    """Fractions of defective cutouts produced by :func:`generate_galaxies`.

    Parameters
    ----------
    overlap : float, default 0.1
        Fraction of cutouts with a second bright galaxy overlapping the central one.
    stripe : float, default 0.1
        Fraction of cutouts crossed by a near-black imaging stripe.
    no_galaxy : float, default 0.05
        Fraction of cutouts with no central galaxy.

    Raises
    ------
    ValueError
        If a fraction is not a finite number in ``[0, 1]`` or the fractions sum to
        more than 1. The remainder of the cutouts are ``"normal"``.
    """

    overlap: float = 0.1
    stripe: float = 0.1
    no_galaxy: float = 0.05

    def __post_init__(self) -> None:
        total = 0.0
        for field in fields(self):
            value = getattr(self, field.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0.0 <= value <= 1.0
            ):
                raise ValueError(
                    f"GalaxyFractions.{field.name} must be a number in [0, 1], got {value!r}"
                )
            total += float(value)
        # Tolerance so that e.g. 0.1 + 0.2 + 0.7 is not rejected for rounding error.
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"GalaxyFractions overlap + stripe + no_galaxy must be in [0, 1], got {total!r}"
            )


@dataclass(frozen=True)
class Sersic:
    """One elliptical Sersic component; ``i_e`` is the linear flux at ``r_e``."""

    x: float
    y: float
    r_e: float
    n: float
    q: float
    angle_rad: float
    i_e: float
    tint: tuple[float, float, float]


@dataclass(frozen=True)
class _Galaxy:
    components: tuple[Sersic, ...]
    x: float
    y: float
    r_e: float
    ellipticity: float
    angle_deg: float
    i_e: float


def sersic_b(n: float) -> float:
    """The Sersic profile's ``b_n`` for index ``n``: half the light lies within ``r_e``."""
    # Ciotti & Bertin (1999) asymptotic expansion; accurate to <1e-4 for n >= 0.5.
    return (
        2.0 * n
        - 1.0 / 3.0
        + 4.0 / (405.0 * n)
        + 46.0 / (25515.0 * n**2)
        + 131.0 / (1148175.0 * n**3)
    )


def _peak_over_i_e(n: float, r_e: float) -> float:
    """Central (softened) flux of a Sersic profile in units of its flux at ``r_e``."""
    core = (CORE_SOFTENING_PX / r_e) ** (1.0 / n)
    return math.exp(sersic_b(n) * (1.0 - core))


def _stamp_bounds(x: float, y: float, extent: float, size: int) -> tuple[int, int, int, int]:
    r0 = max(0, math.floor(y - extent))
    r1 = min(size, math.ceil(y + extent) + 1)
    c0 = max(0, math.floor(x - extent))
    c1 = min(size, math.ceil(x + extent) + 1)
    return r0, r1, c0, c1


def _add_sersic(flux: FloatArray, comp: Sersic) -> None:
    size = flux.shape[0]
    r0, r1, c0, c1 = _stamp_bounds(comp.x, comp.y, _STAMP_EXTENT_RE * comp.r_e + 3.0, size)
    if r0 >= r1 or c0 >= c1:
        return
    dx = np.arange(c0, c1, dtype=np.float64)[None, :] - comp.x
    # Flip rows so the rotation below is counter-clockwise as displayed (y up).
    dy = comp.y - np.arange(r0, r1, dtype=np.float64)[:, None]
    cos_a, sin_a = math.cos(comp.angle_rad), math.sin(comp.angle_rad)
    u = dx * cos_a + dy * sin_a
    v = (dy * cos_a - dx * sin_a) / comp.q
    r2 = u * u + v * v + CORE_SOFTENING_PX**2
    # I(r) = I_e exp(-b_n((r/r_e)^(1/n) - 1)) on the softened elliptical radius.
    profile = np.exp(-sersic_b(comp.n) * ((r2 / comp.r_e**2) ** (0.5 / comp.n) - 1.0))
    flux[r0:r1, c0:c1] += profile[:, :, None] * (comp.i_e * np.asarray(comp.tint))


def _add_star(
    flux: FloatArray, x: float, y: float, sigma: float, peak: float, tint: FloatArray
) -> None:
    size = flux.shape[0]
    r0, r1, c0, c1 = _stamp_bounds(x, y, 5.0 * sigma + 1.0, size)
    if r0 >= r1 or c0 >= c1:
        return
    gx = np.exp(-0.5 * ((np.arange(c0, c1) - x) / sigma) ** 2)
    gy = np.exp(-0.5 * ((np.arange(r0, r1) - y) / sigma) ** 2)
    flux[r0:r1, c0:c1] += np.outer(gy, gx)[:, :, None] * (peak * tint)


def _jitter_tint(rng: np.random.Generator, base: tuple[float, float, float]) -> FloatArray:
    tint = np.asarray(base) * (1.0 + rng.normal(0.0, 0.04, 3))
    # Keep the brightest channel at 1 so brightness parameters refer to that channel.
    return np.asarray(tint / tint.max(), dtype=np.float64)


def _as_tint(values: FloatArray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def draw_galaxy(
    rng: np.random.Generator,
    galaxy_class: str,
    x: float,
    y: float,
    scale: float,
    i_e: float,
    r_e: float | None = None,
) -> _Galaxy:
    """A random galaxy of ``galaxy_class`` centred at ``(x, y)`` (px), as Sersic components.

    ``scale`` multiplies the drawn effective radius (unless ``r_e`` is given, in px) and
    ``i_e`` the flux; the mosaic generator draws its galaxies with this too.
    """
    if r_e is None:
        r_e = max(_MIN_RADIUS_PX, float(rng.uniform(*_RADIUS_RANGE_PX)) * scale)
    angle_deg = float(rng.uniform(0.0, 180.0))
    angle_rad = math.radians(angle_deg)
    components: tuple[Sersic, ...]
    if galaxy_class in ("round", "elongated"):
        if galaxy_class == "round":
            ellipticity = float(rng.uniform(0.0, 0.15))
            n = float(rng.uniform(3.5, 4.5))
        else:
            ellipticity = float(rng.uniform(0.6, 0.85))
            n = float(rng.uniform(0.8, 1.2))
        tint = _as_tint(_jitter_tint(rng, _CLASS_TINTS[galaxy_class]))
        q = 1.0 - ellipticity
        # An inclined, optically thin disc keeps its total light in a smaller area, so its
        # surface brightness rises as 1/q: edge-on discs are bright thin lines, not faint ones.
        i_comp = i_e / q if galaxy_class == "elongated" else i_e
        components = (Sersic(x, y, r_e, n, q, angle_rad, i_comp, tint),)
    elif galaxy_class == "disc_bulge":
        ellipticity = float(rng.uniform(0.3, 0.6))
        disc_tint = _as_tint(_jitter_tint(rng, _CLASS_TINTS["disc_bulge"]))
        disc = Sersic(x, y, r_e, 1.0, 1.0 - ellipticity, angle_rad, i_e, disc_tint)
        bulge_r_e = max(1.0, r_e * float(rng.uniform(0.15, 0.3)))
        # The bulge must outshine the disc centre to read as a distinct component.
        bulge_peak = i_e * _peak_over_i_e(1.0, r_e) * float(rng.uniform(1.0, 2.5))
        bulge = Sersic(
            x,
            y,
            bulge_r_e,
            4.0,
            float(rng.uniform(0.85, 1.0)),
            math.radians(float(rng.uniform(0.0, 180.0))),
            bulge_peak / _peak_over_i_e(4.0, bulge_r_e),
            _as_tint(_jitter_tint(rng, _CLASS_TINTS["bulge"])),
        )
        components = (disc, bulge)
    else:  # pragma: no cover - callers validate the class
        raise ValueError(f"galaxy_class must be one of {GALAXY_CLASSES}, got {galaxy_class!r}")
    return _Galaxy(components, x, y, r_e, ellipticity, angle_deg, i_e)


def _moved(galaxy: _Galaxy, x: float, y: float) -> _Galaxy:
    comps = tuple(replace(c, x=c.x - galaxy.x + x, y=c.y - galaxy.y + y) for c in galaxy.components)
    return replace(galaxy, components=comps, x=x, y=y)


def _visible_extent(galaxy: _Galaxy, phi: float) -> float:
    """Radius of the galaxy's visible disc towards ``phi`` (radians, CCW, y up)."""
    q = 1.0 - galaxy.ellipticity
    delta = phi - math.radians(galaxy.angle_deg)
    return _VISIBLE_RE * galaxy.r_e * q / math.hypot(q * math.cos(delta), math.sin(delta))


def _draw_companion(rng: np.random.Generator, galaxy: _Galaxy, scale: float) -> _Galaxy:
    """A second bright galaxy whose visible disc overlaps that of ``galaxy``."""
    galaxy_class = GALAXY_CLASSES[int(rng.integers(len(GALAXY_CLASSES)))]
    i_e = galaxy.i_e * float(rng.uniform(0.7, 1.3))
    other = draw_galaxy(rng, galaxy_class, 0.0, 0.0, scale, i_e)
    # Direction from the central galaxy, counter-clockwise from +x with y up.
    phi = float(rng.uniform(0.0, 2.0 * math.pi))
    reach = (_visible_extent(galaxy, phi), _visible_extent(other, phi + math.pi))
    # Closer than the sum of the visible extents along the line joining the centres,
    # so the discs always blend, but each centre outside the other's half-light
    # ellipse so that two peaks remain.
    low = max(max(reach) / _VISIBLE_RE, _MIN_SEPARATION_PX)
    high = max(sum(reach), low)
    sep = low + float(rng.uniform(0.0, 0.8)) * (high - low)
    return _moved(other, galaxy.x + sep * math.cos(phi), galaxy.y - sep * math.sin(phi))


def _place(
    rng: np.random.Generator,
    size: int,
    radius: float,
    zones: list[tuple[float, float, float]],
    n_candidates: int = 32,
) -> tuple[float, float] | None:
    """Return a random position whose footprint misses every exclusion zone, or None."""
    margin = min(radius, size / 4.0)
    candidates = rng.uniform(margin, size - 1 - margin, size=(n_candidates, 2))
    ok = np.ones(n_candidates, dtype=bool)
    for zx, zy, zr in zones:
        dist = np.hypot(candidates[:, 0] - zx, candidates[:, 1] - zy)
        ok &= dist > zr + radius
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        # Crowded small cutouts: dropping a field object is better than overlapping.
        return None
    x, y = candidates[hits[0]]
    return float(x), float(y)


def _stripe_mask(
    rng: np.random.Generator, size: int, x: float, y: float, max_offset: float
) -> npt.NDArray[np.bool_]:
    width = int(rng.integers(1, 4))
    angle = math.radians(float(rng.uniform(0.0, 180.0)))
    offset = float(rng.uniform(-max_offset, max_offset))
    # Signed distance from a line through (x, y) + offset * normal, direction `angle`
    # (same y-up convention as the galaxies).
    cols = np.arange(size, dtype=np.float64)[None, :] - x
    rows_up = y - np.arange(size, dtype=np.float64)[:, None]
    dist = -cols * math.sin(angle) + rows_up * math.cos(angle) - offset
    return np.asarray(np.abs(dist) <= width / 2.0)


def _validate_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")
    return int(size)


def render_galaxy_image(
    rng: np.random.Generator, *, size: int = 424, galaxy_class: str, kind: str
) -> tuple[npt.NDArray[np.uint8], dict[str, str | float]]:
    """Render one synthetic survey cutout and its truth.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness; the same generator state gives the same image.
    size : int, default 424
        Width and height of the cutout in pixels; at least 64. Galaxy sizes, the
        centre jitter (up to 15 px at 424) and star widths scale with ``size / 424``.
    galaxy_class : str
        Morphology of the central galaxy, one of :data:`GALAXY_CLASSES`:
        ``"round"`` (ellipticity 0-0.15, Sersic n 3.5-4.5), ``"elongated"`` (edge-on,
        ellipticity 0.6-0.85, n 0.8-1.2) or ``"disc_bulge"`` (n=1 disc of ellipticity
        0.3-0.6 plus a compact, nearly round n=4 bulge). Ignored for
        ``kind="no_galaxy"``, where ``"none"`` is also accepted.
    kind : str
        One of :data:`IMAGE_KINDS`: ``"normal"``; ``"overlap"`` (a second bright
        galaxy whose disc overlaps the central one); ``"stripe"`` (a 1-3 px near-black
        line across the whole cutout passing through the central galaxy's bright
        region at a random angle); ``"no_galaxy"`` (only sky, stars and background
        galaxies, all away from the centre).

    Returns
    -------
    image : numpy.ndarray of uint8, shape (size, size, 3)
        RGB cutout in display counts (sky about 8-20, noise sigma 2-5 counts).
    truth : dict
        ``galaxy_class`` (str, ``"none"`` for no_galaxy), ``kind`` (str), ``x`` and
        ``y`` (float, pixel coordinates of the central galaxy: column and row index),
        ``angle_deg`` (float, major-axis position angle in degrees in [0, 180),
        counter-clockwise from +x with y pointing up the displayed image, i.e. the
        major axis points along ``(d_col, d_row) = (cos a, -sin a)``),
        ``radius_px`` (float, effective radius along the major axis in pixels),
        ``ellipticity`` (float, ``1 - b/a``), ``expected_status`` (``"kept"`` for
        normal, else ``"rejected"``) and ``expected_reason`` (``""`` for normal, else
        the kind). The geometric values are NaN for ``"no_galaxy"``. For round
        galaxies the angle is still the true (if barely measurable) one.

    Raises
    ------
    ValueError
        If ``size``, ``galaxy_class`` or ``kind`` is invalid.
    TypeError
        If ``rng`` is not a :class:`numpy.random.Generator`.

    Notes
    -----
    Light is accumulated as linear flux, with each profile
    ``I(r) = I_e exp(-b_n ((r/r_e)^(1/n) - 1))`` evaluated on the elliptical radius
    ``r = sqrt(u^2 + (v/q)^2)`` (``u``, ``v`` along the major and minor axes,
    ``q = 1 - ellipticity``) and softened within ~0.7 px so the core stays finite;
    it is then asinh-stretched to display counts, sky and Gaussian noise are added
    per channel, and for ``"stripe"`` the stripe pixels are set to 0-4 last.
    ``I_e`` is 0.05-0.12 of the saturation flux, so n=4 cores may saturate.

    The defects are drawn so that, for the same generator state and class, a
    ``"stripe"`` cutout equals the ``"normal"`` one except on the stripe pixels, and
    an ``"overlap"`` cutout equals it except where the companion adds light. The
    companion's separation is below the sum of both galaxies' visible (1.5 r_e)
    extents along the line joining them and at least 3 px.

    Field objects are placed outside 4 r_e of each galaxy (or, for
    ``"no_galaxy"``, outside ``(15 + 4 * 25) * size / 424`` px of the centre); in
    very crowded small cutouts an object that finds no free spot is left out.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    size = _validate_size(size)
    if kind not in IMAGE_KINDS:
        raise ValueError(f"kind must be one of {IMAGE_KINDS}, got {kind!r}")
    allowed = (*GALAXY_CLASSES, "none") if kind == "no_galaxy" else GALAXY_CLASSES
    if galaxy_class not in allowed:
        raise ValueError(f"galaxy_class must be one of {allowed}, got {galaxy_class!r}")

    scale = size / _REFERENCE_SIZE
    centre = (size - 1) / 2.0
    flux = np.zeros((size, size, 3), dtype=np.float64)
    zones: list[tuple[float, float, float]] = []
    galaxy: _Galaxy | None = None

    if kind == "no_galaxy":
        # Keep field objects clear of where the largest central galaxy could sit.
        zones.append(
            (centre, centre, (_CENTRE_JITTER_PX + _CLEAR_RADIUS_RE * _RADIUS_RANGE_PX[1]) * scale)
        )
    else:
        # Uniform over a disc so the offset is isotropic.
        jitter_r = _CENTRE_JITTER_PX * scale * math.sqrt(float(rng.uniform()))
        jitter_phi = float(rng.uniform(0.0, 2.0 * math.pi))
        gx = centre + jitter_r * math.cos(jitter_phi)
        gy = centre + jitter_r * math.sin(jitter_phi)
        galaxy = draw_galaxy(rng, galaxy_class, gx, gy, scale, float(rng.uniform(*_I_E_RANGE)))
        for comp in galaxy.components:
            _add_sersic(flux, comp)
        zones.append((gx, gy, _CLEAR_RADIUS_RE * galaxy.r_e))

        # The companion is drawn for every kind, from its own generator, so that an
        # overlap cutout is exactly the normal cutout from the same generator state
        # plus the companion's light; its zone keeps field objects off it either way.
        companion_rng = np.random.default_rng(int(rng.integers(2**63)))
        companion = _draw_companion(companion_rng, galaxy, scale)
        zones.append((companion.x, companion.y, _CLEAR_RADIUS_RE * companion.r_e))
        if kind == "overlap":
            for comp in companion.components:
                _add_sersic(flux, comp)

    area = scale * scale
    n_stars = int(rng.integers(1, max(2, round(6 * area)) + 1))
    for _ in range(n_stars):
        sigma = max(0.6, 1.1 * scale) * float(rng.uniform(0.9, 1.2))
        peak = 10.0 ** float(rng.uniform(-1.3, 0.0))
        tint = _jitter_tint(rng, (1.0, 0.97, 0.92))
        pos = _place(rng, size, 4.0 * sigma + 1.0, zones)
        if pos is not None:
            _add_star(flux, pos[0], pos[1], sigma, peak, tint)

    n_background = int(rng.integers(1, max(2, round(6 * area)) + 1))
    for _ in range(n_background):
        r_e = max(0.8, float(rng.uniform(1.5, 4.0)) * scale)
        comp_params = (
            float(rng.uniform(0.8, 2.0)),  # n
            float(rng.uniform(0.4, 1.0)),  # q
            float(rng.uniform(0.0, math.pi)),  # angle
            float(rng.uniform(0.005, 0.02)),  # i_e: faint
        )
        tint = _jitter_tint(rng, (1.0, 0.85, 0.7))
        pos = _place(rng, size, _CLEAR_RADIUS_RE * r_e + 1.0, zones)
        if pos is not None:
            n, q, angle, i_e = comp_params
            _add_sersic(flux, Sersic(pos[0], pos[1], r_e, n, q, angle, i_e, _as_tint(tint)))

    sky = float(rng.uniform(*_SKY_RANGE)) * (1.0 + rng.normal(0.0, 0.05, 3))
    noise_sigma = float(rng.uniform(*_NOISE_SIGMA_RANGE))
    display = np.arcsinh(flux / _STRETCH_SOFTENING)
    display *= _DISPLAY_GAIN / math.asinh(1.0 / _STRETCH_SOFTENING)
    display += sky
    display += rng.normal(0.0, noise_sigma, display.shape)

    if kind == "stripe":
        assert galaxy is not None
        # Offset small compared with the minor axis so the stripe crosses bright light.
        max_offset = 0.3 * (1.0 - galaxy.ellipticity) * galaxy.r_e
        mask = _stripe_mask(rng, size, galaxy.x, galaxy.y, max_offset)
        display[mask] = rng.integers(0, _STRIPE_MAX_VALUE + 1, size=(int(mask.sum()), 1))

    image = np.clip(np.rint(display), 0, 255).astype(np.uint8)

    nan = float("nan")
    truth: dict[str, str | float] = {
        "galaxy_class": galaxy_class if galaxy is not None else "none",
        "kind": kind,
        "x": galaxy.x if galaxy is not None else nan,
        "y": galaxy.y if galaxy is not None else nan,
        "angle_deg": galaxy.angle_deg if galaxy is not None else nan,
        "radius_px": galaxy.r_e if galaxy is not None else nan,
        "ellipticity": galaxy.ellipticity if galaxy is not None else nan,
        "expected_status": "kept" if kind == "normal" else "rejected",
        "expected_reason": "" if kind == "normal" else kind,
    }
    return image, truth


def _kind_counts(count: int, fractions: GalaxyFractions) -> dict[str, int]:
    counts: dict[str, int] = {}
    remaining = count
    for name in ("overlap", "stripe", "no_galaxy"):
        # Clamp so that rounding several fractions up can never exceed ``count``.
        wanted = round(count * float(getattr(fractions, name)))
        counts[name] = min(wanted, remaining)
        remaining -= counts[name]
    counts["normal"] = remaining
    return counts


def generate_galaxies(
    out_dir: str | os.PathLike[str],
    *,
    count: int,
    seed: int,
    size: int = 424,
    fractions: GalaxyFractions | None = None,
    quality: int = 90,
) -> pd.DataFrame:
    """Write a collection of synthetic cutouts as JPEGs plus ``truth.csv``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output directory; created (with parents) if missing. Files named
        ``{image_id}.jpg``, ``truth.csv`` and ``manifest.csv`` are overwritten; nothing else
        is touched.
    count : int
        Number of cutouts, at least 1.
    seed : int
        Non-negative seed. The same seed gives byte-identical files, and cutout ``i``
        of a given kind and class does not depend on ``count``.
    size : int, default 424
        Cutout width and height in pixels, at least 64.
    fractions : GalaxyFractions, optional
        Fractions of defective kinds; defaults to ``GalaxyFractions()``. Exactly
        ``round(count * fraction)`` cutouts get each defect (taken in the order
        overlap, stripe, no_galaxy and clamped so the total never exceeds ``count``);
        the rest are ``"normal"``. Kinds are then shuffled with the seed.
    quality : int, default 90
        JPEG quality passed to Pillow, in ``[1, 100]``.

    Returns
    -------
    pandas.DataFrame
        One row per cutout with columns :data:`TRUTH_COLUMNS`: ``image_id``
        (zero-padded string, at least 6 digits, e.g. ``"000017"``), the truth keys of
        :func:`render_galaxy_image` and ``file`` (the JPEG file name). The same table
        is written to ``out_dir / "truth.csv"``; read it back with :func:`load_truth`
        to keep ``image_id`` as a string and ``expected_reason`` as ``""``.

    Raises
    ------
    ValueError
        If ``count``, ``seed``, ``size`` or ``quality`` is out of range.
    TypeError
        If ``fractions`` is not a :class:`GalaxyFractions`.

    Notes
    -----
    Each cutout ``i`` draws its class and pixels from its own generator seeded with
    ``SeedSequence(seed, spawn_key=(0, i))``; the kind shuffle uses
    ``spawn_key=(1,)``.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    size = _validate_size(size)
    if (
        isinstance(quality, bool)
        or not isinstance(quality, (int, np.integer))
        or not 1 <= quality <= 100
    ):
        raise ValueError(f"quality must be an integer in [1, 100], got {quality!r}")
    if fractions is None:
        fractions = GalaxyFractions()
    elif not isinstance(fractions, GalaxyFractions):
        raise TypeError(
            f"fractions must be a GalaxyFractions or None, got {type(fractions).__name__}"
        )
    count, seed = int(count), int(seed)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    kinds = [kind for kind, n in _kind_counts(count, fractions).items() for _ in range(n)]
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    order = shuffle_rng.permutation(count)
    kinds = [kinds[i] for i in order]

    width = max(6, len(str(count - 1)))
    rows: list[dict[str, str | float]] = []
    for i, kind in enumerate(kinds):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, i)))
        # Drawn even for no_galaxy so the stream for later draws has a fixed layout.
        galaxy_class = GALAXY_CLASSES[int(rng.integers(len(GALAXY_CLASSES)))]
        if kind == "no_galaxy":
            galaxy_class = "none"
        image, truth = render_galaxy_image(rng, size=size, galaxy_class=galaxy_class, kind=kind)
        image_id = f"{i:0{width}d}"
        file_name = f"{image_id}.jpg"
        Image.fromarray(image).save(out / file_name, format="JPEG", quality=int(quality))
        rows.append({"image_id": image_id, **truth, "file": file_name})

    frame = pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))
    frame.to_csv(out / TRUTH_FILENAME, index=False, lineterminator="\n")
    frame[["file", "image_id", "galaxy_class", "kind"]].to_csv(
        out / MANIFEST_FILENAME, index=False, lineterminator="\n"
    )
    return frame


def load_truth(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``truth.csv`` written by :func:`generate_galaxies`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, or the directory that holds ``truth.csv``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TRUTH_COLUMNS`, with ``image_id`` kept as a zero-padded
        string, ``expected_reason`` as ``""`` for normal cutouts and NaN geometry for
        ``"no_galaxy"`` cutouts.
    """
    csv_path = Path(path)
    if csv_path.is_dir():
        csv_path = csv_path / TRUTH_FILENAME
    string_cols = ("image_id", "galaxy_class", "kind", "expected_status", "expected_reason", "file")
    return pd.read_csv(
        csv_path,
        dtype=dict.fromkeys(string_cols, str),
        keep_default_na=False,
        na_values={"x": [""], "y": [""], "angle_deg": [""], "radius_px": [""], "ellipticity": [""]},
    )
