"""Spheroids of the synthetic plates: a well's state drawn once, rendered per day and
field (see :mod:`pipeline.synth.plates` for the image model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.synth.plate_params import (
    _HIGH_K,
    _LOW_K,
    _MAX_FIELDS,
    _N_ANGLES,
    _SHAPE_CLIP,
    FAULTS,
    MIN_SIZE,
    Float32Array,
    FloatArray,
    PlateSynthParams,
    RenderedWell,
    SpheroidDay,
    UInt8Array,
    WellState,
)

__all__ = [
    "draw_well",
    "render_example",
    "render_well",
    "spheroid_on_day",
]

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
