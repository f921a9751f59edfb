"""Cox proportional-hazards models: univariate screening, then the multivariate model.

lifelines fits the models (``CoxPHFitter``, Efron ties, as R's ``survival::coxph``) and tests
proportional hazards (``proportional_hazard_test``, Schoenfeld residuals against rank-transformed
time); this module chooses the covariates and writes the documented tables.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from lifelines.statistics import proportional_hazard_test
from lifelines.utils import concordance_index

from pipeline.errors import ParameterError
from pipeline.workflows.survival.design import design_matrix, term_variables
from pipeline.workflows.survival.spec import Covariate

__all__ = [
    "CoxFit",
    "concordance_replicate",
    "fit_cox",
    "harrell_c",
    "multivariate_cox",
    "univariate_cox",
]

log = logging.getLogger(__name__)

_DURATION, _EVENT = "__duration", "__event"


@dataclass(frozen=True)
class CoxFit:
    """A fitted Cox model and its design.

    Attributes
    ----------
    terms : pandas.DataFrame
        One row per model term: covariate, variable, coef, hr, hr_lower, hr_upper, se, p.
    fitter : lifelines.CoxPHFitter
    design : pandas.DataFrame, shape (n_patients, n_terms)
        The matrix it was fitted on.
    concordance : float
        Harrell's C on the patients it was fitted on.
    lr_p : float
        Likelihood-ratio test p-value of the whole model.
    """

    terms: pd.DataFrame
    fitter: CoxPHFitter
    design: pd.DataFrame
    concordance: float
    lr_p: float


def harrell_c(duration: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance: the share of comparable pairs the risk score orders correctly.

    Parameters
    ----------
    duration, event : numpy.ndarray, shape (n_patients,)
    risk : numpy.ndarray, shape (n_patients,)
        Higher = earlier event expected (e.g. the Cox linear predictor).

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance.
    """
    # lifelines scores predicted survival times (higher = later); a risk score is the opposite.
    return float(concordance_index(duration, -np.asarray(risk, dtype=np.float64), event))


