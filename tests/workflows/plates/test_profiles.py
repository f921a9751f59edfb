"""Plate profiles against plain pandas and numpy: fields aggregated per well and day, the
change from the baseline day, and the robust z-score against each plate's untreated wells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.workflows.plates.profiles import build_profiles, change_columns, normalize_profiles
from pipeline.workflows.plates.spec import ProfileParams

FEATURES = ["AreaShape_Area", "Intensity_MeanIntensity"]


def _images(seed: int = 0) -> pd.DataFrame:
    """2 plates x 4 wells x days 7 and 10 x 2 fields, two wells untreated per plate."""
    rng = np.random.default_rng(seed)
    rows = []
    for plate in ("P01", "P02"):
        for w, well in enumerate(("B02", "B03", "C02", "C03")):
            group = "untreated" if w < 2 else "screening"
            for day in (7, 10):
                for field in (1, 2):
                    rows.append(
                        {
                            "Metadata_ImageID": f"{plate}_{well}_d{day}_f{field}",
                            "Metadata_Plate": plate,
                            "Metadata_Well": well,
                            "Metadata_Row": well[0],
                            "Metadata_Column": int(well[1:]),
                            "Metadata_Field": field,
                            "Metadata_Day": day,
                            "Metadata_Treatment": "" if group == "untreated" else "drugA",
                            "Metadata_Concentration": np.nan if group == "untreated" else 1.0,
                            "Metadata_Unit": "" if group == "untreated" else "uM",
                            "Metadata_Group": group,
                            "Metadata_Valid": True,
                            "Metadata_QCOk": True,
                            "Metadata_QCFlags": "",
                            "AreaShape_Area": rng.normal(1000 + 50 * day, 30),
                            "Intensity_MeanIntensity": rng.uniform(0.2, 0.4),
                        }
                    )
    return pd.DataFrame(rows)


def test_profiles_are_field_medians_per_plate_well_and_day() -> None:
    images = _images()
    images.loc[3, "Metadata_QCOk"] = False  # P01 B02 day 10 field 2 fails QC
    profiles = build_profiles(images, FEATURES, ProfileParams())
    assert len(profiles) == 2 * 4 * 2
    assert list(profiles.columns[:3]) == ["Metadata_Plate", "Metadata_Well", "Metadata_Day"]
    expected = (
        images[images.Metadata_QCOk]
        .groupby(["Metadata_Plate", "Metadata_Well", "Metadata_Day"])[FEATURES]
        .median()
        .reset_index()
    )
    np.testing.assert_allclose(profiles[FEATURES].to_numpy(), expected[FEATURES].to_numpy())
    row = profiles[(profiles.Metadata_Well == "B02") & (profiles.Metadata_Plate == "P01")]
    assert row["Metadata_Fields"].tolist() == [2, 2]
    assert row["Metadata_FieldsFailedQC"].tolist() == [0, 1]
    assert set(profiles["Metadata_Group"]) == {"untreated", "screening"}
    # Every non-metadata column is a feature: what pycytominer assumes.
    assert all(c.startswith(("Metadata_", "AreaShape_", "Intensity_")) for c in profiles.columns)


def test_a_well_whose_fields_all_fail_keeps_its_row_with_nan_features() -> None:
    images = _images()
    images.loc[:1, "Metadata_QCOk"] = False  # both day-7 fields of P01 B02
    profiles = build_profiles(images, FEATURES, ProfileParams())
    row = profiles[
        (profiles.Metadata_Plate == "P01")
        & (profiles.Metadata_Well == "B02")
        & (profiles.Metadata_Day == 7)
    ]
    assert len(row) == 1 and row[FEATURES].isna().all(axis=None)
    assert int(row["Metadata_FieldsFailedQC"].iloc[0]) == 2
    later = profiles[(profiles.Metadata_Plate == "P01") & (profiles.Metadata_Well == "B02")]
    ratio, diff = change_columns("AreaShape_Area")
    assert later[[ratio, diff]].isna().all(axis=None)  # no baseline: no change
    kept = build_profiles(images, FEATURES, ProfileParams(qc="all"))
    assert kept[FEATURES].notna().all(axis=None)


@pytest.mark.parametrize("baseline", [None, 7])
def test_change_from_the_baseline_day_is_ratio_and_difference(baseline: int | None) -> None:
    profiles = build_profiles(_images(), FEATURES, ProfileParams(baseline_day=baseline))
    ratio, diff = change_columns("AreaShape_Area")
    for (_, _), well in profiles.groupby(["Metadata_Plate", "Metadata_Well"]):
        d7, d10 = well.sort_values("Metadata_Day")["AreaShape_Area"].to_numpy()
        changes = well.sort_values("Metadata_Day")[[ratio, diff]].to_numpy()
        np.testing.assert_allclose(changes[0], [1.0, 0.0])
        np.testing.assert_allclose(changes[1], [d10 / d7, d10 - d7])


def test_normalisation_is_mad_robustize_against_each_plates_controls_per_day() -> None:
    images = _images()
    profiles = build_profiles(images, FEATURES, ProfileParams())
    normalized = normalize_profiles(profiles, "untreated")
    assert list(normalized.columns) == list(profiles.columns)
    assert normalized.index.equals(profiles.index)
    for (_plate, _day), part in profiles.groupby(["Metadata_Plate", "Metadata_Day"]):
        controls = part[part.Metadata_Group == "untreated"]
        for f in FEATURES:
            med = controls[f].median()
            mad = 1.4826 * np.median(np.abs(controls[f] - med))
            np.testing.assert_allclose(
                normalized.loc[part.index, f], (part[f] - med) / (mad + 1e-18), rtol=1e-9
            )
    meta = [c for c in profiles.columns if c.startswith("Metadata_")]
    pd.testing.assert_frame_equal(normalized[meta], profiles[meta])


def test_a_plate_without_control_wells_gets_nan_normalised_features(
    caplog: pytest.LogCaptureFixture,
) -> None:
    images = _images()
    p2 = (images.Metadata_Plate == "P02") & (images.Metadata_Group == "untreated")
    images.loc[p2, "Metadata_Group"] = "single"
    normalized = normalize_profiles(build_profiles(images, FEATURES, ProfileParams()), "untreated")
    p2 = normalized[normalized.Metadata_Plate == "P02"]
    assert p2[FEATURES].isna().all(axis=None)
    assert normalized[normalized.Metadata_Plate == "P01"][FEATURES].notna().all(axis=None)
    assert "no 'untreated' wells" in caplog.text


def test_a_control_group_name_is_never_evaluated() -> None:
    images = _images()
    hostile = "untreated' or @__import__('os').system('touch /tmp/pwned') or '"
    images.loc[images.Metadata_Group == "untreated", "Metadata_Group"] = hostile
    normalized = normalize_profiles(build_profiles(images, FEATURES, ProfileParams()), hostile)
    assert normalized[FEATURES].notna().all(axis=None)
