"""k-means over row chunks: k-means++ on a seeded sample, then Lloyd iterations.

Each Lloyd iteration is one pass over the data: every row chunk returns, for each centre set
being fitted, the per-cluster sums and counts and its inertia; the small results are summed
and the client moves the centres. Several centre sets (the ``n_init`` restarts, and every k of
an elbow search) share each pass, so fitting k = 2..10 reads the data once per iteration, not
once per k.

Why not a library: scikit-learn's KMeans needs the matrix in one process's memory, and
dask-ml's KMeans was measured at ~75x slower than scikit-learn on 100,000 x 25 in memory here,
with its ``init="k-means++"`` broken against scikit-learn 1.9. scikit-learn still does the
initialisation (:func:`sklearn.cluster.kmeans_plusplus`) and the knee is found with ``kneed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from distributed import Client
from scipy import sparse
from sklearn.cluster import kmeans_plusplus
from threadpoolctl import threadpool_limits

from pipeline.errors import ParameterError
from pipeline.features.cluster.assign import fit_sample

__all__ = [
    "ElbowResult",
    "KMeansResult",
    "block_stats",
    "find_elbow",
    "fit_kmeans",
    "kmeans_elbow",
    "predict_kmeans",
    "sample_rows",
]

log = logging.getLogger(__name__)

Matrix = np.ndarray | da.Array
#: Rows per block when a numpy matrix is split for the threads: large enough for BLAS,
#: small enough that the distance matrix of a block stays a few MB.
_NUMPY_BLOCK_ROWS = 16_384
#: Up to this many clusters the per-cluster sums use a dense one-hot matrix.
_DENSE_ONEHOT_K = 64


@dataclass(frozen=True)
class KMeansResult:
    """A fitted k-means model.

    Attributes
    ----------
    centers : ndarray, shape (k, d)
    inertia : float
        Sum of squared distances of the (finite) rows to their nearest centre.
    n_iter : int
        Lloyd iterations of the best restart.
    converged : bool
        The best restart stopped because the centres moved less than the tolerance.
    n_init : int
        Restarts fitted; the one with the lowest inertia is kept.
    """

    centers: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    n_init: int

    @property
    def k(self) -> int:
        """Number of clusters."""
        return int(self.centers.shape[0])


@dataclass(frozen=True)
class ElbowResult:
    """Inertia over a range of k and the k chosen at the elbow.

    Attributes
    ----------
    ks : list of int
    fits : list of KMeansResult
        The best restart for each k, in the order of ``ks``.
    k : int
        The chosen k.
    rule : str
        ``"kneedle"`` when ``kneed`` found the knee, ``"max_curvature"`` when it found none and
        the largest second difference of the inertia curve chose instead.
    """

    ks: list[int]
    fits: list[KMeansResult]
    k: int
    rule: str

    @property
    def inertias(self) -> list[float]:
        """Inertia per k, in the order of ``ks``."""
        return [f.inertia for f in self.fits]

    def best(self) -> KMeansResult:
        """The fit at the chosen k."""
        return self.fits[self.ks.index(self.k)]


# -- per-block work (pure, module level: shipped to workers) ------------------------------


def _finite_rows_and_norms(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block's finite rows as float64 and their squared norms (m,).

    The squared norm is non-finite exactly when the row holds NaN or inf, so one reduction
    serves both the finiteness check and the inertia (computed once per block, not per
    centre set).
    """
    x = np.asarray(block, dtype=np.float64)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    norms = np.einsum("ij,ij->i", x, x)
    keep = np.isfinite(norms)
    return (x, norms) if keep.all() else (x[keep], norms[keep])


def _finite_rows(block: np.ndarray) -> np.ndarray:
    """The block's finite rows as float64 (rows with any NaN are not part of the data)."""
    return _finite_rows_and_norms(block)[0]


