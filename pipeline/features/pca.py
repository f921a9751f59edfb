"""PCA of an ``(n, d)`` matrix streamed from chunks, without holding it in memory.

:func:`fit_pca` takes a numpy array or a Dask array with row chunks (e.g. flattened cutouts
read from Zarr) and returns a :class:`PCABasis`. One pass computes the column means and
variances (and, through them, the finite-value check); the SVD of the centred matrix is then
either randomised (:func:`dask.array.linalg.svd_compressed`, a few more passes) or exact
(tall-and-skinny QR, :func:`dask.array.linalg.svd`, one pass). Blocks are cast to float64
one at a time, so float32 or uint8 input is analysed in float64. Only small arrays (the
``k x d`` basis and length-``d`` vectors) come back to the client. Results follow
scikit-learn's :class:`~sklearn.decomposition.PCA`: unbiased variances, ratios over the
total variance of all features, and its sign convention (the largest loading of each
component is positive), so they do not depend on chunking.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
from sklearn.utils.extmath import svd_flip

from pipeline.errors import ParameterError
from pipeline.features.matrix import fits_in_memory

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "ARRAY_NAMES",
    "PCABasis",
    "centre_block",
    "column_stats",
    "fit_pca",
    "merge_stats",
    "project_block",
]

log = logging.getLogger(__name__)

Method = Literal["randomized", "exact"]
F64 = npt.NDArray[np.float64]

#: Names of the arrays of :meth:`PCABasis.to_arrays`.
ARRAY_NAMES = (
    "mean",
    "components",
    "explained_variance",
    "explained_variance_ratio",
    "singular_values",
)
#: Float64 bytes of one row block of a numpy input, and the most ``method="exact"`` may need.
ROW_BLOCK_BYTES = 64 * 2**20
EXACT_MAX_BLOCK_BYTES = 512 * 2**20


@dataclass(frozen=True, eq=False)
class PCABasis:
    """A fitted PCA basis: ``x ~ mean + transform(x) @ components``.

    Attributes
    ----------
    mean : ndarray of float64, shape (d,)
        Column means of the training data.
    components : ndarray of float64, shape (k, d)
        Principal axes (orthonormal rows), by decreasing variance.
    explained_variance : ndarray of float64, shape (k,)
        Variance along each axis, ``singular_values**2 / (n_samples - 1)``.
    explained_variance_ratio : ndarray of float64, shape (k,)
        ``explained_variance`` over the total variance of all ``d`` features.
    singular_values : ndarray of float64, shape (k,)
        Singular values of the centred data.
    n_samples : int
        Rows of the training data.
    method : str
        ``"randomized"`` or ``"exact"``.
    """

    mean: F64
    components: F64
    explained_variance: F64
    explained_variance_ratio: F64
    singular_values: F64
    n_samples: int
    method: str

    def __post_init__(self) -> None:
        if np.ndim(self.components) != 2:
            raise ParameterError(
                f"PCABasis.components has shape {np.shape(self.components)}, expected (k, d)"
            )
        k, d = np.shape(self.components)
        for name in ARRAY_NAMES:
            a = np.array(getattr(self, name), dtype=np.float64)  # a read-only copy
            want = {"mean": (d,), "components": (k, d)}.get(name, (k,))
            if a.shape != want:
                raise ParameterError(f"PCABasis.{name} has shape {a.shape}, expected {want}")
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def n_components(self) -> int:
        """Number of components ``k``."""
        return int(self.components.shape[0])

    def transform(self, x: np.ndarray | da.Array) -> np.ndarray | da.Array:
        """Project rows onto the basis.

        Parameters
        ----------
        x : numpy or Dask array, shape (n, d)

        Returns
        -------
        numpy or Dask array, shape (n, k)
            Same kind as ``x`` (lazy for Dask, one output block per row block); float32 for
            float32 input, else float64.
        """
        d = self.mean.shape[0]
        if np.ndim(x) != 2 or x.shape[1] != d:
            raise ParameterError(f"transform needs an (n, {d}) array, got shape {np.shape(x)}")
        out = np.float32 if x.dtype == np.float32 else np.float64
        if not isinstance(x, da.Array):
            return project_block(np.asarray(x), self.mean, self.components.T, out)
        # The basis goes in as one-chunk arrays: one key each, shipped once per worker rather
        # than embedded in every task.
        mean = da.from_array(self.mean, chunks=-1)
        comp_t = da.from_array(self.components.T, chunks=-1)
        return da.blockwise(
            project_block, "ik", x, "ij", mean, "j", comp_t, "jk", out, None,
            dtype=out, concatenate=True, new_axes={"k": self.n_components},
        )  # fmt: skip

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays named in :data:`ARRAY_NAMES` (e.g. to write to Zarr)."""
        return {name: getattr(self, name) for name in ARRAY_NAMES}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.ArrayLike], *, n_samples: int, method: str
    ) -> PCABasis:
        """Inverse of :meth:`to_arrays`; ``n_samples`` and ``method`` are stored beside."""
        missing = [name for name in ARRAY_NAMES if name not in arrays]
        if missing:
            raise ParameterError(f"PCA arrays lack {missing}; expected all of {list(ARRAY_NAMES)}")
        parts = {name: np.asarray(arrays[name], dtype=np.float64) for name in ARRAY_NAMES}
        return cls(**parts, n_samples=int(n_samples), method=str(method))


