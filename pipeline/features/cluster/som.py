"""Self-organising maps: MiniSom as the galaxy notebook trains it, and a batch SOM over chunks.

The notebook trains ``MiniSom`` (online updates, one sample at a time) on the PCA features and
then uses the U-matrix (:func:`distance_map`) and each sample's winning node (:func:`winners`).
:func:`train_minisom` reproduces that call exactly. Online training is inherently sequential
and needs the data in one process, so :func:`train_batch_som` implements Kohonen's batch SOM,
which needs only per-node sums per epoch and so runs over row chunks of a Dask array:

* every row chunk finds each sample's best-matching unit (BMU) and returns, per node, the sum
  of the samples that chose it and their count (:func:`_block_stats`, a pure function);
* the small per-chunk results are summed in a tree, on the workers;
* the client smooths the sums with a Gaussian neighbourhood on the grid and divides:
  ``W = (H @ S) / (H @ counts)``.

Conventions follow MiniSom 2.3.6: weights are ``(rows, cols, d)``; a node is ``(i, j)`` into
``weights[i, j]`` (MiniSom's ``winner`` order); the BMU minimises the Euclidean distance, ties
going to the lowest flat index ``i * cols + j`` (``np.argmin``); the quantization error is the
mean distance to the BMU; the U-matrix is MiniSom's rectangular ``distance_map`` (8
neighbours, ``"sum"`` scaling by default, divided by its maximum).

Notes on MiniSom that matter here: ``MiniSom.train(data, n)`` (``random_order=False``) visits
rows ``0, 1, ..., n - 1`` (modulo ``len(data)``) in order, so ``random_seed`` only sets the
initial random weights, and with ``n < len(data)`` the last rows are never seen. Its default
decay (``asymptotic_decay``) divides both sigma and the learning rate by ``1 + t / (n / 2)``:
they end at a third of their start, so ``sigma=50`` still smooths over ~17 nodes at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
from minisom import MiniSom

from pipeline.errors import ParameterError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "distance_map",
    "grid_shape",
    "quantization_error",
    "train_batch_som",
    "train_minisom",
    "winners",
]

Matrix = np.ndarray | da.Array
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Bytes of float64 distances one BMU sub-batch may hold: bounds memory whatever the map size.
_DIST_BYTES = 64 * 2**20
#: Rows per block when a numpy matrix is run through the per-chunk function.
_NUMPY_BLOCK_ROWS = 65_536
#: Rows sampled (seeded) for the initialisation of :func:`train_batch_som`.
_INIT_SAMPLE = 10_000
#: Below this neighbourhood-weighted sample count a node has no data near it: it keeps its
#: previous weights instead of a ratio of two underflowing sums.
_MIN_WEIGHT = 1e-12
#: MiniSom's rectangular neighbour order for the U-matrix, as (di, dj) offsets.
_NEIGHBOURS = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))


# -- grid ----------------------------------------------------------------------------------


def grid_shape(n_samples: int, side: int | None = None, max_side: int = 100) -> tuple[int, int]:
    """Square map shape for ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int
        Number of samples the map will be trained on (>= 1).
    side : int, optional
        Nodes per side (>= 2), used as given. By default the notebook's rule
        ``int(10 * sqrt(n_samples))``, capped at ``max_side`` and at least 2.
    max_side : int
        Cap of the default rule (>= 2). The notebook's rule grows without bound: 400,000
        samples would give a 6,324 x 6,324 map (40 million nodes, 8 GB of weights at 25
        features, and a distance matrix per sample batch to match), far more nodes than
        samples; 100 x 100 = 10,000 nodes is already more than a U-matrix can show.

    Returns
    -------
    (rows, cols) : tuple of int
    """
    if side is not None:
        if isinstance(side, bool) or not isinstance(side, int | np.integer) or side < 2:
            raise ParameterError(
                f"SOM grid: side = {side!r}; expected an integer >= 2; pass side=None for the "
                "notebook's int(10 * sqrt(n)) rule"
            )
        return int(side), int(side)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ParameterError(
            f"SOM grid: n_samples = {n_samples!r}; expected an integer >= 1 (the number of rows "
            "the map is trained on)"
        )
    if isinstance(max_side, bool) or not isinstance(max_side, int | np.integer) or max_side < 2:
        raise ParameterError(f"SOM grid: max_side = {max_side!r}; expected an integer >= 2")
    s = max(2, min(int(10 * math.sqrt(int(n_samples))), int(max_side)))
    return s, s


# -- validation ----------------------------------------------------------------------------


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    ok = (
        isinstance(shape, Sequence | np.ndarray)
        and len(shape) == 2
        and all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)
    )
    if not ok or min(shape) < 1:
        raise ParameterError(
            f"SOM: shape = {shape!r}; expected two integers >= 1 (rows, cols), e.g. "
            "grid_shape(n_samples)"
        )
    return int(shape[0]), int(shape[1])


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ParameterError(f"SOM: {name} = {value!r}; expected a number > 0")
    if not (math.isfinite(float(value)) and value > 0):
        raise ParameterError(f"SOM: {name} = {value!r}; expected a finite number > 0")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"SOM: {name} = {value!r}; expected an integer >= 1")
    return int(value)


def _first_bad_row(x: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    return int(bad[0]) if bad.size else None


def _non_finite(row: int, values: np.ndarray) -> ParameterError:
    bad = values[~np.isfinite(values)][0]
    return ParameterError(
        f"SOM: x row {row} holds a non-finite value ({bad}); expected finite features; drop "
        "or impute NaN/inf rows first"
    )


def _finite_block(block: np.ndarray, row0: int) -> FloatArray:
    """``block`` as float64, or ParameterError naming the first row that is not finite."""
    xb = np.asarray(block, dtype=np.float64)
    bad = _first_bad_row(xb)
    if bad is not None:
        raise _non_finite(row0 + bad, xb[bad])
    return xb


def _check_matrix(x: Any, name: str = "x") -> Matrix:
    """``x`` as a 2-D numeric numpy or Dask matrix with >= 1 row and column, one column chunk.

    Numpy input is also checked for non-finite values here; Dask input is checked chunk by
    chunk when it is computed.
    """
    if not isinstance(x, da.Array):
        x = np.asarray(x)
    if x.ndim != 2:
        raise ParameterError(
            f"SOM: {name} has shape {tuple(x.shape)}; expected a 2-D (samples, features) "
            "matrix; reshape it to (n, -1)"
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ParameterError(
            f"SOM: {name} has dtype {x.dtype}; expected real numbers (float or integer)"
        )
    if isinstance(x, da.Array):
        if any(math.isnan(c) for c in x.shape):
            raise ParameterError(
                f"SOM: {name} has unknown chunk sizes (shape {x.shape}); call "
                f"{name}.compute_chunk_sizes() first"
            )
        if x.numblocks[1] != 1:
            x = x.rechunk({1: -1})  # a block must hold whole rows
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ParameterError(
            f"SOM: {name} has shape {tuple(x.shape)}; expected at least one sample and one feature"
        )
    if isinstance(x, np.ndarray):
        _finite_block(x, 0)
    return x


def _check_weights(weights: Any) -> FloatArray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3 or min(w.shape) < 1:
        raise ParameterError(
            f"SOM: weights have shape {w.shape}; expected (rows, cols, features) as returned "
            "by train_batch_som, train_minisom or MiniSom.get_weights()"
        )
    if not np.isfinite(w).all():
        raise ParameterError("SOM: weights hold non-finite values; expected a trained map")
    return w


def _check_features(x: Matrix, w: FloatArray) -> None:
    if x.shape[1] != w.shape[2]:
        raise ParameterError(
            f"SOM: x has {x.shape[1]} features per sample but the weights have {w.shape[2]} "
            f"(weights shape {w.shape}); pass the features the map was trained on"
        )


# -- best-matching units -------------------------------------------------------------------


def _bmu(x: FloatArray, flat_w: FloatArray) -> tuple[IntArray, FloatArray]:
    """Best-matching unit of every row of ``x``, and the squared distance to it.

    Parameters
    ----------
    x : ndarray, shape (n, d), float64, finite
    flat_w : ndarray, shape (k, d), float64
        The weights with the grid flattened in C order (node ``i * cols + j``).

    Returns
    -------
    idx : ndarray, shape (n,), int64
        Flat node index; ties go to the lowest index, as ``np.argmin`` and MiniSom.
    d2 : ndarray, shape (n,), float64
        Squared Euclidean distance to that node, summed over the difference vector (as
        MiniSom's ``norm(x - w)`` does, before its square root).

    Distances are ``||x||^2 - 2 x.w + ||w||^2`` (one matmul per sub-batch of rows, at most
    ``_DIST_BYTES`` of distances at once; ``||x||^2`` is the same for every node, so it is
    left out of the comparison). That expansion rounds differently from the direct
    difference, so rows whose runner-up lies within the rounding bound of the best are
    re-decided on exact differences: the result equals MiniSom's ``winner`` row by row.
    """
    n = x.shape[0]
    k, d = flat_w.shape
    wsq = np.einsum("kd,kd->k", flat_w, flat_w)
    wsq_max = float(wsq.max())
    neg2wt = -2.0 * flat_w.T  # a transposed (Fortran-order) view: the fast layout for BLAS here
    eps = np.finfo(np.float64).eps
    step = max(1, _DIST_BYTES // (8 * k))
    idx = np.empty(n, dtype=np.int64)
    d2 = np.empty(n, dtype=np.float64)
    for s in range(0, n, step):
        xb = x[s : s + step]
        r = np.arange(xb.shape[0])
        dist = xb @ neg2wt
        dist += wsq  # ||w||^2 - 2 x.w: the squared distance less ||x||^2
        best = np.argmin(dist, axis=1)
        low = dist[r, best]
        # Rounding bound of the expansion: a few ulps per feature of the magnitudes involved.
        tol = 4.0 * (d + 2) * eps * (np.einsum("nd,nd->n", xb, xb) + wsq_max)
        dist[r, best] = np.inf
        amb = np.flatnonzero(dist.min(axis=1) <= low + tol)
        if amb.size:
            dist[amb, best[amb]] = low[amb]
            rr, cc = np.nonzero(dist[amb] <= (low + tol)[amb, None])
            diff = xb[amb[rr]] - flat_w[cc]
            exact = np.full((amb.size, k), np.inf)
            exact[rr, cc] = (diff * diff).sum(axis=-1)
            best[amb] = np.argmin(exact, axis=1)
        idx[s : s + step] = best
        diff = xb - flat_w[best]
        d2[s : s + step] = (diff * diff).sum(axis=-1)
    return idx, d2


def _block_stats(block: np.ndarray, flat_w: FloatArray, row0: int) -> tuple[FloatArray, IntArray]:
    """Per-node sums and counts of the rows of one chunk (the batch SOM's map step).

    Parameters
    ----------
    block : ndarray, shape (b, d)
        One row chunk of the data (any real dtype; used as float64).
    flat_w : ndarray, shape (k, d), float64
        Current weights, grid flattened in C order.
    row0 : int
        Row of ``block[0]`` in the whole matrix, for error messages.

    Returns
    -------
    sums : ndarray, shape (k, d), float64
        Sum of the rows whose BMU is each node.
    counts : ndarray, shape (k,), int64
        Number of those rows.
    """
    xb = _finite_block(block, row0)
    k, d = flat_w.shape
    sums = np.zeros((k, d), dtype=np.float64)
    if xb.shape[0] == 0:
        return sums, np.zeros(k, dtype=np.int64)
    idx, _ = _bmu(xb, flat_w)
    np.add.at(sums, idx, xb)
    return sums, np.bincount(idx, minlength=k).astype(np.int64)


def _sum_stats(*parts: tuple[FloatArray, IntArray]) -> tuple[FloatArray, IntArray]:
    sums = parts[0][0].copy()
    counts = parts[0][1].copy()
    for s, c in parts[1:]:
        sums += s
        counts += c
    return sums, counts


def _winners_block(
    block: np.ndarray, flat_w: FloatArray, cols: int, block_info: dict[Any, Any] | None = None
) -> IntArray:
    row0 = block_info[0]["array-location"][0][0] if block_info else 0
    idx, _ = _bmu(_finite_block(block, row0), flat_w)
    return np.stack(np.divmod(idx, cols), axis=1).astype(np.int64)


def _distance_block(
    block: np.ndarray, flat_w: FloatArray, block_info: dict[Any, Any] | None = None
) -> FloatArray:
    row0 = block_info[0]["array-location"][0][0] if block_info else 0
    _, d2 = _bmu(_finite_block(block, row0), flat_w)
    return np.sqrt(d2)


def _compute(obj: Any, client: Client | None) -> Any:
    if client is not None:
        return client.compute(obj).result()
    return dask.compute(obj)[0]


# -- public: assignment and quality --------------------------------------------------------


def winners(x: Matrix, weights: np.ndarray) -> IntArray | da.Array:
    """Grid coordinates of each sample's best-matching unit.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
        Samples (finite). Dask input stays lazy; a non-finite row raises when computed.
    weights : ndarray, shape (rows, cols, d)
        A trained map.

    Returns
    -------
    ndarray or dask array, shape (n, 2), int64
        ``(i, j)`` with ``weights[i, j]`` the nearest node (Euclidean), as
        ``MiniSom.winner``; ties go to the lowest flat index ``i * cols + j``. Lazy, with the
        row chunks of ``x``, for Dask input.
    """
    w = _check_weights(weights)
    xm = _check_matrix(x)
    _check_features(xm, w)
    rows, cols, d = w.shape
    flat = w.reshape(rows * cols, d)
    if isinstance(xm, da.Array):
        return da.map_blocks(
            _winners_block,
            xm,
            flat,
            cols,
            dtype=np.int64,
            chunks=(xm.chunks[0], (2,)),
            meta=np.empty((0, 2), dtype=np.int64),
        )
    return _winners_block(xm, flat, cols)


def quantization_error(x: Matrix, weights: np.ndarray, *, client: Client | None = None) -> float:
    """Mean Euclidean distance from each sample to its best-matching unit's weights.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
        Samples (finite).
    weights : ndarray, shape (rows, cols, d)
        A trained map.
    client : distributed.Client, optional
        Computes Dask input (default: Dask's current scheduler). Only one scalar comes back.

    Returns
    -------
    float
        In the units of ``x``; equals ``MiniSom.quantization_error``.
    """
    w = _check_weights(weights)
    xm = _check_matrix(x)
    _check_features(xm, w)
    flat = w.reshape(-1, w.shape[2])
    if isinstance(xm, da.Array):
        dist = da.map_blocks(
            _distance_block,
            xm,
            flat,
            drop_axis=1,
            dtype=np.float64,
            chunks=(xm.chunks[0],),
            meta=np.empty((0,), dtype=np.float64),
        )
        return float(_compute(dist.sum(), client)) / xm.shape[0]
    return float(_distance_block(xm, flat).mean())


def distance_map(weights: np.ndarray, scaling: Literal["sum", "mean"] = "sum") -> FloatArray:
    """U-matrix of a rectangular map: how far each node is from its grid neighbours.

    Parameters
    ----------
    weights : ndarray, shape (rows, cols, d)
        A trained map (rectangular topology).
    scaling : {"sum", "mean"}
        Combine the Euclidean distances to the (up to 8) adjacent nodes, diagonals included,
        by their sum (MiniSom's default) or their mean.

    Returns
    -------
    ndarray, shape (rows, cols), float64
        Divided by its maximum, so in [0, 1]; equals ``MiniSom.distance_map(scaling)``. A map
        whose nodes are all equal gives zeros (MiniSom divides 0 by 0 and returns NaN).
    """
    if scaling not in ("sum", "mean"):
        raise ParameterError(f"SOM: scaling = {scaling!r}; expected 'sum' or 'mean'")
    w = _check_weights(weights)
    rows, cols, _ = w.shape
    um = np.full((rows, cols, len(_NEIGHBOURS)), np.nan)
    for k, (di, dj) in enumerate(_NEIGHBOURS):
        # node (x, y) against (x + di, y + dj), over the nodes where that neighbour exists
        r0, r1 = max(0, -di), rows - max(0, di)
        c0, c1 = max(0, -dj), cols - max(0, dj)
        if r0 >= r1 or c0 >= c1:
            continue
        diff = w[r0:r1, c0:c1] - w[r0 + di : r1 + di, c0 + dj : c1 + dj]
        um[r0:r1, c0:c1, k] = np.sqrt(np.einsum("ijd,ijd->ij", diff, diff))
    present = ~np.isnan(um)
    total = np.where(present, um, 0.0).sum(axis=2)
    if scaling == "mean":
        n = present.sum(axis=2)
        total = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
    top = total.max()
    return total / top if top > 0 else np.zeros_like(total)


# -- public: training ----------------------------------------------------------------------


def train_minisom(
    x: np.ndarray,
    shape: tuple[int, int],
    *,
    sigma: float = 50.0,
    learning_rate: float = 0.1,
    iterations: int = 1000,
    seed: int = 10,
    topology: Literal["rectangular", "hexagonal"] = "rectangular",
) -> FloatArray:
    """Train MiniSom exactly as the notebook does (online updates, rows in order).

    Parameters
    ----------
    x : ndarray, shape (n, d)
        Samples (finite), in memory.
    shape : (rows, cols)
        Map size, e.g. :func:`grid_shape`.
    sigma : float
        Initial Gaussian neighbourhood radius, in nodes (> 0). MiniSom's default decay divides
        it by up to 3 over the run. Larger than the grid is allowed (MiniSom then warns that
        it "might be too high").
    learning_rate : float
        Initial learning rate (> 0), decayed like sigma.
    iterations : int
        Number of single-sample updates (>= 1); rows are visited in order, cycling.
    seed : int
        MiniSom's ``random_seed``; it only sets the random initial weights.
    topology : {"rectangular", "hexagonal"}

    Returns
    -------
    ndarray, shape (rows, cols, d), float64
        The weights, ``MiniSom.get_weights()``.
    """
    rows, cols = _check_shape(shape)
    sigma = _check_positive("sigma", sigma)
    learning_rate = _check_positive("learning_rate", learning_rate)
    iterations = _check_count("iterations", iterations)
    if topology not in ("rectangular", "hexagonal"):
        raise ParameterError(f"SOM: topology = {topology!r}; expected 'rectangular' or 'hexagonal'")
    if isinstance(x, da.Array):
        raise ParameterError(
            "SOM: train_minisom needs x in memory (a numpy array), got a dask array; use "
            "train_batch_som for data that does not fit one process"
        )
    data = np.asarray(_check_matrix(x), dtype=np.float64)
    som = MiniSom(
        rows,
        cols,
        data.shape[1],
        sigma=sigma,
        learning_rate=learning_rate,
        topology=topology,
        random_seed=seed,
    )
    som.train(data, iterations)
    return np.array(som.get_weights(), dtype=np.float64)


def _sample_rows(x: Matrix, size: int, seed: int, client: Client | None) -> FloatArray:
    """``size`` rows of ``x`` drawn with ``seed`` (with replacement only if ``size > n``)."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=size, replace=size > n))
    rows = x[idx]
    if isinstance(rows, da.Array):
        rows = _compute(rows, client)
    sample = np.asarray(rows, dtype=np.float64)
    bad = _first_bad_row(sample)
    if bad is not None:
        raise _non_finite(int(idx[bad]), sample[bad])
    return sample


def _pca_init(sample: FloatArray, rows: int, cols: int) -> FloatArray:
    """Nodes on the plane of the first two principal components, through the mean.

    As ``MiniSom.pca_weights_init`` (node ``(i, j)`` at ``mean + c1 * pc1 + c2 * pc2``,
    ``c1``, ``c2`` evenly spaced in [-1, 1] along rows and cols), except that each component is
    scaled by its standard deviation (MiniSom uses unit vectors, whatever the data's scale)
    and its sign is fixed (largest entry positive) so the result does not depend on LAPACK.
    """
    d = sample.shape[1]
    mean = sample.mean(axis=0)
    pcs = np.zeros((2, d))
    if sample.shape[0] >= 2:
        cov = np.atleast_2d(np.cov(sample, rowvar=False))
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:2]
        for m, o in enumerate(order):
            v = vecs[:, o]
            v = v if v[np.argmax(np.abs(v))] >= 0 else -v
            pcs[m] = v * math.sqrt(max(float(vals[o]), 0.0))
    c1 = np.linspace(-1.0, 1.0, rows) if rows > 1 else np.zeros(1)
    c2 = np.linspace(-1.0, 1.0, cols) if cols > 1 else np.zeros(1)
    return mean + c1[:, None, None] * pcs[0] + c2[None, :, None] * pcs[1]


def _gaussian_1d(n: int, sigma: float) -> FloatArray:
    """``g[a, c] = exp(-(a - c)^2 / (2 sigma^2))`` along one grid axis, shape (n, n)."""
    a = np.arange(n, dtype=np.float64)
    return np.exp(-((a[:, None] - a[None, :]) ** 2) / (2.0 * sigma * sigma))


def _batch_update(w: FloatArray, sums: FloatArray, counts: IntArray, sigma: float) -> FloatArray:
    """One batch-SOM step: ``W = (H @ S) / (H @ counts)`` with a Gaussian ``H`` on the grid.

    Parameters
    ----------
    w : ndarray, shape (rows, cols, d)
        Current weights; kept where a node's neighbourhood holds no data.
    sums : ndarray, shape (rows * cols, d)
    counts : ndarray, shape (rows * cols,)
    sigma : float
        Neighbourhood radius, in nodes.
    """
    rows, cols, d = w.shape
    gr = _gaussian_1d(rows, sigma)
    gc = _gaussian_1d(cols, sigma)
    # H[(a, b), (c, e)] = exp(-((a-c)^2 + (b-e)^2) / 2 sigma^2) = gr[a, c] * gc[b, e] on a
    # rectangular grid: apply it one grid axis at a time, O(rows*cols*(rows+cols)*d), instead
    # of building the (nodes x nodes) matrix (10,000^2 doubles = 800 MB for a 100 x 100 map).
    num = np.einsum("ac,ced->aed", gr, sums.reshape(rows, cols, d))
    num = np.einsum("be,aed->abd", gc, num)
    den = gr @ counts.reshape(rows, cols).astype(np.float64) @ gc.T
    out = w.copy()
    ok = den > _MIN_WEIGHT
    out[ok] = num[ok] / den[ok][:, None]
    return out


def _sigma_schedule(sigma: float, sigma_end: float, epochs: int) -> FloatArray:
    """Geometric decay from ``sigma`` (first epoch) to ``sigma_end`` (last epoch)."""
    if epochs == 1:
        return np.array([sigma_end])
    return sigma * (sigma_end / sigma) ** (np.arange(epochs) / (epochs - 1))


def train_batch_som(
    x: Matrix,
    shape: tuple[int, int],
    *,
    sigma: float | None = None,
    sigma_end: float | None = None,
    epochs: int = 10,
    seed: int = 0,
    init: Literal["pca", "random"] = "pca",
    client: Client | None = None,
) -> FloatArray:
    """Batch SOM (Kohonen) over row chunks: one pass over the data per epoch.

    Each epoch every row chunk returns per-node sums and counts of the samples whose BMU is
    that node; these are summed in a tree on the workers, and the client sets every node to
    the neighbourhood-weighted mean ``W = (H @ S) / (H @ counts)``. Only the sums (nodes x
    features) travel to the client; the data is read once per epoch (persist ``x`` first
    when it fits in the cluster's memory). Numpy input runs the same per-chunk function over
    row blocks in this process, so both give the same map up to float summation order.

    Parameters
    ----------
    x : ndarray or dask array, shape (n, d)
        Samples (finite); any row chunking.
    shape : (rows, cols)
        Map size, e.g. :func:`grid_shape`.
    sigma : float, optional
        Neighbourhood radius of the first epoch, in nodes (> 0). Default ``max(shape) / 2``:
        the first epoch orders the whole map.
    sigma_end : float, optional
        Radius of the last epoch (> 0, <= sigma). Default ``min(1.0, sigma)``: at one node
        each node still averages with its neighbours (weights 0.61 and 0.37 for the edge and
        diagonal ones), which keeps the map ordered, so its U-matrix and winner coordinates
        stay meaningful; much below that the update becomes k-means and the order is lost.
    epochs : int
        Passes over the data (>= 1). The radius decays geometrically,
        ``sigma * (sigma_end / sigma) ** (t / (epochs - 1))``: the same number of epochs per
        halving of the radius, so coarse ordering and fine tuning both get epochs (a linear
        schedule spends most of them at large radii). With ``epochs=1`` the only epoch uses
        ``sigma_end``.
    seed : int
        Seeds the row sample used for initialisation. With ``init="pca"`` and at most 10,000
        rows every row is used, so the result does not depend on it.
    init : {"pca", "random"}
        ``"pca"``: nodes on the plane of the first two principal components of a seeded
        sample of at most 10,000 rows, spanning one standard deviation each way
        (MiniSom-style). ``"random"``: each node a seeded random row.
    client : distributed.Client, optional
        Computes Dask input (default: Dask's current scheduler); the weights are scattered
        to its workers each epoch.

    Returns
    -------
    ndarray, shape (rows, cols, d), float64
        The weights, in the units of ``x``.
    """
    rows, cols = _check_shape(shape)
    sigma0 = max(rows, cols) / 2.0 if sigma is None else _check_positive("sigma", sigma)
    if sigma_end is None:
        sigma1 = min(1.0, sigma0)
    else:
        sigma1 = _check_positive("sigma_end", sigma_end)
        if sigma1 > sigma0:
            raise ParameterError(
                f"SOM: sigma_end = {sigma_end!r} is larger than sigma = {sigma0!r}; expected "
                "the radius to shrink: pass sigma_end <= sigma"
            )
    epochs = _check_count("epochs", epochs)
    if init not in ("pca", "random"):
        raise ParameterError(f"SOM: init = {init!r}; expected 'pca' or 'random'")
    xm = _check_matrix(x)
    n, d = xm.shape
    k = rows * cols

    if init == "pca":
        w = _pca_init(_sample_rows(xm, min(n, _INIT_SAMPLE), seed, client), rows, cols)
    else:
        w = _sample_rows(xm, k, seed, client).reshape(rows, cols, d)

    if isinstance(xm, da.Array):
        blocks = xm.to_delayed().ravel()
        offsets = np.concatenate([[0], np.cumsum(xm.chunks[0])[:-1]]).astype(int)
    else:
        starts = range(0, n, _NUMPY_BLOCK_ROWS)

    for sig in _sigma_schedule(sigma0, sigma1, epochs):
        flat = np.ascontiguousarray(w.reshape(k, d))
        if isinstance(xm, da.Array):
            w_arg: Any = (
                client.scatter(flat, broadcast=True)
                if client is not None
                else dask.delayed(flat, pure=True)
            )
            parts = [
                dask.delayed(_block_stats, pure=True)(b, w_arg, int(r0))
                for b, r0 in zip(blocks, offsets, strict=True)
            ]
            # Tree reduction: a worker sums up to 8 partial results, so the client gets one.
            while len(parts) > 1:
                parts = [
                    dask.delayed(_sum_stats, pure=True)(*parts[i : i + 8])
                    for i in range(0, len(parts), 8)
                ]
            sums, counts = _compute(parts[0], client)
        else:
            results = [_block_stats(xm[s : s + _NUMPY_BLOCK_ROWS], flat, s) for s in starts]
            sums, counts = _sum_stats(*results)
        w = _batch_update(w, sums, counts, float(sig))
    return w
