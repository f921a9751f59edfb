"""Self-organising maps: MiniSom parity, batch SOM quality, Dask equivalence, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import pytest
from distributed import Client
from minisom import MiniSom
from sklearn.datasets import load_digits, make_blobs
from sklearn.decomposition import PCA

from pipeline.errors import ParameterError
from pipeline.features.cluster.som import (
    distance_map,
    grid_shape,
    quantization_error,
    train_batch_som,
    train_minisom,
    winners,
)
from tests.conftest import raise_if_dask_computes

# The notebook's MiniSom call on a 36 x 36 map: grid_shape(1797, max_side=36), and the
# largest square on which sigma=50 does not exceed the diagonal (no MiniSom warning).
NOTEBOOK_SHAPE = (36, 36)


@pytest.fixture(scope="module")
def digits25() -> np.ndarray:
    """The 1,797 8x8 digit images reduced to 25 PCA components, as the notebook reduces."""
    return PCA(n_components=25, random_state=0).fit_transform(load_digits().data)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """600 samples in 6 well-separated Gaussian blobs, 25 features."""
    x, _ = make_blobs(n_samples=600, n_features=25, centers=6, cluster_std=1.0, random_state=0)
    return x


def notebook_som(x: np.ndarray, shape: tuple[int, int], **kw: Any) -> MiniSom:
    """MiniSom as the notebook calls it (sigma=50, learning_rate=0.1, 1000 iterations)."""
    sigma = kw.get("sigma", 50.0)
    lr = kw.get("learning_rate", 0.1)
    som = MiniSom(shape[0], shape[1], x.shape[1], sigma=sigma, learning_rate=lr, random_seed=10)
    som.train(x, kw.get("iterations", 1000))
    return som


def som_with(weights: np.ndarray) -> MiniSom:
    """A MiniSom object holding ``weights``, for MiniSom's own metrics."""
    som = MiniSom(weights.shape[0], weights.shape[1], weights.shape[2], sigma=1.0)
    som._weights = weights.copy()
    return som


# -- grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "kwargs", "expected"),
    [
        (1, {}, (10, 10)),  # int(10 * sqrt(1))
        (30, {}, (54, 54)),  # int(54.77)
        (100, {}, (100, 100)),
        (1797, {}, (100, 100)),  # 423 capped
        (400_000, {}, (100, 100)),  # 6,324 capped
        (1797, {"max_side": 36}, (36, 36)),
        (1797, {"max_side": 2}, (2, 2)),
        (1797, {"side": 7}, (7, 7)),  # as given
        (4, {"side": 150}, (150, 150)),  # a given side is not capped
    ],
)
def test_grid_shape_formula_and_cap(n: int, kwargs: dict[str, int], expected: tuple) -> None:
    assert grid_shape(n, **kwargs) == expected


# -- MiniSom as the notebook ---------------------------------------------------------------


def test_train_minisom_equals_the_notebook_call(digits25: np.ndarray) -> None:
    w = train_minisom(digits25, NOTEBOOK_SHAPE)
    assert w.shape == (36, 36, 25) and w.dtype == np.float64
    np.testing.assert_array_equal(w, notebook_som(digits25, NOTEBOOK_SHAPE).get_weights())


def test_train_minisom_keeps_minisom_behaviour_for_sigma_above_the_grid(
    blobs: np.ndarray,
) -> None:
    with pytest.warns(UserWarning, match="sigma might be too high"):
        w = train_minisom(blobs, (5, 5))  # sigma=50 on a 5 x 5 map: legal, MiniSom warns
    with pytest.warns(UserWarning):
        ref = notebook_som(blobs, (5, 5)).get_weights()
    np.testing.assert_array_equal(w, ref)


