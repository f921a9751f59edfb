"""Method 1's time-series model on synthetic untreated wells with known dynamics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.errors import ParameterError
from pipeline.workflows.plates.timeseries import (
    CVResult,
    candidate_names,
    cross_validate,
    deviation,
    fit_best,
    fit_predictor,
)
from pipeline.workflows.plates.timeseries_spec import TimeSeriesParams

# Small torch models and short training: the tests check behaviour, not accuracy.
TORCH = {"hidden": 8, "epochs": 100}


def growing_wells(
    n: int = 24, features: int = 4, days: int = 4, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Wells whose features grow linearly at a well-specific rate, plus noise.

    Returns inputs (n, days - 1, features) and the last day as target (n, features).
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(10.0, 2.0, (n, 1, features))
    rate = rng.uniform(0.5, 2.0, (n, 1, features))
    t = np.arange(days, dtype=np.float64)[None, :, None]
    series = base + rate * t + rng.normal(0.0, noise, (n, days, features))
    return series[:, :-1], series[:, -1]


def test_candidate_names_list_each_penalty_then_the_networks() -> None:
    assert candidate_names(TimeSeriesParams()) == [
        "ridge(alpha=0.1)",
        "ridge(alpha=1)",
        "ridge(alpha=10)",
        "ridge(alpha=100)",
        "ridge(alpha=1000)",
        "gru",
    ]
    params = TimeSeriesParams(models=["mlp", "ridge"], alphas=[0.123456789])
    names = candidate_names(params)
    assert names[0] == "mlp"
    # The name parses back to the very penalty fitted, even when it is not short.
    x, y = growing_wells(n=6)
    assert fit_predictor(names[1], x, y, params, 0).ridge.alpha == 0.123456789  # type: ignore[union-attr]


def test_ridge_learns_the_trend_that_persistence_misses() -> None:
    x, y = growing_wells()
    params = TimeSeriesParams(models=["ridge"], forecast="observed")
    cv = cross_validate(x, y, params, seed=0)
    assert isinstance(cv, CVResult)
    assert list(cv.table.columns) == ["model", "mse", "mse_persistence", "folds", "forecast"]
    assert list(cv.table["model"]) == candidate_names(params)
    assert set(cv.table["forecast"]) == {"observed"}
    np.testing.assert_allclose(cv.table["mse_persistence"], np.mean((x[:, -1] - y) ** 2))
    row = cv.table.set_index("model").loc[cv.best]
    # The change is x[-1] - x[-2] (about 1.6 per day squared): ridge gets it to the noise.
    assert row["mse"] < 0.05 * row["mse_persistence"]
    assert cv.best == cv.table["model"].iloc[int(np.argmin(cv.table["mse"]))]
    assert cv.oof.shape == y.shape
    np.testing.assert_allclose(np.mean((cv.oof - y) ** 2), row["mse"])


def test_standardisation_returns_predictions_in_the_original_units() -> None:
    x, y = growing_wells()
    # Features on very different scales, one constant over all wells and days.
    scale = np.array([1e3, 1.0, 1e-3, 0.0])
    offset = np.array([1e4, -5.0, 0.0, 7.0])
    xs, ys = x * scale + offset, y * scale + offset
    for standardize in (True, False):
        params = TimeSeriesParams(models=["ridge"], alphas=[1e-3], standardize=standardize)
        model = fit_predictor("ridge(alpha=0.001)", xs, ys, params, 0)
        predicted = model.predict(xs)
        assert np.all(np.isfinite(predicted))
        np.testing.assert_allclose(predicted[:, 3], 7.0)
        # In the inputs' units: errors per feature scale with the feature, near the noise.
        error = np.abs(predicted - ys)[:, :3] / scale[:3]
        assert error.mean() < 0.2


def test_torch_models_give_finite_predictions_of_the_right_shape() -> None:
    x, y = growing_wells(n=12)
    params = TimeSeriesParams(models=["gru", "mlp"], dropout=0.2, **TORCH)
    cv = cross_validate(x, y, params, seed=0)
    assert list(cv.table["model"]) == ["gru", "mlp"]
    assert np.all(np.isfinite(cv.table["mse"]))
    predictor, _ = fit_best(x, y, params, seed=0)
    assert predictor.name == cv.best
    predicted = predictor.predict(x[:5])
    assert predicted.shape == (5, 4)
    assert np.all(np.isfinite(predicted))
    # Dropout is off at prediction time: the same inputs give the same outputs.
    np.testing.assert_array_equal(predicted, predictor.predict(x[:5]))
    # Trained on the change, a network beats persistence on a strong trend.
    assert cv.table["mse"].min() < cv.table["mse_persistence"].iloc[0]


def test_gru_is_bit_identical_for_one_seed_and_differs_for_another() -> None:
    x, y = growing_wells(n=10)
    params = TimeSeriesParams(models=["gru"], **TORCH)
    first = cross_validate(x, y, params, seed=3)
    again = cross_validate(x, y, params, seed=3)
    np.testing.assert_array_equal(first.oof, again.oof)
    np.testing.assert_array_equal(first.fold_of, again.fold_of)
    other = cross_validate(x, y, params, seed=4)
    assert not np.allclose(first.oof, other.oof)
    a = fit_predictor("gru", x, y, params, 3).predict(x)
    b = fit_predictor("gru", x, y, params, 3).predict(x)
    np.testing.assert_array_equal(a, b)


def test_fitting_leaves_the_callers_torch_state_alone() -> None:
    x, y = growing_wells(n=6)
    params = TimeSeriesParams(models=["mlp"], **TORCH)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch.set_num_threads(2)
    try:
        fit_predictor("mlp", x, y, params, 0).predict(x)
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.rand(3), expected)
    finally:
        torch.set_num_threads(threads)


def test_folds_cover_every_well_once_and_cap_at_the_wells() -> None:
    x, y = growing_wells(n=7)
    cv = cross_validate(x, y, TimeSeriesParams(models=["ridge"], alphas=[1.0]), seed=0)
    assert cv.fold_of.shape == (7,)
    assert sorted(set(cv.fold_of.tolist())) == [0, 1, 2, 3, 4]
    assert int(cv.table["folds"].iloc[0]) == 5
    x3, y3 = growing_wells(n=3)
    loo = cross_validate(x3, y3, TimeSeriesParams(models=["ridge"], alphas=[1.0]), seed=0)
    assert int(loo.table["folds"].iloc[0]) == 3
    assert sorted(loo.fold_of.tolist()) == [0, 1, 2]


def test_out_of_fold_predictions_never_see_the_well() -> None:
    # One well has a marker feature no other well has and an outsized jump on the target
    # day. A model that saw it can fit the jump through the marker; one that did not
    # cannot, so its out-of-fold error must stay large while its in-sample error is small.
    x, y = growing_wells(n=20, features=3)
    x[:, :, 2] = 0.0
    y[:, 2] = 0.0
    x[0, :, 2] = 10.0
    y[0, 2] = 10.0
    y[0, 0] += 20.0
    params = TimeSeriesParams(models=["ridge"], alphas=[1e-3], forecast="observed")
    cv = cross_validate(x, y, params, seed=0)
    out_of_fold = float(np.linalg.norm(cv.oof[0] - y[0]))
    in_sample = float(np.linalg.norm(fit_predictor(cv.best, x, y, params, 0).predict(x)[0] - y[0]))
    assert out_of_fold > 15.0
    assert in_sample < 0.1 * out_of_fold


def test_treated_well_deviates_more_than_untreated_ones() -> None:
    x, y = growing_wells(n=25, seed=1)
    control_x, control_y = x[:20], y[:20]
    params = TimeSeriesParams(models=["ridge"], forecast="observed")
    predictor, cv = fit_best(control_x, control_y, params, seed=0)
    # Treated wells: the same trend up to day 9, then a day-10 shift away from it.
    treated_x, treated_y = x[20:], y[20:] + np.array([-3.0, 2.0, -3.0, 2.0])
    null = deviation(control_y, cv.oof, "l2")
    treated = deviation(treated_y, predictor.predict(treated_x), "l2")
    untreated_held_out = deviation(y[20:], predictor.predict(treated_x), "l2")
    assert treated.min() > null.max()
    assert treated.min() > untreated_held_out.max()


def treated_from_day_one(
    n: int = 30, features: int = 3, days: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wells growing at one common rate (plus noise) from day 0; the last 6 are "treated"
    from day 0 on: they grow at a quarter of the rate. Returns inputs, target, treated."""
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(n) >= n - 6, 0.25, 1.0)[:, None, None]
    t = np.arange(days, dtype=np.float64)[None, :, None]
    series = rng.normal(5.0, 1.0, (n, 1, features)) + rate * t
    series = series + rng.normal(0.0, 0.05, series.shape)
    return series[:, :-1], series[:, -1], np.arange(n) >= n - 6


