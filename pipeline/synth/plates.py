"""Synthetic bright-field plates of tumour spheroids with known truth.

The spheroid thesis (seed 001) images one 3D tumour spheroid per well of a 96-well plate
in bright field on days 7-10; the drug is applied on day 7 and its efficacy shows as
growth or shrinkage, loss of circularity, a change of darkness and, for strong drugs, the
disintegration ("explosion") of the spheroid into debris. Real plates cannot be shipped
with the project, so tests and demos use these instead.

Image model (all lengths are fractions of the image side unless named ``*_px``):

* **Spheroid**: a dark, textured, star-shaped body. Its boundary is
  ``r(theta) = R * (1 + low(theta) + roughness * high(theta))`` with low-order harmonics
  (k = 2..4, the resting shape of the spheroid) and high-order ones (k = 5..24, the
  ragged boundary of a dying one). Light is absorbed as ``T = exp(-OD)``; the optical
  density falls from ``core_od`` at the centre like the thickness of a sphere, to a floor
  at the boundary, with a darker refractive outline, multiplicative texture (cells and
  clumps), and a lighter halo just outside the boundary.
* **Debris** of an exploded spheroid: small dark ellipses scattered around a smaller,
  lighter, looser body; they drift outwards over the days after treatment.
* **Well and optics**: a light background with smooth vignetting and a linear gradient,
  the meniscus shadow of the well (a darker crescent/ring near the image border, whose
  centre is off the image centre), a Gaussian PSF, shot noise (Gaussian approximation of
  Poisson) plus read noise, quantised to 16- or 8-bit counts.

Each well's state (:class:`WellState`) is drawn once and rendered for every day and field
(:func:`render_well`), so the same spheroid evolves across the days of a well and the fields
are views of it from slightly different stage positions. :func:`render_example` renders one
image from a seed alone for tests; :func:`generate_plates` writes whole plates, their plate
map and truth tables.

Coordinates: ``centre_x`` is the column index and ``centre_y`` the row index of a pixel
centre (as in :mod:`pipeline.synth.galaxies`). Wells are named ``"A01"``...``"H12"``
(``"P24"`` on 384-well plates), plates ``"P01"``, ...
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import tifffile
from scipy import ndimage

__all__ = [
    "FAULTS",
    "IMAGE_INDEX_COLUMNS",
    "IMAGE_TRUTH_COLUMNS",
    "PLATE_GROUPS",
    "PLATE_MAP_COLUMNS",
    "PLATE_TRUTH_COLUMNS",
    "PlateSynthParams",
    "RenderedWell",
    "SpheroidDay",
    "WellState",
    "draw_well",
    "generate_plates",
    "is_edge_well",
    "load_image_truth",
    "load_plate_truth",
    "plate_map",
    "render_example",
    "render_well",
    "spheroid_on_day",
    "well_names",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

FAULTS: Final[tuple[str, ...]] = ("empty_well", "out_of_focus", "touches_edge", "multiple_bodies")
"""Image faults a QC step is expected to flag (``""`` means none)."""

WELL_FAULTS: Final[tuple[str, ...]] = ("empty_well", "multiple_bodies")
"""Faults of the well itself: they hold on every day and field of the well."""

PLATE_GROUPS: Final[tuple[str, ...]] = ("untreated", "positive_control", "single", "screening")
"""Experimental groups of the plate map (the thesis' three plus a positive control)."""

PLATE_MAP_COLUMNS: Final[tuple[str, ...]] = (
    "plate",
    "well",
    "treatment",
    "concentration",
    "unit",
    "group",
)
"""Columns of ``plate_map.csv``."""

PLATE_TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    *PLATE_MAP_COLUMNS,
    "efficacy",
    "viability",
    "exploded",
    "edge",
    "well_efficacy",
    "well_fault",
)
"""Columns of ``truth.csv`` and of the frame :func:`generate_plates` returns."""

IMAGE_INDEX_COLUMNS: Final[tuple[str, ...]] = ("file", "plate", "well", "field", "day")
"""Columns of ``image_index.csv``."""

IMAGE_TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    *IMAGE_INDEX_COLUMNS,
    "fault",
    "spheroid_area_px",
    "debris_area_px",
    "exploded",
    "centre_x",
    "centre_y",
)
"""Columns of ``image_truth.csv``."""

MIN_SIZE: Final = 64
_MAX_FIELDS: Final = 9
# The boundary shape is tabulated on this many angles and looked up per pixel, which is
# ~10x cheaper than summing 15 harmonics at every pixel of a 1024 px image.
_N_ANGLES: Final = 2048
_LOW_K: Final = np.arange(2, 5)
_HIGH_K: Final = np.arange(5, 25)
_SHAPE_CLIP: Final = (0.5, 1.6)


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not low <= value[0] <= value[1] <= high
    ):
        raise ValueError(
            f"PlateSynthParams.{name} must be a (low, high) pair with "
            f"{low} <= low <= high <= {high}, got {value!r}"
        )


