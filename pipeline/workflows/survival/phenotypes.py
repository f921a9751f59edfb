"""Patient phenotypes: hierarchical clustering of the covariates, k chosen by silhouette.

The thesis (source document 004) clusters patients on their clinical covariates, reads each
cluster as a phenotype, and compares the phenotypes' survival. Clinical covariates mix numbers and
categories, so by default the distance is Gower's: each numeric covariate contributes
``|a - b| / range`` and each categorical one 0 (same level) or 1, averaged over covariates.
scipy and scikit-learn have no Gower distance and the PyPI packages that do are unmaintained,
so it is written here (a few lines of numpy). On numeric-only data the distance is Euclidean
on standardised covariates. Ward's linkage (the default) needs Euclidean distances: with Gower
it runs on ``sqrt(gower)``, which is Euclidean-embeddable (Gower & Legendre 1986, theorem 2),
rather than on Gower itself. Average linkage on Gower, the other common choice, tends to split
off a few outlying patients as "phenotypes" (on GBSG2 every cut of 2-6 had a singleton).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import silhouette_score

from pipeline.errors import ParameterError
from pipeline.workflows.survival.spec import Covariate, PhenotypeParams

__all__ = [
    "PhenotypeParams",
    "PhenotypeResult",
    "cluster_phenotypes",
    "coinciding_covariates",
    "count_replicate",
    "distance_matrix",
    "gower_distance",
    "phenotype_profiles",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhenotypeResult:
    """The clustering of one cohort.

    Attributes
    ----------
    labels : numpy.ndarray of int, shape (n_patients,)
        Phenotype of each patient, 1..k, 1 = best survival at the horizon.
    selection : pandas.DataFrame
        The ``phenotype_selection`` table (without ``bootstrap_share``).
    k : int
    distance : str
        ``gower`` or ``euclidean``.
    """

    labels: np.ndarray
    selection: pd.DataFrame
    k: int
    distance: str


def gower_distance(
    numeric: np.ndarray,
    categorical: np.ndarray,
    numeric_weights: Sequence[float] | None = None,
    categorical_weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Gower's distance between every pair of patients.

    Parameters
    ----------
    numeric : numpy.ndarray, shape (n_patients, n_numeric)
        Numeric covariates; each is scaled by its range (a constant one contributes 0).
    categorical : numpy.ndarray, shape (n_patients, n_categorical)
        Category codes; a pair differs by 1 on a covariate whose codes differ.
    numeric_weights, categorical_weights : sequence of float, optional
        Weight of each column (default 1); the distance is the weighted mean.

    Returns
    -------
    numpy.ndarray, shape (n_patients, n_patients)
        Symmetric, zero diagonal, values in [0, 1].
    """
    n = numeric.shape[0] if numeric.size else categorical.shape[0]
    wn = np.ones(numeric.shape[1]) if numeric_weights is None else np.asarray(numeric_weights)
    wc = (
        np.ones(categorical.shape[1])
        if categorical_weights is None
        else np.asarray(categorical_weights)
    )
    total = np.zeros((n, n))
    for j in range(numeric.shape[1]):
        x = numeric[:, j]
        span = float(x.max() - x.min())
        if span > 0 and wn[j] > 0:
            total += wn[j] * np.abs(x[:, None] - x[None, :]) / span
    for j in range(categorical.shape[1]):
        c = categorical[:, j]
        if wc[j] > 0:
            total += wc[j] * (c[:, None] != c[None, :])
    return total / max(float(wn.sum() + wc.sum()), 1e-12)


def _parts(frame: pd.DataFrame, covariates: Sequence[Covariate]) -> tuple[np.ndarray, np.ndarray]:
    num = [frame[c.name].to_numpy(dtype=np.float64) for c in covariates if c.kind == "numeric"]
    cat = [
        frame[c.name].cat.codes.to_numpy(dtype=np.int64)
        for c in covariates
        if c.kind == "categorical"
    ]
    n = len(frame)
    return (
        np.column_stack(num) if num else np.empty((n, 0)),
        np.column_stack(cat) if cat else np.empty((n, 0), dtype=np.int64),
    )


