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
map, truth tables and the end-point viability read-out of a seeded part of the inner wells
(``viability.csv``, as a lab measures it on only some wells).

Coordinates: ``centre_x`` is the column index and ``centre_y`` the row index of a pixel
centre (as in :mod:`pipeline.synth.galaxies`). Wells are named ``"A01"``...``"H12"``
(``"P24"`` on 384-well plates), plates ``"P01"``, ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from pipeline.synth.plate_layout import (
    _plate_shape,
    is_edge_well,
    plate_map,
    well_names,
)
from pipeline.synth.plate_params import (
    _MAX_FIELDS,
    FAULTS,
    IMAGE_INDEX_COLUMNS,
    IMAGE_TRUTH_COLUMNS,
    PLATE_GROUPS,
    PLATE_MAP_COLUMNS,
    PLATE_TRUTH_COLUMNS,
    VIABILITY_COLUMNS,
    WELL_FAULTS,
    PlateSynthParams,
    RenderedWell,
    SpheroidDay,
    WellState,
)
from pipeline.synth.spheroids import (
    _canvas,
    _validate_size,
    draw_well,
    render_example,
    render_well,
    spheroid_on_day,
)

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
    "draw_well",
    "generate_plates",
    "is_edge_well",
    "load_image_truth",
    "load_plate_truth",
    "load_viability",
    "plate_map",
    "render_example",
    "render_well",
    "spheroid_on_day",
    "well_names",
]

logger = logging.getLogger(__name__)

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
    readout_fraction: float = 0.5,
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
    readout_fraction : float, default 0.5
        Fraction, in ``[0, 1]``, of each plate's inner (non-edge) untreated wells and,
        separately, of its inner treated wells (every other group) whose viability is
        written to ``viability.csv``: ``round(readout_fraction * n)`` wells of each, a
        seeded choice. 0.5 on a 96-well plate gives 6 untreated and 24 treated wells; 0
        writes the header only.
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
    * ``viability.csv``: :data:`VIABILITY_COLUMNS` (``plate``, ``well``, ``viability``),
      the end-point read-out of the wells chosen by ``readout_fraction``, in plate and
      well order; ``viability`` as in ``truth.csv``.

    Seeds: well ``i`` of plate ``p`` draws from ``SeedSequence(seed, spawn_key=(0, p,
    i))``, its image of ``day`` and ``field`` from ``spawn_key=(1, p, i, day, field)``;
    screening dose responses use ``(2,)``, the fault draw ``(3,)`` and the read-out wells
    of plate ``p`` ``(4, p)`` (untreated wells drawn first, then treated).
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
    if (
        isinstance(readout_fraction, bool)
        or not isinstance(readout_fraction, (int, float))
        or not 0.0 <= readout_fraction <= 1.0
    ):
        raise ValueError(
            f"readout_fraction must be a number in [0, 1] (the share of inner wells with a "
            f"viability read-out; 0 for none), got {readout_fraction!r}"
        )
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
    readout = _readout_wells(truth, plates, seed, float(readout_fraction))
    tables = {
        "image_index.csv": pd.DataFrame(index_rows, columns=list(IMAGE_INDEX_COLUMNS)),
        "plate_map.csv": plate_frame,
        "truth.csv": truth,
        "image_truth.csv": pd.DataFrame(image_rows, columns=list(IMAGE_TRUTH_COLUMNS)),
        "viability.csv": truth.loc[readout, list(VIABILITY_COLUMNS)],
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


def _readout_wells(truth: pd.DataFrame, plates: int, seed: int, fraction: float) -> np.ndarray:
    # Row positions (sorted: plate, well order) of the wells with a viability read-out. Its
    # own seed stream, so the read-out choice changes nothing else the generator writes.
    inner = ~truth["edge"].to_numpy(dtype=bool)
    untreated = truth["group"].to_numpy() == "untreated"
    n_per_plate = len(truth) // plates
    chosen: list[np.ndarray] = []
    for p in range(plates):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4, p)))
        rows = np.arange(p * n_per_plate, (p + 1) * n_per_plate)
        for in_group in (untreated, ~untreated):
            candidates = rows[inner[rows] & in_group[rows]]
            k = round(fraction * len(candidates))
            chosen.append(rng.choice(candidates, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


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


def load_viability(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``viability.csv`` written by :func:`generate_plates`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, or the folder that holds ``viability.csv``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`VIABILITY_COLUMNS`, one row per well with a read-out (none when
        ``readout_fraction`` was 0); ``plate`` and ``well`` as strings, ``viability`` as
        float (relative to untreated wells, about 1).
    """
    frame = _read_csv(path, "viability.csv", ("plate", "well"))
    frame["viability"] = frame["viability"].astype(np.float64)
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