@dataclass(frozen=True)
class PlateSynthParams:
    """Every parameter of the synthetic plate generator, with its physical meaning.

    Lengths are **fractions of the image side** (``px = fraction * size``) unless the name
    says otherwise; "per day" rates act per day after ``treatment_day``; ``(low, high)``
    pairs are uniform ranges drawn once per well. "Efficacy" ``e`` in ``[0, 1]`` is the
    well's effective efficacy (the treatment's plus replicate scatter; 0 when untreated).

    Parameters
    ----------
    treatment_day : int, default 7
        Day the drug is applied. Images on or before it show no drug effect; ``t = day -
        treatment_day`` (days since treatment, >= 0) drives every effect below.
    radius_day7 : (float, float), default (0.12, 0.16)
        Equivalent radius ``R0`` of the spheroid body on ``treatment_day`` (fraction of the
        side: 123-164 px at 1024 px).
    centre_jitter : float, default 0.04
        Largest offset of the spheroid from the well centre (uniform over a disc).
    field_offset : float, default 0.06
        Largest offset of a field's view from the well centre (uniform over a disc); the
        spheroid and the meniscus shadow move together by minus this offset.
    reposition_jitter : float, default 0.004
        Standard deviation of the stage's re-positioning error per day and axis.
    border_margin : float, default 0.02
        Smallest gap between a normal image's spheroid body and the image border; a view
        that would come closer is shifted inwards (only ``touches_edge`` cuts the body).
    growth_per_day : float, default 0.07
        Log-radius growth rate of an untreated spheroid per day (radius x1.073 a day, area
        +15 % a day; day 10 radius = 1.23 R0). Also extrapolates days before treatment.
    shrink_per_day : float, default 0.06
        Log-radius shrink rate per day at efficacy 1: the rate is ``growth * (1 - e) -
        shrink_per_day * e`` (radius x0.84 from day 7 to day 10 at ``e = 1``).
    growth_scatter : float, default 0.15
        Relative standard deviation of a well's growth rate (replicate scatter).
    efficacy_scatter : float, default 0.05
        Standard deviation of a treated well's effective efficacy around its treatment's
        (replicate scatter; used by :func:`generate_plates`, clipped to ``[0, 1]``).
    base_irregularity : float, default 0.03
        RMS relative deviation of the boundary radius of an untreated spheroid (harmonics
        2-4); circularity (4 pi area / perimeter^2) is then 0.98-1.0.
    irregularity_per_day : float, default 0.025
        RMS relative radius roughness (harmonics 5-24) added per day at efficacy 1
        (circularity 0.72-0.85 on day 10 at ``e = 0.6``).
    core_od : (float, float), default (1.4, 1.9)
        Optical density at the body centre on ``treatment_day`` (transmission
        ``exp(-od)``: 25 %-15 % of the background).
    od_size_exponent : float, default 0.5
        A growing spheroid darkens as ``(R / R0) ** od_size_exponent`` (it gets thicker).
    od_change_per_day : float, default -0.08
        Relative change of the optical density per day at efficacy 1 (negative: treated
        spheroids get lighter, -24 % by day 10 at ``e = 1``).
    edge_od_fraction : float, default 0.25
        Optical density at the boundary as a fraction of the centre's (a sphere's thickness
        profile above this floor), so the body edge is sharp.
    rim_od : float, default 0.35
        Extra optical density of the dark refractive outline at the boundary.
    rim_width : float, default 0.03
        Width of that outline as a fraction of the body radius (at least 1 px).
    halo_gain : float, default 0.12
        Relative brightening of the light halo just outside the boundary.
    halo_width : float, default 0.06
        Width of the halo as a fraction of the body radius (at least 2 px).
    texture_amplitude : float, default 0.15
        Relative standard deviation of the optical density texture inside the body.
    texture_scale : float, default 0.003
        Smoothing sigma of the fine texture (granularity; coarse clumps use 4x).
    explode_threshold : float, default 0.7
        Wells whose efficacy exceeds this disintegrate ("explode") from the day after
        treatment. Severity ``s = 0.3 + 0.7 (e - threshold) / (1 - threshold)``; progress
        ``p = min(1, t / explode_days)``.
    explode_days : float, default 3.0
        Days from treatment until the disintegration is complete.
    explode_shrink : float, default 0.3
        Fraction of the body radius lost at full severity and progress.
    explode_od_loss : float, default 0.35
        Fraction of the body's optical density lost at full severity and progress.
    explode_roughness : float, default 0.08
        Extra RMS radius roughness at full severity and progress.
    debris_count : (int, int), default (15, 60)
        Number of fragments at full severity and progress (drawn per well; at least 3 are
        shown once a well explodes, ``round(n * s * p)`` in general).
    debris_radius : (float, float), default (0.004, 0.014)
        Semi-major axis of a fragment.
    debris_spread : float, default 1.0
        Farthest reach of fragments beyond the body boundary, in body radii, at full
        progress (they drift outwards from the boundary as ``p`` grows).
    edge_radius_factor : float, default 0.9
        Outer wells (evaporation): day-7 radius multiplied by this (smaller).
    edge_growth_factor : float, default 0.5
        Outer wells: growth rate multiplied by this.
    edge_od_factor : float, default 0.85
        Outer wells: optical density multiplied by this (brighter).
    edge_scatter_factor : float, default 2.0
        Outer wells: radius range half-width, growth scatter and efficacy scatter
        multiplied by this (more variable).
    edge_meniscus_factor : float, default 1.5
        Outer wells: meniscus shadow strength multiplied by this (less medium).
    edge_viability_loss : float, default 0.1
        Outer wells: viability multiplied by ``1 - edge_viability_loss``.
    background_level : float, default 0.72
        Background brightness at the image centre as a fraction of full scale.
    vignetting : (float, float), default (0.08, 0.18)
        Relative brightness loss at the image corners (quadratic in the radius).
    gradient : float, default 0.06
        Largest relative brightness change of the linear illumination gradient across the
        image side (direction uniform).
    meniscus_strength : (float, float), default (0.25, 0.45)
        Largest relative darkening by the meniscus shadow.
    meniscus_radius : float, default 0.45
        Distance from the shadow's centre where the shadow starts.
    meniscus_width : float, default 0.3
        Distance over which the shadow reaches full strength (smoothstep).
    meniscus_offset : (float, float), default (0.05, 0.2)
        Offset of the shadow's centre from the image centre (direction uniform), which
        makes the ring a crescent.
    psf_sigma : float, default 0.0012
        Gaussian PSF sigma (at least 0.5 px): 1.2 px at 1024 px.
    defocus_sigma : float, default 0.015
        Blur sigma of an ``out_of_focus`` image (15 px at 1024 px).
    full_scale_photons : float, default 4000.0
        Photo-electrons at full scale: sets the shot noise (background SNR about 54).
    read_noise : float, default 8.0
        Read noise in electrons (standard deviation).
    single_drug, single_concentration, single_efficacy : str, float, float
        The ``single`` group: ``"gemcitabine"`` at 1.0 ``unit``, efficacy 0.5.
    positive_control : bool, default True
        Whether the plate has a ``positive_control`` group (else its wells are untreated).
    positive_drug, positive_concentration, positive_efficacy : str, float, float
        The positive control: ``"staurosporine"`` at 1.0 ``unit``, efficacy 0.95.
    screening_drugs : tuple of str
        Drug combinations of the ``screening`` group (each drug at the listed
        concentration), default five pancreatic-cancer pairs.
    screening_concentrations : tuple of float, default (0.1, 1.0)
        Concentrations of the screening group, in ``unit``.
    screening_emax : (float, float), default (0.3, 1.0)
        Maximal efficacies of the combinations: evenly spaced over this range and
        assigned to the combinations in a seeded order.
    hill : float, default 2.0
        Hill slope ``h`` of the screening dose response ``e = emax c^h / (c^h + ec50^h)``,
        ``ec50`` log-uniform between the smallest and the largest concentration / 3.
    unit : str, default "uM"
        Concentration unit.
    viability_noise : float, default 0.05
        Standard deviation of the day-10 viability read-out (``1 - e``, relative to
        untreated wells).

    Raises
    ------
    ValueError
        If a value is out of its range (the message names the field).
    """

    treatment_day: int = 7
    radius_day7: tuple[float, float] = (0.12, 0.16)
    centre_jitter: float = 0.04
    field_offset: float = 0.06
    reposition_jitter: float = 0.004
    border_margin: float = 0.02
    growth_per_day: float = 0.07
    shrink_per_day: float = 0.06
    growth_scatter: float = 0.15
    efficacy_scatter: float = 0.05
    base_irregularity: float = 0.03
    irregularity_per_day: float = 0.025
    core_od: tuple[float, float] = (1.4, 1.9)
    od_size_exponent: float = 0.5
    od_change_per_day: float = -0.08
    edge_od_fraction: float = 0.25
    rim_od: float = 0.35
    rim_width: float = 0.03
    halo_gain: float = 0.12
    halo_width: float = 0.06
    texture_amplitude: float = 0.15
    texture_scale: float = 0.003
    explode_threshold: float = 0.7
    explode_days: float = 3.0
    explode_shrink: float = 0.3
    explode_od_loss: float = 0.35
    explode_roughness: float = 0.08
    debris_count: tuple[int, int] = (15, 60)
    debris_radius: tuple[float, float] = (0.004, 0.014)
    debris_spread: float = 1.0
    edge_radius_factor: float = 0.9
    edge_growth_factor: float = 0.5
    edge_od_factor: float = 0.85
    edge_scatter_factor: float = 2.0
    edge_meniscus_factor: float = 1.5
    edge_viability_loss: float = 0.1
    background_level: float = 0.72
    vignetting: tuple[float, float] = (0.08, 0.18)
    gradient: float = 0.06
    meniscus_strength: tuple[float, float] = (0.25, 0.45)
    meniscus_radius: float = 0.45
    meniscus_width: float = 0.3
    meniscus_offset: tuple[float, float] = (0.05, 0.2)
    psf_sigma: float = 0.0012
    defocus_sigma: float = 0.015
    full_scale_photons: float = 4000.0
    read_noise: float = 8.0
    single_drug: str = "gemcitabine"
    single_concentration: float = 1.0
    single_efficacy: float = 0.5
    positive_control: bool = True
    positive_drug: str = "staurosporine"
    positive_concentration: float = 1.0
    positive_efficacy: float = 0.95
    screening_drugs: tuple[str, ...] = (
        "gemcitabine+paclitaxel",
        "fluorouracil+oxaliplatin",
        "fluorouracil+irinotecan",
        "gemcitabine+cisplatin",
        "oxaliplatin+irinotecan",
    )
    screening_concentrations: tuple[float, ...] = (0.1, 1.0)
    screening_emax: tuple[float, float] = (0.3, 1.0)
    hill: float = 2.0
    unit: str = "uM"
    viability_noise: float = 0.05

    def __post_init__(self) -> None:
        ranges = {
            "radius_day7": (0.01, 0.3),
            "core_od": (0.0, 10.0),
            "debris_radius": (0.0005, 0.1),
            "vignetting": (0.0, 0.9),
            "meniscus_strength": (0.0, 0.95),
            "meniscus_offset": (0.0, 1.0),
            "screening_emax": (0.0, 1.0),
            "debris_count": (0.0, 10_000.0),
        }
        for name, (low, high) in ranges.items():
            _check_range(name, getattr(self, name), low, high)
        unit_interval = (
            "explode_threshold",
            "explode_shrink",
            "explode_od_loss",
            "edge_od_fraction",
            "single_efficacy",
            "positive_efficacy",
            "background_level",
            "edge_viability_loss",
        )
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ranges or isinstance(value, (str, tuple)):
                continue
            if isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(
                    f"PlateSynthParams.{field.name} must be a finite number, got {value!r}"
                )
            if field.name in unit_interval and not 0.0 <= value <= 1.0:
                raise ValueError(f"PlateSynthParams.{field.name} must be in [0, 1], got {value!r}")
            if field.name != "od_change_per_day" and value < 0:
                raise ValueError(f"PlateSynthParams.{field.name} must be >= 0, got {value!r}")
        if self.explode_threshold >= 1.0:
            raise ValueError(
                f"PlateSynthParams.explode_threshold must be below 1, got {self.explode_threshold}"
            )
        if self.explode_days <= 0 or self.full_scale_photons <= 0:
            raise ValueError("PlateSynthParams.explode_days and full_scale_photons must be > 0")
        if not self.screening_drugs or not self.screening_concentrations:
            raise ValueError(
                "PlateSynthParams.screening_drugs and screening_concentrations must not be empty"
            )
        if any(not (c > 0 and math.isfinite(c)) for c in self.screening_concentrations):
            raise ValueError(
                "PlateSynthParams.screening_concentrations must be positive, got "
                f"{self.screening_concentrations!r}"
            )