def distance_matrix(
    frame: pd.DataFrame,
    covariates: Sequence[Covariate],
    kind: str = "auto",
    weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, str]:
    """Distances between the patients of ``frame`` on ``covariates``.

    Parameters
    ----------
    frame : pandas.DataFrame
        A cohort frame.
    covariates : sequence of Covariate
    kind : {"auto", "gower", "euclidean"}
    weights : mapping of str to float, optional
        Covariate -> weight (default 1).

    Returns
    -------
    distances : numpy.ndarray, shape (n_patients, n_patients)
    kind : str
        ``gower`` or ``euclidean`` (what ``auto`` resolved to).
    """
    weights = weights or {}
    numeric, categorical = _parts(frame, covariates)
    wn = [weights.get(c.name, 1.0) for c in covariates if c.kind == "numeric"]
    wc = [weights.get(c.name, 1.0) for c in covariates if c.kind == "categorical"]
    if kind == "auto":
        kind = "gower" if categorical.shape[1] else "euclidean"
    if kind == "gower":
        return gower_distance(numeric, categorical, wn, wc), kind
    # Euclidean: standardised numeric covariates and one 0/1 column per category level, each
    # scaled by the square root of its covariate's weight (so squared distances are weighted).
    cols = []
    if numeric.shape[1]:
        sd = numeric.std(axis=0)
        z = (numeric - numeric.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        cols.append(z * np.sqrt(np.asarray(wn))[None, :])
    for j in range(categorical.shape[1]):
        codes = categorical[:, j]
        onehot = (codes[:, None] == np.unique(codes)[None, :]).astype(np.float64)
        cols.append(onehot * np.sqrt(wc[j]))
    x = np.hstack(cols)
    return squareform(pdist(x)), kind


def coinciding_covariates(
    frame: pd.DataFrame, covariates: Sequence[Covariate], labels: np.ndarray
) -> list[str]:
    """Categorical covariates whose levels the phenotypes merely reproduce.

    A covariate coincides with the phenotypes when each phenotype holds patients of a single
    level of it: the clustering then says no more than that covariate does.

    Returns
    -------
    list of str
    """
    out = []
    for cov in covariates:
        if cov.kind != "categorical":
            continue
        table = pd.crosstab(labels, frame[cov.name].astype(str).to_numpy())
        if ((table.to_numpy() > 0).sum(axis=1) == 1).all():
            out.append(cov.name)
    return out


def _cuts(distances: np.ndarray, method: str, ks: Sequence[int]) -> dict[int, np.ndarray]:
    tree = linkage(squareform(distances, checks=False), method=method)
    return {k: fcluster(tree, k, criterion="maxclust") for k in ks}


def _select(
    distances: np.ndarray, cuts: dict[int, np.ndarray], min_size: float
) -> tuple[pd.DataFrame, int | None]:
    n = distances.shape[0]
    rows = []
    for k, lab in cuts.items():
        sizes = np.bincount(lab)[1:]
        found = int((sizes > 0).sum())
        sil = (
            float(silhouette_score(distances, lab, metric="precomputed"))
            if 1 < found < n
            else np.nan
        )
        smallest = int(sizes[sizes > 0].min())
        rows.append(
            {
                "k": k,
                "silhouette": sil,
                "smallest": smallest,
                # A cut with fewer clusters than asked (ties in the tree) is not a k-way cut.
                "eligible": found == k and smallest >= min_size * n and np.isfinite(sil),
            }
        )
    table = pd.DataFrame(rows)
    ok = table[table["eligible"]]
    best = int(np.argmax(ok["silhouette"].to_numpy())) if len(ok) else -1
    chosen = int(ok["k"].to_numpy()[best]) if len(ok) else None
    table["chosen"] = table["k"] == chosen
    return table, chosen


def _survival_at(duration: np.ndarray, event: np.ndarray, horizon: float) -> float:
    kmf = KaplanMeierFitter().fit(duration, event)
    return float(kmf.survival_function_at_times([horizon]).iloc[0])


def cluster_phenotypes(
    frame: pd.DataFrame, covariates: Sequence[Covariate], params: PhenotypeParams
) -> tuple[PhenotypeResult, np.ndarray]:
    """Cluster the cohort's patients into phenotypes.

    Parameters
    ----------
    frame : pandas.DataFrame
        A cohort frame.
    covariates : sequence of Covariate
        The covariates to cluster on (resolved).
    params : PhenotypeParams

    Returns
    -------
    result : PhenotypeResult
    distances : numpy.ndarray, shape (n_patients, n_patients)
        The patient distances clustered (``sqrt`` of Gower's under Ward's linkage); the
        bootstrap resamples them.

    Raises
    ------
    ParameterError
        If no k in ``k_range`` gives phenotypes of at least ``min_size``.
    """
    unknown = sorted(set(params.weights) - {c.name for c in covariates})
    if unknown:
        raise ParameterError(
            f"phenotypes.weights names {unknown}, which are not clustered covariates "
            f"({', '.join(c.name for c in covariates)}); remove them or add them to covariates"
        )
    distances, kind = distance_matrix(frame, covariates, params.distance, params.weights)
    if params.linkage == "ward" and kind == "gower":
        distances = np.sqrt(distances)
    n = len(frame)
    lo, hi = params.k_range
    ks = [k for k in range(lo, hi + 1) if k < n]
    cuts = _cuts(distances, params.linkage, ks)
    table, chosen = _select(distances, cuts, params.min_size)
    if chosen is not None and chosen == max(ks) and len(ks) > 1:
        log.warning(
            "the silhouette chose k=%d, the top of k_range: more phenotypes may fit better; "
            "widen k_range to see",
            chosen,
        )
    if chosen is None:
        raise ParameterError(
            f"no number of phenotypes in k_range {list(params.k_range)} gives phenotypes of at "
            f"least min_size {params.min_size:g} of the {n} patients (smallest per k: "
            f"{dict(zip(table.k, table.smallest, strict=True))}); lower min_size, widen "
            "k_range, or try linkage: complete"
        )
    raw = cuts[chosen]
    # Number the phenotypes by survival at the horizon, best first, so that "phenotype 1"
    # means the same thing in every table and figure (ties: the larger one first).
    duration = frame["duration"].to_numpy(dtype=np.float64)
    event = frame["event"].to_numpy(dtype=np.int64)
    keys = []
    for c in np.unique(raw):
        m = raw == c
        keys.append((-_survival_at(duration[m], event[m], params.horizon), -int(m.sum()), c))
    order = {c: i + 1 for i, (_, _, c) in enumerate(sorted(keys))}
    labels = np.array([order[c] for c in raw], dtype=np.int64)
    log.info(
        "phenotypes: k=%d by silhouette (%s distance, %s linkage); sizes %s",
        chosen,
        kind,
        params.linkage,
        np.bincount(labels)[1:].tolist(),
    )
    return PhenotypeResult(labels, table, chosen, kind), distances


def count_replicate(payload: tuple[np.ndarray, str, tuple[int, int], float], seed: int) -> float:
    """The phenotype count chosen on one bootstrap resample of the patients.

    Parameters
    ----------
    payload : (distances, linkage, k_range, min_size)
        The cohort's patient distances (n_patients, n_patients) and the clustering settings.
        Distances are per pair, so a resample's matrix is a sub-matrix of the cohort's.
    seed : int

    Returns
    -------
    float
        The chosen k, NaN if no k was eligible on this resample.
    """
    distances, method, (lo, hi), min_size = payload
    n = distances.shape[0]
    idx = np.sort(np.random.default_rng(seed).integers(0, n, size=n))
    d = distances[np.ix_(idx, idx)]
    _, chosen = _select(d, _cuts(d, method, range(lo, min(hi, n - 1) + 1)), min_size)
    return float("nan") if chosen is None else float(chosen)


def phenotype_profiles(
    frame: pd.DataFrame, covariates: Sequence[Covariate], labels: np.ndarray
) -> pd.DataFrame:
    """The ``phenotypes`` table: each phenotype's covariate means and category shares.

    Parameters
    ----------
    frame : pandas.DataFrame
        A cohort frame.
    covariates : sequence of Covariate
        Every covariate to profile (also those not clustered on).
    labels : numpy.ndarray of int, shape (n_patients,)

    Returns
    -------
    pandas.DataFrame
    """
    rows = []
    for p in np.unique(labels):
        m = labels == p
        sub = frame.loc[m]
        for cov in covariates:
            if cov.kind == "numeric":
                x = sub[cov.name].to_numpy(dtype=np.float64)
                rows.append(
                    {
                        "phenotype": int(p),
                        "covariate": cov.name,
                        "level": "",
                        "n": int(m.sum()),
                        "value": float(x.mean()),
                        "sd": float(x.std(ddof=1)) if x.size > 1 else np.nan,
                        "overall": float(frame[cov.name].mean()),
                    }
                )
                continue
            for level in frame[cov.name].cat.categories:
                rows.append(
                    {
                        "phenotype": int(p),
                        "covariate": cov.name,
                        "level": str(level),
                        "n": int(m.sum()),
                        "value": float((sub[cov.name] == level).mean()),
                        "sd": np.nan,
                        "overall": float((frame[cov.name] == level).mean()),
                    }
                )
    return pd.DataFrame(rows)