def _nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and ``|c|^2 - 2 x.c`` at it, for each row of ``x``.

    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2``: one matrix product instead of a (n, k, d)
    difference; ``|x|^2`` does not change the argmin and is added by the caller.
    """
    d2 = (centers * centers).sum(axis=1)[None, :] - 2.0 * (x @ centers.T)
    labels = d2.argmin(axis=1)
    return labels, d2[np.arange(x.shape[0]), labels]


def block_stats(
    block: np.ndarray, center_sets: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """One Lloyd step's statistics of one row block, for each centre set.

    Parameters
    ----------
    block : ndarray, shape (m, d)
        Rows with a non-finite value are skipped.
    center_sets : sequence of ndarray, each shape (k_i, d)

    Returns
    -------
    list of (sums, counts, inertia)
        Per centre set: ``sums`` (k_i, d) float64, the sum of the rows nearest each centre;
        ``counts`` (k_i,) float64; ``inertia`` the sum of squared distances to the nearest
        centre.
    """
    x, norms = _finite_rows_and_norms(block)
    total_norm = float(norms.sum())
    out = []
    for centers in center_sets:
        k = centers.shape[0]
        if x.shape[0] == 0:
            out.append((np.zeros((k, x.shape[1])), np.zeros(k), 0.0))
            continue
        labels, d2 = _nearest(x, centers)
        # The one-hot (k, m) matrix times the block sums each cluster's rows in one product;
        # dense while it is small (faster), sparse for many clusters.
        if k <= _DENSE_ONEHOT_K:
            onehot = (labels[None, :] == np.arange(k)[:, None]).astype(np.float64)
            sums = onehot @ x
        else:
            sums = np.asarray(
                sparse.csr_matrix(
                    (np.ones(x.shape[0]), (labels, np.arange(x.shape[0]))), shape=(k, x.shape[0])
                )
                @ x
            )
        inertia = max(total_norm + float(d2.sum()), 0.0)
        out.append((sums, np.bincount(labels, minlength=k).astype(float), inertia))
    return out


def _sum_stats(
    a: list[tuple[np.ndarray, np.ndarray, float]], b: list[tuple[np.ndarray, np.ndarray, float]]
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    return [(sa + sb, ca + cb, ia + ib) for (sa, ca, ia), (sb, cb, ib) in zip(a, b, strict=True)]


def _predict_block(block: np.ndarray, centers: np.ndarray) -> np.ndarray:
    x = np.asarray(block, dtype=np.float64).reshape(block.shape[0], -1)
    finite = np.isfinite(x).all(axis=1)
    labels = np.full(x.shape[0], -1, dtype=np.int64)
    if finite.any():
        labels[finite] = _nearest(x[finite], centers)[0]
    return labels


# -- the passes over the data -------------------------------------------------------------


def _as_matrix(x: Matrix, name: str = "x") -> Matrix:
    if x.ndim < 2:
        raise ParameterError(
            f"{name} has shape {tuple(x.shape)}; expected a 2-D (rows, features) matrix"
        )
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if isinstance(x, da.Array) and x.numblocks[1] != 1:
        x = x.rechunk({1: -1})  # a block must hold whole rows
    return x


def _pass(
    x: Matrix, center_sets: Sequence[np.ndarray], client: Client | None
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Statistics of the whole matrix for each centre set: one read of the data."""
    if isinstance(x, da.Array):
        parts = [dask.delayed(block_stats)(b, list(center_sets)) for b in x.to_delayed().ravel()]
        # Pairwise tree: a worker sums two partial results, so the client receives one.
        while len(parts) > 1:
            parts = [
                dask.delayed(_sum_stats)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                for i in range(0, len(parts), 2)
            ]
        if client is not None:
            return client.compute(parts[0]).result()
        return dask.compute(parts[0])[0]
    bounds = range(0, x.shape[0], _NUMPY_BLOCK_ROWS)
    blocks = [x[i : i + _NUMPY_BLOCK_ROWS] for i in bounds]
    # One BLAS thread per block, the blocks in parallel threads (numpy releases the GIL):
    # BLAS's own threads on these thin products only add contention (measured 1.6x slower).
    with threadpool_limits(1, "blas"), ThreadPoolExecutor() as pool:
        results = list(pool.map(lambda b: block_stats(b, center_sets), blocks))
    total = results[0]
    for r in results[1:]:
        total = _sum_stats(total, r)
    return total


