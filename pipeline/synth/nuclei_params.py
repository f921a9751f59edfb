"""Parameters, result types and the drawn scene of the synthetic fluorescence nuclei (see
:mod:`pipeline.synth.nuclei` for the image model and the rendering).

:class:`NucleiSynthParams` is what a user sets; the catalogue (``_Catalogue``, drawn by
``_draw_catalogue``) holds what one image's draw from it gives: every nucleus's shape,
brightness, position and cluster, and the image's optics. Positions come from rejection
sampling, described in :mod:`pipeline.synth.nuclei`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "NUCLEI_MASK_FORMATS",
    "NUCLEI_TRUTH_COLUMNS",
    "NucleiSynthParams",
    "RenderedNuclei",
]

NUCLEI_TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    "image_id",
    "label",
    "y",
    "x",
    "area",
    "equivalent_radius",
    "major_axis",
    "minor_axis",
    "orientation",
    "mean_intensity",
    "cluster_id",
    "touching",
)
"""Columns of ``truth.csv`` (one row per nucleus) written by :func:`generate_nuclei`."""

NUCLEI_MASK_FORMATS: Final[tuple[str, ...]] = ("label", "binary")
"""Mask files :func:`generate_nuclei` can write: 16-bit instance labels or 8-bit 0/255."""

# (low, high) ranges of the pair-valued fields: the bounds a value must lie within.
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

_HARMONICS: Final = (2, 3, 4)
"""Orders ``k`` of the boundary's radial harmonics."""
# Centre-pixel ownership is checked with this relative margin, far above the float32
# resolution of the rendering's ownership keys.
_OWN_MARGIN: Final = 1e-5
# Spawn-key purpose of the catalogue's generator (pipeline.synth.nuclei has the others).
_CATALOGUE_KEY: Final = 0

