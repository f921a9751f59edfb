"""Four-parameter logistic dose-response fits (the screening field's standard curve).

``response = bottom + (top - bottom) / (1 + (ec50 / c) ** hill)``, rising with the
concentration ``c`` for ``hill > 0`` (a falling response has ``top < bottom``). Fitted with
:func:`scipy.optimize.curve_fit` on ``log10(ec50)``, since concentrations span decades, with
bounds that keep the EC50 within two decades of the tested range and the Hill slope in
[0.1, 10]. A fit that cannot be trusted is flagged in ``status``, never silently reported,
and no warning reaches the caller.

Data without a dose response (a flat line) have no EC50, and noise on one is readily fitted
as a steep step at an arbitrary concentration with a finite covariance. Such fits are
flagged ``not_converged`` (parameters kept for inspection, not to be trusted): a response
constant to rounding, or, with more than four points, a fit that does not beat a flat line
(extra-sum-of-squares F-test of the 4PL against the mean response, p >= :data:`FLAT_P`). So
about 5 % of flat, noisy series still pass as ``ok`` (the test's false-positive rate).

Four points (four concentrations without replicates) are interpolated by the four
parameters with no residual left to estimate a covariance from: such a fit is always
``not_converged``. A trusted fit needs at least five points (replicates or a fifth
concentration).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit
from scipy.stats import f as f_dist

from pipeline.errors import ParameterError

__all__ = ["FLAT_P", "DoseFit", "DoseStatus", "fit_four_pl", "four_pl"]

#: ``DoseFit.status`` values.
DoseStatus = Literal["ok", "too_few_concentrations", "not_converged"]
_OK: Final = "ok"
_TOO_FEW: Final = "too_few_concentrations"
_NOT_CONVERGED: Final = "not_converged"

#: A fit whose improvement over a flat line has an F-test p-value at least this is flagged:
#: noise on a flat response is otherwise fitted as a steep step at an arbitrary EC50.
FLAT_P: Final = 0.05

#: The EC50 may lie this factor beyond the lowest and highest tested concentrations.
_EC50_REACH = 100.0
_HILL_BOUNDS = (0.1, 10.0)
#: Evaluation budget of the optimiser: a real curve converges in tens of evaluations;
#: noise on a flat line can crawl along the hill bound for tens of thousands (seconds per
#: fit), and is flagged ``not_converged`` whichever way it ends.
_MAX_NFEV = 500
_LN10 = math.log(10.0)


def four_pl(
    conc: np.ndarray | float, bottom: float, top: float, ec50: float, hill: float
) -> np.ndarray:
    """The four-parameter logistic.

    Parameters
    ----------
    conc : numpy.ndarray or float, shape (n,)
        Concentrations (> 0), in the unit of ``ec50``. ``0`` gives ``bottom``, the limit.
    bottom, top : float
        Responses at zero and at infinite concentration (for ``hill > 0``).
    ec50 : float
        Concentration of the half-way response (> 0).
    hill : float
        Hill slope: steepness of the step (> 0 for a curve from ``bottom`` to ``top``).

    Returns
    -------
    numpy.ndarray, shape of ``conc``
        ``bottom + (top - bottom) / (1 + (ec50 / conc) ** hill)``.
    """
    c = np.asarray(conc, dtype=np.float64)
    # (ec50 / 0) ** hill = inf gives exactly `bottom`; overflow far below the EC50 likewise.
    with np.errstate(divide="ignore", over="ignore"):
        return np.asarray(bottom + (top - bottom) / (1.0 + (ec50 / c) ** hill))


@dataclass(frozen=True)
class DoseFit:
    """A dose-response fit.

    Attributes
    ----------
    bottom, top : float
        Fitted responses below and above the step (response units; NaN when not fitted).
    ec50 : float
        Fitted EC50 in the concentrations' unit (NaN when not fitted).
    hill : float
        Fitted Hill slope (NaN when not fitted).
    converged : bool
        The fit converged with a finite covariance and an EC50 strictly inside its bounds
        (``status == "ok"``).
    status : str
        ``"ok"``; ``"too_few_concentrations"`` (fewer distinct positive concentrations than
        asked: no fit attempted, parameters NaN); ``"not_converged"`` (the optimiser failed:
        parameters NaN; or the covariance is not finite, the EC50 sits on a bound, or
        the curve does not beat a flat line (see the module notes): the last parameters
        are kept, not to be trusted).
    n_points : int
        Points with a concentration > 0 (the fitted ones).
    n_concentrations : int
        Their distinct concentrations.
    rmse : float
        Root mean squared residual of the fitted points (response units; NaN when there
        are no parameters).
    """

    bottom: float
    top: float
    ec50: float
    hill: float
    converged: bool
    status: DoseStatus
    n_points: int
    n_concentrations: int
    rmse: float


def _model(c: np.ndarray, bottom: float, top: float, log_ec50: float, hill: float) -> np.ndarray:
    # four_pl on log10(ec50), written with the logistic so that no power overflows.
    return np.asarray(bottom + (top - bottom) * expit(hill * _LN10 * (np.log10(c) - log_ec50)))


def _jacobian(c: np.ndarray, bottom: float, top: float, log_ec50: float, hill: float) -> np.ndarray:
    # Analytic derivatives: finite differences along the hill bound (noise on a flat line)
    # cost most of a fit's time.
    d = np.log10(c) - log_ec50
    s = expit(hill * _LN10 * d)
    slope = (top - bottom) * s * (1.0 - s) * _LN10
    return np.stack([1.0 - s, s, -hill * slope, d * slope], axis=1)


def _no_fit(status: DoseStatus, n_points: int, n_levels: int) -> DoseFit:
    nan = math.nan
    return DoseFit(nan, nan, nan, nan, False, status, n_points, n_levels, nan)


def _beats_flat(c: np.ndarray, r: np.ndarray, popt: np.ndarray) -> bool:
    """Whether the fitted curve explains the responses better than their mean does."""
    ss_flat = float(np.sum((r - r.mean()) ** 2))
    if ss_flat <= (1e-12 * max(1.0, float(np.abs(r).max()))) ** 2 * r.size:
        return False  # constant to rounding: nothing to fit a step to
    dof = r.size - 4
    if dof < 1:
        return True  # no residual to test against (the covariance check flags these)
    ss_fit = float(np.sum((_model(c, *popt) - r) ** 2))
    if ss_fit <= 0.0:
        return True
    stat = ((ss_flat - ss_fit) / 3.0) / (ss_fit / dof)
    return bool(f_dist.sf(stat, 3, dof) < FLAT_P)


def fit_four_pl(
    concentration: np.ndarray, response: np.ndarray, *, min_concentrations: int = 4
) -> DoseFit:
    """Fit a four-parameter logistic (:func:`four_pl`) to ``response`` against
    ``concentration``.

    Only concentrations > 0 are fitted: zero-dose controls are left out of the fit (the
    curve's ``bottom`` is its own parameter); callers may compare them with ``bottom``
    separately.

    Parameters
    ----------
    concentration : numpy.ndarray, shape (n,)
        Concentrations (>= 0, finite), any one unit; replicates repeat a concentration.
    response : numpy.ndarray, shape (n,)
        Responses (finite), e.g. efficacy scores.
    min_concentrations : int, default 4
        Distinct positive concentrations needed to attempt a fit (>= 4: four parameters
        cannot be told apart from fewer).

    Returns
    -------
    DoseFit
        Starts from bottom = median response at the lowest concentration, top = at the
        highest, EC50 = geometric mean of the distinct concentrations, hill = 1; bounds:
        EC50 in [lowest / 100, highest * 100], hill in [0.1, 10], bottom and top within one
        response range beyond the observed responses.

    Raises
    ------
    ParameterError
        If the arrays are not 1-D of one length, a value is not finite, a concentration is
        negative or ``min_concentrations < 4``.
    """
    c = np.asarray(concentration, dtype=np.float64)
    r = np.asarray(response, dtype=np.float64)
    if c.ndim != 1 or c.shape != r.shape:
        raise ParameterError(
            f"concentration of shape {c.shape} and response of shape {r.shape}: expected two "
            "1-D arrays of one length (one concentration per response)"
        )
    if min_concentrations < 4:
        raise ParameterError(
            f"min_concentrations={min_concentrations}: a four-parameter fit needs at least 4 "
            "distinct concentrations; pass 4 or more"
        )
    bad = int((~np.isfinite(c) | ~np.isfinite(r)).sum())
    if bad:
        raise ParameterError(
            f"{bad} of {c.size} dose-response point(s) have a non-finite concentration or "
            "response: expected finite values; drop those points before fitting"
        )
    if (c < 0).any():
        negative = np.unique(c[c < 0])
        raise ParameterError(
            f"negative concentration(s) {negative[:5].tolist()}: expected concentrations >= 0 "
            "(0 for untreated controls); check the plate map's concentration column"
        )
    keep = c > 0
    c, r = c[keep], r[keep]
    levels = np.unique(c)
    if levels.size < min_concentrations:
        return _no_fit(_TOO_FEW, c.size, levels.size)

    lo_c, hi_c = float(levels[0]), float(levels[-1])
    r_min, r_max = float(r.min()), float(r.max())
    span = max(r_max - r_min, 1e-12 * max(1.0, abs(r_max)))
    lower = [r_min - span, r_min - span, math.log10(lo_c / _EC50_REACH), _HILL_BOUNDS[0]]
    upper = [r_max + span, r_max + span, math.log10(hi_c * _EC50_REACH), _HILL_BOUNDS[1]]
    start = [
        float(np.median(r[c == lo_c])),
        float(np.median(r[c == hi_c])),
        float(np.mean(np.log10(levels))),
        1.0,
    ]
    # curve_fit needs a start strictly inside the bounds.
    width = [b - a for a, b in zip(lower, upper, strict=True)]
    start = [
        min(max(s, a + 1e-6 * w), b - 1e-6 * w)
        for s, a, b, w in zip(start, lower, upper, width, strict=True)
    ]
    with warnings.catch_warnings(record=True) as caught:
        # Record rather than raise, so a fit whose covariance cannot be estimated keeps its
        # parameters (flagged); nothing reaches the caller.
        warnings.simplefilter("always")
        try:
            popt, pcov = curve_fit(
                _model, c, r, p0=start, bounds=(lower, upper), jac=_jacobian, maxfev=_MAX_NFEV
            )
        except (RuntimeError, ValueError):
            return _no_fit(_NOT_CONVERGED, c.size, levels.size)
    bottom, top, log_ec50, hill = (float(v) for v in popt)
    rmse = float(np.sqrt(np.mean((_model(c, *popt) - r) ** 2)))
    warned = any(issubclass(w.category, OptimizeWarning) for w in caught)
    # On a bound within 1e-3 decades: the optimiser pushed the step out of reach.
    on_bound = min(log_ec50 - lower[2], upper[2] - log_ec50) < 1e-3
    converged = bool(
        np.isfinite(pcov).all() and not warned and not on_bound and _beats_flat(c, r, popt)
    )
    return DoseFit(
        bottom,
        top,
        10.0**log_ec50,
        hill,
        converged,
        _OK if converged else _NOT_CONVERGED,
        c.size,
        levels.size,
        rmse,
    )
