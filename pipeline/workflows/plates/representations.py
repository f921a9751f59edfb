"""Per-well, per-day representations: the fields of a well on a day averaged.

The thesis (document 001, section 5) works with one representation per well and day; a well
imaged in several fields gets the mean of its fields' embeddings (images that failed QC
left out), so a well with more fields does not weigh more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import ParameterError

__all__ = ["WellSeries", "well_day_means", "well_series"]

log = logging.getLogger(__name__)


def well_day_means(values: np.ndarray, images: pd.DataFrame) -> pd.DataFrame:
    """The mean representation of every well and day over its usable images.

    Parameters
    ----------
    values : numpy.ndarray, shape (n_images, n_features)
        One row per image (NaN rows: not embedded).
    images : DataFrame
        One row per image, in the same order: ``plate``, ``well``, ``day`` and ``ok``
        (``tables/spheroid_crops``).

    Returns
    -------
    DataFrame
        One row per plate, well and day with a usable image: ``plate``, ``well``, ``day``,
        ``fields`` (images averaged) and columns ``0 .. n_features - 1``.
    """
    if values.ndim != 2 or len(values) != len(images):
        raise ParameterError(
            f"representation of shape {values.shape} does not match the {len(images)} images "
            "of spheroid_crops; rerun embed after spheroid_crops"
        )
    usable = images["ok"].to_numpy(bool) & np.isfinite(values).all(axis=1)
    frame = pd.DataFrame(values[usable].astype(np.float64))
    keys = images.loc[usable, ["plate", "well", "day"]].reset_index(drop=True)
    grouped = pd.concat([keys, frame], axis=1).groupby(["plate", "well", "day"], sort=True)
    means = grouped.mean()
    means.insert(0, "fields", grouped.size())
    return means.reset_index()


@dataclass(frozen=True)
class WellSeries:
    """Every well's representation on the input days and the target day.

    Attributes
    ----------
    wells : DataFrame
        ``plate``, ``well``, one row per well that has every day.
    inputs : numpy.ndarray, shape (n_wells, n_input_days, n_features)
    target : numpy.ndarray, shape (n_wells, n_features)
    incomplete : int
        Wells left out because a day had no usable image.
    """

    wells: pd.DataFrame
    inputs: np.ndarray
    target: np.ndarray
    incomplete: int


def well_series(means: pd.DataFrame, input_days: Sequence[int], target_day: int) -> WellSeries:
    """Stack :func:`well_day_means` into ``(well, day, feature)`` for the time-series model.

    Parameters
    ----------
    means : DataFrame
        As :func:`well_day_means` returns.
    input_days : sequence of int
    target_day : int

    Returns
    -------
    WellSeries
        Wells in plate, well order.

    Raises
    ------
    ParameterError
        If no well has an image on every one of the days (naming the days the data has).
    """
    days = [*input_days, target_day]
    features = [c for c in means.columns if c not in ("plate", "well", "day", "fields")]
    present = means[means["day"].isin(days)]
    counts = present.groupby(["plate", "well"])["day"].nunique()
    complete = counts[counts == len(days)].index
    incomplete = int(means.groupby(["plate", "well"]).ngroups - len(complete))
    if len(complete) == 0:
        have = sorted(int(d) for d in means["day"].unique())
        raise ParameterError(
            f"no well has a QC-passed image on every day of {days}; the data has days {have}: "
            "set efficacy.input_days and target_day to days that were imaged"
        )
    if incomplete:
        log.info("efficacy: %d well(s) lack a usable image on one of days %s", incomplete, days)
    table = present.set_index(["plate", "well", "day"])[features]
    rows = {key: i for i, key in enumerate(table.index)}
    values = table.to_numpy(np.float64)
    cube = np.stack([values[[rows[(p, w, d)] for d in days]] for p, w in complete])
    wells = pd.DataFrame(list(complete), columns=["plate", "well"])
    return WellSeries(wells, cube[:, :-1], cube[:, -1], incomplete)