def centre_block(block: np.ndarray, mean_row: F64) -> F64:
    """``block - mean_row`` computed in float64: shape (rows, d)."""
    return np.subtract(block, mean_row, dtype=np.float64)


def project_block(block: np.ndarray, mean: F64, components_t: F64, dtype: Any) -> np.ndarray:
    """``(block - mean) @ components_t`` in float64, cast to ``dtype``: shape (rows, k)."""
    return (np.subtract(block, mean, dtype=np.float64) @ components_t).astype(dtype, copy=False)


def fit_pca(
    x: np.ndarray | da.Array,
    n_components: int,
    *,
    method: Method = "randomized",
    n_power_iter: int = 4,
    oversample: int = 10,
    seed: int = 0,
    client: Client | None = None,
) -> PCABasis:
    """Principal components of the rows of ``x``, out of core.

    Parameters
    ----------
    x : numpy or Dask array, shape (n, d)
        Real numbers, all finite; Dask arrays should be chunked by rows.
    n_components : int
        ``k``, from 1 to ``min(n, d)``.
    method : {"randomized", "exact"}
        Randomised SVD (``3 + 2 * n_power_iter`` passes over ``x``) or exact
        tall-and-skinny SVD (2 passes; needs ``min(n, 2d) * d`` float64 per block).
    n_power_iter, oversample, seed : int
        Randomised SVD only: subspace iterations, extra dimensions sampled, random seed.
    client : distributed.Client, optional
        Compute on this client's cluster (default: the current Dask scheduler).

    Returns
    -------
    PCABasis
        ``k`` components; same ``seed`` and data give the same basis whatever the chunks.
    """
    t0 = time.perf_counter()
    xd = _prepare(x, n_components, method, n_power_iter, oversample)
    n, d = xd.shape
    with _scheduler(client):
        in_memory = fits_in_memory(xd.nbytes, client)
        if in_memory:
            # Every SVD pass then reads worker memory instead of the store; a matrix larger
            # than half the cluster's memory is streamed from its chunks on every pass.
            xd = xd.persist()
        mean, var = _mean_var(xd)
        t1 = time.perf_counter()
        # Cast and centre in one step (np.subtract(..., dtype)): no float64 copy of the block.
        mean_row = da.from_array(mean[None, :], chunks=-1)
        xc = da.map_blocks(centre_block, xd, mean_row, dtype=np.float64)
        if method == "randomized":
            if in_memory:  # centre once, in place of the raw blocks, rather than per pass
                xd = da.map_blocks(_centred, xd, mean, dtype=_work_dtype(xd.dtype)).persist()
                centre: F64 | None = None
            else:
                centre = mean
            s, vt = _randomized_svd(xd, centre, n_components, n_power_iter, oversample, seed)
        else:
            _, s, vt = da.linalg.svd(xc)
            s, vt = dask.compute(s[:n_components], vt[:n_components])
    _, vt = svd_flip(None, vt, u_based_decision=False)  # as sklearn's PCA
    ev = s**2 / (n - 1)
    log.info(
        "PCA (%s) of %d x %d, %d components: mean pass %.2f s, SVD %.2f s",
        method, n, d, n_components, t1 - t0, time.perf_counter() - t1,
    )  # fmt: skip
    return PCABasis(mean, vt, ev, ev / var.sum(), s, n, method)


