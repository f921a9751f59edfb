"""Four-parameter logistic fits: recovery of known curves, flags on untrustworthy fits."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.errors import ParameterError
from pipeline.workflows.plates.dose_response import DoseFit, fit_four_pl, four_pl

# Eight half-log concentrations (µM), three replicate wells each: a usual screen layout.
CONC = np.repeat(np.logspace(-3, 1, 8), 3)


def test_four_pl_is_the_documented_curve() -> None:
    c = np.array([0.01, 0.1, 1.0, 10.0])
    expected = 1.0 + (5.0 - 1.0) / (1.0 + (0.1 / c) ** 2.0)
    np.testing.assert_allclose(four_pl(c, 1.0, 5.0, 0.1, 2.0), expected)
    assert four_pl(0.1, 1.0, 5.0, 0.1, 2.0) == pytest.approx(3.0)  # half-way at the EC50
    assert np.all(np.diff(four_pl(c, 1.0, 5.0, 0.1, 2.0)) > 0)  # rising for hill > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert four_pl(np.array([0.0]), 1.0, 5.0, 0.1, 2.0)[0] == 1.0  # zero dose: bottom


@pytest.mark.parametrize(("bottom", "top"), [(1.0, 5.0), (5.0, 1.0)])
def test_noiseless_curve_is_recovered(bottom: float, top: float) -> None:
    fit = fit_four_pl(CONC, four_pl(CONC, bottom, top, 0.05, 1.5))
    assert fit.status == "ok"
    assert fit.converged
    assert (fit.n_points, fit.n_concentrations) == (24, 8)
    assert fit.bottom == pytest.approx(bottom, rel=1e-4)
    assert fit.top == pytest.approx(top, rel=1e-4)
    assert fit.ec50 == pytest.approx(0.05, rel=1e-4)
    assert fit.hill == pytest.approx(1.5, rel=1e-4)
    assert fit.rmse < 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_noisy_curve_is_recovered(seed: int) -> None:
    rng = np.random.default_rng(seed)
    response = four_pl(CONC, 1.0, 5.0, 0.05, 1.5) + rng.normal(0.0, 0.1, CONC.size)
    fit = fit_four_pl(CONC, response)
    assert fit.status == "ok"
    assert fit.ec50 == pytest.approx(0.05, rel=0.10)
    assert fit.hill == pytest.approx(1.5, rel=0.20)
    assert fit.rmse == pytest.approx(0.1, rel=0.5)  # the noise, not a misfit


def test_zero_dose_controls_are_left_out_of_the_fit() -> None:
    response = four_pl(CONC, 1.0, 5.0, 0.05, 1.5)
    # Controls far off the curve's bottom: fitting them would drag the curve.
    with_controls = fit_four_pl(
        np.concatenate([np.zeros(4), CONC]), np.concatenate([np.full(4, 100.0), response])
    )
    assert with_controls.status == "ok"
    assert with_controls.n_points == CONC.size
    assert with_controls.ec50 == pytest.approx(0.05, rel=1e-4)
    assert with_controls.bottom == pytest.approx(1.0, rel=1e-4)


def test_too_few_concentrations_is_flagged_without_a_fit() -> None:
    c = np.array([0.0, 0.0, 0.1, 0.1, 1.0, 1.0, 10.0, 10.0])  # 3 positive levels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_four_pl(c, four_pl(np.maximum(c, 1e-9), 1.0, 5.0, 1.0, 1.0))
    assert fit.status == "too_few_concentrations"
    assert not fit.converged
    assert (fit.n_points, fit.n_concentrations) == (6, 3)
    assert all(math.isnan(v) for v in (fit.bottom, fit.top, fit.ec50, fit.hill, fit.rmse))
    # The threshold is the caller's: 4 levels (replicated) are fitted with the default, and
    # are too few when 5 are asked for.
    c4 = np.repeat([0.01, 0.1, 1.0, 10.0], 2)
    assert fit_four_pl(c4, four_pl(c4, 1, 5, 0.3, 1)).status == "ok"
    assert (
        fit_four_pl(c4, four_pl(c4, 1, 5, 0.3, 1), min_concentrations=5).status
        == "too_few_concentrations"
    )


def test_four_points_are_interpolated_and_not_trusted() -> None:
    # Four parameters through four points leave no residual to estimate their error from.
    c = np.array([0.01, 0.1, 1.0, 10.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_four_pl(c, four_pl(c, 1.0, 5.0, 0.3, 1.0))
    assert fit.status == "not_converged"
    assert not fit.converged
    assert fit.ec50 == pytest.approx(0.3, rel=1e-3)  # the last parameters are kept


def test_exactly_flat_response_is_not_converged() -> None:
    fit = fit_four_pl(CONC, np.full(CONC.size, 2.0))
    assert fit.status == "not_converged"
    assert not fit.converged


def test_noisy_flat_response_is_rarely_reported_ok() -> None:
    # No dose response: noise gets fitted as a steep step at an arbitrary EC50. The F-test
    # against a flat line flags nearly all of these (about 5 % pass by chance).
    statuses: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the caller
        for seed in range(20):
            response = 2.0 + np.random.default_rng(seed).normal(0.0, 0.1, CONC.size)
            fit = fit_four_pl(CONC, response)
            assert fit.converged == (fit.status == "ok")
            statuses.append(fit.status)
    assert statuses.count("ok") <= 3
    assert set(statuses) <= {"ok", "not_converged"}


def test_step_beyond_the_tested_range_is_not_converged() -> None:
    # The response only starts rising at the highest concentration: the EC50 runs to its
    # bound (100x the highest concentration) and must not be reported as a finding.
    c = np.repeat(np.logspace(-3, -1, 6), 3)
    response = four_pl(c, 1.0, 5.0, 1e3, 1.0) + np.random.default_rng(0).normal(0, 0.05, c.size)
    fit = fit_four_pl(c, response)
    assert fit.status == "not_converged"
    assert not fit.converged


def test_result_is_a_frozen_record() -> None:
    fit = fit_four_pl(CONC, four_pl(CONC, 1.0, 5.0, 0.05, 1.5))
    assert isinstance(fit, DoseFit)
    with pytest.raises(AttributeError):
        fit.ec50 = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("concentration", "response", "match"),
    [
        (np.ones(5), np.ones(4), "equal|one length"),
        (np.ones((2, 3)), np.ones((2, 3)), "1-D"),
        (np.array([0.1, np.nan, 1.0, 10.0]), np.ones(4), "1 of 4 .*non-finite"),
        (np.array([0.1, 1.0, 10.0, 100.0]), np.array([1.0, np.inf, 2.0, np.nan]), "2 of 4"),
        (np.array([-1.0, 1.0, 10.0, 100.0]), np.ones(4), r"negative .*\[-1.0\]"),
    ],
)
def test_bad_input_is_rejected(concentration: np.ndarray, response: np.ndarray, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        fit_four_pl(concentration, response)


def test_min_concentrations_below_four_is_rejected() -> None:
    with pytest.raises(ParameterError, match="min_concentrations=3"):
        fit_four_pl(CONC, four_pl(CONC, 1, 5, 0.05, 1), min_concentrations=3)
