"""PCA of chunked matrices: agreement with scikit-learn, determinism, laziness, errors."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from pipeline.errors import ParameterError
from pipeline.features.pca import ARRAY_NAMES, PCABasis, fit_pca
from tests.conftest import raise_if_dask_computes

METHODS = ["randomized", "exact"]


def low_rank(n: int = 1500, d: int = 120, rank: int = 15, seed: int = 0) -> np.ndarray:
    """Float32 rows: a mean, ``rank`` signal directions of falling variance, white noise."""
    rng = np.random.default_rng(seed)
    axes = np.linalg.qr(rng.standard_normal((d, rank)))[0].T
    scores = rng.standard_normal((n, rank)) * (20 * 0.8 ** np.arange(rank))
    x = 100 + rng.uniform(0, 5, d) + scores @ axes + 0.1 * rng.standard_normal((n, d))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def lowrank() -> np.ndarray:
    return low_rank()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return np.asarray(load_digits().data)


def signs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-component sign that turns the rows of ``a`` towards those of ``b``."""
    return np.sign(np.sum(a * b, axis=1))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("data", "k", "chunks"),
    [
        ("lowrank", 10, ((700, 0, 333, 467), (120,))),  # uneven row chunks, one empty
        ("lowrank", 10, (333, 50)),  # uneven rows and columns (rechunked to one column)
        ("digits", 10, (400, 64)),  # 1797 rows: last chunk of 197
        ("digits_uint8", 20, (250, 64)),
    ],
)
def test_matches_sklearn(request: Any, data: str, k: int, chunks: Any, method: str) -> None:
    """Variances, ratios, components and transform agree with sklearn's exact PCA."""
    x = request.getfixturevalue(data.removesuffix("_uint8"))
    if data.endswith("uint8"):
        x = x.astype(np.uint8)
    ref = PCA(n_components=k, svd_solver="full").fit(x.astype(np.float64))
    basis = fit_pca(da.from_array(x, chunks=chunks), k, method=method)

    assert basis.n_samples == len(x) and basis.method == method
    assert basis.components.shape == (k, x.shape[1])
    np.testing.assert_allclose(
        basis.explained_variance_ratio, ref.explained_variance_ratio_, atol=1e-3
    )
    np.testing.assert_allclose(basis.explained_variance, ref.explained_variance_, rtol=1e-3)
    np.testing.assert_allclose(basis.singular_values, ref.singular_values_, rtol=1e-3)
    np.testing.assert_allclose(basis.mean, ref.mean_, rtol=1e-9, atol=1e-9)
    # An axis is defined only as well as its variance stands apart from its neighbours'; from
    # the 11th on, those of digits lie within 2-6 % of each other: the randomised solver
    # (like sklearn's) gets their variances but not their exact directions.
    top = k if method == "exact" else 10
    flip = signs(basis.components, ref.components_)
    np.testing.assert_allclose(
        (basis.components * flip[:, None])[:top], ref.components_[:top], atol=1e-3
    )
    scores = ref.transform(x.astype(np.float64))
    mine = basis.transform(x) * flip
    np.testing.assert_allclose(mine[:, :top], scores[:, :top], atol=1e-3 * np.abs(scores).max())


@pytest.mark.parametrize("method", METHODS)
def test_transform_is_lazy_and_blockwise(lowrank: np.ndarray, method: str) -> None:
    """Dask in, lazy Dask out (one block per row block); numpy in, numpy out; dtypes kept."""
    basis = fit_pca(lowrank, 5, method=method)
    x = da.from_array(lowrank, chunks=(400, 120))
    with raise_if_dask_computes():
        y = basis.transform(x)
    assert isinstance(y, da.Array)
    assert y.chunks == (x.chunks[0], (5,)) and y.dtype == np.float32
    expected = basis.transform(lowrank)
    assert isinstance(expected, np.ndarray) and expected.dtype == np.float32
    np.testing.assert_allclose(y.compute(), expected, rtol=1e-5, atol=1e-4)
    split = basis.transform(da.from_array(lowrank, chunks=(400, 50)))  # three column chunks
    np.testing.assert_allclose(split.compute(), expected, rtol=1e-5, atol=1e-4)
    assert basis.transform(lowrank.astype(np.int32)).dtype == np.float64


def test_deterministic_and_chunk_independent(lowrank: np.ndarray) -> None:
    """Same seed, same basis; other chunks or numpy input change only rounding; signs fixed."""
    x = da.from_array(lowrank, chunks=(500, 120))
    a = fit_pca(x, 8, seed=3)
    b = fit_pca(x, 8, seed=3)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for other in (
        fit_pca(da.from_array(lowrank, chunks=(217, 40)), 8, seed=3),
        fit_pca(lowrank, 8, seed=3),
        fit_pca(x, 8, seed=4),
        fit_pca(x, 8, method="exact"),
    ):
        # No sign alignment: the convention must hold by itself. float32 data is multiplied
        # in float32, so other chunkings change the basis at float32 rounding (~1e-6).
        for name in ARRAY_NAMES:
            np.testing.assert_allclose(getattr(other, name), getattr(a, name), rtol=1e-5, atol=1e-7)
    rows = np.arange(8)
    biggest = a.components[rows, np.abs(a.components).argmax(axis=1)]
    assert (biggest > 0).all()  # sklearn's PCA convention: largest loading positive


def test_on_distributed_client(client: Any, lowrank: np.ndarray) -> None:
    """The same basis, and the same projection, when computed on a distributed cluster."""
    x = da.from_array(lowrank, chunks=(300, 120))
    local = fit_pca(x, 6, method="exact")
    expected = local.transform(lowrank)
    np.testing.assert_allclose(
        client.compute(local.transform(x)).result(), expected, rtol=1e-5, atol=1e-4
    )
    for method in METHODS:
        remote = fit_pca(x, 6, method=method, client=client)
        for name in ARRAY_NAMES:  # float32 data: float32 products (see above)
            np.testing.assert_allclose(
                getattr(remote, name), getattr(local, name), rtol=1e-5, atol=1e-7
            )


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 4),
    d=st.integers(1, 6),
    data=st.data(),
    n=st.integers(2, 10**6),
    method=st.sampled_from(METHODS),
)
def test_arrays_round_trip(k: int, d: int, data: Any, n: int, method: str) -> None:
    """from_arrays(to_arrays()) rebuilds the basis exactly."""
    floats = st.floats(-1e6, 1e6, allow_nan=False)
    shapes = {"mean": (d,), "components": (k, d)}
    parts = {
        m: data.draw(arrays(np.float64, shapes.get(m, (k,)), elements=floats)) for m in ARRAY_NAMES
    }
    basis = PCABasis(**parts, n_samples=n, method=method)
    saved = basis.to_arrays()
    assert set(saved) == set(ARRAY_NAMES)
    back = PCABasis.from_arrays(saved, n_samples=basis.n_samples, method=basis.method)
    assert (back.n_samples, back.method, back.n_components) == (n, method, k)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(back, name), parts[name])
        assert not getattr(back, name).flags.writeable


def test_from_arrays_rejects_missing_or_misshapen() -> None:
    arrays = fit_pca(low_rank(50, 8, 3), 3).to_arrays()
    with pytest.raises(ParameterError, match="lack \\['singular_values'\\]"):
        PCABasis.from_arrays(
            {k: v for k, v in arrays.items() if k != "singular_values"},
            n_samples=50,
            method="exact",
        )
    with pytest.raises(ParameterError, match=r"mean has shape \(7,\), expected \(8,\)"):
        PCABasis.from_arrays({**arrays, "mean": arrays["mean"][:7]}, n_samples=50, method="exact")


def _with(x: np.ndarray, value: float) -> np.ndarray:
    x = x.copy()
    x[17, 3] = value
    return x


GOOD = low_rank(40, 8, 3)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (GOOD, {"n_components": 0}, r"n_components=0 .*1 <= n_components <= .* = 8"),
        (GOOD, {"n_components": 2.5}, r"n_components=2.5 .*expected an integer"),
        (GOOD, {"n_components": 9}, r"n_components=9 .*shape \(40, 8\)"),
        (GOOD[:5], {"n_components": 6}, r"n_components=6 .* = 5"),
        (GOOD[:1], {"n_components": 1}, r"1 row\(s\); PCA needs at least 2"),
        (GOOD[:, 0], {"n_components": 1}, r"shape \(40,\); expected a 2-D"),
        (GOOD.reshape(40, 2, 4), {"n_components": 1}, r"shape \(40, 2, 4\)"),
        (_with(GOOD, np.nan), {"n_components": 2}, r"non-finite .* first \[3\]"),
        (da.from_array(_with(GOOD, np.inf), chunks=7), {"n_components": 2}, r"first \[3\]"),
        (GOOD.astype(complex), {"n_components": 2}, "dtype complex128; expected real"),
        (np.ones((10, 4)), {"n_components": 2}, "zero variance in every column"),
        (GOOD, {"n_components": 2, "method": "svd"}, "method='svd' is not one of"),
        (GOOD, {"n_components": 2, "n_power_iter": -1}, "n_power_iter=-1"),
        (
            da.zeros((20_000, 6_000), chunks=(1000, 6000)),
            {"n_components": 2, "method": "exact"},
            r'6000 features needs blocks of 12000 x 6000 .* use method="randomized"',
        ),
    ],
)
def test_bad_input_names_the_problem(x: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        fit_pca(x, **kwargs)


def test_transform_rejects_wrong_width(lowrank: np.ndarray) -> None:
    basis = fit_pca(lowrank, 2)
    with pytest.raises(ParameterError, match=r"\(n, 120\) array, got shape \(1500, 119\)"):
        basis.transform(lowrank[:, 1:])
