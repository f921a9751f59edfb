"""Plate layout of the synthetic screens: well names, edge wells, the plate map."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.synth.plate_params import (
    PlateSynthParams,
)

__all__ = [
    "is_edge_well",
    "plate_map",
    "well_names",
]

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
