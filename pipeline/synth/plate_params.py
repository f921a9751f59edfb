"""Parameters and result types of the synthetic spheroid plates (see
:mod:`pipeline.synth.plates` for the image model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "FAULTS",
    "IMAGE_INDEX_COLUMNS",
    "IMAGE_TRUTH_COLUMNS",
    "PLATE_GROUPS",
    "PLATE_MAP_COLUMNS",
    "PLATE_TRUTH_COLUMNS",
    "VIABILITY_COLUMNS",
    "PlateSynthParams",
    "RenderedWell",
    "SpheroidDay",
    "WellState",
]


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

VIABILITY_COLUMNS: Final[tuple[str, ...]] = ("plate", "well", "viability")
"""Columns of ``viability.csv``, the end-point read-out measured on part of the wells."""

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
