"""Treatment ranking: well scores against the untreated null, per-treatment medians with
bootstrap intervals, and the assay's Z'-factor.

A well's score is a deviation (larger: more changed). The null distribution is the scores
of untreated wells that no model saw in training; a score is reported as a robust z against
it ((s - median) / (1.4826 MAD)) and as an empirical one-sided p-value ((1 + #null >= s) /
(1 + n_null)). A treatment (drug or combination x concentration) is its replicate wells'
median score over all plates; its interval is a seeded bootstrap over those wells, the
replicates run as Dask tasks by :func:`pipeline.compute.replicates.run_replicates`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "TREATMENT_KEYS",
    "bootstrap_medians",
    "empirical_p",
    "rank_treatments",
    "robust_z",
    "z_prime",
]

log = logging.getLogger(__name__)

#: What makes a treatment: the drug (or combination) and its concentration.
TREATMENT_KEYS = ("treatment", "concentration", "unit")

#: Scaled MAD: a normal distribution's standard deviation.
_MAD_SCALE = 1.4826


def robust_z(scores: np.ndarray, null: np.ndarray) -> np.ndarray:
    """``(scores - median(null)) / (1.4826 MAD(null))``; NaN when the null has no spread.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n,)
    null : numpy.ndarray, shape (m,)
        The null distribution's scores (finite values are used).
    """
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if null.size == 0:
        return np.full(np.shape(scores), np.nan)
    centre = float(np.median(null))
    spread = _MAD_SCALE * float(np.median(np.abs(null - centre)))
    if not spread > 0:
        return np.full(np.shape(scores), np.nan)
    return (np.asarray(scores, dtype=np.float64) - centre) / spread


def empirical_p(scores: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided empirical p-values ``(1 + #{null >= s}) / (1 + n_null)``.

    Never 0 (the smallest is ``1 / (1 + n_null)``, the resolution ``n_null`` null wells give);
    NaN for a NaN score or an empty null.
    """
    null = np.sort(np.asarray(null, dtype=np.float64)[np.isfinite(null)])
    s = np.asarray(scores, dtype=np.float64)
    if null.size == 0:
        return np.full(s.shape, np.nan)
    at_least = null.size - np.searchsorted(null, s, side="left")
    p = (1.0 + at_least) / (1.0 + null.size)
    return np.where(np.isfinite(s), p, np.nan)


def z_prime(positive: np.ndarray, negative: np.ndarray) -> float:
    """Zhang et al.'s Z'-factor, 1 - 3 (sd_p + sd_n) / |mean_p - mean_n| (NaN if undefined).

    Above 0.5 an excellent assay. NaN with fewer than two finite values on either side or
    equal means.

    Parameters
    ----------
    positive, negative : ndarray
        One measure's values in the positive- and negative-control wells (NaNs ignored).
    """
    p = np.asarray(positive, dtype=np.float64)
    n = np.asarray(negative, dtype=np.float64)
    p, n = p[np.isfinite(p)], n[np.isfinite(n)]
    if p.size < 2 or n.size < 2 or p.mean() == n.mean():
        return math.nan
    return float(1 - 3 * (p.std(ddof=1) + n.std(ddof=1)) / abs(p.mean() - n.mean()))


def _medians(groups: Sequence[np.ndarray], seed: int) -> list[float]:
    # One replicate: every treatment's wells resampled with replacement, from one seed.
    rng = np.random.default_rng(seed)
    return [float(np.median(g[rng.integers(0, g.size, g.size)])) for g in groups]


def bootstrap_medians(
    groups: Sequence[np.ndarray],
    *,
    n: int,
    seed: int,
    confidence: float,
    client: Client | None = None,
    progress: ProgressFn = no_progress,
) -> list[tuple[float, float]]:
    """Percentile intervals of each group's median, from ``n`` seeded bootstrap replicates.

    Parameters
    ----------
    groups : sequence of numpy.ndarray
        Each treatment's well scores (finite, at least one).
    n : int
        Replicates (0: NaN intervals).
    seed : int
        The job's seed; replicate ``i`` has its own seed from it, so the intervals do not
        depend on how the replicates are split into tasks or on the cluster.
    confidence : float
    client : distributed.Client, optional

    Returns
    -------
    list of (float, float)
        ``(lower, upper)`` per group.
    """
    # Imported here: the report reads z_prime from this module without a cluster.
    from pipeline.compute.replicates import percentile_interval, replicate_seeds, run_replicates

    if n == 0 or not groups:
        return [(math.nan, math.nan)] * len(groups)
    seeds = replicate_seeds(seed, n, stream=1)
    replicates = run_replicates(
        client,
        _medians,
        [np.asarray(g, dtype=np.float64) for g in groups],
        seeds,
        per_task=max(1, n // 8),
        progress=progress,
        label="efficacy bootstrap",
    )
    values = np.asarray(replicates, dtype=np.float64).reshape(n, len(groups))
    alpha = 1.0 - confidence
    return [percentile_interval(values[:, j].tolist(), alpha) for j in range(len(groups))]


def rank_treatments(
    wells: pd.DataFrame,
    null: np.ndarray,
    *,
    score: str = "score",
    extra: Mapping[str, str] | None = None,
    n_boot: int,
    seed: int,
    confidence: float,
    client: Client | None = None,
    progress: ProgressFn = no_progress,
) -> pd.DataFrame:
    """One row per treatment, ranked from "like untreated" (1) to "most changed".

    Parameters
    ----------
    wells : DataFrame
        Treated wells: :data:`TREATMENT_KEYS` and the ``score`` column (NaN scores are left
        out).
    null : numpy.ndarray
        The untreated wells' held-out scores.
    score : str
        The column ranked.
    extra : mapping of str to str, optional
        Further well columns summarised per treatment by their median (output name ->
        well column).
    n_boot, seed, confidence, client, progress
        As :func:`bootstrap_medians`.

    Returns
    -------
    DataFrame
        ``treatment``, ``concentration``, ``unit``, ``wells``, ``score`` (median),
        ``score_lower``, ``score_upper``, ``z`` and ``p`` (of the median against the null:
        see the module docstring), ``rank``, then the ``extra`` columns; sorted by rank.
    """
    usable = wells[np.isfinite(wells[score].to_numpy(np.float64))]
    groups = usable.groupby(list(TREATMENT_KEYS), sort=True, dropna=False)
    keys = list(groups.groups)
    scores = [g[score].to_numpy(np.float64) for _, g in groups]
    intervals = bootstrap_medians(
        scores, n=n_boot, seed=seed, confidence=confidence, client=client, progress=progress
    )
    medians = np.array([float(np.median(s)) for s in scores])
    rows: list[dict[str, Any]] = []
    for key, s, med, (lo, hi) in zip(keys, scores, medians, intervals, strict=True):
        rows.append(
            {
                **dict(zip(TREATMENT_KEYS, key, strict=True)),
                "wells": int(s.size),
                "score": float(med),
                "score_lower": lo,
                "score_upper": hi,
            }
        )
    table = pd.DataFrame(
        rows, columns=[*TREATMENT_KEYS, "wells", "score", "score_lower", "score_upper"]
    )
    table["z"] = robust_z(medians, null)
    table["p"] = empirical_p(medians, null)
    # Ties share the lower rank; stable by treatment then concentration.
    table["rank"] = table["score"].rank(method="min").astype(np.int64)
    for name, column in (extra or {}).items():
        table[name] = [
            float(np.nanmedian(g[column])) if g[column].notna().any() else math.nan
            for _, g in groups
        ]
    return table.sort_values(["rank", *TREATMENT_KEYS], kind="stable").reset_index(drop=True)
