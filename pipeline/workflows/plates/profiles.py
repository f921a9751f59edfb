"""Per-well profiles of a screen: fields aggregated per plate, well and day, the change from
the baseline day, and features normalised against each plate's untreated wells.

The tables follow pycytominer's conventions (metadata columns prefixed ``Metadata_``, every
other column a feature), so ``pycytominer.normalize`` and ``feature_select`` run on them as
they are. The normalisation itself is pycytominer's ``mad_robustize`` (median and scaled MAD
of the control wells), run per plate and day: the lab's own tool, rather than a copy of it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.workflows.plates.spec import ProfileParams

__all__ = ["build_profiles", "change_columns", "normalize_profiles"]

log = logging.getLogger(__name__)

#: Metadata columns a profile adds beyond the plate map's.
FIELDS, FAILED = "Metadata_Fields", "Metadata_FieldsFailedQC"
KEYS = ("Metadata_Plate", "Metadata_Well", "Metadata_Day")
#: Metadata of one image rather than of its well (not carried into a profile).
PER_IMAGE = (
    "Metadata_ImageID",
    "Metadata_Field",
    "Metadata_Valid",
    "Metadata_QCOk",
    "Metadata_QCFlags",
)


def change_columns(feature: str) -> tuple[str, str]:
    """The names of a feature's change from the baseline day: (ratio, difference)."""
    return f"{feature}_ChangeRatio", f"{feature}_ChangeDiff"


def build_profiles(
    images: pd.DataFrame, features: Sequence[str], params: ProfileParams
) -> pd.DataFrame:
    """One profile per plate, well and day.

    Parameters
    ----------
    images : DataFrame
        One row per image, as ``tables/spheroid_features``: ``Metadata_*`` plate coordinates
        (``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Day`` and the plate map's),
        ``Metadata_Field``, ``Metadata_Valid``, ``Metadata_QCOk``, ``Metadata_QCFlags``, and
        the ``features``.
    features : sequence of str
        The feature columns (CellProfiler names).
    params : ProfileParams

    Returns
    -------
    DataFrame
        The plate map's ``Metadata_*`` columns, ``Metadata_Fields`` (images of the well that
        day) and ``Metadata_FieldsFailedQC``, then each feature aggregated over the usable
        fields and its change from the well's baseline day (:func:`change_columns`; NaN where
        the well has no usable baseline image). Sorted by plate, well, day.
    """
    frame = images
    failed = ~frame["Metadata_QCOk"].astype(bool)
    usable = frame["Metadata_Valid"].astype(bool)
    if params.qc == "ok":
        usable &= ~failed
    keys = [k for k in KEYS if k in frame.columns]
    info = [c for c in frame.columns if c.startswith("Metadata_") and c not in (*keys, *PER_IMAGE)]
    groups = frame.groupby(keys, sort=True, dropna=False)
    out = groups[info].first() if info else groups.size().to_frame().iloc[:, :0]
    out[FIELDS] = groups.size()
    out[FAILED] = failed.groupby([frame[k] for k in keys], dropna=False).sum().astype(int)
    values = frame.loc[usable, [*keys, *features]].groupby(keys, dropna=False)
    agg = values.median() if params.aggregate == "median" else values.mean()
    out = out.join(agg.reindex(columns=list(features)), how="left").reset_index()
    return _with_changes(out, features, params)


def _with_changes(
    profiles: pd.DataFrame, features: Sequence[str], params: ProfileParams
) -> pd.DataFrame:
    if "Metadata_Day" not in profiles:
        return profiles
    day = profiles["Metadata_Day"]
    if params.baseline_day is not None:
        is_base = day == params.baseline_day
    else:
        is_base = day == day.groupby(profiles["Metadata_Plate"]).transform("min")
    base = (
        profiles.loc[is_base, ["Metadata_Plate", "Metadata_Well", *features]]
        .drop_duplicates(["Metadata_Plate", "Metadata_Well"])
        .set_index(["Metadata_Plate", "Metadata_Well"])
    )
    aligned = base.reindex(pd.MultiIndex.from_frame(profiles[["Metadata_Plate", "Metadata_Well"]]))
    added = {}
    for f in features:
        ref = aligned[f].to_numpy(dtype=float)
        now = profiles[f].to_numpy(dtype=float)
        ratio, diff = change_columns(f)
        with np.errstate(divide="ignore", invalid="ignore"):
            added[ratio] = np.where(ref != 0, now / ref, np.nan)
        added[diff] = now - ref
    if base.empty:
        log.warning(
            "no image on the baseline day %s: the change columns are NaN",
            params.baseline_day if params.baseline_day is not None else "(first day)",
        )
    return pd.concat([profiles, pd.DataFrame(added, index=profiles.index)], axis=1)


def normalize_profiles(profiles: pd.DataFrame, control_group: str) -> pd.DataFrame:
    """Features as robust z-scores against each plate's control wells on the same day.

    Parameters
    ----------
    profiles : DataFrame
        From :func:`build_profiles`.
    control_group : str
        The ``Metadata_Group`` of the control wells (e.g. ``untreated``).

    Returns
    -------
    DataFrame
        The same rows and columns; each feature is ``(x - median) / (1.4826 * MAD)`` of the
        plate's control wells that day (pycytominer's ``mad_robustize``). A plate and day
        without control wells gets NaN features (and a warning).
    """
    from pycytominer import normalize

    features = [c for c in profiles.columns if not c.startswith("Metadata_")]
    meta = [c for c in profiles.columns if c.startswith("Metadata_")]
    parts = []
    by = [c for c in ("Metadata_Plate", "Metadata_Day") if c in profiles.columns]
    for key, part in profiles.groupby(by, sort=True, dropna=False) if by else [((), profiles)]:
        controls = part["Metadata_Group"] == control_group if "Metadata_Group" in part else None
        if controls is None or not controls.any():
            log.warning(
                "plate/day %s has no %r wells: its normalised features are NaN",
                key,
                control_group,
            )
            blank = part.copy()
            blank[features] = np.nan
            parts.append(blank)
            continue
        # Rows are picked by a boolean column rather than by a query string built from the
        # group name: pycytominer evaluates `samples` with DataFrame.query.
        marked = part.assign(Metadata_IsControl=controls.to_numpy())
        with warnings.catch_warnings():
            # A feature NaN in every control well (e.g. debris spread where no control has
            # debris) normalises to NaN, as documented; scipy's MAD warns about it.
            warnings.filterwarnings(
                "ignore", message="After omitting NaNs", category=RuntimeWarning
            )
            done = normalize(
                marked,
                features=features,
                meta_features=[*meta, "Metadata_IsControl"],
                samples="Metadata_IsControl == True",
                method="mad_robustize",
            )
        parts.append(done.drop(columns="Metadata_IsControl").set_index(part.index))
    out = pd.concat(parts).sort_index() if parts else profiles.iloc[:0]
    return out[list(profiles.columns)]
