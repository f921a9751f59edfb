"""Parameters of method 1's time-series model of untreated spheroids (pydantic only).

This model is imported when a job spec is validated, so this module imports nothing but
pydantic: the models live in :mod:`pipeline.workflows.plates.timeseries` (which imports
scikit-learn and torch, and is only imported when the ``efficacy`` stage runs).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Forecast", "ModelKind", "TimeSeriesParams"]

#: The candidate model families: ridge on the stacked days, a GRU over the days, an MLP on
#: the stacked days.
ModelKind = Literal["ridge", "gru", "mlp"]

#: How the target day is predicted from the input days: ``rollout`` observes only the first
#: input day and predicts each later day from the days before it (its own predictions);
#: ``observed`` feeds every input day as imaged.
Forecast = Literal["rollout", "observed"]


class TimeSeriesParams(BaseModel):
    """The candidates of the time-series model and their cross-validation.

    Every candidate predicts the target day as *the last input day plus a learned change*,
    so a model that learns nothing predicts "day 10 looks like day 9": the persistence
    baseline, reported beside each candidate in the cross-validation table.

    Attributes
    ----------
    models : list of {"ridge", "gru", "mlp"}, default ["ridge", "gru"]
        Families compared by K-fold cross-validation over control wells (at least one, each
        once). ``ridge`` contributes one candidate per entry of ``alphas``, named
        ``ridge(alpha=10)``.
    alphas : list of float, default [0.1, 1, 10, 100, 1000]
        Ridge penalties (> 0, distinct), on the standardised features when ``standardize``.
    folds : int, default 5
        K of the K-fold cross-validation over wells (>= 2); capped at the number of control
        wells (leave-one-out).
    hidden : int, default 32
        Width of the GRU's state and of the MLP's hidden layer.
    epochs : int, default 300
        Full-batch Adam steps of the torch models.
    lr : float, default 1e-2
        Adam's learning rate.
    weight_decay : float, default 1e-3
        Adam's L2 penalty on the torch models' weights (the only regulariser besides
        ``dropout``: there are only tens of control wells).
    dropout : float, default 0.0
        Dropout probability in [0, 1) on the MLP's hidden layer and on the GRU's last state
        (training only).
    standardize : bool, default True
        Z-score every feature with the training wells' mean and std over all input days
        before fitting; predictions are returned in the original units.
    forecast : {"rollout", "observed"}, default "rollout"
        ``observed``: the target day is predicted from the input days as imaged. On a
        treated well those days already carry the drug's effect (it is applied on the first
        input day), so the model follows the well's own trajectory and the deviation sees
        only the last day's change. ``rollout``: only the first input day is observed; one
        model per day (trained, like the others, on control wells' imaged days) predicts
        each later day from the days before it, feeding its predictions forward, so the
        prediction is an untreated spheroid's course from the treatment day and the
        deviation sees every day of the drug's effect. ``benchmarks/efficacy.py`` compares
        the two rankings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelKind] = Field(
        default_factory=lambda: list[ModelKind](["ridge", "gru"]),
        min_length=1,
        description="Model families compared by cross-validation (ridge, gru, mlp), each once.",
    )
    alphas: list[float] = Field(
        default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1000.0],
        min_length=1,
        description="Ridge penalties (> 0, distinct); each is its own candidate.",
    )
    folds: int = Field(
        5, ge=2, description="K-fold cross-validation over wells; capped at the number of wells."
    )
    hidden: int = Field(32, ge=1, description="Hidden width of the GRU and the MLP.")
    epochs: int = Field(300, ge=1, description="Full-batch Adam steps of the torch models.")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate of the torch models.")
    weight_decay: float = Field(
        1e-3, ge=0, description="Adam weight decay (L2 penalty) of the torch models."
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the torch models' hidden state (training only)."
    )
    standardize: bool = Field(
        True,
        description="Z-score features with the training wells' input-day mean and std.",
    )
    forecast: Forecast = Field(
        "rollout",
        description="rollout: predict every day after the first from the model's own "
        "predictions (an untreated course from the treatment day); observed: feed the "
        "imaged input days.",
    )

    @field_validator("models")
    @classmethod
    def _distinct_models(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(
                f"models {value} names a family more than once; list each of ridge, gru, mlp "
                "at most once (ridge's penalties go in alphas)"
            )
        return value

    @field_validator("alphas")
    @classmethod
    def _positive_alphas(cls, value: list[float]) -> list[float]:
        # NaN fails `a > 0`; inf would be "predict the mean change" under another name.
        if any(not (a > 0 and math.isfinite(a)) for a in value):
            raise ValueError(
                f"alphas must be finite positive numbers, got {value}; e.g. [0.1, 1, 10, 100]"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"alphas {value} repeats a penalty; list each penalty once")
        return value