_PAIR_BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "radius_px": (2.0, 200.0),
    "axis_ratio": (0.3, 1.0),
    "density": (0.01, 100.0),
    "cluster_size": (2.0, 20.0),
    "cluster_overlap": (0.0, 0.5),
    "brightness": (0.01, 1.0),
    "offset": (0.0, 0.5),
    "gradient": (0.0, 0.9),
    "vignetting": (0.0, 0.9),
}
# Upper bounds of the scalar fields (all must also be >= 0); None: no upper bound.
_SCALAR_BOUNDS: Final[dict[str, float | None]] = {
    "irregularity": 0.15,
    "cluster_fraction": 1.0,
    "min_gap_px": 100.0,
    "dome": 0.9,
    "texture_amplitude": 1.0,
    "texture_scale_px": 20.0,
    "edge_width_px": 20.0,
    "psf_sigma_px": 20.0,
    "full_scale_photons": None,
    "read_noise": 0.5,
    "tint": 0.9,
}
# Fields that must be strictly positive: a zero would divide (photons, edge) or make a
# blur with no kernel (the two sigmas).
_POSITIVE: Final = ("full_scale_photons", "edge_width_px", "texture_scale_px", "psf_sigma_px")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class NucleiSynthParams:
    """Every parameter of the synthetic nuclei generator, with its physical meaning.

    Lengths are in pixels; intensities are fractions of full scale (255 in a PNG, 65535 in
    the large-field TIFF). ``(low, high)`` pairs are uniform ranges, drawn per nucleus
    unless said otherwise.

    Parameters
    ----------
    radius_px : (float, float), default (4.0, 12.0)
        Equivalent radius ``r`` of a nucleus's ellipse (``pi r^2`` is its area before the
        boundary harmonics), log-uniform over this range, so small nuclei are more common.
        Low at least 2.
    axis_ratio : (float, float), default (0.6, 1.0)
        Minor over major axis of the ellipse; semi-axes ``r / sqrt(q)`` and ``r sqrt(q)``;
        the orientation is uniform.
    irregularity : float, default 0.04
        Largest amplitude of each boundary harmonic ``k = 2, 3, 4``: the boundary radius is
        ``R(phi) = 1 + sum_k A_k cos(k phi - phi_k)`` (relative to the ellipse), with
        ``A_k`` uniform in ``[0, irregularity]`` and ``phi_k`` uniform. At most 0.15.
    density : (float, float), default (8.0, 16.0)
        Nuclei drawn per 10,000 px^2, uniform per image (``round(density * area / 1e4)``
        nuclei); the large field uses the midpoint (12: about 80,500 nuclei at 8192 x 8192).
        A nucleus that finds no free spot is left out, so crowded images hold fewer.
    cluster_fraction : float, default 0.3
        Expected fraction of the drawn nuclei that belong to touching clusters.
    cluster_size : (int, int), default (2, 5)
        Number of nuclei in a cluster, uniform per cluster.
    cluster_overlap : (float, float), default (0.05, 0.2)
        A cluster member is placed next to an earlier member at ``(1 - overlap)`` times the
        sum of their boundary radii along the line between the centres, so the two
        overlap slightly (and touch in the masks).
    min_gap_px : float, default 2.0
        Smallest gap between the bounding circles of nuclei that are not in one cluster:
        isolated nuclei never touch anything.
    placement_tries : int, default 30
        Random positions tried per nucleus (rejection sampling) before it is left out.
    brightness : (float, float), default (0.25, 0.75)
        Peak fluorescence of a nucleus above the background, before illumination.
    dome : float, default 0.15
        Relative fall-off of a nucleus's brightness from its centre to its boundary.
    texture_amplitude : float, default 0.2
        Relative standard deviation of the chromatin-like texture inside nuclei (smoothed
        Gaussian noise, multiplicative).
    texture_scale_px : float, default 1.5
        Gaussian smoothing sigma of the texture.
    edge_width_px : float, default 1.5
        Width of the soft edge: brightness ramps (smoothstep) from 0 to full across this
        width, centred on the boundary.
    offset : (float, float), default (0.02, 0.08)
        Background level (autofluorescence and camera offset), drawn per image.
    gradient : (float, float), default (0.0, 0.3)
        Relative change of the illumination across the image (linear, direction uniform),
        drawn per image.
    vignetting : (float, float), default (0.0, 0.2)
        Relative illumination loss at the image corners (quadratic), drawn per image.
    psf_sigma_px : float, default 1.0
        Gaussian PSF sigma.
    full_scale_photons : float, default 2000.0
        Photo-electrons at full scale: sets the shot noise (Gaussian approximation of
        Poisson noise, standard deviation ``sqrt(value / full_scale_photons)``).
    read_noise : float, default 0.004
        Read noise standard deviation (about 1 count of 255).
    tint : float, default 0.15
        ``channels=3`` only: each RGB channel is the grey image times a gain drawn per
        image in ``[1 - tint, 1]``.

    Raises
    ------
    ValueError
        If a value is out of its range; the message names the field, the range and the
        value.
    """

    radius_px: tuple[float, float] = (4.0, 12.0)
    axis_ratio: tuple[float, float] = (0.6, 1.0)
    irregularity: float = 0.04
    density: tuple[float, float] = (8.0, 16.0)
    cluster_fraction: float = 0.3
    cluster_size: tuple[int, int] = (2, 5)
    cluster_overlap: tuple[float, float] = (0.05, 0.2)
    min_gap_px: float = 2.0
    placement_tries: int = 30
    brightness: tuple[float, float] = (0.25, 0.75)
    dome: float = 0.15
    texture_amplitude: float = 0.2
    texture_scale_px: float = 1.5
    edge_width_px: float = 1.5
    offset: tuple[float, float] = (0.02, 0.08)
    gradient: tuple[float, float] = (0.0, 0.3)
    vignetting: tuple[float, float] = (0.0, 0.2)
    psf_sigma_px: float = 1.0
    full_scale_photons: float = 2000.0
    read_noise: float = 0.004
    tint: float = 0.15

    def __post_init__(self) -> None:
        for name, (low, high) in _PAIR_BOUNDS.items():
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or len(value) != 2
                or not all(_is_number(v) and math.isfinite(v) for v in value)
                or not low <= value[0] <= value[1] <= high
            ):
                raise ValueError(
                    f"NucleiSynthParams.{name} must be a (low, high) pair with "
                    f"{low:g} <= low <= high <= {high:g}, got {value!r}; e.g. "
                    f"{getattr(NucleiSynthParams, name)!r}"
                )
        if not all(isinstance(v, int) for v in self.cluster_size):
            raise ValueError(
                f"NucleiSynthParams.cluster_size must be a pair of integers, got "
                f"{self.cluster_size!r}; e.g. (2, 5)"
            )
        if (
            isinstance(self.placement_tries, bool)
            or not isinstance(self.placement_tries, int)
            or not 1 <= self.placement_tries <= 1000
        ):
            raise ValueError(
                f"NucleiSynthParams.placement_tries must be an integer in [1, 1000], got "
                f"{self.placement_tries!r}"
            )
        for field in fields(self):
            if field.name not in _SCALAR_BOUNDS:
                continue
            value = getattr(self, field.name)
            limit = _SCALAR_BOUNDS[field.name]
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(
                    f"NucleiSynthParams.{field.name} must be a finite number, got {value!r}"
                )
            if value < 0 or (limit is not None and value > limit):
                upper = f" and <= {limit:g}" if limit is not None else ""
                raise ValueError(
                    f"NucleiSynthParams.{field.name} must be >= 0{upper}, got {value!r}"
                )
            if field.name in _POSITIVE and value == 0:
                raise ValueError(f"NucleiSynthParams.{field.name} must be > 0, got {value!r}")


