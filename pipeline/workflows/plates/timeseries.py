"""Method 1's time-series model: from a well's representations on the input days (7, 8, 9)
predict the target day's (10), trained on untreated wells only.

There are few untreated wells (tens), so the models are small and regularised, and every one
predicts *the last input day plus a learned change*: a model that learns nothing predicts
persistence ("day 10 looks like day 9"), the baseline each candidate is compared with.
Candidates (ridge with each penalty, a GRU, an MLP) are compared by K-fold cross-validation
over wells and the best is refitted on every control well. The cross-validation's
out-of-fold predictions score each control well with a model that never saw it: the
efficacy score's null distribution.

A :class:`Forecaster` chains one such model per predicted day. With ``forecast:
observed`` it is one model fed the imaged input days; with ``rollout`` only the first input
day (the treatment day) is observed and the models predict days 8, 9 and 10 in turn, each
from the days before it, so a treated well is compared with the untreated course from the
day it was treated rather than with its own, already treated, days 8 and 9.

torch is imported inside the functions that train or run the torch models, so a ridge-only
run never loads it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from pipeline.errors import ParameterError
from pipeline.workflows.plates.timeseries_spec import TimeSeriesParams

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "CVResult",
    "Forecaster",
    "Predictor",
    "candidate_names",
    "cross_validate",
    "deviation",
    "fit_best",
    "fit_forecaster",
    "fit_predictor",
]

log = logging.getLogger(__name__)

_RIDGE = "ridge(alpha="


def _alpha_name(alpha: float) -> str:
    # Short names for the table ("ridge(alpha=10)"), but never one that parses back to
    # another penalty than the one fitted.
    short = f"{alpha:g}"
    return f"{_RIDGE}{short if float(short) == alpha else repr(float(alpha))})"


def candidate_names(params: TimeSeriesParams) -> list[str]:
    """The candidates compared by :func:`cross_validate`, in order.

    Parameters
    ----------
    params : TimeSeriesParams

    Returns
    -------
    list of str
        Per family of ``params.models`` in order: ``ridge(alpha=A)`` for each penalty of
        ``params.alphas``, or ``gru`` / ``mlp``. The order breaks ties in the selection.
    """
    names: list[str] = []
    for kind in params.models:
        if kind == "ridge":
            names += [_alpha_name(a) for a in params.alphas]
        else:
            names.append(kind)
    return names


def _as_inputs(inputs: np.ndarray) -> np.ndarray:
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ParameterError(
            f"inputs of shape {x.shape}: expected (n_wells, n_days, n_features) with at least "
            "one day and one feature; stack each well's input-day representations in day order"
        )
    return x


def _check_finite(x: np.ndarray, y: np.ndarray | None = None) -> None:
    ok = np.isfinite(x).all(axis=(1, 2))
    if y is not None:
        ok &= np.isfinite(y).all(axis=1)
    bad = np.flatnonzero(~ok)
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ParameterError(
            f"{bad.size} well(s) (rows {shown}) have non-finite representations: expected "
            "finite values on every day; drop wells missing a day (or with a failed image) "
            "before the time-series model"
        )


def _check(
    inputs: np.ndarray, target: np.ndarray, minimum: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    x = _as_inputs(inputs)
    y = np.asarray(target, dtype=np.float64)
    if y.shape != (x.shape[0], x.shape[2]):
        raise ParameterError(
            f"target of shape {y.shape} does not match inputs of shape {x.shape}: expected "
            f"(n_wells, n_features) = ({x.shape[0]}, {x.shape[2]}), one target-day "
            "representation per well"
        )
    _check_finite(x, y)
    # Cross-validation needs 3 wells (each fold trains on 2 or more); a single fit needs 2.
    if x.shape[0] < minimum:
        raise ParameterError(
            f"{x.shape[0]} untreated well(s) with every day: the time-series model needs at "
            "least 3 to be fitted and cross-validated; image more untreated wells (tens are "
            "advised) or check why wells failed QC"
        )
    return x, y


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}; e.g. 0")


def _fold_seed(seed: int, fold: int) -> int:
    # Independent, reproducible streams per fold; no fold shares the refit's initialisation.
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # Tiny full-batch problems: extra threads only add scheduling noise and can change the
    # order of float reductions; the caller's thread count is restored.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    # Seed a forked RNG so that fitting neither depends on nor disturbs the caller's torch
    # random state (devices=[]: CPU only, no CUDA initialisation).
    import torch

    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class Predictor:
    """A fitted candidate: :meth:`predict` maps input days to the target day.

    Attributes
    ----------
    name : str
        The candidate (``ridge(alpha=10)``, ``gru`` or ``mlp``).
    n_days, n_features : int
        The input shape it was fitted on.
    mean, std : numpy.ndarray, shape (n_features,)
        The standardisation fitted on the training wells' input days (0 and 1 when off).
    ridge : sklearn.linear_model.Ridge, optional
        The fitted ridge (ridge candidates).
    net : torch.nn.Module, optional
        The trained network (``gru`` and ``mlp``).
    """

    name: str
    n_days: int
    n_features: int
    mean: np.ndarray
    std: np.ndarray
    ridge: Ridge | None = None
    net: nn.Module | None = None

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Predict the target day's representation.

        Parameters
        ----------
        inputs : numpy.ndarray, shape (n_wells, n_days, n_features)
            Input days in the units the predictor was fitted in.

        Returns
        -------
        numpy.ndarray, shape (n_wells, n_features)
            The last input day plus the predicted change, in the inputs' units.
        """
        x = _as_inputs(inputs)
        if x.shape[1:] != (self.n_days, self.n_features):
            raise ParameterError(
                f"inputs of shape {x.shape}: {self.name} was fitted on (n_wells, "
                f"{self.n_days}, {self.n_features}); pass the same days and features"
            )
        _check_finite(x)
        xs = (x - self.mean) / self.std
        if self.ridge is not None:
            change = np.asarray(self.ridge.predict(xs.reshape(len(xs), -1)), dtype=np.float64)
        elif self.net is not None:
            import torch

            with torch.no_grad(), _one_thread():
                out = self.net(torch.as_tensor(xs, dtype=torch.float32))
            change = out.double().numpy()
        else:  # pragma: no cover - only a hand-built Predictor gets here
            raise ParameterError(f"predictor {self.name} holds no fitted model; fit it first")
        return np.asarray((xs[:, -1] + change) * self.std + self.mean)