@dataclass(frozen=True)
class RenderedWell:
    """One rendered bright-field image and its truth.

    Attributes
    ----------
    image : numpy.ndarray, shape (size, size)
        Bright-field counts, uint16 (or uint8 for ``bit_depth=8``); light background,
        dark spheroid.
    mask : numpy.ndarray of uint8, shape (size, size)
        True labels before blur: 0 background, 1 spheroid body (two or more separate bodies
        for ``multiple_bodies``), 2 debris.
    fault : str
        ``""`` or one of :data:`FAULTS`.
    exploded : bool
        Whether this image shows a disintegrated spheroid with debris.
    centre_x, centre_y : float
        Centre of the (main) spheroid body in px (column, row); NaN for ``empty_well``.
    """

    image: np.ndarray
    mask: np.ndarray
    fault: str
    exploded: bool
    centre_x: float = math.nan
    centre_y: float = math.nan


@dataclass(frozen=True, eq=False)
class WellState:
    """The state of one well's spheroid, drawn once by :func:`draw_well`.

    Lengths are fractions of the image side. Rendering it for a day and field
    (:func:`render_well`) gives the same spheroid evolving over the days.

    Attributes
    ----------
    efficacy : float
        Effective efficacy of the well in ``[0, 1]`` (0: untreated).
    edge : bool
        Whether the well is an outer well (edge effect applied).
    radius0 : float
        Equivalent body radius on the treatment day.
    growth : float
        Untreated log-radius growth rate per day of this well.
    core_od : float
        Optical density at the body centre on the treatment day.
    offset : numpy.ndarray, shape (2,)
        Offset ``(dx, dy)`` of the spheroid from the well centre.
    field_offsets : numpy.ndarray, shape (n_fields, 2)
        Offset ``(dx, dy)`` of each field's view from the well centre.
    low_shape, high_shape : numpy.ndarray, shape (2048,)
        Resting (RMS ``base_irregularity``) and unit-RMS roughness boundary modulations
        tabulated on angles ``2 pi i / 2048`` (counter-clockwise from +x, rows down).
    debris : numpy.ndarray, shape (n, 6)
        Fragments in their order of appearance: angle (rad), reach in ``[0, 1]``, semi-major
        axis, axis ratio, orientation (rad), optical density relative to the body's.
    debris_max : int
        Fragments shown at full severity and progress.
    second : tuple of float
        Second body for ``multiple_bodies``: radius relative to the main body, direction
        (rad), and a phase that rotates its shape.
    vignetting, gradient, gradient_angle : float
        Illumination: corner fall-off, linear gradient amplitude and its direction (rad).
    meniscus_strength : float
        Largest relative darkening of the meniscus shadow.
    meniscus_centre : numpy.ndarray, shape (2,)
        Offset of the shadow's centre from the well centre.
    """

    efficacy: float
    edge: bool
    radius0: float
    growth: float
    core_od: float
    offset: FloatArray
    field_offsets: FloatArray
    low_shape: FloatArray
    high_shape: FloatArray
    debris: FloatArray
    debris_max: int
    second: tuple[float, float, float]
    vignetting: float
    gradient: float
    gradient_angle: float
    meniscus_strength: float
    meniscus_centre: FloatArray


@dataclass(frozen=True)
class SpheroidDay:
    """The spheroid of a well on one day, as :func:`spheroid_on_day` derives it.

    Attributes
    ----------
    radius : float
        Equivalent body radius (fraction of the image side).
    roughness : float
        RMS relative radius roughness (harmonics 5-24).
    core_od : float
        Optical density at the body centre.
    texture_amplitude : float
        Relative standard deviation of the body's texture.
    exploded : bool
        Whether the spheroid has disintegrated (efficacy above the threshold and at least
        one day after treatment).
    n_debris : int
        Number of debris fragments shown.
    progress : float
        Disintegration progress ``p`` in ``[0, 1]`` (0 when not exploded).
    """

    radius: float
    roughness: float
    core_od: float
    texture_amplitude: float
    exploded: bool
    n_debris: int
    progress: float


# --------------------------------------------------------------------------- plate layout


def well_names(wells: int = 96) -> list[str]:
    """Well names of a plate in row-major order.

    Parameters
    ----------
    wells : {96, 384}
        Plate format: 8 x 12 (``"A01"``..``"H12"``) or 16 x 24 (``"A01"``..``"P24"``).

    Returns
    -------
    list of str
        Zero-padded names, row letter then two-digit column.
    """
    n_rows, n_cols = _plate_shape(wells)
    return [f"{chr(ord('A') + r)}{c + 1:02d}" for r in range(n_rows) for c in range(n_cols)]


def is_edge_well(well: str, wells: int = 96) -> bool:
    """Whether ``well`` (e.g. ``"A05"``) lies on the outer ring of the plate.

    Parameters
    ----------
    well : str
        Well name, row letter then column number.
    wells : {96, 384}
        Plate format.

    Returns
    -------
    bool
        True for the first and last row and column (rows A/H and columns 1/12 on 96 wells).
    """
    n_rows, n_cols = _plate_shape(wells)
    row = ord(well[0].upper()) - ord("A")
    col = int(well[1:]) - 1
    if not (0 <= row < n_rows and 0 <= col < n_cols):
        raise ValueError(f"well {well!r} is not on a {wells}-well plate")
    return row in (0, n_rows - 1) or col in (0, n_cols - 1)


def _plate_shape(wells: int) -> tuple[int, int]:
    if wells == 96:
        return 8, 12
    if wells == 384:
        return 16, 24
    raise ValueError(f"wells must be 96 or 384, got {wells!r}")


def _screening_efficacies(params: PlateSynthParams, seed: int) -> dict[tuple[str, float], float]:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    n = len(params.screening_drugs)
    emax = np.linspace(params.screening_emax[0], params.screening_emax[1], n)
    emax = emax[rng.permutation(n)]
    c_lo, c_hi = min(params.screening_concentrations), max(params.screening_concentrations)
    # EC50 at most a third of the top concentration, so the top dose of the strongest
    # combination explodes the spheroid (0.9 emax at h = 2).
    log_ec50 = rng.uniform(
        math.log(c_lo), math.log(c_hi / 3.0) if c_hi / 3.0 > c_lo else math.log(c_lo), n
    )
    out: dict[tuple[str, float], float] = {}
    for i, drug in enumerate(params.screening_drugs):
        ec50 = math.exp(float(log_ec50[i]))
        for conc in params.screening_concentrations:
            ratio = (conc / ec50) ** params.hill
            out[(drug, float(conc))] = float(emax[i] * ratio / (1.0 + ratio))
    return out


