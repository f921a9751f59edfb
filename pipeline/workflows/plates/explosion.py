"""Method 2 of the thesis (document 001, section 6): intact vs exploded spheroids.

Some drugs make a spheroid disintegrate ("explode") into debris; its representation is then
unlike anything a growth model has seen, and a deviation score says little about *how*
effective the drug was. Method 2 therefore:

1. groups the treated wells by their target-day masks: **exploded** when the debris is a
   real part of the object (``Debris_AreaFraction`` and ``Debris_FragmentCount`` at or above
   the thresholds), else **intact**;
2. ranks the intact wells by a **deterioration percentage** learned from an end-point
   viability read-out: ``100 (1 - viability / median untreated viability)`` of the same
   plate, predicted by a ridge regression on the frozen target-day representation, trained
   on the wells that have a read-out and applied to those that have none;
3. ranks the exploded wells after them by their **degree of explosion**:
   ``sqrt(debris area fraction * debris reach)``, the reach being the debris' farthest
   distance from the body's centre in body radii (both dimensionless, so plates imaged at
   other resolutions compare).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.errors import InputError, ParameterError
from pipeline.workflows.plates.efficacy_spec import ExplosionParams

__all__ = [
    "DeteriorationModel",
    "explosion_measures",
    "fit_deterioration",
    "method2_order",
    "read_readout",
]

log = logging.getLogger(__name__)

_READOUT_COLUMNS = ("plate", "well", "viability")


def explosion_measures(profiles: pd.DataFrame, params: ExplosionParams) -> pd.DataFrame:
    """Each well's target-day debris, its intact / exploded group and degree of explosion.

    Parameters
    ----------
    profiles : DataFrame
        ``spheroid_profiles`` rows of the target day: ``Metadata_Plate``, ``Metadata_Well``,
        ``Debris_AreaFraction``, ``Debris_FragmentCount``, ``Debris_SpreadRadius`` and
        ``AreaShape_EquivalentDiameter`` (any length unit, the same for both).
    params : ExplosionParams

    Returns
    -------
    DataFrame
        ``plate``, ``well``, ``exploded`` (bool), ``explosion`` (degree, 0 when intact; NaN
        without a measured spheroid), ``debris_fraction``, ``debris_fragments``,
        ``debris_reach`` (body radii).
    """
    fraction = profiles["Debris_AreaFraction"].to_numpy(np.float64)
    fragments = profiles["Debris_FragmentCount"].to_numpy(np.float64)
    radius = profiles["AreaShape_EquivalentDiameter"].to_numpy(np.float64) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        reach = np.where(
            radius > 0, profiles["Debris_SpreadRadius"].to_numpy(np.float64) / radius, np.nan
        )
    exploded = (fraction >= params.min_area_fraction) & (fragments >= params.min_fragments)
    degree = np.where(exploded, np.sqrt(np.clip(fraction, 0, None) * np.clip(reach, 0, None)), 0.0)
    degree = np.where(np.isfinite(fraction) & np.isfinite(radius), degree, np.nan)
    return pd.DataFrame(
        {
            "plate": profiles["Metadata_Plate"].astype(str).to_numpy(),
            "well": profiles["Metadata_Well"].astype(str).to_numpy(),
            "exploded": exploded,
            "explosion": degree,
            "debris_fraction": fraction,
            "debris_fragments": fragments,
            "debris_reach": reach,
        }
    )


def read_readout(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The viability read-out: ``plate``, ``well``, ``viability`` (one row per well).

    Raises
    ------
    InputError
        If the file is missing, lacks a column, repeats a well or has a non-finite or
        negative viability (naming the rows).
    """
    if not os.path.isfile(path):
        raise InputError(
            f"viability read-out {os.fspath(path)!r} does not exist; give efficacy.readout the "
            "CSV of the end-point read-out (columns plate, well, viability), or leave it unset"
        )
    frame = pd.read_csv(path, dtype={"plate": str, "well": str})
    missing = [c for c in _READOUT_COLUMNS if c not in frame]
    if missing:
        raise InputError(
            f"viability read-out {os.fspath(path)!r} lacks column(s) {missing}; it needs "
            f"{list(_READOUT_COLUMNS)}"
        )
    frame = frame[list(_READOUT_COLUMNS)]
    viability = pd.to_numeric(frame["viability"], errors="coerce")
    bad = frame.index[~np.isfinite(viability) | (viability < 0)].tolist()
    if bad:
        raise InputError(
            f"viability read-out {os.fspath(path)!r}: rows {[b + 2 for b in bad[:5]]} (file "
            "lines) have no finite, non-negative viability; fix or drop them"
        )
    dup = frame.duplicated(["plate", "well"])
    if dup.any():
        first = frame[dup].iloc[0]
        raise InputError(
            f"viability read-out {os.fspath(path)!r} gives well {first['plate']}/{first['well']} "
            "more than once; keep one row per plate and well"
        )
    return frame.assign(viability=viability.astype(np.float64)).reset_index(drop=True)