def _network(kind: str, days: int, features: int, params: TimeSeriesParams) -> nn.Module:
    """The change model: ``(n, days, features) float32 -> (n, features)``."""
    import torch
    from torch import nn

    class GRUChange(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(features, params.hidden, batch_first=True)
            self.drop = nn.Dropout(params.dropout)
            self.out = nn.Linear(params.hidden, features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, h = self.gru(x)  # h: (1, n, hidden), the state after the last input day
            out: torch.Tensor = self.out(self.drop(h[-1]))
            return out

    class MLPChange(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(days * features, params.hidden),
                nn.ReLU(),
                nn.Dropout(params.dropout),
                nn.Linear(params.hidden, features),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(x)
            return out

    return GRUChange() if kind == "gru" else MLPChange()


def fit_predictor(
    name: str, inputs: np.ndarray, target: np.ndarray, params: TimeSeriesParams, seed: int
) -> Predictor:
    """Fit candidate ``name`` on (control) wells.

    Parameters
    ----------
    name : str
        ``ridge(alpha=A)``, ``gru`` or ``mlp`` (see :func:`candidate_names`).
    inputs : numpy.ndarray, shape (n_wells, n_days, n_features)
        Each well's representation on the input days, in day order (n_wells >= 3).
    target : numpy.ndarray, shape (n_wells, n_features)
        Each well's representation on the target day.
    params : TimeSeriesParams
        Standardisation and the torch models' size and training.
    seed : int
        Initialisation (and dropout) of the torch models, >= 0: one seed gives bit-identical
        models on CPU. The caller's torch RNG state and thread count are left untouched.

    Returns
    -------
    Predictor

    Raises
    ------
    ParameterError
        On an unknown name, a bad seed or bad inputs (shapes, non-finite wells, < 2 wells).
    """
    x, y = _check(inputs, target, minimum=2)
    _check_seed(seed)
    n, days, features = x.shape
    if params.standardize:
        flat = x.reshape(-1, features)
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        # A feature constant over the training wells is only centred (no division by 0).
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    else:
        mean, std = np.zeros(features), np.ones(features)
    xs, ys = (x - mean) / std, (y - mean) / std
    change = ys - xs[:, -1]
    if name.startswith(_RIDGE) and name.endswith(")"):
        try:
            alpha = float(name[len(_RIDGE) : -1])
        except ValueError:
            alpha = math.nan
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ParameterError(
                f"time-series model {name!r} has no valid penalty: expected "
                "'ridge(alpha=A)' with a finite A > 0, e.g. 'ridge(alpha=10)'"
            )
        ridge = Ridge(alpha=alpha).fit(xs.reshape(n, -1), change)
        return Predictor(name, days, features, mean, std, ridge=ridge)
    if name not in ("gru", "mlp"):
        raise ParameterError(
            f"unknown time-series model {name!r}: expected 'ridge(alpha=A)', 'gru' or 'mlp' "
            f"(the candidates of these params: {candidate_names(params)})"
        )
    import torch

    with _seeded(seed):
        net = _network(name, days, features, params)
        opt = torch.optim.Adam(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        tx = torch.as_tensor(xs, dtype=torch.float32)
        ty = torch.as_tensor(change, dtype=torch.float32)
        net.train()
        for _ in range(params.epochs):
            opt.zero_grad()
            loss = torch.mean((net(tx) - ty) ** 2)
            loss.backward()
            opt.step()
        net.eval()
    log.debug("%s: training loss %.4g after %d epochs", name, float(loss.detach()), params.epochs)
    return Predictor(name, days, features, mean, std, net=net)


def _observed_days(params: TimeSeriesParams, n_days: int) -> int:
    """How many leading input days a forecaster takes as imaged."""
    return 1 if params.forecast == "rollout" else n_days


@dataclass(frozen=True)
class Forecaster:
    """Fitted models that predict the target day from the first ``observed`` input days.

    ``steps[j]`` predicts day ``observed + j`` (the last step: the target day) from the days
    before it, the imaged ones followed by the earlier steps' predictions.

    Attributes
    ----------
    name : str
        The candidate every step is (``ridge(alpha=10)``, ``gru`` or ``mlp``).
    observed : int
        Leading input days taken as imaged (1 for ``rollout``, all for ``observed``).
    steps : tuple of Predictor
        One model per predicted day.
    """

    name: str
    observed: int
    steps: tuple[Predictor, ...]

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Predict the target day's representation.

        Parameters
        ----------
        inputs : numpy.ndarray, shape (n_wells, n_days, n_features)
            Every input day, in day order (days after the first ``observed`` are not read).

        Returns
        -------
        numpy.ndarray, shape (n_wells, n_features)
        """
        x = _as_inputs(inputs)
        days = x[:, : self.observed]
        for step in self.steps:
            days = np.concatenate([days, step.predict(days)[:, None]], axis=1)
        return np.asarray(days[:, -1])


def fit_forecaster(
    name: str, inputs: np.ndarray, target: np.ndarray, params: TimeSeriesParams, seed: int
) -> Forecaster:
    """Fit candidate ``name`` as a forecaster (``params.forecast``) on (control) wells.

    Each step is fitted on the imaged days (teacher forcing): step ``j`` maps the wells'
    first ``observed + j`` days to their day ``observed + j``.

    Parameters
    ----------
    name : str
        As :func:`fit_predictor`.
    inputs : numpy.ndarray, shape (n_wells, n_days, n_features)
    target : numpy.ndarray, shape (n_wells, n_features)
    params : TimeSeriesParams
    seed : int
        Step ``j``'s torch model is seeded from ``SeedSequence([seed, j])``.

    Returns
    -------
    Forecaster
    """
    x, y = _check(inputs, target, minimum=2)
    _check_seed(seed)
    days = np.concatenate([x, y[:, None]], axis=1)
    observed = _observed_days(params, x.shape[1])
    steps = tuple(
        fit_predictor(name, days[:, :k], days[:, k], params, _fold_seed(seed, k))
        for k in range(observed, days.shape[1])
    )
    return Forecaster(name, observed, steps)


@dataclass(frozen=True)
class CVResult:
    """K-fold cross-validation of the candidates over control wells.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate in :func:`candidate_names` order: ``model``; ``mse``, the
        out-of-fold squared error averaged over wells and features (squared input units;
        ``inf`` when a model's predictions were not finite); ``mse_persistence``, the same
        for "target = last observed input day" (the first input day with ``rollout``);
        ``folds``, the number of folds; ``forecast``, ``params.forecast``.
    best : str
        The candidate with the lowest ``mse`` (the first in order on ties).
    oof : numpy.ndarray, shape (n_wells, n_features)
        The best candidate's out-of-fold predictions: each well predicted by a model fitted
        without it.
    fold_of : numpy.ndarray of int, shape (n_wells,)
        The fold each well was held out in (0 .. folds - 1).
    """

    table: pd.DataFrame
    best: str
    oof: np.ndarray
    fold_of: np.ndarray


def cross_validate(
    inputs: np.ndarray, target: np.ndarray, params: TimeSeriesParams, seed: int
) -> CVResult:
    """K-fold cross-validation of every candidate over wells.

    Parameters
    ----------
    inputs : numpy.ndarray, shape (n_wells, n_days, n_features)
        Control wells' input days, in day order (n_wells >= 3).
    target : numpy.ndarray, shape (n_wells, n_features)
        Their target day.
    params : TimeSeriesParams
        The candidates and ``folds`` (capped at ``n_wells``).
    seed : int
        Shuffles the folds (``KFold(shuffle=True, random_state=seed)``); fold ``k``'s
        forecaster is fitted with seed ``SeedSequence([seed, k])``.

    Returns
    -------
    CVResult
    """
    x, y = _check(inputs, target)
    _check_seed(seed)
    k = min(params.folds, len(x))
    splits = list(KFold(n_splits=k, shuffle=True, random_state=int(seed)).split(x))
    fold_of = np.empty(len(x), dtype=np.int64)
    for fold, (_, test) in enumerate(splits):
        fold_of[test] = fold
    observed = _observed_days(params, x.shape[1])
    persistence = float(np.mean((x[:, observed - 1] - y) ** 2))
    rows: list[dict[str, object]] = []
    oofs: dict[str, np.ndarray] = {}
    for name in candidate_names(params):
        oof = np.empty_like(y)
        for fold, (train, test) in enumerate(splits):
            model = fit_forecaster(name, x[train], y[train], params, _fold_seed(seed, fold))
            oof[test] = model.predict(x[test])
        mse = float(np.mean((oof - y) ** 2))
        if not math.isfinite(mse):
            # A diverged torch model must not win (argmin would pick NaN) nor fail the run.
            log.warning("%s gave non-finite predictions in cross-validation; try a lower lr", name)
            mse = math.inf
        oofs[name] = oof
        rows.append(
            {
                "model": name,
                "mse": mse,
                "mse_persistence": persistence,
                "folds": k,
                "forecast": params.forecast,
            }
        )
        log.debug("%s: out-of-fold mse %.4g (persistence %.4g)", name, mse, persistence)
    table = pd.DataFrame(rows, columns=["model", "mse", "mse_persistence", "folds", "forecast"])
    best = str(table["model"].iloc[int(np.argmin(table["mse"].to_numpy()))])
    return CVResult(table, best, oofs[best], fold_of)


def fit_best(
    inputs: np.ndarray, target: np.ndarray, params: TimeSeriesParams, seed: int
) -> tuple[Forecaster, CVResult]:
    """Cross-validate the candidates, then refit the best on every control well.

    Parameters
    ----------
    inputs : numpy.ndarray, shape (n_wells, n_days, n_features)
    target : numpy.ndarray, shape (n_wells, n_features)
    params : TimeSeriesParams
    seed : int
        As :func:`cross_validate`; the refit's torch model is seeded with ``seed``.

    Returns
    -------
    predictor : Forecaster
        The best candidate fitted on all wells (for treated wells: score control wells with
        ``cv.oof``, which never saw them).
    cv : CVResult
    """
    cv = cross_validate(inputs, target, params, seed)
    return fit_forecaster(cv.best, inputs, target, params, seed), cv


def deviation(
    actual: np.ndarray, predicted: np.ndarray, metric: Literal["l2", "cosine"]
) -> np.ndarray:
    """How far each well's actual target-day representation is from its prediction.

    Parameters
    ----------
    actual, predicted : numpy.ndarray, shape (n_wells, n_features)
    metric : {"l2", "cosine"}
        ``l2``: Euclidean norm of the difference (input units). ``cosine``: 1 - cosine
        similarity, in [0, 2]: 0 when they point the same way, whatever their lengths.

    Returns
    -------
    numpy.ndarray, shape (n_wells,)
        The deviations. For ``cosine`` a well whose actual or predicted vector is the zero
        vector has no direction: its deviation is NaN (no warning).

    Raises
    ------
    ParameterError
        If the shapes differ or are not 2-D, or the metric is unknown.
    """
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if a.ndim != 2 or a.shape != p.shape:
        raise ParameterError(
            f"actual {a.shape} and predicted {p.shape}: expected two arrays of one shape "
            "(n_wells, n_features)"
        )
    if metric == "l2":
        return np.asarray(np.linalg.norm(a - p, axis=1))
    if metric != "cosine":
        raise ParameterError(f"metric {metric!r} is unknown: expected 'l2' or 'cosine'")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(p, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * p, axis=1) / norms
    # Rounding can push |cos| a hair past 1; clip so identical vectors give exactly >= 0.
    return np.where(norms > 0, 1.0 - np.clip(cos, -1.0, 1.0), np.nan)