def plate_map(
    wells: int = 96, *, seed: int = 0, params: PlateSynthParams | None = None
) -> pd.DataFrame:
    """The plate layout with each treatment's ground-truth efficacy.

    Parameters
    ----------
    wells : {96, 384}
        Plate format.
    seed : int, default 0
        Seed of the screening combinations' dose responses.
    params : PlateSynthParams, optional
        Treatments and dose-response parameters; defaults to ``PlateSynthParams()``.

    Returns
    -------
    pandas.DataFrame
        One row per well in row-major order: ``well``, ``treatment``, ``concentration``
        (float, 0 for untreated), ``unit``, ``group`` (one of :data:`PLATE_GROUPS`),
        ``efficacy`` (the treatment's, in ``[0, 1]``) and ``edge`` (bool).

    Notes
    -----
    As in the thesis, the experiment uses the inner wells (60 on 96-well plates); the outer
    ring holds untreated spheroids (``edge=True``), where the edge effect shows but no
    treatment is confounded with it. With ``k = max(1, inner_columns // 10)`` (1 on 96, 2
    on 384 wells) the inner columns are, left to right: ``k`` untreated, ``k`` positive
    control, ``2k`` single dose, the rest screening, and ``k`` untreated. On 96 wells:
    columns 2 and 11 untreated, 3 positive control, 4-5 single, 6-10 screening. Screening
    conditions (combination x concentration, in that order) fill the screening columns
    top to bottom, left to right, in blocks of equal replicate counts (3 on 96 wells, 16
    on 384); leftover wells are untreated.
    """
    params = params if params is not None else PlateSynthParams()
    n_rows, n_cols = _plate_shape(wells)
    unit = params.unit
    untreated = ("untreated", 0.0, "untreated", 0.0)
    inner_cols = list(range(1, n_cols - 1))
    k = max(1, len(inner_cols) // 10)
    col_group: dict[int, str] = {}
    for i, col in enumerate(inner_cols):
        if i < k or i >= len(inner_cols) - k:
            col_group[col] = "untreated"
        elif i < 2 * k:
            col_group[col] = "positive_control" if params.positive_control else "untreated"
        elif i < 4 * k:
            col_group[col] = "single"
        else:
            col_group[col] = "screening"
    efficacies = _screening_efficacies(params, seed)
    conditions = [
        (d, float(c)) for d in params.screening_drugs for c in params.screening_concentrations
    ]
    inner_rows = range(1, n_rows - 1)
    screening_wells = [
        (r, c) for c in inner_cols if col_group[c] == "screening" for r in inner_rows
    ]
    reps = len(screening_wells) // len(conditions)
    if reps < 1:
        raise ValueError(
            f"{len(conditions)} screening conditions do not fit the {len(screening_wells)} "
            f"screening wells of a {wells}-well plate; use fewer drugs or concentrations"
        )
    screening_of = {
        well: conditions[i // reps]
        for i, well in enumerate(screening_wells)
        if i // reps < len(conditions)
    }
    rows = []
    for r in range(n_rows):
        for c in range(n_cols):
            edge = r in (0, n_rows - 1) or c in (0, n_cols - 1)
            group = "untreated" if edge else col_group[c]
            if group == "positive_control":
                entry = (
                    params.positive_drug,
                    params.positive_concentration,
                    group,
                    params.positive_efficacy,
                )
            elif group == "single":
                entry = (
                    params.single_drug,
                    params.single_concentration,
                    group,
                    params.single_efficacy,
                )
            elif group == "screening" and (r, c) in screening_of:
                drug, conc = screening_of[(r, c)]
                entry = (drug, conc, group, efficacies[(drug, conc)])
            else:
                entry = untreated
            rows.append(
                {
                    "well": f"{chr(ord('A') + r)}{c + 1:02d}",
                    "treatment": entry[0],
                    "concentration": float(entry[1]),
                    "unit": unit,
                    "group": entry[2],
                    "efficacy": float(entry[3]),
                    "edge": edge,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- well state


def _unit_shape(rng: np.random.Generator, ks: np.ndarray, exponent: float) -> FloatArray:
    """A random boundary modulation with unit RMS, tabulated on ``_N_ANGLES`` angles."""
    amp = rng.normal(0.0, 1.0, ks.size) / ks**exponent
    phase = rng.uniform(0.0, 2.0 * math.pi, ks.size)
    theta = np.arange(_N_ANGLES) * (2.0 * math.pi / _N_ANGLES)
    shape = (amp[:, None] * np.cos(ks[:, None] * theta[None, :] + phase[:, None])).sum(axis=0)
    rms = float(np.sqrt(np.mean(shape**2)))
    return np.asarray(shape / rms if rms > 0 else shape, dtype=np.float64)


def _disc(rng: np.random.Generator, radius: float) -> FloatArray:
    r = radius * math.sqrt(float(rng.uniform()))
    phi = float(rng.uniform(0.0, 2.0 * math.pi))
    return np.array([r * math.cos(phi), r * math.sin(phi)])


def draw_well(
    rng: np.random.Generator,
    *,
    efficacy: float = 0.0,
    edge: bool = False,
    n_fields: int = 1,
    params: PlateSynthParams | None = None,
) -> WellState:
    """Draw the state of one well's spheroid (once per well).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the same state gives the same well. A fixed number of draws
        is made whatever the arguments, so e.g. ``edge`` changes only what it should.
    efficacy : float, default 0.0
        Effective efficacy of the well in ``[0, 1]`` (no further scatter is added here).
    edge : bool, default False
        Apply the outer-well edge effect (smaller, brighter, more variable, stronger
        meniscus).
    n_fields : int, default 1
        Number of fields (views) to draw offsets for, 1-9.
    params : PlateSynthParams, optional
        Defaults to ``PlateSynthParams()``.

    Returns
    -------
    WellState
    """
    params = params if params is not None else PlateSynthParams()
    if isinstance(efficacy, bool) or not 0.0 <= float(efficacy) <= 1.0:
        raise ValueError(f"efficacy must be a number in [0, 1], got {efficacy!r}")
    if not 1 <= int(n_fields) <= _MAX_FIELDS:
        raise ValueError(f"n_fields must be in [1, {_MAX_FIELDS}], got {n_fields!r}")
    scatter = params.edge_scatter_factor if edge else 1.0
    lo, hi = params.radius_day7
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    radius0 = mid + half * scatter * float(rng.uniform(-1.0, 1.0))
    growth = params.growth_per_day * max(
        0.0, 1.0 + params.growth_scatter * scatter * float(rng.normal())
    )
    core_od = float(rng.uniform(*params.core_od))
    vignetting = float(rng.uniform(*params.vignetting))
    gradient = params.gradient * float(rng.uniform())
    gradient_angle = float(rng.uniform(0.0, 2.0 * math.pi))
    meniscus = float(rng.uniform(*params.meniscus_strength))
    m_r = float(rng.uniform(*params.meniscus_offset))
    m_phi = float(rng.uniform(0.0, 2.0 * math.pi))
    offset = _disc(rng, params.centre_jitter)
    field_offsets = np.stack([_disc(rng, params.field_offset) for _ in range(_MAX_FIELDS)])
    low_shape = _unit_shape(rng, _LOW_K, 1.0) * params.base_irregularity
    high_shape = _unit_shape(rng, _HIGH_K, 0.8)
    d_lo, d_hi = params.debris_count
    debris_max = int(rng.integers(int(d_lo), int(d_hi) + 1))
    n_alloc = int(d_hi)
    debris = np.column_stack(
        [
            rng.uniform(0.0, 2.0 * math.pi, n_alloc),  # angle
            rng.uniform(0.0, 1.0, n_alloc) ** 1.5,  # reach: most fragments stay close
            rng.uniform(*params.debris_radius, n_alloc),  # semi-major axis
            rng.uniform(0.4, 1.0, n_alloc),  # axis ratio
            rng.uniform(0.0, math.pi, n_alloc),  # orientation
            rng.uniform(0.4, 0.9, n_alloc),  # optical density relative to the body
        ]
    )
    second = (
        float(rng.uniform(0.5, 0.8)),
        float(rng.uniform(0.0, 2.0 * math.pi)),
        float(rng.uniform(0.0, 2.0 * math.pi)),
    )
    if edge:
        radius0 *= params.edge_radius_factor
        growth *= params.edge_growth_factor
        core_od *= params.edge_od_factor
        meniscus = min(0.95, meniscus * params.edge_meniscus_factor)
    return WellState(
        efficacy=float(efficacy),
        edge=bool(edge),
        radius0=max(0.01, radius0),
        growth=growth,
        core_od=core_od,
        offset=offset,
        field_offsets=field_offsets[: int(n_fields)],
        low_shape=low_shape,
        high_shape=high_shape,
        debris=debris[: max(debris_max, 0)],
        debris_max=debris_max,
        second=second,
        vignetting=vignetting,
        gradient=gradient,
        gradient_angle=gradient_angle,
        meniscus_strength=meniscus,
        meniscus_centre=np.array([m_r * math.cos(m_phi), m_r * math.sin(m_phi)]),
    )


def spheroid_on_day(
    state: WellState, day: int, params: PlateSynthParams | None = None
) -> SpheroidDay:
    """The spheroid of ``state`` on ``day``: size, shape, darkness and disintegration.

    Parameters
    ----------
    state : WellState
        From :func:`draw_well`.
    day : int
        Culture day (the drug is applied on ``params.treatment_day``).
    params : PlateSynthParams, optional
        Defaults to ``PlateSynthParams()``.

    Returns
    -------
    SpheroidDay

    Notes
    -----
    With ``t = max(0, day - treatment_day)``, ``e`` the efficacy and ``g`` the well's
    growth rate: ``R = R0 exp((g (1 - e) - shrink e) t)`` (before treatment ``R0 exp(g
    (day - treatment_day))``); ``OD = OD0 (R / R0)^a (1 + od_change e t)``; roughness
    ``irregularity_per_day e t``. An exploding well (``e > threshold``, ``t >= 1``) further
    loses ``explode_shrink s p`` of its radius and ``explode_od_loss s p`` of its OD, gains
    ``explode_roughness s p`` roughness and ``(1 + s p)`` times the texture, and shows
    ``max(3, round(debris_max s p))`` fragments.
    """
    params = params if params is not None else PlateSynthParams()
    e = state.efficacy
    dt = float(day - params.treatment_day)
    t = max(0.0, dt)
    if dt < 0:
        log_r = state.growth * dt
    else:
        log_r = (state.growth * (1.0 - e) - params.shrink_per_day * e) * t
    radius = state.radius0 * math.exp(log_r)
    od = state.core_od * math.exp(log_r) ** params.od_size_exponent
    od *= max(0.05, 1.0 + params.od_change_per_day * e * t)
    roughness = params.irregularity_per_day * e * t
    texture = params.texture_amplitude
    exploded = e > params.explode_threshold and t >= 1.0
    n_debris = 0
    progress = 0.0
    if exploded:
        severity = 0.3 + 0.7 * (e - params.explode_threshold) / (1.0 - params.explode_threshold)
        progress = min(1.0, t / params.explode_days)
        sp = severity * progress
        radius *= 1.0 - params.explode_shrink * sp
        od *= 1.0 - params.explode_od_loss * sp
        roughness += params.explode_roughness * sp
        texture *= 1.0 + sp
        n_debris = min(len(state.debris), max(3, round(state.debris_max * sp)))
    return SpheroidDay(
        radius=radius,
        roughness=roughness,
        core_od=od,
        texture_amplitude=texture,
        exploded=exploded,
        n_debris=n_debris,
        progress=progress,
    )


# --------------------------------------------------------------------------- rendering


def _boundary(state: WellState, day: SpheroidDay, phase_shift: float = 0.0) -> FloatArray:
    """Relative boundary radius ``r(theta) / R`` on the tabulated angles."""
    shape = 1.0 + state.low_shape + day.roughness * state.high_shape
    if phase_shift:
        shape = np.roll(shape, int(phase_shift / (2.0 * math.pi) * _N_ANGLES))
    return np.clip(shape, *_SHAPE_CLIP)


def _lookup(table: FloatArray, theta: Float32Array) -> Float32Array:
    """Linear interpolation of a periodic angular table at ``theta`` (rad, any range)."""
    pos = (theta * np.float32(_N_ANGLES / (2.0 * math.pi))) % np.float32(_N_ANGLES)
    i0 = pos.astype(np.int64)
    frac = pos - i0
    t = table.astype(np.float32)
    i0 %= _N_ANGLES
    return np.asarray(t[i0] * (1.0 - frac) + t[(i0 + 1) % _N_ANGLES] * frac, dtype=np.float32)


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> Float32Array:
    """Unit-variance smooth noise: fine granules plus coarser clumps."""
    out = np.zeros(shape, dtype=np.float32)
    for sigma, weight in ((sigma_px, 0.8), (4.0 * sigma_px, 0.6)):
        noise = rng.standard_normal(shape, dtype=np.float32)
        smooth = ndimage.gaussian_filter(noise, sigma, mode="reflect", truncate=3.0)
        # Standard deviation of white noise after a 2D Gaussian filter: 1 / (2 sqrt(pi) s).
        norm = 2.0 * math.sqrt(math.pi) * sigma if sigma > 0.5 else 1.0
        out += np.float32(weight * norm) * smooth
    return out


def _stamp_box(cx: float, cy: float, reach: float, size: int) -> tuple[int, int, int, int]:
    r0 = max(0, math.floor(cy - reach))
    r1 = min(size, math.ceil(cy + reach) + 1)
    c0 = max(0, math.floor(cx - reach))
    c1 = min(size, math.ceil(cx + reach) + 1)
    return r0, r1, c0, c1


def _add_body(
    od: Float32Array,
    halo: Float32Array,
    label: UInt8Array,
    *,
    cx: float,
    cy: float,
    radius_px: float,
    boundary: FloatArray,
    day: SpheroidDay,
    rng: np.random.Generator,
    params: PlateSynthParams,
    size: int,
) -> None:
    """Add one spheroid body's optical density, halo and label 1 to the canvases."""
    halo_px = max(2.0, params.halo_width * radius_px)
    reach = radius_px * float(boundary.max()) + 3.0 * halo_px + 2.0
    r0, r1, c0, c1 = _stamp_box(cx, cy, reach, size)
    if r0 >= r1 or c0 >= c1:
        return
    dy = (np.arange(r0, r1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(c0, c1, dtype=np.float32) - np.float32(cx))[None, :]
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    edge_r = _lookup(boundary, theta) * np.float32(radius_px)
    inside = edge_r - r  # px inside the boundary along the ray (negative outside)
    weight = np.clip(inside + 0.5, 0.0, 1.0)
    rho2 = np.clip((r / np.maximum(edge_r, 1e-3)) ** 2, 0.0, 1.0)
    floor = params.edge_od_fraction
    profile = floor + (1.0 - floor) * np.sqrt(1.0 - rho2)
    tex_sigma = max(0.6, params.texture_scale * size)
    texture = _texture(rng, r.shape, tex_sigma)
    body = day.core_od * profile * np.maximum(0.0, 1.0 + day.texture_amplitude * texture)
    rim_px = max(1.0, params.rim_width * radius_px)
    rim = params.rim_od * np.exp(-((np.maximum(inside, 0.0) / rim_px) ** 2))
    od[r0:r1, c0:c1] += weight * (body + rim).astype(np.float32)
    outside = np.maximum(-inside, 0.0)
    bump = np.exp(-0.5 * ((outside - 0.5 * halo_px) / (0.4 * halo_px)) ** 2)
    halo[r0:r1, c0:c1] += (1.0 - weight) * np.float32(params.halo_gain) * bump
    label[r0:r1, c0:c1][inside >= 0] = 1


def _add_debris(
    od: Float32Array,
    label: UInt8Array,
    *,
    cx: float,
    cy: float,
    radius_px: float,
    boundary: FloatArray,
    state: WellState,
    day: SpheroidDay,
    size: int,
    params: PlateSynthParams,
) -> None:
    """Add the first ``day.n_debris`` fragments of the well around the body."""
    for angle, reach, semi, ratio, orient, od_rel in state.debris[: day.n_debris]:
        idx = int(angle / (2.0 * math.pi) * _N_ANGLES) % _N_ANGLES
        a_px = max(1.0, semi * size)
        dist = (
            radius_px * float(boundary[idx])
            + 0.6 * a_px
            + reach * params.debris_spread * radius_px * (0.3 + 0.7 * day.progress)
        )
        fx = cx + dist * math.cos(angle)
        fy = cy + dist * math.sin(angle)
        r0, r1, c0, c1 = _stamp_box(fx, fy, a_px + 2.0, size)
        if r0 >= r1 or c0 >= c1:
            continue
        dy = (np.arange(r0, r1, dtype=np.float32) - np.float32(fy))[:, None]
        dx = (np.arange(c0, c1, dtype=np.float32) - np.float32(fx))[None, :]
        cos_o, sin_o = math.cos(orient), math.sin(orient)
        u = (dx * cos_o + dy * sin_o) / np.float32(a_px)
        v = (dy * cos_o - dx * sin_o) / np.float32(max(0.7, a_px * ratio))
        rho = np.sqrt(u * u + v * v)
        # Anti-aliased edge about one pixel wide, in units of the minor axis.
        weight = np.clip((1.0 - rho) * np.float32(max(0.7, a_px * ratio)) + 0.5, 0.0, 1.0)
        od[r0:r1, c0:c1] += weight * np.float32(day.core_od * od_rel)
        sub = label[r0:r1, c0:c1]
        sub[(rho <= 1.0) & (sub == 0)] = 2


@dataclass(frozen=True)
class _Canvas:
    """Per-size constant grids, built once per image size."""

    size: int
    vignette: Float32Array  # (r / r_corner)^2 from the image centre
    xs: Float32Array  # column coordinate centred, fraction of the side, shape (1, size)
    ys: Float32Array  # row coordinate centred, fraction of the side, shape (size, 1)


def _canvas(size: int) -> _Canvas:
    c = (size - 1) / 2.0
    xs = ((np.arange(size, dtype=np.float32) - np.float32(c)) / np.float32(size))[None, :]
    ys = ((np.arange(size, dtype=np.float32) - np.float32(c)) / np.float32(size))[:, None]
    vignette = (xs * xs + ys * ys) / np.float32(0.5)
    return _Canvas(size, vignette.astype(np.float32), xs, ys)


def _illumination(
    state: WellState, view: FloatArray, canvas: _Canvas, params: PlateSynthParams
) -> Float32Array:
    """Background light (fraction of full scale): vignetting, gradient and meniscus."""
    g = state.gradient
    gx, gy = g * math.cos(state.gradient_angle), g * math.sin(state.gradient_angle)
    light = 1.0 - np.float32(state.vignetting) * canvas.vignette
    light *= 1.0 + (np.float32(gx) * canvas.xs + np.float32(gy) * canvas.ys)
    mx, my = state.meniscus_centre - view
    d = np.hypot(canvas.xs - np.float32(mx), canvas.ys - np.float32(my))
    s = np.clip(
        (d - np.float32(params.meniscus_radius)) / np.float32(max(params.meniscus_width, 1e-6)),
        0.0,
        1.0,
    )
    light *= 1.0 - np.float32(state.meniscus_strength) * s * s * (3.0 - 2.0 * s)
    return np.asarray(light * np.float32(params.background_level), dtype=np.float32)


def _shift_inside(low: float, high: float, size: int, margin: float) -> float:
    """Shift that moves the span ``[low, high]`` (px) inside the margins, if it fits."""
    if low < margin:
        return margin - low
    if high > size - 1 - margin:
        return size - 1 - margin - high
    return 0.0


def _clamp_centre(c: float, extent: float, size: int, margin: float) -> float:
    lo, hi = extent + margin, size - 1 - extent - margin
    if lo > hi:
        return (size - 1) / 2.0
    return min(max(c, lo), hi)


def render_well(
    state: WellState,
    *,
    day: int,
    field: int = 1,
    size: int = 1024,
    fault: str = "",
    bit_depth: int = 16,
    rng: np.random.Generator,
    params: PlateSynthParams | None = None,
    _canvas_cache: _Canvas | None = None,
) -> RenderedWell:
    """Render one bright-field image of a well on a day, through one field.

    Parameters
    ----------
    state : WellState
        From :func:`draw_well`.
    day : int
        Culture day.
    field : int, default 1
        1-based field (view) number, at most ``len(state.field_offsets)``.
    size : int, default 1024
        Image side in px, at least 64.
    fault : str, default ""
        ``""`` or one of :data:`FAULTS`: ``"empty_well"`` (no spheroid, empty mask),
        ``"out_of_focus"`` (blur sigma ``defocus_sigma``), ``"touches_edge"`` (the view
        is moved so the body is cut by one image border), ``"multiple_bodies"`` (a second,
        separate body of 0.5-0.8 the main radius, both shrunk to 0.75 to fit).
    bit_depth : {16, 8}
        Output ``uint16`` or ``uint8`` counts.
    rng : numpy.random.Generator
        Per-image randomness: texture, re-positioning and noise.
    params : PlateSynthParams, optional
        Defaults to ``PlateSynthParams()``.

    Returns
    -------
    RenderedWell
    """
    params = params if params is not None else PlateSynthParams()
    size = _validate_size(size)
    if fault not in ("", *FAULTS):
        raise ValueError(f"fault must be '' or one of {FAULTS}, got {fault!r}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if not 1 <= field <= len(state.field_offsets):
        raise ValueError(f"field must be in [1, {len(state.field_offsets)}], got {field!r}")
    canvas = (
        _canvas_cache if _canvas_cache is not None and _canvas_cache.size == size else _canvas(size)
    )

    # Fixed draws first so the noise stream does not depend on the fault.
    jitter = rng.normal(0.0, params.reposition_jitter, 2)
    edge_side = int(rng.integers(4))
    edge_depth = float(rng.uniform(0.3, 0.8))
    tex_seed = int(rng.integers(2**63))
    view = state.field_offsets[field - 1] + jitter
    sday = spheroid_on_day(state, day, params)
    tex_rng = np.random.default_rng(tex_seed)

    od = np.zeros((size, size), dtype=np.float32)
    halo = np.zeros((size, size), dtype=np.float32)
    label = np.zeros((size, size), dtype=np.uint8)
    centre_x = centre_y = math.nan
    exploded = False
    margin = params.border_margin * size
    if fault != "empty_well":
        boundary = _boundary(state, sday)
        radius_px = sday.radius * size
        cx, cy = ((size - 1) / 2.0 + (state.offset - view) * size).tolist()
        if fault == "multiple_bodies":
            ratio, direction, phase = state.second
            radius_px *= 0.75
            radius2 = radius_px * ratio
            boundary2 = _boundary(state, sday, phase)
            e1 = radius_px * float(boundary.max())
            e2 = radius2 * float(boundary2.max())
            gap = max(3.0, 0.03 * size)
            sep = e1 + e2 + gap
            # The pair is centred on the view; the extents along both axes fit by design
            # (e1 + e2 + gap < 0.5 size for radii within the documented ranges).
            ux, uy = math.cos(direction), math.sin(direction)
            cx = (size - 1) / 2.0 - ux * sep * e1 / (e1 + e2) + (cx - (size - 1) / 2.0) * 0.3
            cy = (size - 1) / 2.0 - uy * sep * e1 / (e1 + e2) + (cy - (size - 1) / 2.0) * 0.3
            c2x, c2y = cx + ux * sep, cy + uy * sep
            # Shift the pair inwards if it would come closer than the margin to a border.
            dx_in = _shift_inside(min(cx - e1, c2x - e2), max(cx + e1, c2x + e2), size, margin)
            dy_in = _shift_inside(min(cy - e1, c2y - e2), max(cy + e1, c2y + e2), size, margin)
            cx, c2x, cy, c2y = cx + dx_in, c2x + dx_in, cy + dy_in, c2y + dy_in
            _add_body(
                od,
                halo,
                label,
                cx=c2x,
                cy=c2y,
                radius_px=radius2,
                boundary=boundary2,
                day=sday,
                rng=tex_rng,
                params=params,
                size=size,
            )
        else:
            extent = radius_px * float(boundary.max())
            cx = _clamp_centre(cx, extent, size, margin)
            cy = _clamp_centre(cy, extent, size, margin)
            if fault == "touches_edge":
                # Put the border inside the body along the ray towards it: the body's
                # boundary reaches r(theta) there, the border sits at edge_depth of it.
                angle = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)[edge_side]
                reach = radius_px * float(
                    boundary[int(angle / (2 * math.pi) * _N_ANGLES) % _N_ANGLES]
                )
                depth = edge_depth * reach
                if edge_side == 0:
                    cx = size - 1 - depth
                elif edge_side == 1:
                    cy = size - 1 - depth
                elif edge_side == 2:
                    cx = depth
                else:
                    cy = depth
        _add_body(
            od,
            halo,
            label,
            cx=cx,
            cy=cy,
            radius_px=radius_px,
            boundary=boundary,
            day=sday,
            rng=tex_rng,
            params=params,
            size=size,
        )
        if sday.exploded:
            _add_debris(
                od,
                label,
                cx=cx,
                cy=cy,
                radius_px=radius_px,
                boundary=boundary,
                state=state,
                day=sday,
                size=size,
                params=params,
            )
        centre_x, centre_y = float(cx), float(cy)
        exploded = sday.exploded

    light = _illumination(state, view, canvas, params)
    light *= np.exp(-od) * (1.0 + halo)
    sigma = params.defocus_sigma if fault == "out_of_focus" else params.psf_sigma
    light = ndimage.gaussian_filter(light, max(0.5, sigma * size), mode="reflect", truncate=3.0)
    electrons = light * np.float32(params.full_scale_photons)
    noise_sd = np.sqrt(np.maximum(electrons, 0.0) + np.float32(params.read_noise**2))
    electrons += noise_sd * rng.standard_normal((size, size), dtype=np.float32)
    max_dn = 2**bit_depth - 1
    counts = np.rint(electrons * np.float32(max_dn / params.full_scale_photons))
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    image = np.clip(counts, 0, max_dn).astype(dtype)
    return RenderedWell(image, label, fault, exploded, centre_x, centre_y)


def _validate_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")
    return int(size)


def render_example(
    seed: int,
    *,
    size: int = 256,
    efficacy: float = 0.0,
    day: int = 10,
    fault: str = "",
    edge: bool = False,
    bit_depth: int = 16,
) -> RenderedWell:
    """One synthetic bright-field spheroid image from a seed alone (for tests).

    Parameters
    ----------
    seed : int
        Non-negative seed; the same arguments give the same image and mask.
    size : int, default 256
        Image side in px, at least 64.
    efficacy : float, default 0.0
        Efficacy of the well's treatment in ``[0, 1]``; above 0.7 the spheroid explodes
        from day 8 on.
    day : int, default 10
        Culture day; the drug acts from day 7.
    fault : str, default ""
        ``""`` or one of :data:`FAULTS` (see :func:`render_well`).
    edge : bool, default False
        Apply the outer-well edge effect.
    bit_depth : {16, 8}
        Output ``uint16`` or ``uint8``.

    Returns
    -------
    RenderedWell
        Image, true labels (0 background, 1 body, 2 debris), fault and exploded flag.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    well_rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,)))
    image_rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))
    state = draw_well(well_rng, efficacy=efficacy, edge=edge)
    return render_well(state, day=day, size=size, fault=fault, bit_depth=bit_depth, rng=image_rng)


# --------------------------------------------------------------------------- plates on disk


def _check_fields(value: object) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        or not 1 <= int(value[0]) <= int(value[1]) <= _MAX_FIELDS
    ):
        raise ValueError(
            f"fields must be a (low, high) pair of integers with 1 <= low <= high <= "
            f"{_MAX_FIELDS}, got {value!r}"
        )
    return int(value[0]), int(value[1])


def _check_days(value: object) -> tuple[int, ...]:
    if (
        not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        or not all(0 <= int(v) <= 99 for v in value)
        or len(set(int(v) for v in value)) != len(value)
    ):
        raise ValueError(f"days must be distinct integers in [0, 99], got {value!r}")
    return tuple(sorted(int(v) for v in value))


def _write_tiff(path: Path, data: np.ndarray, *, compress: bool) -> None:
    # metadata=None: no ImageDescription (shape JSON) and no DateTime tag, so the same
    # pixels give the same bytes. Images stay uncompressed: shot noise leaves zlib only
    # ~20 % at 25x the write time; the label masks compress ~100x.
    if compress:
        tifffile.imwrite(path, data, metadata=None, compression="zlib")
    else:
        tifffile.imwrite(path, data, metadata=None)


@dataclass(frozen=True)
class _Well:
    plate: int
    index: int
    well: str
    n_fields: int
    viability_noise: float
    state: WellState


def generate_plates(
    out: str | os.PathLike[str],
    *,
    plates: int,
    seed: int,
    size: int = 1024,
    fields: tuple[int, int] | int = (1, 4),
    days: Sequence[int] = (7, 8, 9, 10),
    wells: int = 96,
    bit_depth: int = 16,
    fault_rate: float = 0.03,
    write_masks: bool = False,
    params: PlateSynthParams | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write synthetic bright-field spheroid plates, their plate map and truth tables.

    Parameters
    ----------
    out : str or os.PathLike
        Output folder, created if missing. The files below are overwritten; nothing else is
        touched.
    plates : int
        Number of plates (``"P01"``, ...), at least 1; all share the plate map.
    seed : int
        Non-negative seed. The same arguments give byte-identical files. A well's spheroid
        and images do not depend on ``plates`` (the fault draw does).
    size : int, default 1024
        Image side in px, at least 64 (at 1024 px an image file is 2 MiB).
    fields : (int, int) or int, default (1, 4)
        Range of the number of fields (views) per well, drawn uniformly per well; the
        same fields are imaged every day.
    days : sequence of int, default (7, 8, 9, 10)
        Culture days imaged; the drug is applied on ``params.treatment_day`` (7).
    wells : {96, 384}
        Plate format.
    bit_depth : {16, 8}
        ``uint16`` or ``uint8`` images.
    fault_rate : float, default 0.03
        Fraction of images with a fault, in ``[0, 1]``, split evenly over :data:`FAULTS`.
        ``empty_well`` and ``multiple_bodies`` hold for all images of a well: exactly
        ``round(fault_rate / 4 * n_wells)`` wells each; ``out_of_focus`` and
        ``touches_edge`` each hit exactly ``round(fault_rate / 4 * n_images)`` images of
        the other wells (seeded choice).
    write_masks : bool, default False
        Also write ``masks/<image name>`` (uint8 labels: 0 background, 1 spheroid body,
        2 debris; zlib-compressed TIFF).
    params : PlateSynthParams, optional
        Generator parameters; defaults to ``PlateSynthParams()``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each image.

    Returns
    -------
    pandas.DataFrame
        The per-well truth, columns :data:`PLATE_TRUTH_COLUMNS`: the plate map columns,
        ``efficacy`` (the treatment's ground truth in ``[0, 1]``, 0 untreated),
        ``viability`` (day-10 luminescence-like read-out: ``1 - well_efficacy`` relative to
        untreated, times ``1 - edge_viability_loss`` on outer wells, plus noise; about 0
        for empty wells), ``exploded`` (the well's spheroid disintegrates after
        treatment), ``edge`` (outer well), ``well_efficacy`` (the treatment's efficacy
        with replicate scatter, which drives the images) and ``well_fault`` (``""``,
        ``"empty_well"`` or ``"multiple_bodies"``).

    Notes
    -----
    Files written under ``out``:

    * ``images/P01_A01_f1_d07.tif``: one image per plate, well, field and day.
    * ``image_index.csv``: ``file`` (relative to ``out``), ``plate``, ``well``,
      ``field``, ``day``.
    * ``plate_map.csv``: ``plate``, ``well``, ``treatment``, ``concentration``, ``unit``,
      ``group`` (layout in :func:`plate_map`).
    * ``truth.csv``: the returned table.
    * ``image_truth.csv``: :data:`IMAGE_TRUTH_COLUMNS`, one row per image: ``fault``
      (``""`` when none), ``spheroid_area_px`` and ``debris_area_px`` (label 1 and 2 pixels
      of the true mask), ``exploded`` (debris visible) and ``centre_x``/``centre_y`` (px,
      of the main body; empty for empty wells).

    Seeds: well ``i`` of plate ``p`` draws from ``SeedSequence(seed, spawn_key=(0, p,
    i))``, its image of ``day`` and ``field`` from ``spawn_key=(1, p, i, day, field)``;
    screening dose responses use ``(2,)`` and the fault draw ``(3,)``.
    """
    if isinstance(plates, bool) or not isinstance(plates, (int, np.integer)) or plates < 1:
        raise ValueError(f"plates must be an integer >= 1, got {plates!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    size = _validate_size(size)
    field_range = _check_fields(fields)
    day_list = _check_days(days)
    _plate_shape(wells)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if (
        isinstance(fault_rate, bool)
        or not isinstance(fault_rate, (int, float))
        or not 0.0 <= fault_rate <= 1.0
    ):
        raise ValueError(f"fault_rate must be a number in [0, 1], got {fault_rate!r}")
    if params is None:
        params = PlateSynthParams()
    elif not isinstance(params, PlateSynthParams):
        raise TypeError(f"params must be a PlateSynthParams or None, got {type(params).__name__}")
    plates, seed = int(plates), int(seed)

    layout = plate_map(wells, seed=seed, params=params)
    plate_width = max(2, len(str(plates)))
    plate_names = [f"P{p + 1:0{plate_width}d}" for p in range(plates)]

    # Pass 1: every well's state, drawn once and rendered for every day and field.
    all_wells: list[_Well] = []
    truth_rows: list[dict[str, object]] = []
    for p in range(plates):
        for i, row in enumerate(layout.to_dict("records")):
            well_name, group, edge = str(row["well"]), str(row["group"]), bool(row["edge"])
            efficacy = float(row["efficacy"])
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, p, i)))
            n_fields = int(rng.integers(field_range[0], field_range[1] + 1))
            scatter = params.efficacy_scatter * (params.edge_scatter_factor if edge else 1.0)
            eff_noise, viab_noise = float(rng.normal()), float(rng.normal())
            well_eff = (
                efficacy
                if group == "untreated"
                else float(np.clip(efficacy + scatter * eff_noise, 0.0, 1.0))
            )
            viability = (1.0 - well_eff) * (1.0 - params.edge_viability_loss * edge)
            viability += params.viability_noise * viab_noise
            state = draw_well(rng, efficacy=well_eff, edge=edge, n_fields=n_fields, params=params)
            all_wells.append(_Well(p, i, well_name, n_fields, viab_noise, state))
            truth_rows.append(
                {
                    "plate": plate_names[p],
                    "well": well_name,
                    "treatment": str(row["treatment"]),
                    "concentration": float(row["concentration"]),
                    "unit": str(row["unit"]),
                    "group": group,
                    "efficacy": efficacy,
                    "viability": max(0.0, viability),
                    "exploded": well_eff > params.explode_threshold,
                    "edge": edge,
                    "well_efficacy": well_eff,
                    "well_fault": "",
                }
            )

    # Pass 2: faults, exact counts so small runs still hold every kind.
    fault_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
    n_wells = len(all_wells)
    per_well_kind = min(round(fault_rate / 4.0 * n_wells), n_wells // 2)
    order = fault_rng.permutation(n_wells)
    well_fault = [""] * n_wells
    for j, kind in enumerate(WELL_FAULTS):
        for k in order[j * per_well_kind : (j + 1) * per_well_kind]:
            well_fault[int(k)] = kind
    images = [
        (w, day, f)
        for w, info in enumerate(all_wells)
        for day in day_list
        for f in range(1, info.n_fields + 1)
    ]
    clean = [k for k, (w, _, _) in enumerate(images) if not well_fault[w]]
    per_image_kind = min(round(fault_rate / 4.0 * len(images)), len(clean) // 2)
    image_fault = [well_fault[w] for w, _, _ in images]
    picked = fault_rng.permutation(len(clean))
    for j, kind in enumerate(("out_of_focus", "touches_edge")):
        for k in picked[j * per_image_kind : (j + 1) * per_image_kind]:
            image_fault[clean[int(k)]] = kind
    for w, kind in enumerate(well_fault):
        truth_rows[w]["well_fault"] = kind
        if kind == "empty_well":
            truth_rows[w]["exploded"] = False
            # No cells, no luminescence: only the read-out noise remains.
            noise = params.viability_noise * all_wells[w].viability_noise
            truth_rows[w]["viability"] = max(0.0, noise)

    # Pass 3: render and write.
    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if write_masks:
        (root / "masks").mkdir(parents=True, exist_ok=True)
    canvas = _canvas(size)
    index_rows: list[dict[str, object]] = []
    image_rows: list[dict[str, object]] = []
    for n, ((w, day, f), fault) in enumerate(zip(images, image_fault, strict=True)):
        info = all_wells[w]
        rng = np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(1, info.plate, info.index, day, f))
        )
        rendered = render_well(
            info.state,
            day=day,
            field=f,
            size=size,
            fault=fault,
            bit_depth=bit_depth,
            rng=rng,
            params=params,
            _canvas_cache=canvas,
        )
        name = f"{plate_names[info.plate]}_{info.well}_f{f}_d{day:02d}.tif"
        _write_tiff(root / "images" / name, rendered.image, compress=False)
        if write_masks:
            _write_tiff(root / "masks" / name, rendered.mask, compress=True)
        counts = np.bincount(rendered.mask.ravel(), minlength=3)
        base = {
            "file": f"images/{name}",
            "plate": plate_names[info.plate],
            "well": info.well,
            "field": f,
            "day": day,
        }
        index_rows.append(base)
        image_rows.append(
            {
                **base,
                "fault": fault,
                "spheroid_area_px": int(counts[1]),
                "debris_area_px": int(counts[2]),
                "exploded": rendered.exploded,
                "centre_x": rendered.centre_x,
                "centre_y": rendered.centre_y,
            }
        )
        if progress is not None:
            progress(n + 1, len(images))

    truth = pd.DataFrame(truth_rows, columns=list(PLATE_TRUTH_COLUMNS))
    plate_frame = truth[list(PLATE_MAP_COLUMNS)]
    tables = {
        "image_index.csv": pd.DataFrame(index_rows, columns=list(IMAGE_INDEX_COLUMNS)),
        "plate_map.csv": plate_frame,
        "truth.csv": truth,
        "image_truth.csv": pd.DataFrame(image_rows, columns=list(IMAGE_TRUTH_COLUMNS)),
    }
    for file_name, table in tables.items():
        table.to_csv(root / file_name, index=False, lineterminator="\n")
    logger.info(
        "wrote %d images of %d plate(s) x %d wells to %s (%d with a fault)",
        len(images),
        plates,
        wells,
        root,
        sum(1 for k in image_fault if k),
    )
    return truth


def _read_csv(path: str | os.PathLike[str], name: str, strings: tuple[str, ...]) -> pd.DataFrame:
    csv_path = Path(path)
    if csv_path.is_dir():
        csv_path = csv_path / name
    return pd.read_csv(
        csv_path, dtype=dict.fromkeys(strings, str), keep_default_na=False, na_values={}
    )


def load_plate_truth(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``truth.csv`` written by :func:`generate_plates`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, or the folder that holds ``truth.csv``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PLATE_TRUTH_COLUMNS`; names kept as strings, ``well_fault`` ``""``
        when none, ``exploded`` and ``edge`` as bool.
    """
    frame = _read_csv(
        path, "truth.csv", ("plate", "well", "treatment", "unit", "group", "well_fault")
    )
    for col in ("exploded", "edge"):
        frame[col] = frame[col].astype(str).eq("True")
    return frame


def load_image_truth(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an ``image_truth.csv`` written by :func:`generate_plates`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, or the folder that holds ``image_truth.csv``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`IMAGE_TRUTH_COLUMNS`; ``fault`` ``""`` when none, ``exploded`` as
        bool, ``centre_x``/``centre_y`` NaN for empty wells.
    """
    frame = _read_csv(path, "image_truth.csv", ("file", "plate", "well", "fault"))
    frame["exploded"] = frame["exploded"].astype(str).eq("True")
    for col in ("centre_x", "centre_y"):
        frame[col] = pd.to_numeric(frame[col].replace("", np.nan))
    return frame