def fit_cox(
    frame: pd.DataFrame,
    covariates: Sequence[Covariate],
    *,
    alpha: float = 0.05,
    penalizer: float = 0.0,
) -> CoxFit:
    """Fit one Cox model of the cohort's survival on ``covariates``.

    Parameters
    ----------
    frame : pandas.DataFrame
        A cohort frame (``duration``, ``event`` and the covariate columns).
    covariates : sequence of Covariate
        Resolved covariates; categories are treatment-coded against their reference.
    alpha : float
        1 - confidence level of the hazard ratio intervals.
    penalizer : float
        L2 penalty (0 = the plain partial likelihood, as published analyses use).

    Returns
    -------
    CoxFit

    Raises
    ------
    ParameterError
        If the model does not converge (e.g. a category without events), with the fix.
    """
    design = design_matrix(frame, covariates)
    variables = term_variables(covariates)
    data = design.assign(
        **{_DURATION: frame["duration"].to_numpy(), _EVENT: frame["event"].to_numpy()}
    )
    names = ", ".join(c.name for c in covariates)
    fix = (
        "a category with no events (or only events), or covariates that say the same thing, "
        "usually cause this; merge rare levels, drop one of the covariates, or set "
        "penalizer: 0.01"
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fitter = CoxPHFitter(alpha=alpha, penalizer=penalizer).fit(
                data, duration_col=_DURATION, event_col=_EVENT
            )
    except ConvergenceError as exc:
        raise ParameterError(
            f"the Cox model on {names} did not converge ({str(exc).strip().splitlines()[0]}): {fix}"
        ) from None
    for w in caught:
        text = str(w.message).strip().splitlines()[0]
        # lifelines finishes Newton-Raphson but warns when the step is still large: the
        # estimates are then not a maximum (infinite hazard ratios), so they are not reported.
        if "norm(delta) is still high" in text:
            raise ParameterError(f"the Cox model on {names} did not converge ({text}): {fix}")
        log.warning("Cox model on %s: %s", names, text)
    s = fitter.summary
    level = round(100 * (1 - alpha))
    terms = pd.DataFrame(
        {
            "covariate": list(s.index),
            "variable": [variables[t] for t in s.index],
            "coef": s["coef"].to_numpy(),
            "hr": s["exp(coef)"].to_numpy(),
            "hr_lower": s[f"exp(coef) lower {level}%"].to_numpy(),
            "hr_upper": s[f"exp(coef) upper {level}%"].to_numpy(),
            "se": s["se(coef)"].to_numpy(),
            "p": s["p"].to_numpy(),
        }
    )
    return CoxFit(
        terms=terms,
        fitter=fitter,
        design=design,
        concordance=float(fitter.concordance_index_),
        lr_p=float(fitter.log_likelihood_ratio_test().p_value),
    )


def univariate_cox(
    frame: pd.DataFrame,
    covariates: Sequence[Covariate],
    *,
    threshold: float,
    alpha: float = 0.05,
    penalizer: float = 0.0,
) -> pd.DataFrame:
    """One Cox model per covariate: the ``cox_univariate`` table.

    A covariate is selected for the multivariate model when the likelihood-ratio test of its
    own model (all its terms at once, so a three-level category is one decision) has
    p < ``threshold``.

    Returns
    -------
    pandas.DataFrame
        One row per term, with ``variable_p``, ``selected``, ``n``, ``events``.
    """
    parts = []
    n, events = len(frame), int(frame["event"].sum())
    for cov in covariates:
        fit = fit_cox(frame, [cov], alpha=alpha, penalizer=penalizer)
        parts.append(
            fit.terms.assign(variable_p=fit.lr_p, selected=fit.lr_p < threshold, n=n, events=events)
        )
    out = pd.concat(parts, ignore_index=True)
    chosen = out.loc[out["selected"], "variable"].unique().tolist()
    log.info("univariate Cox: %d covariate(s) with p < %g: %s", len(chosen), threshold, chosen)
    return out


def multivariate_cox(
    frame: pd.DataFrame,
    covariates: Sequence[Covariate],
    *,
    alpha: float = 0.05,
    penalizer: float = 0.0,
) -> tuple[pd.DataFrame, CoxFit]:
    """The multivariate Cox model on ``covariates`` with its proportional-hazards check.

    Returns
    -------
    terms : pandas.DataFrame
        The ``cox_multivariate`` table: the model's terms with ``ph_statistic`` and ``ph_p``
        (Schoenfeld residual test against rank-transformed time, per term).
    fit : CoxFit
    """
    fit = fit_cox(frame, covariates, alpha=alpha, penalizer=penalizer)
    data = fit.design.assign(
        **{_DURATION: frame["duration"].to_numpy(), _EVENT: frame["event"].to_numpy()}
    )
    ph = proportional_hazard_test(fit.fitter, data, time_transform="rank").summary
    terms = fit.terms.assign(
        ph_statistic=ph["test_statistic"].reindex(fit.terms["covariate"]).to_numpy(),
        ph_p=ph["p"].reindex(fit.terms["covariate"]).to_numpy(),
    )
    bad = terms.loc[terms["ph_p"] < 0.05, "covariate"].tolist()
    if bad:
        log.warning(
            "proportional hazards doubtful (p < 0.05) for %s: their hazard ratio changes "
            "over time; consider stratifying on them",
            ", ".join(bad),
        )
    return terms, fit


def concordance_replicate(payload: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int) -> float:
    """Harrell's C of fixed risk scores on one bootstrap resample of the patients.

    Parameters
    ----------
    payload : (duration, event, risk)
        Arrays of shape (n_patients,); risk from the fitted model (not refitted: the interval
        is the uncertainty of the model's concordance on this cohort).
    seed : int

    Returns
    -------
    float
        NaN when the resample has no comparable pair.
    """
    duration, event, risk = payload
    idx = np.random.default_rng(seed).integers(0, duration.size, size=duration.size)
    if not event[idx].any():
        return float("nan")
    return harrell_c(duration[idx], event[idx], risk[idx])