def _prepare(x: Any, k: int, method: str, n_power_iter: int, oversample: int) -> da.Array:
    """Validate the arguments; ``x`` as a Dask array with one column chunk."""
    if method not in ("randomized", "exact"):
        raise ParameterError(f"method={method!r} is not one of 'randomized', 'exact'")
    if n_power_iter < 0 or oversample < 0:
        raise ParameterError(
            f"n_power_iter={n_power_iter} and oversample={oversample} must be >= 0 (try 4, 10)"
        )
    shape, dtype = np.shape(x), getattr(x, "dtype", None)
    if len(shape) != 2:
        raise ParameterError(
            f"x has shape {shape}; expected a 2-D (n_samples, n_features) array: "
            "flatten each sample into one row, e.g. x.reshape(len(x), -1)"
        )
    if dtype is None or dtype.kind not in "biuf":
        raise ParameterError(f"x has dtype {dtype}; expected real numbers (bool, int, uint, float)")
    n, d = shape
    if n < 2:
        raise ParameterError(f"x has {n} row(s); PCA needs at least 2 samples")
    if not isinstance(k, int | np.integer) or not 1 <= k <= min(n, d):
        raise ParameterError(
            f"n_components={k!r} does not fit x of shape {shape}: expected an integer with "
            f"1 <= n_components <= min(n_samples, n_features) = {min(n, d)}"
        )
    if isinstance(x, da.Array):
        xd = x if x.numblocks[1] == 1 else x.rechunk({0: "auto", 1: -1})
    else:
        xd = da.from_array(np.asarray(x), chunks=(max(1, ROW_BLOCK_BYTES // (8 * d)), -1))
    if method == "exact":
        # tsqr needs blocks at least as tall as wide; twice as tall lets it reduce the
        # stacked R factors in a tree rather than in one (n / rows * d, d) block.
        rows = min(n, 2 * d)
        if rows * d * 8 > EXACT_MAX_BLOCK_BYTES:
            raise ParameterError(
                f'method="exact" with {d} features needs blocks of {rows} x {d} float64 '
                f"({rows * d * 8 / 2**20:.0f} MiB > {EXACT_MAX_BLOCK_BYTES // 2**20} MiB); "
                'use method="randomized"'
            )
        if min(xd.chunks[0][:-1], default=n) < rows:
            xd = xd.rechunk({0: rows})
    return xd


def column_stats(block: np.ndarray) -> tuple[int, F64, F64]:
    """Rows, column means and column sums of squared deviations of one block, in float64."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf are reported later
        mean = block.sum(axis=0, dtype=np.float64) / len(block)
        dev = np.subtract(block, mean, dtype=np.float64)
        return len(block), mean, np.square(dev, out=dev).sum(axis=0)


def merge_stats(*parts: tuple[int, F64, F64]) -> tuple[int, F64, F64]:
    """Combine :func:`column_stats` of disjoint rows (Chan, Golub and LeVeque's update)."""
    n, mean, m2 = parts[0]
    with np.errstate(invalid="ignore", over="ignore"):
        for nb, mean_b, m2_b in parts[1:]:
            delta, total = mean_b - mean, n + nb
            mean = mean + delta * (nb / total)
            m2 = m2 + m2_b + delta**2 * (n * nb / total)
            n = total
    return n, mean, m2


def _work_dtype(dtype: Any) -> type[np.floating[Any]]:
    return np.float32 if dtype == np.float32 else np.float64


def _centred(block: np.ndarray, mean: F64 | None) -> np.ndarray:
    """``block - mean`` in float32 for float32 blocks (exact: the values are already float32),
    else in float64; ``mean=None``: the block is already centred."""
    work = _work_dtype(block.dtype)
    if mean is None:
        return block if block.dtype == work else block.astype(work)
    return np.subtract(block, mean.astype(work), dtype=work)


def _product_block(block: np.ndarray, mean: F64 | None, right: F64) -> F64:
    """``(block - mean) @ right`` for one row block: (rows, l) float64."""
    c = _centred(block, mean)
    return np.asarray(c @ right.astype(c.dtype), dtype=np.float64)


def _transpose_product_block(block: np.ndarray, mean: F64 | None, q: np.ndarray) -> F64:
    """``(block - mean)^T @ q`` for one row block: (d, l) float64."""
    c = _centred(block, mean)
    return np.asarray(c.T @ q.astype(c.dtype), dtype=np.float64)


def _orthonormal_range(xd: da.Array, mean: F64 | None, right: F64) -> da.Array:
    """An orthonormal basis of the range of ``(x - mean) @ right``: (n, l), persisted.

    Float32 data is centred and multiplied in float32 (twice BLAS's float64 speed, and no
    float64 copy of a block); the (n, l) product is float64 and orthonormalised by dask's
    tall-and-skinny QR.
    """
    y = da.map_blocks(
        _product_block, xd, mean, right, dtype=np.float64,
        chunks=(xd.chunks[0], (right.shape[1],)),
    )  # fmt: skip
    q, _ = da.linalg.tsqr(y)
    return q.persist()


def _sum_arrays(*parts: F64) -> F64:
    return np.sum(parts, axis=0)


def _left_product(xd: da.Array, mean: F64 | None, q: da.Array) -> F64:
    """``(x - mean)^T @ q``: (d, l) float64, summed over the row blocks in a tree."""
    blocks = zip(xd.to_delayed().ravel(), q.to_delayed().ravel(), strict=True)
    level = [dask.delayed(_transpose_product_block)(a, mean, b) for a, b in blocks]
    while len(level) > 1:
        level = [dask.delayed(_sum_arrays)(*level[i : i + 8]) for i in range(0, len(level), 8)]
    return np.asarray(dask.compute(level[0])[0])


def _randomized_svd(
    xd: da.Array, mean: F64 | None, k: int, n_power_iter: int, oversample: int, seed: int
) -> tuple[F64, F64]:
    """Top-k singular values and right vectors of ``x - mean`` (Halko et al. 2011, with a QR
    step after every power iteration, as ``svd_compressed(iterator="QR")``).

    Written here rather than calling ``dask.array.linalg.svd_compressed`` because that needs
    the centred matrix as an array: a float64 copy of every block in every pass, which made
    it ~3x slower than scikit-learn. Each pass here is one product per block.
    """
    n, d = xd.shape
    width = min(k + oversample, n, d)
    omega = np.random.default_rng(seed).standard_normal((d, width))
    q = _orthonormal_range(xd, mean, omega)
    for _ in range(n_power_iter):
        z, _ = np.linalg.qr(_left_product(xd, mean, q))
        q = _orthonormal_range(xd, mean, z)
    b = _left_product(xd, mean, q).T  # (l, d) = Q^T (x - mean)
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    return s[:k], vt[:k]


def _mean_var(xd: da.Array) -> tuple[F64, F64]:
    """Column means and unbiased variances in one pass (a tree of merges, 8 at a time).

    Faster than ``xd.mean`` with ``xd.var`` (fewer float64 temporaries), and as stable.
    Raises if a column holds NaN or inf: they make its mean or variance non-finite.
    """
    blocks = [b for b, rows in zip(xd.to_delayed().ravel(), xd.chunks[0], strict=True) if rows]
    level = [dask.delayed(column_stats)(b) for b in blocks]
    while len(level) > 1:
        level = [dask.delayed(merge_stats)(*level[i : i + 8]) for i in range(0, len(level), 8)]
    n, mean, m2 = dask.compute(level[0])[0]
    var = m2 / (n - 1)
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(var)))
    if bad.size:
        raise ParameterError(
            f"x holds non-finite values (NaN or inf) in {bad.size} column(s), first "
            f"{bad[:10].tolist()} (column mean {mean[bad[0]]}); expected all finite: "
            "drop or impute those samples or features first"
        )
    if not var.sum() > 0:
        raise ParameterError("x has zero variance in every column; there are no components to find")
    return mean, var


@contextlib.contextmanager
def _scheduler(client: Client | None) -> Iterator[None]:
    """Compute (and persist) on ``client`` if given, else on the current scheduler."""
    if client is None:
        yield
    else:
        with dask.config.set(scheduler=client):
            yield