def test_rollout_predicts_the_untreated_course_from_the_first_day() -> None:
    x, y, treated = treated_from_day_one()
    scores = {}
    for forecast in ("rollout", "observed"):
        params = TimeSeriesParams(models=["ridge"], alphas=[0.1], forecast=forecast)
        predictor, cv = fit_best(x[~treated], y[~treated], params, seed=0)
        assert cv.table["forecast"].tolist() == [forecast]
        # Persistence is "the target looks like the last observed day".
        last = 0 if forecast == "rollout" else -1
        np.testing.assert_allclose(
            cv.table["mse_persistence"], np.mean((x[~treated, last] - y[~treated]) ** 2)
        )
        assert cv.table["mse"].iloc[0] < 0.05 * cv.table["mse_persistence"].iloc[0]
        assert len(predictor.steps) == (3 if forecast == "rollout" else 1)
        scores[forecast] = deviation(y[treated], predictor.predict(x[treated]), "l2")
        null = deviation(y[~treated], cv.oof, "l2")
        assert scores[forecast].min() > null.max()
    # A rollout only reads the first day: the treated wells' slower days 1-2 do not pull
    # its prediction along, so it sees the three days' lost growth (3 x 0.75 per feature);
    # the observed model follows the treated days and sees much less of it.
    np.testing.assert_allclose(scores["rollout"], 2.25 * np.sqrt(3), rtol=0.15)
    assert scores["observed"].max() < 0.5 * scores["rollout"].min()
    params = TimeSeriesParams(models=["ridge"], alphas=[0.1])
    predictor, _ = fit_best(x[~treated], y[~treated], params, seed=0)
    changed = x.copy()
    changed[:, 1:] += 100.0
    np.testing.assert_array_equal(predictor.predict(changed), predictor.predict(x))