@dataclass(frozen=True, eq=False)
class RenderedNuclei:
    """One rendered fluorescence image, its instance labels and its truth table.

    Attributes
    ----------
    image : numpy.ndarray of uint8, shape (size, size) or (size, size, 3)
        The image as written to ``images/<id>.png``: bright nuclei on a dark background.
    labels : numpy.ndarray of uint32, shape (size, size)
        Instance labels: 0 background, ``1..n`` the nuclei (every label present).
    truth : pandas.DataFrame
        One row per nucleus, columns :data:`NUCLEI_TRUTH_COLUMNS`.
    """

    image: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint32]
    truth: pd.DataFrame


@dataclass(frozen=True, eq=False)
class _Catalogue:
    """The nuclei of one image and its per-image optics, drawn once, rendered per tile."""

    height: int
    width: int
    y: FloatArray
    x: FloatArray
    # Shape and light in float32, as the renderer computes them.
    a: Float32Array  # semi-major axis of the ellipse, px
    b: Float32Array  # semi-minor axis, px
    cos_t: Float32Array
    sin_t: Float32Array
    harm_c: Float32Array  # (n, 3): A_k cos(phi_k) of the harmonics _HARMONICS
    harm_s: Float32Array  # (n, 3): A_k sin(phi_k)
    brightness: Float32Array
    bbox: IntArray  # (n, 2): first row and first column of the square stamp
    stamp: IntArray  # (n,): side of the stamp
    stamp_r2: Float32Array  # (n,): squared radius beyond which a nucleus has no light
    cluster: IntArray  # -1 when isolated
    offset: float
    gradient: float
    gradient_angle: float
    vignetting: float
    tint: FloatArray  # (3,)

    @property
    def n(self) -> int:
        return len(self.y)


# --------------------------------------------------------------------------- shape

# One nucleus as Python floats: centre y, x; semi-axes a, b; cos and sin of its
# orientation; harmonic coefficients A_k cos(phi_k) and A_k sin(phi_k).
_Shape = tuple[float, float, float, float, float, float, tuple[float, ...], tuple[float, ...]]


