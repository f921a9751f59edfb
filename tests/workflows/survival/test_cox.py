"""Cox models against published values and against lifelines called directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_gbsg2, load_rossi
from lifelines.statistics import proportional_hazard_test

from pipeline.errors import ParameterError
from pipeline.workflows.survival.cox import (
    concordance_replicate,
    fit_cox,
    harrell_c,
    multivariate_cox,
    univariate_cox,
)
from pipeline.workflows.survival.spec import Covariate

# Fox & Weisberg, "Cox Proportional-Hazards Regression for Survival Data in R" (appendix to
# An R Companion to Applied Regression, 2nd ed., 2011): coxph(Surv(week, arrest) ~ fin + age +
# race + wexp + mar + paro + prio, data=Rossi), Efron ties. The same figures are in lifelines'
# documentation ("Survival regression", CoxPHFitter on load_rossi).
PUBLISHED = {  # covariate: (coef, se)
    "fin": (-0.37942, 0.19138),
    "age": (-0.05744, 0.02200),
    "race": (0.31390, 0.30799),
    "wexp": (-0.14980, 0.21222),
    "mar": (-0.43370, 0.38187),
    "paro": (-0.08487, 0.19576),
    "prio": (0.09150, 0.02865),
}
ROSSI_COVARIATES = list(PUBLISHED)


def _rossi_frame() -> tuple[pd.DataFrame, list[Covariate]]:
    df = load_rossi()
    frame = (
        df[ROSSI_COVARIATES]
        .astype(float)
        .assign(duration=df["week"].astype(float), event=df["arrest"])
    )
    return frame, [Covariate(name=c, kind="numeric") for c in ROSSI_COVARIATES]


def test_rossi_coefficients_match_the_published_values_to_three_decimals() -> None:
    frame, covs = _rossi_frame()
    fit = fit_cox(frame, covs)
    terms = fit.terms.set_index("covariate")
    for name, (coef, se) in PUBLISHED.items():
        assert terms.loc[name, "coef"] == pytest.approx(coef, abs=5e-4), name
        assert terms.loc[name, "se"] == pytest.approx(se, abs=5e-4), name
        assert terms.loc[name, "hr"] == pytest.approx(np.exp(coef), abs=5e-4), name
    # R reports Concordance = 0.64; the likelihood ratio test is 33.27 on 7 df, p = 2e-05.
    assert fit.concordance == pytest.approx(0.640, abs=5e-4)
    assert fit.lr_p == pytest.approx(2.36e-05, rel=0.01)


def test_multivariate_equals_lifelines_with_its_proportional_hazards_test() -> None:
    frame, covs = _rossi_frame()
    terms, _ = multivariate_cox(frame, covs)
    df = load_rossi()
    cph = CoxPHFitter().fit(df, "week", "arrest")
    ph = proportional_hazard_test(cph, df, time_transform="rank").summary
    t = terms.set_index("covariate")
    for name in ROSSI_COVARIATES:
        assert t.loc[name, "coef"] == pytest.approx(cph.params_[name], rel=1e-9)
        assert t.loc[name, "hr_lower"] == pytest.approx(
            cph.summary.loc[name, "exp(coef) lower 95%"], rel=1e-9
        )
        assert t.loc[name, "ph_p"] == pytest.approx(ph.loc[name, "p"], rel=1e-9)
    # lifelines' documented check_assumptions example flags age and wexp (rank transform).
    assert set(terms.loc[terms.ph_p < 0.05, "covariate"]) == {"age", "wexp"}


def _gbsg2_frame() -> tuple[pd.DataFrame, list[Covariate]]:
    df = load_gbsg2()
    frame = pd.DataFrame(
        {
            "duration": df["time"] / 365.25,
            "event": df["cens"],
            "tgrade": pd.Categorical(df["tgrade"], categories=["I", "II", "III"]),
            "age": df["age"].astype(float),
            "horTh": pd.Categorical(df["horTh"], categories=["no", "yes"]),
        }
    )
    covs = [
        Covariate(name="tgrade", kind="categorical", levels={"I": "I", "II": "II", "III": "III"}),
        Covariate(name="age", kind="numeric"),
        Covariate(name="horTh", kind="categorical", levels={"no": "no", "yes": "yes"}),
    ]
    return frame, covs


def test_univariate_models_are_one_lifelines_fit_per_covariate_with_lrt_selection() -> None:
    frame, covs = _gbsg2_frame()
    uni = univariate_cox(frame, covs, threshold=0.05)
    assert uni["covariate"].tolist() == ["tgrade[II]", "tgrade[III]", "age", "horTh[yes]"]
    data = pd.DataFrame(
        {
            "II": (frame.tgrade == "II").astype(float),
            "III": (frame.tgrade == "III").astype(float),
            "d": frame.duration,
            "e": frame.event,
        }
    )
    cph = CoxPHFitter().fit(data, "d", "e")
    grade = uni[uni.variable == "tgrade"]
    np.testing.assert_allclose(grade["coef"], cph.params_[["II", "III"]].to_numpy(), rtol=1e-9)
    # A three-level covariate is one decision: its likelihood-ratio p, shared by its terms.
    assert grade["variable_p"].nunique() == 1
    assert grade["variable_p"].iloc[0] == pytest.approx(cph.log_likelihood_ratio_test().p_value)
    selected = dict(zip(uni.variable, uni.selected, strict=True))
    assert selected == {"tgrade": True, "age": False, "horTh": True}


def test_a_category_without_events_names_the_fix() -> None:
    frame, covs = _gbsg2_frame()
    # Perfect separation: every event in one arm makes the partial likelihood unbounded.
    frame = frame.assign(event=(frame.horTh == "yes").astype(int))
    with pytest.raises(ParameterError, match="penalizer"):
        fit_cox(frame, [covs[2]])


def test_harrell_c_orders_risk_the_right_way_round() -> None:
    duration = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.ones(4, dtype=int)
    assert harrell_c(duration, event, np.array([4.0, 3.0, 2.0, 1.0])) == 1.0
    assert harrell_c(duration, event, np.array([1.0, 2.0, 3.0, 4.0])) == 0.0


def test_concordance_replicates_are_seeded() -> None:
    rng = np.random.default_rng(0)
    payload = (rng.exponential(size=50), rng.integers(0, 2, 50), rng.normal(size=50))
    assert concordance_replicate(payload, 7) == concordance_replicate(payload, 7)
    assert concordance_replicate(payload, 7) != concordance_replicate(payload, 8)
