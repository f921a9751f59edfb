"""Parameters of the feature stages (pydantic only: a job spec is validated with these).

Every feature stage reads a store array whose first dimension is ``image`` as a matrix of rows
(:mod:`pipeline.features.matrix`): ``input`` names the array, ``rows`` which of its rows. A
stage that writes an array names it after its step, so one job can hold two PCAs: the
default step names keep the historical names (``reduce`` writes ``reduced``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pipeline.core.names import StoreName, check_name
from pipeline.core.registry import EarlierStep, JobProblems

__all__ = [
    "DEFAULT_SHOTS",
    "AgglomerativeParams",
    "ClusterInput",
    "DBSCANParams",
    "KMeansParams",
    "LabelColumn",
    "Linkage",
    "ProbeParams",
    "ReduceOutputs",
    "ReduceParams",
    "RowSelection",
    "SOMParams",
    "SampledFit",
    "Shots",
    "ShotsList",
    "TableRows",
    "check_feature_input",
    "check_probe_inputs",
    "reduce_outputs",
    "reduce_writes",
]

#: Linkages of agglomerative clustering (scikit-learn's).
Linkage = Literal["ward", "average", "complete", "single"]

#: Training examples per class, or ``"all"`` for the whole training split.
Shots = int | Literal["all"]

#: Document 001 (the spheroid thesis): 10, 20, 30 and all examples per class.
DEFAULT_SHOTS: tuple[Shots, ...] = (10, 20, 30, "all")


def _distinct_shots(v: list[Shots]) -> list[Shots]:
    if len(set(v)) != len(v):
        raise ValueError(f"shots {v}: each value may be given once")
    return v


#: The ``shots`` of a stage that draws the probe's k-shot training sets: distinct values,
#: each k >= 1 examples per class or ``"all"``.
ShotsList = Annotated[
    list[Annotated[int, Field(ge=1)] | Literal["all"]],
    Field(min_length=1),
    AfterValidator(_distinct_shots),
]


class TableRows(BaseModel):
    """The rows of a table where a condition holds: ``{table: catalog, where: "status == kept"}``.

    Attributes
    ----------
    table : str
        A table of the store with one row per image: either an ``image`` column (positions
        along the array's ``image`` dimension) or one row per position, in order.
    where : str
        A boolean column of the table, or ``column == value`` (compared as text).
    optional : bool
        When the table does not exist, or describes another dimension (its length differs
        and it has no ``image`` column), use every row instead of stopping.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: StoreName
    where: str = Field(min_length=1)
    optional: bool = False

    @field_validator("where")
    @classmethod
    def _condition(cls, v: str) -> str:
        column, sep, value = v.partition("==")
        if not column.strip() or (sep and not value.strip()):
            raise ValueError(
                f"where {v!r}: give a boolean column (e.g. `selected`) or `column == value` "
                "(e.g. `status == kept`)"
            )
        return v

    def condition(self) -> tuple[str, str | None]:
        """``(column, value)``; value None for a boolean column."""
        column, sep, value = self.where.partition("==")
        return column.strip(), (value.strip().strip("'\"") if sep else None)


def _label_column(value: str) -> str:
    # `table.column`: the table part becomes a store path; a column may be named anything.
    table, dot, column = value.rpartition(".")
    if not column:
        raise ValueError(f"label_column {value!r}: expected COLUMN or TABLE.COLUMN")
    if dot:
        check_name(table)
    return value


#: A column of a table with one row per image, or ``table.column``.
LabelColumn = Annotated[str, Field(min_length=1), AfterValidator(_label_column)]


#: Which rows of an array a stage uses: ``all``, rows of a table (:class:`TableRows`), or
#: ``kept``: shorthand for ``{table: catalog, where: "status == kept", optional: true}``, the
#: images the galaxy catalog kept where there is one (the default, as before tables could be
#: named).
RowSelection = Literal["all", "kept"] | TableRows


def _inputs_hint(names: Sequence[tuple[str, str]], earlier: Sequence[EarlierStep]) -> JobProblems:
    """A step that names an earlier step instead of the array it wrote gets the array's name."""
    problems: JobProblems = []
    by_step = {e.name: e for e in earlier}
    for field, name in names:
        step = by_step.get(name)
        if step is None:
            continue
        arrays = [p.split("/")[1] for p in step.writes if p.startswith("store.zarr/")]
        if arrays and name not in arrays:
            problems.append(
                (
                    (field,),
                    f"{name!r} is a step; the array it writes is {arrays[0]!r}: use "
                    f"{field}: {arrays[0]}",
                )
            )
    return problems


class ReduceParams(BaseModel):
    """Parameters of the ``reduce`` stage.

    Attributes
    ----------
    input : str
        Store array to reduce, ``image`` first, the rest flattened (``cutouts``: 128 x 128
        cutouts become 16,384 features).
    rows : RowSelection
        Rows the PCA is fitted on and its array holds (NaN elsewhere): ``kept`` (the
        catalog's kept images), ``all``, or ``{table: ..., where: ...}``.
    n_components : int
        The galaxy notebook uses 25 (200 before its agglomerative clustering).
    method : {"randomized", "exact"}
        Randomised SVD (``dask.array.linalg.svd_compressed``) or exact tall-and-skinny SVD.
    n_power_iter, oversample : int
        Accuracy knobs of the randomised SVD.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: StoreName = "cutouts"
    rows: RowSelection = "kept"
    n_components: int = Field(25, ge=1)
    method: Literal["randomized", "exact"] = "randomized"
    n_power_iter: int = Field(4, ge=0)
    oversample: int = Field(10, ge=0)


class ReduceOutputs(BaseModel):
    """Where a ``reduce`` step writes: its array and the array's second dimension, the
    fitted model (``models/<model>.npz``) and the explained-variance table."""

    model_config = ConfigDict(frozen=True)

    array: str
    dim: str
    model: str
    table: str


def reduce_outputs(step: str) -> ReduceOutputs:
    """The outputs of ``reduce`` step ``step``.

    The step ``reduce`` keeps the historical names (``reduced (image, component)``,
    ``models/pca.npz``, ``explained_variance``); another step is named after itself
    (``pca200 (image, pca200_component)``, ``models/pca200.npz``,
    ``pca200_explained_variance``): its dimension too, since a Dataset gives a dimension one
    size and two PCAs differ in their number of components.
    """
    if step == "reduce":
        return ReduceOutputs(
            array="reduced", dim="component", model="pca", table="explained_variance"
        )
    return ReduceOutputs(
        array=step, dim=f"{step}_component", model=step, table=f"{step}_explained_variance"
    )


def reduce_writes(step: str, params: ReduceParams) -> tuple[str, ...]:
    """The store paths ``reduce`` step ``step`` writes."""
    out = reduce_outputs(step)
    return (
        f"store.zarr/{out.array}/zarr.json",
        f"tables/{out.table}.parquet",
        f"models/{out.model}.npz",
    )


class ClusterInput(BaseModel):
    """What every cluster stage reads and how it is scored.

    Attributes
    ----------
    input : str
        Store array to cluster, ``image`` first (``reduced``: PCA components).
    rows : RowSelection
        ``kept``: the images the catalog kept (all rows when there is no catalog); ``all``;
        or the rows of a table where a condition holds, ``{table: ..., where: ...}``.
    label_column : str, optional
        A known class per image, to report ARI and NMI against: a column of a table with one
        row per image (``images`` first), or ``table.column``.
    silhouette_sample : int
        Above this many rows the silhouette uses a seeded sample of this size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: StoreName = "reduced"
    rows: RowSelection = "kept"
    label_column: LabelColumn | None = None
    silhouette_sample: int = Field(10_000, ge=10)


class KMeansParams(ClusterInput):
    """Parameters of the ``kmeans`` stage (defaults from the k-means lab, source document 003).

    ``k`` unset: fit every k in ``k_range`` (inclusive) and take the elbow (kneed's Kneedle).
    """

    k: int | None = Field(None, ge=1)
    k_range: tuple[int, int] = (1, 10)
    n_init: int = Field(3, ge=1)
    max_iter: int = Field(300, ge=1)
    tol: float = Field(1e-4, ge=0)
    init_sample: int = Field(100_000, ge=10)
    sensitivity: float = Field(1.0, gt=0, description="Kneedle's S")

    @field_validator("k_range")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if not 1 <= lo < hi:
            raise ValueError(
                f"k_range {list(value)}: expected [low, high] with 1 <= low < high, e.g. [1, 10]"
            )
        return value


class SampledFit(ClusterInput):
    """Shared by the quadratic methods: above ``max_fit_size`` rows, fit on a seeded sample
    and assign the rest to the nearest fitted cluster."""

    max_fit_size: int = Field(10_000, ge=10)


class DBSCANParams(SampledFit):
    """Parameters of the ``dbscan`` stage (defaults from the galaxy notebook, source document 000).

    ``eps`` unset: sweep ``eps_range`` = [start, stop) by ``eps_step`` in parallel and take
    the eps with the best silhouette among those with at least ``min_clusters`` clusters and
    at most ``max_noise`` of the rows as noise.
    """

    eps: float | None = Field(None, gt=0)
    eps_range: tuple[float, float] = (0.5, 10.0)
    eps_step: float = Field(0.05, gt=0)
    min_samples: int = Field(4, ge=1)
    min_clusters: int = Field(3, ge=1)
    max_noise: float = Field(0.25, ge=0, le=1, description="largest noise share the rule accepts")

    @field_validator("eps_range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 < lo < hi < float("inf"):
            raise ValueError(
                f"eps_range {list(value)}: expected [start, stop) with 0 < start < stop, "
                "e.g. [0.5, 10]"
            )
        return value

    def eps_values(self) -> list[float]:
        """The swept eps values."""
        lo, hi = self.eps_range
        return [float(v) for v in np.round(np.arange(lo, hi, self.eps_step), 10)]


class AgglomerativeParams(SampledFit):
    """Parameters of the ``agglomerative`` stage (notebook: Ward, distance threshold 100).

    Give ``n_clusters`` to cut the tree at a number of clusters instead of a distance.
    """

    linkage: Linkage = "ward"
    n_clusters: int | None = Field(None, ge=1)
    distance_threshold: float | None = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _one_cut(self) -> AgglomerativeParams:
        if self.n_clusters is not None and "distance_threshold" not in self.model_fields_set:
            object.__setattr__(self, "distance_threshold", None)
        if (self.n_clusters is None) == (self.distance_threshold is None):
            raise ValueError("give exactly one of n_clusters and distance_threshold")
        return self


class SOMParams(SampledFit):
    """Parameters of the ``som`` stage (defaults from the galaxy notebook, source document 000).

    The map has ``int(10*sqrt(n))`` nodes per side (the notebook's size) up to ``max_side``,
    or ``side``. Up to ``minisom_max_rows`` rows MiniSom trains it as the notebook does; above,
    a batch SOM whose updates are per-chunk sums combined across the workers. The winners'
    grid cells are then clustered with agglomerative clustering (notebook: average linkage,
    distance threshold 100).
    """

    method: Literal["auto", "minisom", "batch"] = "auto"
    side: int | None = Field(None, ge=2)
    max_side: int = Field(100, ge=2)
    sigma: float = Field(50.0, gt=0)
    learning_rate: float = Field(0.1, gt=0)
    iterations: int = Field(1000, ge=1)
    epochs: int = Field(10, ge=1)
    minisom_max_rows: int = Field(50_000, ge=1)
    cluster_linkage: Linkage = "average"
    cluster_threshold: float | None = Field(100.0, gt=0)
    cluster_n: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_cut(self) -> SOMParams:
        if self.cluster_n is not None and "cluster_threshold" not in self.model_fields_set:
            object.__setattr__(self, "cluster_threshold", None)
        if (self.cluster_n is None) == (self.cluster_threshold is None):
            raise ValueError("give exactly one of cluster_n and cluster_threshold")
        return self


def check_feature_input(params: ClusterInput, earlier: Sequence[EarlierStep]) -> JobProblems:
    """A cluster step's ``input`` names an array, not the step that wrote it."""
    return _inputs_hint([("input", params.input)], earlier)


class ProbeParams(BaseModel):
    """Parameters of the ``probe`` stage.

    Attributes
    ----------
    features : list of str
        Store arrays to probe, ``image`` first. The first is the one under test, the others
        are baselines it is compared with (default: ``embeddings`` against ``reduced``).
    label_column : str
        The known class of each image: a column of a table with one row per image, or
        ``table.column`` (see :func:`pipeline.features.matrix.row_labels`).
    group_column : str, optional
        A group of each image, read as ``label_column`` is (e.g. ``spheroid_crops.well_key``,
        ``"P01/B03"``: one well's images on several days are near duplicates). Set, every
        split keeps each group on one side: the test split is the first fold of a seeded
        ``StratifiedGroupKFold`` with ``max(2, round(1 / test_fraction))`` folds, so the test
        fraction is approximate (0.3: about a third). Images without a group are dropped.
    rows : RowSelection
        As for the cluster stages.
    shots : list of int or "all"
        Training examples per class; ``"all"`` (written as 0 in the table) is the whole
        training split. A value above the training examples of some class is skipped, with
        a warning in the log.
    repeats : int
        Number of seeded repeats (seeds ``seed, seed + 1, ...``), each with its own split.
    test_fraction : float
        Share of the rows held out (stratified) for scoring, in (0, 1); approximate with a
        ``group_column``.
    C : float
        Inverse L2 regularisation strength of the logistic regression.
    max_iter : int
        Iterations of the lbfgs solver; fits that stop there are counted and logged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[StoreName] = Field(
        default_factory=lambda: ["embeddings", "reduced"], min_length=1
    )
    label_column: LabelColumn
    group_column: LabelColumn | None = None
    rows: RowSelection = "kept"
    shots: ShotsList = Field(default_factory=lambda: list(DEFAULT_SHOTS))
    repeats: int = Field(5, ge=1)
    test_fraction: float = Field(0.3, gt=0, lt=1)
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)

    @field_validator("features")
    @classmethod
    def _distinct_features(cls, v: list[str]) -> list[str]:
        if any(not name for name in v):
            raise ValueError("features: array names must not be empty")
        if len(set(v)) != len(v):
            raise ValueError(f"features {v}: each array may be named once")
        return v


def check_probe_inputs(params: ProbeParams, earlier: Sequence[EarlierStep]) -> JobProblems:
    """A probe's ``features`` name arrays, not the steps that wrote them."""
    return _inputs_hint([("features", f) for f in params.features], earlier)