def _gauge(shape: _Shape, py: float, px: float) -> float:
    """``rho`` of one nucleus at one point (the arithmetic of :func:`_stamp_batch`)."""
    y, x, a, b, ct, st, hc, hs = shape
    dx, dy = px - x, py - y
    p = (dx * ct + dy * st) / a
    q = (dy * ct - dx * st) / b
    rn = math.sqrt(p * p + q * q)
    if rn == 0.0:
        return 0.0
    cos1, sin1 = p / rn, q / rn
    ck, sk = cos1, sin1
    boundary = 1.0
    for k in range(len(_HARMONICS)):
        # cos and sin of (k + 2) phi from those of (k + 1) phi, without trigonometry.
        ck, sk = ck * cos1 - sk * sin1, sk * cos1 + ck * sin1
        boundary += hc[k] * ck + hs[k] * sk
    return rn / boundary


def _centre_pixel(shape: _Shape) -> tuple[int, int]:
    return math.floor(shape[0] + 0.5), math.floor(shape[1] + 0.5)


def _owns_centres(new: _Shape, old: _Shape) -> bool:
    """Whether two overlapping nuclei each keep the pixel at their own centre."""
    cy, cx = _centre_pixel(new)
    if _gauge(new, cy, cx) >= (1.0 - _OWN_MARGIN) * _gauge(old, cy, cx):
        return False
    oy, ox = _centre_pixel(old)
    return _gauge(old, oy, ox) < (1.0 - _OWN_MARGIN) * _gauge(new, oy, ox)


def _inside_own_centre(shape: _Shape) -> bool:
    cy, cx = _centre_pixel(shape)
    return _gauge(shape, cy, cx) < 1.0 - _OWN_MARGIN


# --------------------------------------------------------------------------- catalogue


def _group_sizes(rng: np.random.Generator, n: int, params: NucleiSynthParams) -> list[int]:
    """Split ``n`` nuclei into consecutive groups: singles and clusters."""
    low, high = params.cluster_size
    mean_size = 0.5 * (low + high)
    f = params.cluster_fraction
    # A group is a cluster with probability p, so that a fraction f of the nuclei are in
    # one: p s / (p s + 1 - p) = f for clusters of mean size s.
    p_cluster = f / (mean_size - f * (mean_size - 1.0))
    is_cluster = (rng.random(n) < p_cluster).tolist()
    sizes = rng.integers(low, high + 1, size=n).tolist()
    groups: list[int] = []
    total = 0
    for g in range(n):
        if total >= n:
            break
        size = min(int(sizes[g]) if is_cluster[g] else 1, n - total)
        groups.append(size)
        total += size
    return groups


