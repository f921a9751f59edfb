"""The linear probe: how well frozen features separate known classes with few labels.

The spheroid thesis (source document 001), section 6.2: "train a Logistic Regression model
for datasets with only 10, 20, 30, and all examples per class" on frozen features. The first
features array (``embeddings``, the learned representation) is the one under test; later
arrays (``reduced``: PCA components) are baselines it must beat.

Protocol, per repeat ``r`` (seed ``seed + r``):

1. one stratified held-out test split (``train_test_split(stratify=labels)``), shared by
   every shots value and every features array, so all are scored on the same images. Given
   a group per row (``group_column``: e.g. the well, whose images on several days are near
   duplicates), the split keeps every group on one side instead: the first fold of a
   ``StratifiedGroupKFold`` with ``round(1 / test_fraction)`` folds, so the test fraction is
   approximate;
2. a k-shot training set is the first ``k`` rows of a seeded permutation of each class's
   training rows, so the 10-shot set is inside the 20-shot set, and so on ("all": the whole
   training split);
3. ``StandardScaler`` + ``LogisticRegression`` (multinomial, L2, ``C``) is fitted on it and
   scored on the test split: accuracy and macro-F1.

The splits are :func:`probe_splits`, which other evaluations on the same labelled rows (the
``supervised_baseline`` stage) call to score on the same test rows with the same training sets.

Rows are dropped before any split: rows whose label (or group) is missing, and rows with a
non-finite feature in *any* probed array (e.g. the NaN rows of ``reduced`` for images the
catalog dropped), so that every array is probed on the same images. Every check runs before
the first fit, so bad input raises without work done and, in :func:`run_probe`, without
anything written.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.core.context import RunContext
from pipeline.core.tables import write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.features.matrix import compute_rows, open_matrix, row_labels
from pipeline.features.spec import DEFAULT_SHOTS, ProbeParams, Shots
from pipeline.features.tables import TABLES

__all__ = [
    "PROBE_COLUMNS",
    "ProbeParams",
    "ProbeSplit",
    "Shots",
    "probe_scores",
    "probe_splits",
    "run_probe",
    "summarize_probe",
]

log = logging.getLogger(__name__)

#: Columns of the ``probe`` table, in order (documented in :mod:`pipeline.features.tables`).
PROBE_COLUMNS: tuple[str, ...] = tuple(next(t for t in TABLES if t.name == "probe").columns)

#: The stage that writes each array a probe is usually asked for.
_WRITERS = {
    "embeddings": "embed",
    "reduced": "reduce",
    "images": "ingest",
    "cutouts": "preprocess",
}


#: What ``str()`` makes of a missing value (``row_labels`` returns strings), lower case.
_MISSING_STRINGS = frozenset({"", "nan", "none", "<na>", "nat", "null"})


# -- the pure part --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSplit:
    """One repeat's held-out test rows and the training rows of each shots value.

    Attributes
    ----------
    seed : int
        The repeat's seed (``seed + r``): of its split and of its k-shot samples.
    test : ndarray of int, shape (n_test,)
        Indices of the rows held out for scoring (into the labels given), ascending.
    train : dict of int to ndarray of int
        Indices of the training rows (ascending) per shots value, keyed as the table writes
        it: ``k`` for k examples per class, ``0`` for the whole training split. The k-shot
        set of a class is inside its larger ones, and every set is inside the training split.
    """

    seed: int
    test: np.ndarray
    train: dict[int, np.ndarray]


@dataclass(frozen=True)
class _Plan:
    features: dict[str, np.ndarray]
    y: np.ndarray
    groups: np.ndarray | None
    classes: np.ndarray
    repeats: list[ProbeSplit]


def _check_args(
    shots: Sequence[Shots],
    repeats: int,
    test_fraction: float,
    seed: int,
    *,
    C: float | None = None,
    max_iter: int | None = None,
) -> list[int]:
    """Validate the split arguments (and the model's, when given); the shots as table values
    (0 = all)."""
    if not shots:
        raise ParameterError("shots is empty: give at least one of k >= 1 or 'all'")
    codes: list[int] = []
    for s in shots:
        if s == "all":
            codes.append(0)
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1:
            codes.append(int(s))
        else:
            raise ParameterError(f"shots value {s!r}: expected an integer >= 1 or 'all'")
    if len(set(codes)) != len(codes):
        raise ParameterError(f"shots {list(shots)}: each value may be given once")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ParameterError(f"repeats = {repeats!r}: expected an integer >= 1")
    if not 0 < test_fraction < 1:
        raise ParameterError(f"test_fraction = {test_fraction!r}: expected 0 < test_fraction < 1")
    if C is not None and not C > 0:
        raise ParameterError(f"C = {C!r}: expected C > 0")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1
    ):
        raise ParameterError(f"max_iter = {max_iter!r}: expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed = {seed!r}: expected an integer >= 0")
    return codes


def _missing(labels: np.ndarray) -> np.ndarray:
    """Which labels are missing: None, NaN, pd.NA, empty, or ``str()`` of one of those."""
    out = np.zeros(len(labels), dtype=bool)
    for i, v in enumerate(labels):
        if v is None or v is pd.NA:
            out[i] = True
        elif isinstance(v, (float, np.floating)):
            out[i] = not math.isfinite(float(v))
        elif isinstance(v, str):
            out[i] = v.strip().lower() in _MISSING_STRINGS
    return out


def _columns(labels: Any, groups: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels and groups as 1-D object arrays of one length."""
    labels = np.asarray(labels, dtype=object)
    if labels.ndim != 1:
        raise ParameterError(f"labels have shape {labels.shape}; expected one label per row")
    if groups is None:
        return labels, None
    groups = np.asarray(groups, dtype=object)
    if groups.shape != labels.shape:
        raise ParameterError(
            f"groups have shape {groups.shape}; expected one group per row, shape "
            f"({len(labels)},) as the labels"
        )
    return labels, groups


def _usable(labels: np.ndarray, groups: np.ndarray | None, who: str) -> np.ndarray:
    """Rows with a label (and a group, when grouped); logs what is dropped."""
    no_label = _missing(labels)
    if no_label.any():
        log.info("%s: dropped %d of %d rows without a label", who, no_label.sum(), len(labels))
    keep = ~no_label
    if groups is not None:
        no_group = _missing(groups) & keep
        if no_group.any():
            log.info(
                "%s: dropped %d of %d labelled rows without a group",
                who,
                no_group.sum(),
                keep.sum(),
            )
        keep &= ~no_group
    return keep


def _strings(values: np.ndarray) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def _clean(
    features: Mapping[str, np.ndarray], labels: Any, groups: Any = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    """Float64 features, string labels and string groups (None: ungrouped) of the usable rows
    (label and group present, every feature finite)."""
    if not features:
        raise ParameterError("no features to probe: give at least one array")
    labels, group_values = _columns(labels, groups)
    arrays: dict[str, np.ndarray] = {}
    for name, x in features.items():
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != len(labels) or a.shape[1] == 0:
            raise ParameterError(
                f"features {name!r} have shape {a.shape}; expected (n_rows, n_features) with "
                f"n_rows = {len(labels)} (one row per label) and n_features >= 1"
            )
        arrays[name] = a
    present = _usable(labels, group_values, "probe")
    finite = np.ones(len(labels), dtype=bool)
    for a in arrays.values():
        finite &= np.isfinite(a).all(axis=1)
    keep = present & finite
    if (~finite & present).any():
        log.info(
            "probe: dropped %d of %d labelled rows with non-finite features (in any of %s)",
            (~finite & present).sum(),
            present.sum(),
            list(arrays),
        )
    y = _strings(labels[keep])
    g = None if group_values is None else _strings(group_values[keep])
    return {name: a[keep] for name, a in arrays.items()}, y, g


def _n_folds(test_fraction: float) -> int:
    """Folds of a group split: one of them is held out, about ``test_fraction`` of the rows."""
    return max(2, round(1 / test_fraction))


def _check_classes(y: np.ndarray, test_fraction: float, groups: np.ndarray | None) -> np.ndarray:
    """The classes, after checking that a stratified (group) split of ``y`` can be made."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if len(classes) else "none"
        raise ParameterError(
            f"the probe needs at least 2 classes among the usable rows ({len(y)}), found "
            f"{found}; check the label column"
        )
    rare = [(c, int(n)) for c, n in zip(classes, counts, strict=True) if n < 2]
    if rare:
        listed = ", ".join(f"{c!r} ({n} example)" for c, n in rare[:10])
        raise ParameterError(
            f"classes with fewer than 2 examples cannot be split into training and test rows: "
            f"{listed}{' ...' if len(rare) > 10 else ''}; relabel or drop them"
        )
    if groups is not None:
        folds, n_groups = _n_folds(test_fraction), len(np.unique(groups))
        if n_groups < folds:
            raise ParameterError(
                f"test_fraction = {test_fraction} holds out 1 of {folds} group folds, but the "
                f"usable rows have only {n_groups} group(s); a group split needs at least "
                f"{folds}: raise test_fraction to {1 / max(n_groups, 2):.2g} or more, or check "
                "the group column"
            )
        return classes
    # As train_test_split sizes it.
    n_test = math.ceil(test_fraction * len(y))
    n_train = len(y) - n_test
    if min(n_test, n_train) < len(classes):
        raise ParameterError(
            f"test_fraction = {test_fraction} splits {len(y)} rows into {n_train} training and "
            f"{n_test} test rows; a stratified split needs at least one row per class "
            f"({len(classes)}) on each side"
        )
    return classes


def _split(
    y: np.ndarray, groups: np.ndarray | None, classes: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One repeat's training and test rows (sorted)."""
    rows = np.arange(len(y))
    if groups is None:
        train, test = train_test_split(rows, test_size=test_fraction, stratify=y, random_state=seed)
        return np.sort(train), np.sort(test)
    folds = StratifiedGroupKFold(n_splits=_n_folds(test_fraction), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Said of a cross-validation over every fold; one held-out fold is checked below.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        train, test = next(folds.split(rows, y, groups))
    for c in classes:
        sides = {"training": int(np.sum(y[train] == c)), "test": int(np.sum(y[test] == c))}
        empty = [side for side, n in sides.items() if n == 0]
        if empty:
            n_groups = len(np.unique(groups[y == c]))
            raise ParameterError(
                f"the group split of seed {seed} leaves class {c!r} without {empty[0]} rows: "
                f"its {int(np.sum(y == c))} examples are in {n_groups} group(s), all on one "
                "side; a class needs examples in several groups (relabel or drop it, or "
                "change test_fraction)"
            )
    return np.sort(train), np.sort(test)


def _plan_repeats(
    y: np.ndarray,
    groups: np.ndarray | None,
    classes: np.ndarray,
    codes: list[int],
    repeats: int,
    test_fraction: float,
    seed: int,
    who: str,
) -> list[ProbeSplit]:
    """Every repeat's split and k-shot samples; shots a class cannot fill are dropped."""
    splits: list[tuple[int, np.ndarray, np.ndarray]] = []
    fewest: dict[str, int] = {}
    for r in range(repeats):
        s = seed + r
        train, test = _split(y, groups, classes, test_fraction, s)
        splits.append((s, train, test))
        for c in classes:
            n = int(np.sum(y[train] == c))
            fewest[c] = min(fewest.get(c, n), n)
    floor_class = min(fewest, key=lambda c: fewest[c])
    usable = []
    for k in codes:
        if k > fewest[floor_class]:
            log.warning(
                "%s: skipping %d-shot: class %r has only %d training examples (in some "
                "repeat); lower the shots or the test_fraction",
                who,
                k,
                floor_class,
                fewest[floor_class],
            )
        else:
            usable.append(k)
    if not usable:
        raise ParameterError(
            f"no shots value can be used: class {floor_class!r} has only "
            f"{fewest[floor_class]} training examples, fewer than every k in "
            f"{[k for k in codes if k]}; add 'all' or lower the shots"
        )
    out = []
    for s, train, test in splits:
        rng = np.random.default_rng(s)
        order = {c: rng.permutation(train[y[train] == c]) for c in classes}
        sets = {
            k: (train if k == 0 else np.sort(np.concatenate([order[c][:k] for c in classes])))
            for k in usable
        }
        out.append(ProbeSplit(s, test, sets))
    return out


def probe_splits(
    labels: Any,
    *,
    groups: Any = None,
    shots: Sequence[Shots] = DEFAULT_SHOTS,
    repeats: int = 5,
    test_fraction: float = 0.3,
    seed: int = 0,
    stage: str = "probe",
) -> list[ProbeSplit]:
    """The probe's test split and k-shot training sets of every repeat, without fitting.

    :func:`probe_scores` (and the ``probe`` stage) score on exactly these rows; another
    evaluation given the same labels, groups and arguments (the ``supervised_baseline``
    stage) draws the same test rows and training sets, so the scores compare pairwise.

    Parameters
    ----------
    labels : array-like, shape (n_rows,)
        Known class of each row; missing ones (None, NaN, empty, or ``str()`` of those) drop
        the row. Compared as strings.
    groups : array-like, shape (n_rows,), optional
        A group per row (e.g. ``"P01/B03"``, a well imaged on several days): every group is
        kept on one side of each split. Rows with a missing group are dropped.
    shots : sequence of int or "all"
        Training examples per class (k >= 1), or the whole training split. A k above the
        training rows of some class (in any repeat) is skipped, with a warning in the log.
    repeats : int
        Repeats, with seeds ``seed, seed + 1, ...``.
    test_fraction : float
        Share of the usable rows held out, in (0, 1). With ``groups`` it is approximate: the
        held-out part is the first of ``max(2, round(1 / test_fraction))`` folds of
        :class:`~sklearn.model_selection.StratifiedGroupKFold` (``shuffle=True``,
        ``random_state`` the repeat's seed), about ``1 / n_folds`` of the rows (0.3 holds out
        about a third), its classes about as in the whole.
    seed : int
        Seed of the first repeat (>= 0).
    stage : str
        Who asks, for the log.

    Returns
    -------
    list of ProbeSplit, length repeats
        Row indices into ``labels``, one split per repeat, in seed order.

    Raises
    ------
    ParameterError
        On a bad argument; labels and groups of different lengths; fewer than two classes or
        a class with fewer than two examples (among the usable rows); a test fraction that
        leaves a side of the split with fewer rows than classes; fewer groups than folds; a
        group split that leaves a class on one side; no usable shots value.

    Notes
    -----
    Without ``groups`` a repeat's split is ``train_test_split(stratify=labels,
    random_state=seed)``. The k-shot training rows of a class are the first k of a
    permutation (``numpy.random.default_rng(seed)``, classes in sorted order) of its training
    rows in ascending order, so smaller sets nest in larger ones.
    """
    codes = _check_args(shots, repeats, test_fraction, seed)
    label_values, group_values = _columns(labels, groups)
    rows = np.flatnonzero(_usable(label_values, group_values, stage))
    y = _strings(label_values[rows])
    g = None if group_values is None else _strings(group_values[rows])
    classes = _check_classes(y, test_fraction, g)
    plan = _plan_repeats(y, g, classes, codes, repeats, test_fraction, seed, stage)
    return [
        ProbeSplit(p.seed, rows[p.test], {k: rows[v] for k, v in p.train.items()}) for p in plan
    ]


def _plan(
    features: Mapping[str, np.ndarray],
    labels: Any,
    groups: Any,
    shots: Sequence[Shots],
    repeats: int,
    test_fraction: float,
    C: float,
    max_iter: int,
    seed: int,
) -> _Plan:
    """Every check, every split and every sample: all that precedes the first fit."""
    codes = _check_args(shots, repeats, test_fraction, seed, C=C, max_iter=max_iter)
    arrays, y, g = _clean(features, labels, groups)
    classes = _check_classes(y, test_fraction, g)
    splits = _plan_repeats(y, g, classes, codes, repeats, test_fraction, seed, "probe")
    return _Plan(arrays, y, g, classes, splits)


def _fit_all(plan: _Plan, C: float, max_iter: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    not_converged = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for rep in plan.repeats:
            y_test = plan.y[rep.test]
            for name, x in plan.features.items():
                for k, train in rep.train.items():
                    model = make_pipeline(
                        StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)
                    )
                    n_before = len(caught)
                    model.fit(x[train], plan.y[train])
                    not_converged += any(
                        issubclass(w.category, ConvergenceWarning) for w in caught[n_before:]
                    )
                    pred = model.predict(x[rep.test])
                    rows.append(
                        {
                            "features": name,
                            "shots": k,
                            "seed": rep.seed,
                            "n_train": len(train),
                            "n_test": len(rep.test),
                            "accuracy": float(accuracy_score(y_test, pred)),
                            "macro_f1": float(
                                f1_score(y_test, pred, average="macro", zero_division=0.0)
                            ),
                        }
                    )
    for w in caught:  # anything unexpected is passed on, where it was raised
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not_converged:
        log.warning(
            "probe: %d of %d fits stopped at max_iter = %d before converging; raise max_iter "
            "(or lower C) for exact scores",
            not_converged,
            len(rows),
            max_iter,
        )
    table = pd.DataFrame(rows, columns=list(PROBE_COLUMNS))
    return table.astype({"shots": "int64", "seed": "int64", "n_train": "int64", "n_test": "int64"})


def probe_scores(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    shots: Sequence[Shots] = DEFAULT_SHOTS,
    repeats: int = 5,
    test_fraction: float = 0.3,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Linear-probe scores of each features array, for each shots value and repeat.

    Parameters
    ----------
    features : mapping of str to ndarray, each shape (n_rows, n_features_i)
        The arrays to compare, row ``i`` of each describing the same item. The first is the
        one under test (see :func:`summarize_probe`).
    labels : ndarray, shape (n_rows,)
        Known class of each row. Missing labels (None, NaN, empty, or ``str()`` of those:
        ``"nan"``, ``"None"``, ``"<NA>"``) drop the row; classes are compared as strings.
    groups : ndarray, shape (n_rows,), optional
        A group per row (e.g. the well): each split keeps every group on one side, with an
        approximate test fraction (see :func:`probe_splits`). Missing groups drop the row.
    shots : sequence of int or "all"
        Training examples per class (k >= 1), or the whole training split.
    repeats : int
        Repeats, with seeds ``seed, seed + 1, ...``.
    test_fraction : float
        Share of the usable rows held out, stratified, in (0, 1) (approximate with
        ``groups``).
    C : float
        Inverse regularisation strength of the logistic regression (> 0).
    max_iter : int
        Iterations of its lbfgs solver.
    seed : int
        Seed of the first repeat (>= 0).

    Returns
    -------
    pandas.DataFrame, shape (n_features_arrays * n_usable_shots * repeats, 7)
        The columns of the ``probe`` table: features, shots (0 = all), seed, n_train,
        n_test, accuracy, macro_f1; ordered by seed, then features, then shots as given.

    Raises
    ------
    ParameterError
        On a bad argument; features and labels of different lengths; fewer than two classes
        or a class with fewer than two examples (after dropping rows); a test fraction that
        leaves a side of the split with fewer rows than classes; with ``groups``, fewer
        groups than folds or a split that leaves a class on one side; no usable shots value.

    Notes
    -----
    The splits are :func:`probe_splits` of the usable rows (given no missing label, group or
    feature, exactly ``probe_splits(labels, groups=groups, ...)``).
    A row with a non-finite feature in any array is dropped from all. Within a repeat every
    shots value and every array uses the same test rows; the k-shot training rows of a class
    are the first k of a permutation (``numpy.random.default_rng(seed)``, classes in sorted
    order) of its training rows in ascending order, so smaller sets nest in larger ones. A k
    above the training rows of some class (in any repeat) is skipped for every repeat, with a
    warning in the log, so each (features, shots) has either all its repeats or none.
    Convergence warnings are counted and logged once.
    """
    plan = _plan(features, labels, groups, shots, repeats, test_fraction, C, max_iter, seed)
    return _fit_all(plan, C, max_iter)


def summarize_probe(table: pd.DataFrame, *, reference: str | None = None) -> pd.DataFrame:
    """Mean and spread over seeds, and whether the reference array beats each baseline.

    Parameters
    ----------
    table : pandas.DataFrame, shape (n_fits, 7)
        A ``probe`` table (:func:`probe_scores`, or ``tables/probe.parquet``).
    reference : str, optional
        The features array under test; default the first in ``table``.

    Returns
    -------
    pandas.DataFrame, shape (n_features_arrays * n_shots, 10)
        One row per (features, shots), in the table's order, with columns ``features``,
        ``shots`` (0 = all), ``n_repeats``, ``accuracy_mean``, ``accuracy_std``,
        ``macro_f1_mean``, ``macro_f1_std`` (std over seeds, ddof 1: NaN for one repeat),
        ``reference``, ``delta_macro_f1`` (the reference's mean macro-F1 minus this row's,
        over the seeds both have; NaN on the reference's own rows) and ``reference_beats``
        (``delta_macro_f1 > 0``; missing on the reference's rows).

    Raises
    ------
    ParameterError
        If ``table`` lacks a column of the ``probe`` table or ``reference`` is not in it.
    """
    missing = [c for c in PROBE_COLUMNS if c not in table.columns]
    if missing:
        raise ParameterError(f"not a probe table: missing columns {missing}")
    names = list(dict.fromkeys(table["features"]))
    if reference is None:
        if not names:
            raise ParameterError("the probe table is empty: nothing to summarize")
        reference = str(names[0])
    elif reference not in names:
        raise ParameterError(f"reference {reference!r} is not among the features probed {names}")
    grouped = table.groupby(["features", "shots"], sort=False)
    out = grouped.agg(
        n_repeats=("seed", "nunique"),
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        macro_f1_mean=("macro_f1", "mean"),
        macro_f1_std=("macro_f1", "std"),
    ).reset_index()
    ref = table[table["features"] == reference].set_index(["shots", "seed"])["macro_f1"]
    deltas: list[float] = []
    for name, shots in zip(out["features"], out["shots"], strict=True):
        if name == reference:
            deltas.append(float("nan"))
            continue
        other = table[(table["features"] == name) & (table["shots"] == shots)]
        paired = other.set_index(["shots", "seed"])["macro_f1"]
        common = paired.index.intersection(ref.index)
        deltas.append(float((ref[common] - paired[common]).mean()) if len(common) else float("nan"))
    out["reference"] = reference
    out["delta_macro_f1"] = deltas
    beats = pd.array([pd.NA if math.isnan(d) else d > 0 for d in deltas], dtype="boolean")
    out["reference_beats"] = beats
    return out


# -- the stage --------------------------------------------------------------------------------


def run_probe(ctx: RunContext, params: ProbeParams) -> dict[str, int]:
    """The ``probe`` stage: linear probes of the store's feature arrays against a label column.

    Reads each of ``params.features`` (rows ``params.rows``) and the labels of
    ``params.label_column`` (and the groups of ``params.group_column``), runs
    :func:`probe_scores` and writes ``tables/probe.parquet``.
    When the arrays select different rows (say one is restricted to the catalog's kept images
    and the other is not), the probe uses the rows all of them have. Every check (arrays,
    label column, labels, parameters against the data) runs before the first fit, so a bad
    input raises with the store untouched.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.client`` computes the (small) feature matrices (None: the local scheduler);
        ``ctx.seed`` is the first repeat's seed.
    params : ProbeParams

    Returns
    -------
    dict
        ``rows`` (usable rows probed), ``classes`` and ``fits`` (rows of the table); with a
        ``group_column``, ``groups`` (groups among the usable rows).

    Raises
    ------
    StoreError
        If a features array is not in the store, naming the stage that writes it.
    ParameterError
        If the label column is in no table, or the labels or parameters do not fit the data
        (see :func:`probe_scores`).
    """
    store, client, seed = ctx.store, ctx.client, ctx.seed
    for name in params.features:
        if not store.has_array(name):
            writer = _WRITERS.get(name)
            how = f"run the `{writer}` stage first" if writer else "run the stage that writes it"
            raise StoreError(
                f"probe: array {name!r} is not in {store.zarr_url}; {how}, or leave it out of "
                f"`features` ({params.features})"
            )
    matrices = [open_matrix(store, name, params.rows) for name in params.features]
    common = matrices[0].positions
    for m in matrices[1:]:
        common = np.intersect1d(common, m.positions)
    if len(common) == 0:
        raise ParameterError(f"the arrays {params.features} have no row ({params.rows}) in common")
    for m in matrices:
        if len(common) < m.n_rows:
            log.info(
                "probe: %s has %d rows; using the %d all arrays have",
                m.array,
                m.n_rows,
                len(common),
            )
    labels = row_labels(store, params.label_column, common, matrices[0].n_total)
    groups = (
        None
        if params.group_column is None
        else row_labels(store, params.group_column, common, matrices[0].n_total)
    )
    features: dict[str, np.ndarray] = {}
    for m in matrices:
        data = m.data
        if len(common) < m.n_rows:
            data = data[np.searchsorted(m.positions, common)]
        features[m.array] = compute_rows(data, client)
    plan = _plan(
        features,
        labels,
        groups,
        params.shots,
        params.repeats,
        params.test_fraction,
        params.C,
        params.max_iter,
        seed,
    )
    if groups is not None:
        log.info(
            "probe: each split keeps every %s on one side (test fraction about 1/%d)",
            params.group_column,
            _n_folds(params.test_fraction),
        )
    table = _fit_all(plan, params.C, params.max_iter)
    write_table(store, "probe", table)
    summary = summarize_probe(table)
    for row in summary.to_dict("records"):
        beats = row["reference_beats"]
        vs = (
            ""
            if pd.isna(beats)
            else f"; {row['reference']} {'beats' if beats else 'does not beat'} it "
            f"(macro-F1 difference {row['delta_macro_f1']:+.3f})"
        )
        std = row["macro_f1_std"]
        log.info(
            "probe: %s %s: macro-F1 %.3f ± %.3f, accuracy %.3f (%d repeats)%s",
            row["features"],
            "all-shot" if row["shots"] == 0 else f"{row['shots']}-shot",
            row["macro_f1_mean"],
            0.0 if std != std else std,  # NaN: one repeat
            row["accuracy_mean"],
            row["n_repeats"],
            vs,
        )
    counts = {"rows": len(plan.y), "classes": len(plan.classes), "fits": len(table)}
    if plan.groups is not None:
        counts["groups"] = len(np.unique(plan.groups))
    return counts