def sample_rows(x: Matrix, size: int, seed: int, client: Client | None = None) -> np.ndarray:
    """A seeded sample of at most ``size`` finite rows of ``x``, in row order.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
    size : int
    seed : int

    Returns
    -------
    ndarray, shape (min(size, n_finite), d), float64
    """
    return _finite_rows(fit_sample(_as_matrix(x), size, seed, client).data)


def _check_k(k: int, n_rows: int) -> None:
    if k < 1:
        raise ParameterError(f"k-means: k = {k}; expected k >= 1")
    if k > n_rows:
        raise ParameterError(
            f"k-means: k = {k} but the data has only {n_rows} finite row(s); choose k <= {n_rows}"
        )


def _lloyd(
    x: Matrix,
    inits: list[np.ndarray],
    *,
    max_iter: int,
    tol: float,
    client: Client | None,
) -> list[KMeansResult]:
    """Lloyd iterations for every centre set in ``inits`` at once, one data pass each."""
    centers = [c.copy() for c in inits]
    n_iter = [0] * len(inits)
    converged = [False] * len(inits)
    for it in range(max_iter):
        active = [i for i, done in enumerate(converged) if not done]
        if not active:
            break
        stats = _pass(x, [centers[i] for i in active], client)
        for i, (sums, counts, _) in zip(active, stats, strict=True):
            # An empty cluster keeps its centre rather than collapsing to the origin.
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centers[i])
            shift = float(((new - centers[i]) ** 2).sum())
            centers[i] = new
            n_iter[i] = it + 1
            converged[i] = shift <= tol
        log.debug("k-means iteration %d: %d centre set(s) still moving", it + 1, len(active))
    # One more pass so each inertia belongs to the centres returned (as scikit-learn does).
    final = _pass(x, centers, client)
    return [
        KMeansResult(c, float(inertia), n, conv, 1)
        for c, (_, _, inertia), n, conv in zip(centers, final, n_iter, converged, strict=True)
    ]


def _fit_many(
    x: Matrix,
    ks: Sequence[int],
    *,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    init_sample: int,
    client: Client | None,
) -> list[KMeansResult]:
    x = _as_matrix(x)
    if n_init < 1 or max_iter < 1 or tol < 0 or init_sample < 1:
        raise ParameterError(
            f"k-means: n_init={n_init}, max_iter={max_iter}, tol={tol}, "
            f"init_sample={init_sample}; expected n_init >= 1, max_iter >= 1, tol >= 0, "
            "init_sample >= 1"
        )
    sample = sample_rows(x, init_sample, seed, client)
    for k in ks:
        _check_k(k, sample.shape[0])
    # scikit-learn's tolerance: relative to the mean per-feature variance of the data,
    # estimated here on the initialisation sample.
    tol_abs = tol * float(sample.var(axis=0).mean())
    rng = np.random.default_rng(seed)
    inits, owner = [], []
    for k in ks:
        for _ in range(n_init):
            state = int(rng.integers(2**31 - 1))
            inits.append(kmeans_plusplus(sample, k, random_state=state)[0])
            owner.append(k)
    t0 = time.perf_counter()
    fits = _lloyd(x, inits, max_iter=max_iter, tol=tol_abs, client=client)
    log.info(
        "k-means: %d centre set(s) (k in %s, n_init=%d) fitted in %.2f s",
        len(inits),
        list(ks),
        n_init,
        time.perf_counter() - t0,
    )
    best = []
    for k in ks:
        mine = [f for f, o in zip(fits, owner, strict=True) if o == k]
        top = min(mine, key=lambda f: f.inertia)
        best.append(KMeansResult(top.centers, top.inertia, top.n_iter, top.converged, n_init))
    return best