class _Placer:
    """Rejection sampling of nucleus centres (see the module notes).

    Placed nuclei sit in a uniform grid whose cell is at least twice the largest reach
    plus the gap, so every nucleus that can come near a point lies in the 3 x 3 cells
    around the point's cell; each nucleus is listed in all 9 cells around its own, so a
    query is one look-up. The loops are plain Python on floats: per candidate they touch
    a dozen neighbours, where numpy's per-call overhead would dominate.
    """

    def __init__(self, height: int, width: int, max_reach: float, params: NucleiSynthParams):
        self.span_x, self.span_y = width - 1.0, height - 1.0
        self.gap = params.min_gap_px
        self.overlap = params.cluster_overlap
        self.cell = 2.0 * max_reach + self.gap
        self.stride = math.ceil(width / self.cell) + 3  # cell (kx, ky) -> ky * stride + kx
        # cell -> [(x, y, reach, group, index)] of the nuclei in it and its 8 neighbours
        self.cells: dict[int, list[tuple[float, float, float, int, int]]] = {}
        self.shapes: list[_Shape] = []
        self.group: list[int] = []

    def _near(self, x: float, y: float) -> list[tuple[float, float, float, int, int]]:
        key = math.floor(y / self.cell) * self.stride + math.floor(x / self.cell)
        return self.cells.get(key, [])

    def isolated(self, block: list[list[float]], shape: _Shape, reach: float) -> _Shape | None:
        """The first candidate clear of every placed nucleus, or None."""
        _, _, a, b, ct, st, hc, hs = shape
        reach_gap = reach + self.gap
        for _, _, _, u_x, u_y in block:
            x, y = u_x * self.span_x, u_y * self.span_y
            clear = True
            for ox, oy, oreach, _, _ in self._near(x, y):
                limit = reach_gap + oreach
                if (x - ox) ** 2 + (y - oy) ** 2 <= limit * limit:
                    clear = False
                    break
            if clear:
                cand = (y, x, a, b, ct, st, hc, hs)
                if _inside_own_centre(cand):
                    return cand
        return None

    def against(
        self, block: list[list[float]], shape: _Shape, reach: float, members: list[int], group: int
    ) -> _Shape | None:
        """The first candidate overlapping an earlier member of ``group`` slightly, clear
        of every nucleus outside it, each nucleus keeping its centre pixel; or None."""
        _, _, a, b, ct, st, hc, hs = shape
        lo, hi = self.overlap
        for u_partner, u_psi, u_overlap, _, _ in block:
            other = self.shapes[members[int(u_partner * len(members))]]
            psi = 2.0 * math.pi * u_psi
            ux, uy = math.cos(psi), math.sin(psi)
            # rho grows linearly along a ray from the centre, so 1 / rho one pixel out
            # is the distance to the boundary in that direction.
            reach_other = 1.0 / _gauge(other, other[0] + uy, other[1] + ux)
            reach_self = 1.0 / _gauge((0.0, 0.0, a, b, ct, st, hc, hs), -uy, -ux)
            sep = (1.0 - (lo + (hi - lo) * u_overlap)) * (reach_other + reach_self)
            y, x = other[0] + sep * uy, other[1] + sep * ux
            if not (0.0 <= x <= self.span_x and 0.0 <= y <= self.span_y):
                continue
            cand = (y, x, a, b, ct, st, hc, hs)
            if not _inside_own_centre(cand):
                continue
            ok = True
            for ox, oy, oreach, ogroup, k in self._near(x, y):
                dist2 = (x - ox) ** 2 + (y - oy) ** 2
                if ogroup == group:
                    limit = reach + oreach
                    if dist2 < limit * limit and not _owns_centres(cand, self.shapes[k]):
                        ok = False
                        break
                else:
                    limit = reach + oreach + self.gap
                    if dist2 <= limit * limit:
                        ok = False
                        break
            if ok:
                return cand
        return None

    def add(self, shape: _Shape, reach: float, group: int) -> int:
        index = len(self.shapes)
        y, x = shape[0], shape[1]
        entry = (x, y, reach, group, index)
        centre = math.floor(y / self.cell) * self.stride + math.floor(x / self.cell)
        for dk in (-self.stride, 0, self.stride):
            for key in (centre + dk - 1, centre + dk, centre + dk + 1):
                self.cells.setdefault(key, []).append(entry)
        self.shapes.append(shape)
        self.group.append(group)
        return index