def test_deviation_metrics() -> None:
    a = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    p = np.array([[2.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(deviation(a, p, "l2"), [1.0, 2.0, 5.0, np.sqrt(2.0)])
    cos = deviation(a, p, "cosine")
    # Same direction: 0 whatever the lengths; opposite: 2; a zero vector: NaN.
    np.testing.assert_allclose(cos[:2], [0.0, 2.0])
    assert np.isnan(cos[2]) and np.isnan(cos[3])
    assert deviation(a[:1], a[:1], "cosine")[0] == 0.0


def test_deviation_rejects_bad_input() -> None:
    with pytest.raises(ParameterError, match="one shape"):
        deviation(np.ones((3, 2)), np.ones((3, 4)), "l2")
    with pytest.raises(ParameterError, match=r"'manhattan'.*'l2' or 'cosine'"):
        deviation(np.ones((3, 2)), np.ones((3, 2)), "manhattan")  # type: ignore[arg-type]


def test_bad_input_is_rejected_with_the_fix() -> None:
    x, y = growing_wells(n=6)
    params = TimeSeriesParams(models=["ridge"], alphas=[1.0])
    with pytest.raises(ParameterError, match=r"\(n_wells, n_days, n_features\)"):
        cross_validate(x[:, 0], y, params, 0)
    with pytest.raises(ParameterError, match=r"expected \(n_wells, n_features\) = \(6, 4\)"):
        cross_validate(x, y[:, :3], params, 0)
    bad = x.copy()
    bad[4, 1, 2] = np.nan
    with pytest.raises(ParameterError, match=r"rows 4\).*drop wells missing a day"):
        cross_validate(bad, y, params, 0)
    with pytest.raises(ParameterError, match=r"2 untreated well.*at least 3"):
        cross_validate(x[:2], y[:2], params, 0)
    with pytest.raises(ParameterError, match="unknown time-series model 'lstm'"):
        fit_predictor("lstm", x, y, params, 0)
    with pytest.raises(ParameterError, match="ridge\\(alpha=-1\\)"):
        fit_predictor("ridge(alpha=-1)", x, y, params, 0)
    with pytest.raises(ParameterError, match="seed"):
        cross_validate(x, y, params, -1)
    model = fit_predictor("ridge(alpha=1)", x, y, params, 0)
    with pytest.raises(ParameterError, match=r"fitted on \(n_wells, 3, 4\)"):
        model.predict(x[:, :2])


@pytest.mark.parametrize(
    "bad",
    [
        {"models": []},
        {"models": ["ridge", "ridge"]},
        {"models": ["lstm"]},
        {"alphas": [1.0, 0.0]},
        {"alphas": [1.0, 1.0]},
        {"alphas": [float("inf")]},
        {"folds": 1},
        {"dropout": 1.0},
        {"epochs": 0},
        {"unknown": 1},
    ],
)
def test_params_reject_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TimeSeriesParams(**bad)  # type: ignore[arg-type]