# -- metrics equal MiniSom's ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(digits25: np.ndarray, blobs: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(data, weights) pairs: MiniSom-trained (notebook) and batch-trained maps."""
    return {
        "minisom-digits": (digits25, notebook_som(digits25, NOTEBOOK_SHAPE).get_weights()),
        "batch-digits": (digits25, train_batch_som(digits25, (12, 9), epochs=8)),
        "batch-blobs": (blobs, train_batch_som(blobs, (7, 11), epochs=8)),
    }


@pytest.mark.parametrize("case", ["minisom-digits", "batch-digits", "batch-blobs"])
def test_winners_equal_minisom_winner(trained: dict, case: str) -> None:
    x, w = trained[case]
    som = som_with(w)
    expected = np.array([som.winner(v) for v in x])
    got = winners(x, w)
    assert got.dtype == np.int64 and got.shape == (len(x), 2)
    np.testing.assert_array_equal(got, expected)


def test_winner_ties_go_to_the_lowest_flat_index_as_minisom() -> None:
    w = np.zeros((3, 4, 2))
    w[0, 2] = w[2, 1] = [1.0, 1.0]  # two nodes equally near the sample
    x = np.array([[1.0, 1.0], [0.0, 0.0]])
    som = som_with(w)
    assert [tuple(int(v) for v in som.winner(v)) for v in x] == [(0, 2), (0, 0)]
    np.testing.assert_array_equal(winners(x, w), [[0, 2], [0, 0]])


@pytest.mark.parametrize("case", ["minisom-digits", "batch-digits", "batch-blobs"])
def test_quantization_error_equals_minisom(trained: dict, case: str) -> None:
    x, w = trained[case]
    assert quantization_error(x, w) == pytest.approx(som_with(w).quantization_error(x), rel=1e-12)


@pytest.mark.parametrize("scaling", ["sum", "mean"])
@pytest.mark.parametrize("case", ["minisom-digits", "batch-blobs"])
def test_distance_map_equals_minisom(trained: dict, case: str, scaling: str) -> None:
    _, w = trained[case]
    got = distance_map(w, scaling=scaling)  # type: ignore[arg-type]
    assert got.shape == w.shape[:2]
    np.testing.assert_allclose(got, som_with(w).distance_map(scaling=scaling), rtol=1e-12)


def test_distance_map_of_a_flat_map_is_zero_not_nan() -> None:
    assert not distance_map(np.ones((4, 5, 3))).any()


# -- batch SOM quality ---------------------------------------------------------------------


@pytest.mark.parametrize("data", ["digits25", "blobs"])
@pytest.mark.parametrize(
    ("shape", "minisom_kw"),
    [
        (NOTEBOOK_SHAPE, {}),  # the notebook's parameters
        ((10, 10), {"sigma": 5.0, "learning_rate": 0.5, "iterations": 5000}),  # tuned
    ],
    ids=["notebook-36x36", "tuned-10x10"],
)
def test_batch_som_quantization_error_within_10pct_of_minisom(
    request: pytest.FixtureRequest, data: str, shape: tuple[int, int], minisom_kw: dict
) -> None:
    x = request.getfixturevalue(data)
    minisom_qe = notebook_som(x, shape, **minisom_kw).quantization_error(x)
    batch_qe = quantization_error(x, train_batch_som(x, shape))
    assert batch_qe <= 1.10 * minisom_qe


@pytest.mark.parametrize("data", ["digits25", "blobs"])
def test_batch_som_map_is_topologically_ordered(request: pytest.FixtureRequest, data: str) -> None:
    """A sample's two nearest nodes are grid neighbours: winner coordinates mean something."""
    x = request.getfixturevalue(data)
    w = train_batch_som(x, (10, 10))
    assert som_with(w).topographic_error(x) <= 0.05  # measured 0.016 (digits), 0.017 (blobs)


def test_nodes_far_from_all_data_keep_finite_weights(blobs: np.ndarray) -> None:
    """With a tiny radius most nodes get no neighbourhood weight: they keep their weights."""
    w = train_batch_som(blobs[:20], (10, 10), sigma=0.01, sigma_end=0.01, epochs=3)
    assert np.isfinite(w).all()
    assert len({tuple(v) for v in winners(blobs[:20], w)}) <= 20  # <= 20 of 100 nodes hit


# -- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["pca", "random"])
def test_same_seed_gives_identical_weights(digits25: np.ndarray, init: str) -> None:
    a = train_batch_som(digits25, (6, 6), epochs=4, seed=3, init=init)  # type: ignore[arg-type]
    b = train_batch_som(digits25, (6, 6), epochs=4, seed=3, init=init)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)


def test_different_seed_gives_different_weights(digits25: np.ndarray) -> None:
    a = train_batch_som(digits25, (6, 6), epochs=4, seed=1, init="random")
    b = train_batch_som(digits25, (6, 6), epochs=4, seed=2, init="random")
    assert not np.allclose(a, b)


def test_pca_init_on_few_rows_does_not_depend_on_seed(digits25: np.ndarray) -> None:
    """All <= 10,000 rows enter the PCA, so the seed has nothing to choose."""
    a = train_batch_som(digits25, (6, 6), epochs=3, seed=1)
    b = train_batch_som(digits25, (6, 6), epochs=3, seed=2)
    np.testing.assert_array_equal(a, b)


def test_minisom_seed_sets_the_initial_weights(blobs: np.ndarray) -> None:
    a = train_minisom(blobs, (8, 8), sigma=3.0, iterations=50, seed=1)
    b = train_minisom(blobs, (8, 8), sigma=3.0, iterations=50, seed=1)
    c = train_minisom(blobs, (8, 8), sigma=3.0, iterations=50, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# -- Dask ----------------------------------------------------------------------------------

# Uneven row chunks whose boundaries cut through the data (1,797 rows).
UNEVEN = ((500, 333, 700, 264), (25,))


@pytest.mark.parametrize("init", ["pca", "random"])
def test_dask_input_with_a_client_equals_numpy(
    digits25: np.ndarray, client: Client, init: str
) -> None:
    ref = train_batch_som(digits25, (8, 7), epochs=6, init=init)  # type: ignore[arg-type]
    dx = da.from_array(digits25, chunks=UNEVEN)
    got = train_batch_som(dx, (8, 7), epochs=6, init=init, client=client)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_dask_input_chunked_along_features_equals_numpy(blobs: np.ndarray) -> None:
    ref = train_batch_som(blobs, (5, 6), epochs=5)
    got = train_batch_som(da.from_array(blobs, chunks=(170, 10)), (5, 6), epochs=5)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_dask_training_computes_once_per_epoch(blobs: np.ndarray) -> None:
    dx = da.from_array(blobs, chunks=(100, 25))
    with raise_if_dask_computes(max_computes=5) as counter:
        train_batch_som(dx, (5, 5), epochs=4)
    assert counter.total_computes == 5  # the initialisation sample, then one per epoch


def test_dask_winners_are_lazy_and_equal_numpy(trained: dict, client: Client) -> None:
    x, w = trained["batch-digits"]
    dx = da.from_array(x, chunks=UNEVEN)
    with raise_if_dask_computes():
        lazy = winners(dx, w)
    assert isinstance(lazy, da.Array)
    assert lazy.dtype == np.int64 and lazy.chunks == (UNEVEN[0], (2,))
    np.testing.assert_array_equal(lazy.compute(), winners(x, w))


def test_dask_quantization_error_equals_numpy(trained: dict, client: Client) -> None:
    x, w = trained["batch-digits"]
    dx = da.from_array(x, chunks=UNEVEN)
    expected = quantization_error(x, w)
    assert quantization_error(dx, w) == pytest.approx(expected, rel=1e-12)
    assert quantization_error(dx, w, client=client) == pytest.approx(expected, rel=1e-12)


# -- validation ----------------------------------------------------------------------------

W3 = np.zeros((3, 3, 4))
X4 = np.arange(40, dtype=np.float64).reshape(10, 4)


def _nan_at(row: int) -> np.ndarray:
    x = X4.copy()
    x[row, 2] = np.nan
    return x


def _inf_dask(row: int) -> da.Array:
    x = X4.copy()
    x[row, 1] = np.inf
    return da.from_array(x, chunks=((3, 4, 3), (4,)))


ERROR_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("sigma zero", lambda: train_batch_som(X4, (3, 3), sigma=0.0), "sigma = 0.0"),
    ("sigma negative", lambda: train_batch_som(X4, (3, 3), sigma=-2.5), "sigma = -2.5"),
    ("sigma NaN", lambda: train_batch_som(X4, (3, 3), sigma=float("nan")), "sigma = nan"),
    ("minisom sigma", lambda: train_minisom(X4, (3, 3), sigma=0), "sigma = 0"),
    (
        "sigma_end above sigma",
        lambda: train_batch_som(X4, (3, 3), sigma=2.0, sigma_end=3.0),
        "sigma_end = 3.0",
    ),
    ("epochs", lambda: train_batch_som(X4, (3, 3), epochs=0), "epochs = 0"),
    ("iterations", lambda: train_minisom(X4, (3, 3), sigma=1.0, iterations=0), "iterations = 0"),
    ("init", lambda: train_batch_som(X4, (3, 3), init="kmeans"), "init = 'kmeans'"),  # type: ignore[arg-type]
    ("shape", lambda: train_batch_som(X4, (0, 3)), r"shape = \(0, 3\)"),
    ("grid side", lambda: grid_shape(100, side=1), "side = 1"),
    ("empty batch", lambda: train_batch_som(np.empty((0, 4)), (3, 3)), r"shape \(0, 4\)"),
    ("empty minisom", lambda: train_minisom(np.empty((0, 4)), (3, 3)), r"shape \(0, 4\)"),
    ("empty winners", lambda: winners(np.empty((0, 4)), W3), r"shape \(0, 4\)"),
    ("1-D input", lambda: train_batch_som(np.ones(5), (3, 3)), r"shape \(5,\)"),
    ("NaN batch", lambda: train_batch_som(_nan_at(7), (3, 3)), "row 7 .*nan"),
    ("NaN minisom", lambda: train_minisom(_nan_at(4), (3, 3), sigma=1.0), "row 4 .*nan"),
    ("NaN winners", lambda: winners(_nan_at(0), W3), "row 0 .*nan"),
    ("NaN qe", lambda: quantization_error(_nan_at(9), W3), "row 9 .*nan"),
    ("inf dask batch", lambda: train_batch_som(_inf_dask(5), (3, 3), epochs=1), "row 5 .*inf"),
    ("inf dask winners", lambda: winners(_inf_dask(8), W3).compute(), "row 8 .*inf"),
    ("inf dask qe", lambda: quantization_error(_inf_dask(3), W3), "row 3 .*inf"),
    ("mismatch winners", lambda: winners(X4[:, :3], W3), "3 features .* weights have 4"),
    ("mismatch qe", lambda: quantization_error(X4, np.zeros((2, 2, 5))), "4 features .* 5"),
    (
        "mismatch dask",
        lambda: winners(da.from_array(X4[:, :3], chunks=4), W3),
        "3 features .* weights have 4",
    ),
    ("weights 2-D", lambda: distance_map(np.zeros((3, 4))), r"shape \(3, 4\)"),
    ("weights NaN", lambda: winners(X4, np.full((2, 2, 4), np.nan)), "non-finite"),
    ("scaling", lambda: distance_map(W3, scaling="max"), "scaling = 'max'"),  # type: ignore[arg-type]
    ("dask to minisom", lambda: train_minisom(da.from_array(X4), (3, 3)), "train_batch_som"),
]


@pytest.mark.parametrize(
    ("call", "match"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_bad_input_raises_parameter_error_naming_the_value(
    call: Callable[[], object], match: str
) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)  # callers may catch the builtin