def _draw_catalogue(
    seed: int,
    group: int,
    index: int,
    height: int,
    width: int,
    params: NucleiSynthParams,
    density: float | None = None,
) -> _Catalogue:
    """Draw every nucleus of one image; ``density`` None draws it from the params."""
    rng = np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(_CATALOGUE_KEY, group, index))
    )
    # Always drawn, so the layout of the stream is the same for images and the field.
    drawn_density = float(rng.uniform(*params.density))
    offset = float(rng.uniform(*params.offset))
    gradient = float(rng.uniform(*params.gradient))
    gradient_angle = float(rng.uniform(0.0, 2.0 * math.pi))
    vignetting = float(rng.uniform(*params.vignetting))
    tint = rng.uniform(1.0 - params.tint, 1.0, size=3)

    n = round((drawn_density if density is None else density) * height * width / 1e4)
    lo, hi = params.radius_px
    radius = np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))
    ratio = rng.uniform(*params.axis_ratio, size=n)
    theta = rng.uniform(0.0, math.pi, size=n)
    amp = rng.uniform(0.0, params.irregularity, size=(n, len(_HARMONICS)))
    phase = rng.uniform(0.0, 2.0 * math.pi, size=(n, len(_HARMONICS)))
    brightness = rng.uniform(*params.brightness, size=n)
    groups = _group_sizes(rng, n, params)

    a_all = radius / np.sqrt(ratio)
    b_all = radius * np.sqrt(ratio)
    cos_all, sin_all = np.cos(theta), np.sin(theta)
    hc_all, hs_all = amp * np.cos(phase), amp * np.sin(phase)
    # |R(phi) - 1| <= sum A_k: the boundary never reaches beyond a (1 + sum A_k).
    reach_all = a_all * (1.0 + amp.sum(axis=1))
    placer = _Placer(height, width, float(reach_all.max(initial=1.0)), params)
    a_l, b_l, c_l, s_l = a_all.tolist(), b_all.tolist(), cos_all.tolist(), sin_all.tolist()
    hc_l, hs_l, reach_l = hc_all.tolist(), hs_all.tolist(), reach_all.tolist()

    kept: list[int] = []
    i = 0
    for g, size in enumerate(groups):
        members: list[int] = []
        for _ in range(size):
            # One block of candidates per nucleus, always drawn, so the placement of one
            # nucleus never shifts the random stream of the next.
            block = rng.random((params.placement_tries, 5)).tolist()
            harm = (tuple(hc_l[i]), tuple(hs_l[i]))
            shape: _Shape = (0.0, 0.0, a_l[i], b_l[i], c_l[i], s_l[i], *harm)
            placed = placer.against(block, shape, reach_l[i], members, g) if members else None
            group_id = g
            if placed is None:
                placed = placer.isolated(block, shape, reach_l[i])
                if members:
                    group_id = len(groups) + i  # no spot in its cluster: on its own
            if placed is not None:
                k = placer.add(placed, reach_l[i], group_id)
                kept.append(i)
                if group_id == g:
                    members.append(k)
            i += 1

    sizes: dict[int, int] = {}
    for gid in placer.group:
        sizes[gid] = sizes.get(gid, 0) + 1
    numbers: dict[int, int] = {}
    cluster = np.array(
        [numbers.setdefault(gid, len(numbers)) if sizes[gid] >= 2 else -1 for gid in placer.group],
        dtype=np.int64,
    )
    keep = np.asarray(kept, dtype=np.int64)
    ys = np.array([s[0] for s in placer.shapes], dtype=np.float64)
    xs = np.array([s[1] for s in placer.shapes], dtype=np.float64)
    # A square stamp covering the nucleus, its soft edge and a pixel of slack.
    half = np.ceil(reach_all[keep] + 0.5 * params.edge_width_px + 1.0).astype(np.int64)
    corner = np.stack([np.floor(ys), np.floor(xs)], axis=1).astype(np.int64) - half[:, None]
    k_h = len(_HARMONICS)
    return _Catalogue(
        height=height,
        width=width,
        y=ys,
        x=xs,
        a=a_all[keep].astype(np.float32),
        b=b_all[keep].astype(np.float32),
        cos_t=cos_all[keep].astype(np.float32),
        sin_t=sin_all[keep].astype(np.float32),
        harm_c=hc_all[keep].reshape(-1, k_h).astype(np.float32),
        harm_s=hs_all[keep].reshape(-1, k_h).astype(np.float32),
        brightness=brightness[keep].astype(np.float32),
        bbox=corner.reshape(-1, 2),
        stamp=2 * half + 2,
        stamp_r2=((reach_all[keep] + 0.5 * params.edge_width_px + 0.5) ** 2).astype(np.float32),
        cluster=cluster,
        offset=offset,
        gradient=gradient,
        gradient_angle=gradient_angle,
        vignetting=vignetting,
        tint=tint,
    )