def fit_kmeans(
    x: Matrix,
    k: int,
    *,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    init_sample: int = 100_000,
    client: Client | None = None,
) -> KMeansResult:
    """Fit k-means with k-means++ initialisation and Lloyd iterations.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
        Rows with a non-finite value are ignored (they get label -1 from
        :func:`predict_kmeans`). A dask array is read block by block in every iteration and is
        never gathered: it may be larger than any worker's memory.
    k : int
    n_init : int
        Restarts, each from its own k-means++ initialisation; the lowest inertia wins
        (scikit-learn's ``n_init``; its ``"auto"`` is 1 with k-means++).
    max_iter : int
    tol : float
        Stop when the squared centre shift is at most ``tol`` times the mean per-feature
        variance (scikit-learn's rule).
    seed : int
    init_sample : int
        k-means++ runs on a seeded sample of at most this many rows.
    client : distributed.Client, optional
        Computes the passes over a dask array on this client.

    Returns
    -------
    KMeansResult
    """
    return _fit_many(
        x,
        [k],
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        init_sample=init_sample,
        client=client,
    )[0]


def find_elbow(
    ks: Sequence[int], inertias: Sequence[float], sensitivity: float = 1.0
) -> tuple[int, str]:
    """The k at the elbow of a decreasing inertia curve.

    Uses ``kneed``'s Kneedle (convex, decreasing), as the k-means lab does. When Kneedle finds
    no knee (a straight or too short curve), the k with the largest second difference of the
    inertia is taken instead.

    Returns
    -------
    k : int
    rule : str
        ``"kneedle"`` or ``"max_curvature"``.
    """
    from kneed import KneeLocator  # imported here: kneed pulls in matplotlib-free scipy code

    ks = [int(k) for k in ks]
    if len(ks) >= 3:
        knee = KneeLocator(
            ks, list(inertias), S=sensitivity, curve="convex", direction="decreasing"
        ).elbow
        if knee is not None:
            return int(knee), "kneedle"
    if len(ks) < 3:
        return ks[0], "max_curvature"
    second = np.diff(np.asarray(inertias, dtype=float), n=2)
    return ks[int(np.argmax(second)) + 1], "max_curvature"


def kmeans_elbow(
    x: Matrix,
    ks: Sequence[int],
    *,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    init_sample: int = 100_000,
    sensitivity: float = 1.0,
    client: Client | None = None,
) -> ElbowResult:
    """Fit k-means for every k in ``ks`` (all in the same passes over the data) and choose k.

    Parameters are those of :func:`fit_kmeans`; ``sensitivity`` is Kneedle's ``S``.

    Returns
    -------
    ElbowResult
    """
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ParameterError("k-means elbow: the k range is empty; give at least one k")
    fits = _fit_many(
        x,
        ks,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        init_sample=init_sample,
        client=client,
    )
    k, rule = find_elbow(ks, [f.inertia for f in fits], sensitivity)
    return ElbowResult(ks, fits, k, rule)


def predict_kmeans(x: Matrix, centers: np.ndarray) -> Any:
    """Label each row with its nearest centre.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
    centers : ndarray, shape (k, d)

    Returns
    -------
    ndarray or dask array, shape (n,), int64
        -1 for rows with a non-finite value. Lazy for a dask ``x``.
    """
    x = _as_matrix(x)
    centers = np.asarray(centers, dtype=np.float64)
    if x.shape[1] != centers.shape[1]:
        raise ParameterError(
            f"k-means predict: the data has {x.shape[1]} feature(s) but the centres have "
            f"{centers.shape[1]}; predict with the model fitted on this feature space"
        )
    if isinstance(x, da.Array):
        return da.map_blocks(_predict_block, x, centers, drop_axis=1, dtype=np.int64)
    return _predict_block(x, centers)