@dataclass(frozen=True)
class DeteriorationModel:
    """The fitted deterioration model and how well it did out of fold.

    Attributes
    ----------
    predicted : numpy.ndarray, shape (n_wells,)
        Predicted deterioration (%) of every well: out-of-fold for the read-out wells,
        from the model fitted on all of them for the others.
    measured : numpy.ndarray, shape (n_wells,)
        The read-out's deterioration (%), NaN without one.
    alpha : float
        The ridge penalty chosen by cross-validation.
    cv_spearman : float
        Spearman correlation of the out-of-fold predictions with the measured values.
    trained : int
        Read-out wells it was trained on.
    """

    predicted: np.ndarray
    measured: np.ndarray
    alpha: float
    cv_spearman: float
    trained: int


def _deterioration(viability: np.ndarray, plate: np.ndarray, control: np.ndarray) -> np.ndarray:
    """``100 (1 - viability / median control viability of the plate)``."""
    out = np.full(viability.shape, np.nan)
    for p in np.unique(plate):
        on = plate == p
        ref = viability[on & control & np.isfinite(viability)]
        if ref.size == 0 or not np.median(ref) > 0:
            # Without read-out controls on the plate, compare with every plate's controls.
            ref = viability[control & np.isfinite(viability)]
        if ref.size and np.median(ref) > 0:
            out[on] = 100.0 * (1.0 - viability[on] / float(np.median(ref)))
    return out


def fit_deterioration(
    features: np.ndarray,
    viability: np.ndarray,
    plate: np.ndarray,
    control: np.ndarray,
    *,
    alphas: list[float],
    seed: int,
    folds: int = 5,
) -> DeteriorationModel:
    """Learn the deterioration percentage from frozen representations (method 2).

    Parameters
    ----------
    features : numpy.ndarray, shape (n_wells, n_features)
        The wells' frozen representations (the target day's, or its change from the
        treatment day).
    viability : numpy.ndarray, shape (n_wells,)
        Read-out viability, NaN where a well has none.
    plate : numpy.ndarray, shape (n_wells,)
        Plate of each well (the read-out is relative to the plate's untreated wells).
    control : numpy.ndarray of bool, shape (n_wells,)
        Untreated wells.
    alphas : list of float
        Ridge penalties chosen from by K-fold cross-validation over the read-out wells.
    seed : int
        The folds' shuffle.
    folds : int

    Returns
    -------
    DeteriorationModel

    Raises
    ------
    ParameterError
        If fewer than 5 wells have a read-out and a representation.
    """
    measured = _deterioration(viability, plate, control)
    train = np.isfinite(measured) & np.isfinite(features).all(axis=1)
    n = int(train.sum())
    if n < 5:
        raise ParameterError(
            f"only {n} well(s) have both a viability read-out and a representation; the "
            "deterioration model needs at least 5 (the thesis used 60): check that the "
            "read-out's plate and well names match the plate map"
        )
    x, y = features[train], measured[train]
    k = min(folds, n)
    split = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(x))
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in alphas:
        oof = np.empty(n)
        for a, b in split:
            model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[a], y[a])
            oof[b] = model.predict(x[b])
        mse = float(np.mean((oof - y) ** 2))
        if best is None or mse < best[0]:
            best = (mse, alpha, oof)
    assert best is not None
    _, alpha, oof = best
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)
    predicted = np.full(len(features), np.nan)
    usable = np.isfinite(features).all(axis=1)
    predicted[usable] = model.predict(features[usable])
    predicted[train] = oof
    rho = float(spearmanr(oof, y).statistic) if n > 2 else math.nan
    log.info(
        "efficacy: deterioration model (ridge alpha %g) on %d read-out wells: out-of-fold "
        "Spearman %.3f",
        alpha,
        n,
        rho,
    )
    return DeteriorationModel(predicted, measured, float(alpha), rho, n)


def method2_order(
    exploded: np.ndarray, deterioration: np.ndarray, explosion: np.ndarray
) -> np.ndarray:
    """Method 2's rank of each well (1: least affected): intact wells by deterioration, then
    exploded wells by degree of explosion. Wells without a value go last in their group.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
    """
    exploded = np.asarray(exploded, dtype=bool)
    key_intact = np.where(np.isfinite(deterioration), deterioration, np.inf)
    key_exploded = np.where(np.isfinite(explosion), explosion, np.inf)
    order = np.lexsort((np.where(exploded, key_exploded, key_intact), exploded))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank
