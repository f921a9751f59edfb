"""What a clinical table is, as a job spec describes it: columns, kinds, units, policies.

These models are the parameters of the ``cohort`` and ``validate_external`` stages and the
record (``models/cohort.json``) the later stages read, so that every stage and the external
cohort use the same levels, reference categories, units and imputation values.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DAYS_PER_UNIT",
    "ClassifierParams",
    "CohortParams",
    "CohortRecord",
    "CohortSource",
    "Condition",
    "Covariate",
    "CoxParams",
    "ExternalParams",
    "ExternalSource",
    "KMParams",
    "MissingPolicy",
    "PhenotypeParams",
    "TimeUnit",
    "convert_time",
]

TimeUnit = Literal["days", "weeks", "months", "years"]

#: Length of each time unit in days (a year is 365.25 days, a month a twelfth of it).
DAYS_PER_UNIT: dict[str, float] = {
    "days": 1.0,
    "weeks": 7.0,
    "months": 365.25 / 12,
    "years": 365.25,
}


def convert_time(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (e.g. days to years)."""
    return value * DAYS_PER_UNIT[from_unit] / DAYS_PER_UNIT[to_unit]


class Covariate(BaseModel):
    """One covariate column of the clinical table.

    Attributes
    ----------
    name : str
        The column.
    kind : {"numeric", "categorical"}
    unit : str
        Unit of a numeric covariate, for tables and the report (e.g. ``years``, ``mm``).
    levels : dict of str to str, optional
        Categorical: source value (as text) -> label, in display order. Values outside it are an
        error. Default: the sorted distinct values of the development cohort.
    reference : str, optional
        Categorical: the label hazard ratios compare against (default: the first level).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical"]
    unit: str = ""
    levels: dict[str, str] | None = None
    reference: str | None = None

    @field_validator("levels", mode="before")
    @classmethod
    def _level_keys(cls, v: Any) -> Any:
        # YAML reads `{1: I, 2: II}` with integer keys: source values are compared as text.
        # Booleans are refused: YAML turns an unquoted yes/no into true/false.
        if isinstance(v, dict):
            out = {}
            for key, label in v.items():
                if isinstance(key, bool) or isinstance(label, bool):
                    raise ValueError(
                        f"level {key!r}: {label!r} reads as a boolean; quote yes/no/true/false "
                        'in YAML, e.g. "1": "no"'
                    )
                if isinstance(key, float) and key.is_integer():
                    key = int(key)
                out[str(key)] = label
            return out
        return v

    @model_validator(mode="after")
    def _check(self) -> Covariate:
        if self.kind == "numeric" and (self.levels is not None or self.reference is not None):
            raise ValueError(
                f"covariate {self.name!r} is numeric: levels and reference are for categorical "
                "covariates (set kind: categorical, or remove them)"
            )
        if self.kind == "categorical" and self.unit:
            raise ValueError(f"covariate {self.name!r} is categorical: a unit is for numeric ones")
        if self.levels is not None:
            labels = list(self.levels.values())
            if len(labels) < 2:
                raise ValueError(f"covariate {self.name!r}: levels need at least two entries")
            if len(set(labels)) != len(labels):
                raise ValueError(f"covariate {self.name!r}: level labels {labels} repeat")
            if self.reference is not None and self.reference not in labels:
                raise ValueError(
                    f"covariate {self.name!r}: reference {self.reference!r} is not one of the "
                    f"level labels {labels}"
                )
        return self


class Condition(BaseModel):
    """Keep the rows where ``column op value`` (date columns compare with ISO dates)."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">=", "==", "!=", "in", "not in"]
    value: Any

    @model_validator(mode="after")
    def _check(self) -> Condition:
        if self.op in ("in", "not in") and not isinstance(self.value, list):
            raise ValueError(f"condition on {self.column!r}: `{self.op}` takes a list of values")
        return self


class MissingPolicy(BaseModel):
    """What happens to rows missing a covariate.

    Attributes
    ----------
    strategy : {"drop", "impute"}
        ``drop`` the rows (their count is reported), or ``impute`` numeric covariates with the
        development cohort's median and categorical ones with its most frequent level.
    max_fraction : float
        A covariate missing in more than this share of the rows is an error whatever the
        strategy: imputing most of a column invents data.
    """

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["drop", "impute"] = "drop"
    max_fraction: float = Field(0.2, ge=0, le=1)


class CohortSource(BaseModel):
    """Where a clinical table is and which of its rows to use.

    Attributes
    ----------
    source : str
        A CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file path or
        fsspec URL, or ``lifelines:<name>`` for a table bundled with lifelines
        (``lifelines.datasets.load_<name>``, e.g. ``lifelines:lymph_node``).
    dates : dict of str to str
        Columns to parse as dates, with their ``strptime`` format (e.g. ``"%d-%m-%Y"``).
    where : list of Condition
        Keep only the rows meeting every condition (e.g. diagnosed before 1987).
    """

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    dates: dict[str, str] = Field(default_factory=dict)
    where: list[Condition] = Field(default_factory=list)


class CohortParams(CohortSource):
    """Parameters of the ``cohort`` stage: the development cohort's table and its columns.

    Attributes
    ----------
    duration : str
        Column of follow-up times (``duration_unit``), from diagnosis to event or censoring.
    event : str
        Column saying whether the event was observed (1) or the patient was censored (0).
    id : str, optional
        Patient identifier column (kept in the store, never shown in the report).
    event_values : dict of str to int, optional
        Source value text -> 1 (event) or 0 (censored), e.g. ``{"Dead": 1, "Alive": 0}``.
        Default: 0/1, true/false.
    duration_unit, time_unit : {"days", "weeks", "months", "years"}
        Unit of ``duration``; unit of every time the analysis reports.
    covariates : list of Covariate
    missing : MissingPolicy
    """

    duration: str = Field(min_length=1)
    event: str = Field(min_length=1)
    id: str | None = None
    event_values: dict[str, int] | None = None
    duration_unit: TimeUnit = "days"
    time_unit: TimeUnit = "years"
    covariates: list[Covariate] = Field(min_length=1)
    missing: MissingPolicy = Field(default_factory=MissingPolicy)

    @model_validator(mode="after")
    def _check(self) -> CohortParams:
        names = [c.name for c in self.covariates]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"covariates {dup} are listed twice; list each once")
        special = {"duration": self.duration, "event": self.event, "id": self.id}
        for role, col in special.items():
            if col is not None and col in names:
                raise ValueError(f"column {col!r} is the {role} column and also a covariate")
        reserved = {"patient", "row"} & set(names)
        if reserved:
            raise ValueError(
                f"covariate names {sorted(reserved)} are reserved for the analysis table; "
                "rename the columns (`columns:` in validate_external, or in the file)"
            )
        if self.event_values is not None and not set(self.event_values.values()) <= {0, 1}:
            raise ValueError(
                f"event_values {self.event_values} map to something other than 0 and 1"
            )
        return self


class ExternalSource(CohortSource):
    """The external cohort's table (stage ``validate_external``).

    Its columns are read with the development cohort's column map (``models/cohort.json``).

    Attributes
    ----------
    columns : dict of str to str
        External column name -> development column name, applied before validation.
    unseen : {"error", "missing"}
        A category the development cohort never had: an error listing the rows, or treated
        as missing (and then the missing-value policy applies).
    """

    columns: dict[str, str] = Field(default_factory=dict)
    unseen: Literal["error", "missing"] = "error"


class CohortRecord(BaseModel):
    """What the ``cohort`` stage resolved and counted (``models/cohort.json``).

    Attributes
    ----------
    params : CohortParams
        With every categorical covariate's ``levels`` and ``reference`` filled in.
    impute : dict
        Covariate -> the development value used to impute it (empty under ``drop``).
    source_rows, filtered_out, dropped_missing, n, events : int
        Rows in the source table; removed by ``where``; dropped by the missing policy;
        patients analysed; events among them.
    """

    model_config = ConfigDict(extra="forbid")

    params: CohortParams
    impute: dict[str, float | str] = Field(default_factory=dict)
    source_rows: int
    filtered_out: int
    dropped_missing: int
    n: int
    events: int


# -- parameters of the analysis stages -------------------------------------------------------


class KMParams(BaseModel):
    """Parameters of the ``kaplan_meier`` stage.

    Attributes
    ----------
    group_by : list of str, optional
        Covariates to compare groups of (default: every categorical covariate).
    cuts : dict of str to list of float
        Cut points of numeric covariates in ``group_by`` (default: the median).
    times : list of float
        Time points (cohort time unit) for survival with its CI, e.g. 1, 3, 5 years.
    alpha : float
        1 - confidence level.
    overall : bool
        Also the whole cohort's curve (group_column ``all``).
    """

    model_config = ConfigDict(extra="forbid")

    group_by: list[str] | None = None
    cuts: dict[str, list[float]] = Field(default_factory=dict)
    times: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0])
    alpha: float = Field(0.05, gt=0, lt=1)
    overall: bool = True


class CoxParams(BaseModel):
    """Parameters of the ``cox`` stage.

    Attributes
    ----------
    covariates : list of str, optional
        Covariates screened by univariate models (default: all the cohort's).
    threshold : float
        A covariate whose univariate likelihood-ratio p is below it enters the multivariate
        model (the thesis: 0.05).
    include : list of str
        Covariates that enter the multivariate model whatever their univariate p.
    alpha : float
        1 - confidence level of the hazard ratio intervals.
    penalizer : float
        L2 penalty of the Cox fits (0 = the plain partial likelihood).
    bootstrap : int
        Replicates of the concordance's bootstrap interval (0 = none).
    """

    model_config = ConfigDict(extra="forbid")

    covariates: list[str] | None = None
    threshold: float = Field(0.05, gt=0, le=1)
    include: list[str] = Field(default_factory=list)
    alpha: float = Field(0.05, gt=0, lt=1)
    penalizer: float = Field(0.0, ge=0)
    bootstrap: int = Field(200, ge=0, le=10_000)


class ExternalParams(ExternalSource):
    """Parameters of the ``validate_external`` stage: the external cohort's table (read with
    the development cohort's column map) and the analysis settings.

    Attributes
    ----------
    times : list of float
        Time points of the Kaplan-Meier tables by predicted phenotype.
    alpha : float
    bootstrap : int
        Replicates of the external concordance's interval (0 = none).
    """

    times: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0])
    alpha: float = Field(0.05, gt=0, lt=1)
    bootstrap: int = Field(200, ge=0, le=10_000)


class PhenotypeParams(BaseModel):
    """Parameters of the ``phenotypes`` stage.

    Attributes
    ----------
    covariates : list of str, optional
        Covariates the patients are clustered on (default: all the cohort's).
    distance : {"auto", "gower", "euclidean"}
        ``auto``: Gower when a categorical covariate is clustered, else Euclidean on
        standardised covariates.
    linkage : {"ward", "average", "complete"}
        Ward merges the pair of clusters that least increases the within-cluster spread;
        with Gower it runs on ``sqrt(gower)`` (see the module notes).
    k_range : (int, int)
        Candidate numbers of phenotypes, inclusive.
    min_size : float
        Smallest phenotype allowed, as a share of the patients: a cut that leaves a handful of
        outliers as a "phenotype" is not eligible.
    horizon : float
        Time (cohort time unit) at which the phenotypes' survival orders them (1 = best).
    times : list of float
        Time points of the per-phenotype Kaplan-Meier tables.
    alpha : float
        1 - confidence level of intervals.
    bootstrap : int
        Bootstrap replicates for the interval of the phenotype count (0 = none).
    weights : dict of str to float
        Weight of a covariate in the distance (default 1 each; Gower's ``w_k``). Under Gower a
        category mismatch counts as much as the full range of a numeric covariate, so a
        categorical covariate can dominate the clustering (see ``coincides_with`` in
        ``models/phenotypes.json``); a weight below 1 tempers it.
    """

    model_config = ConfigDict(extra="forbid")

    covariates: list[str] | None = None
    distance: Literal["auto", "gower", "euclidean"] = "auto"
    linkage: Literal["ward", "average", "complete"] = "ward"
    k_range: tuple[int, int] = (2, 6)
    min_size: float = Field(0.05, gt=0, lt=0.5)
    horizon: float = Field(3.0, gt=0)
    times: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0])
    alpha: float = Field(0.05, gt=0, lt=1)
    bootstrap: int = Field(200, ge=0, le=10_000)
    weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> PhenotypeParams:
        lo, hi = self.k_range
        if lo < 2 or hi < lo:
            raise ValueError(f"k_range {list(self.k_range)}: need 2 <= low <= high")
        bad = {k: w for k, w in self.weights.items() if not (w >= 0 and math.isfinite(w))}
        if bad or (self.weights and not any(w > 0 for w in self.weights.values())):
            raise ValueError(f"weights {bad or self.weights}: need finite values >= 0, some > 0")
        return self


class ClassifierParams(BaseModel):
    """Parameters of the ``classify_phenotypes`` stage.

    Attributes
    ----------
    folds : int
        Stratified k-fold cross-validation, shuffled with the run's seed.
    tree_max_depth : int, optional
        Depth of the decision tree; shallow by default so that a clinician can read it.
        ``None``: grown until the leaves are pure or ``min_samples_leaf`` stops it.
    forest_trees : int
        Trees in the random forest.
    forest_max_depth : int, optional
        Depth of the forest's trees (``None``: unlimited).
    min_samples_leaf : int
        Fewest patients in a leaf, for both models: a rule for fewer patients is noise.
    horizon : float
        In the cohort's ``time_unit``: the survival target is the status at this time.
    predict_with : {"random_forest", "decision_tree"}
        The model external validation uses to assign phenotypes.
    """

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(5, ge=2, le=20)
    tree_max_depth: int | None = Field(4, ge=1)
    forest_trees: int = Field(300, ge=10, le=5000)
    forest_max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(5, ge=1)
    horizon: float = Field(3.0, gt=0)
    predict_with: Literal["random_forest", "decision_tree"] = "random_forest"
