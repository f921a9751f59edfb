"""The efficacy ranking's parts against plain numpy on tiny data: crops, scores against the
null, the bootstrap ranking, method 2 and the per-well representations (the time-series
models and dose-response fits have their own test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from pipeline.errors import InputError
from pipeline.workflows.plates.crops import crop_spheroid
from pipeline.workflows.plates.efficacy import score_wells
from pipeline.workflows.plates.efficacy_spec import EfficacyParams, ExplosionParams
from pipeline.workflows.plates.explosion import (
    explosion_measures,
    fit_deterioration,
    method2_order,
    read_readout,
)
from pipeline.workflows.plates.ranking import empirical_p, rank_treatments, robust_z, z_prime
from pipeline.workflows.plates.representations import well_day_means, well_series
from pipeline.workflows.plates.timeseries_spec import TimeSeriesParams


def test_crop_is_centred_on_the_spheroid_and_padded_with_background() -> None:
    img = np.full((100, 120), 50000, dtype=np.uint16)
    yy, xx = np.mgrid[0:100, 0:120]
    img[(yy - 30) ** 2 + (xx - 90) ** 2 <= 100] = 10000  # a disc of radius 10 at (90, 30)
    crop = crop_spheroid(img, (90.0, 30.0), 80, 40)
    assert crop.shape == (40, 40) and crop.dtype == np.float32
    dark = np.argwhere(crop < 0.5)
    assert np.allclose(dark.mean(axis=0), (19.5, 19.5), atol=0.6)
    # Outside the image the crop shows the background, not a mirrored spheroid.
    assert np.isclose(crop[0, -1], 50000 / 65535, atol=1e-3)
    assert (crop < 0.5).sum() == pytest.approx(np.pi * 5**2, rel=0.25)
    centre = crop_spheroid(img, (float("nan"), float("nan")), 20, 20)
    assert np.allclose(centre, 50000 / 65535)


def test_robust_z_and_empirical_p_against_numpy() -> None:
    null = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    mad = np.median(np.abs(null - 3.0))
    assert robust_z(np.array([5.0]), null)[0] == pytest.approx(2.0 / (1.4826 * mad))
    assert np.allclose(empirical_p(np.array([0.0, 3.0, 200.0]), null), [1.0, 4 / 6, 1 / 6])
    pos, neg = np.array([10.0, 11.0, 12.0]), np.array([0.0, 1.0, 2.0])
    assert z_prime(pos, neg) == pytest.approx(1 - 3 * 2 / 10)


def test_ranking_orders_treatments_and_bootstrap_is_seeded(client: object) -> None:
    rng = np.random.default_rng(0)
    rows = [
        {"treatment": d, "concentration": 1.0, "unit": "uM", "score": s + rng.normal(0, 0.1)}
        for d, s in (("a", 1.0), ("b", 3.0), ("c", 2.0))
        for _ in range(6)
    ]
    wells = pd.DataFrame(rows)
    null = rng.normal(0.5, 0.1, 20)
    one = rank_treatments(wells, null, n_boot=200, seed=3, confidence=0.9)
    two = rank_treatments(wells, null, n_boot=200, seed=3, confidence=0.9, client=client)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(one, two)
    assert list(one["treatment"]) == ["a", "c", "b"] and list(one["rank"]) == [1, 2, 3]
    assert (one["score_lower"] <= one["score"]).all() and (one["score"] <= one["score_upper"]).all()
    med = wells.groupby("treatment")["score"].median()
    assert np.allclose(one.set_index("treatment")["score"], med.loc[["a", "c", "b"]])


def test_explosion_groups_and_method2_order() -> None:
    profiles = pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 4,
            "Metadata_Well": ["B02", "B03", "B04", "B05"],
            "Debris_AreaFraction": [0.0, 0.2, 0.005, 0.05],
            "Debris_FragmentCount": [0, 10, 5, 3],
            "Debris_SpreadRadius": [0.0, 40.0, 30.0, 20.0],
            "AreaShape_EquivalentDiameter": [40.0, 40.0, 40.0, 40.0],
        }
    )
    m = explosion_measures(profiles, ExplosionParams())
    assert list(m["exploded"]) == [False, True, False, True]
    assert m["explosion"].iloc[1] == pytest.approx(np.sqrt(0.2 * 2.0))
    rank = method2_order(
        m["exploded"].to_numpy(), np.array([50.0, 0.0, 10.0, 0.0]), m["explosion"].to_numpy()
    )
    assert list(rank) == [2, 4, 1, 3]


def test_deterioration_model_learns_viability() -> None:
    rng = np.random.default_rng(0)
    effect = rng.uniform(0, 1, 60)
    features = np.column_stack([effect, rng.normal(size=(60, 5))])
    control = np.arange(60) < 15
    effect[control] = 0
    features[control, 0] = 0
    viability = 1 - effect + rng.normal(0, 0.03, 60)
    viability[::2] = np.nan  # half the wells have a read-out
    model = fit_deterioration(
        features, viability, np.array(["P1"] * 60), control, alphas=[0.1, 10.0], seed=0
    )
    held = np.isnan(viability)
    corr = pd.Series(model.predicted[held]).corr(pd.Series(effect[held]), method="spearman")
    assert corr > 0.9 and model.trained == 30 and model.cv_spearman > 0.8


def test_readout_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_readout(tmp_path / "missing.csv")
    bad = tmp_path / "v.csv"
    bad.write_text("plate,well,viability\nP1,B02,0.5\nP1,B03,x\n")
    with pytest.raises(InputError, match="rows \\[3\\]"):
        read_readout(bad)


def test_well_day_means_average_usable_fields_only() -> None:
    images = pd.DataFrame(
        {
            "plate": ["P1"] * 5,
            "well": ["B02"] * 4 + ["B03"],
            "day": [7, 7, 10, 10, 7],
            "ok": [True, True, True, False, True],
        }
    )
    values = np.array([[1.0], [3.0], [5.0], [100.0], [7.0]])
    means = well_day_means(values, images)
    assert list(means[0]) == [2.0, 5.0, 7.0] and list(means["fields"]) == [2, 1, 1]
    series = well_series(means, [7], 10)
    assert series.incomplete == 1 and series.inputs.shape == (1, 1, 1)
    assert series.target[0, 0] == 5.0


def test_deterioration_reads_the_change_since_the_treatment_day() -> None:
    # Spheroids start at very different sizes; a drug slows their growth. Day 10 alone
    # mixes the start with the effect; its change from day 7 is the effect only.
    rng = np.random.default_rng(1)
    n = 80
    effect = np.where(np.arange(n) < 20, 0.0, rng.uniform(0, 1, n))
    start = rng.normal(0, 3, n)
    days = np.arange(7, 11)
    values = start[:, None] + np.outer(1 - effect, days - 7) + rng.normal(0, 0.05, (n, 4))
    wells = [f"W{i:02d}" for i in range(n)]
    images = pd.DataFrame(
        {"plate": "P1", "well": np.repeat(wells, 4), "day": np.tile(days, n), "ok": True}
    )
    noise = rng.normal(size=(4 * n, 2))  # two uninformative features
    means = well_day_means(np.column_stack([values.ravel(), noise]), images)
    plate_map = pd.DataFrame(
        {
            "plate": "P1",
            "well": wells,
            "treatment": ["untreated"] * 20 + ["drug"] * (n - 20),
            "concentration": 1.0,
            "unit": "uM",
            "plate_group": ["untreated"] * 20 + ["screening"] * (n - 20),
        }
    )
    viability = 1 - effect
    viability[1::2] = np.nan
    held = np.isnan(viability) & (effect > 0)
    got = {}
    for kind in ("change", "target_day"):
        params = EfficacyParams(
            readout_features=kind, timeseries=TimeSeriesParams(models=["ridge"]), bootstrap=0
        )
        wells_table, _, features = score_wells(means, plate_map, params, seed=0)
        pos = np.searchsorted(wells, wells_table["well"].to_numpy())  # table row -> well
        assert features.shape == (n, 3)
        model = fit_deterioration(
            features,
            viability[pos],
            np.array(["P1"] * n),
            wells_table["control"].to_numpy(bool),
            alphas=[0.1, 10.0],
            seed=0,
        )
        got[kind] = spearmanr(model.predicted[held[pos]], effect[pos][held[pos]]).statistic
    assert got["change"] > 0.95
    assert got["change"] > got["target_day"] + 0.2
