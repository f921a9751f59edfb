"""Blob detection: tiled (Dask) results equal whole-image results equal scikit-image's."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import skimage as ski
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.imaging.detect import BlobParams, blob_table, detect_blobs, halo_depth, quantize
from tests.conftest import raise_if_dask_computes

DOH = {"threshold": 0.004, "max_sigma": 30.0}
LOG = {"threshold": 0.05, "max_sigma": 8.0}


@pytest.fixture(scope="module")
def hubble() -> np.ndarray:
    """The Hubble Deep Field (bundled with scikit-image), grayscale, 872 x 1000."""
    return np.asarray(ski.color.rgb2gray(ski.data.hubble_deep_field()))


def _blob_field(shape: tuple[int, int], n: int, seed: int) -> np.ndarray:
    """Gaussian blobs of sigma 1.5-5 px on a noisy sky, values in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    img = 0.05 + rng.normal(0, 0.005, shape)
    for _ in range(n):
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        s, a = rng.uniform(1.5, 5.0), rng.uniform(0.2, 0.8)
        img += a * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * s * s))
    return np.clip(img, 0, 1)


def test_whole_image_matches_scikit_image(hubble: np.ndarray) -> None:
    doh = detect_blobs(hubble, "doh", overlap=0.5, **DOH)
    ref = ski.feature.blob_doh(quantize(hubble), overlap=0.5, **DOH)
    assert np.array_equal(doh.to_numpy(), ref)
    # Quantising moves values by < 1e-6: the same blobs as on the raw image.
    raw = ski.feature.blob_doh(hubble, overlap=0.5, **DOH)
    assert np.array_equal(np.sort(doh.to_numpy(), axis=0), np.sort(raw, axis=0))
    log = detect_blobs(hubble, "log", overlap=0.5, **LOG)
    assert np.array_equal(log.to_numpy(), ski.feature.blob_log(hubble, overlap=0.5, **LOG))
    assert list(doh.columns) == ["y", "x", "sigma"]


@pytest.mark.parametrize("method", ["doh", "log"])
@pytest.mark.parametrize("chunks", [(300, 256), (437, 1000), (100, 123)])
def test_tiled_equals_whole_on_hubble_deep_field(
    hubble: np.ndarray, method: str, chunks: tuple[int, int]
) -> None:
    kw = DOH if method == "doh" else LOG
    whole = detect_blobs(hubble, method, **kw)  # type: ignore[arg-type]
    tiled = detect_blobs(da.from_array(hubble, chunks=chunks), method, **kw)  # type: ignore[arg-type]
    assert len(whole) > 100
    # Exactly: same blobs, same sigma, same order.
    pd.testing.assert_frame_equal(tiled, whole, check_exact=True)


@settings(max_examples=15, deadline=None)
@given(
    cy=st.integers(20, 70),
    cx=st.integers(20, 90),
    method=st.sampled_from(["doh", "log"]),
    seed=st.integers(0, 3),
)
def test_tiled_equals_whole_for_any_chunking(cy: int, cx: int, method: str, seed: int) -> None:
    img = _blob_field((90, 110), 14, seed)
    kw = {"threshold": 0.002 if method == "doh" else 0.05, "max_sigma": 6.0}
    whole = detect_blobs(img, method, min_sigma=1.0, **kw)  # type: ignore[arg-type]
    tiled = detect_blobs(da.from_array(img, chunks=(cy, cx)), method, min_sigma=1.0, **kw)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(tiled, whole, check_exact=True)


def test_blob_cut_by_a_chunk_boundary_is_found_once() -> None:
    rows, cols = np.mgrid[:64, :64]
    img = 0.02 + 0.8 * np.exp(-((rows - 32) ** 2 + (cols - 31.5) ** 2) / (2 * 3.0**2))
    # The blob's centre sits on the boundary between column chunks 0-31 and 32-63.
    tiled = detect_blobs(da.from_array(img, chunks=(16, 32)), "log", threshold=0.1, max_sigma=6)
    whole = detect_blobs(img, "log", threshold=0.1, max_sigma=6)
    assert len(whole) == 1
    pd.testing.assert_frame_equal(tiled, whole)


def test_halo_depth_follows_the_detector_reach() -> None:
    # blob_log's Gaussian kernels reach int(4 sigma + 0.5); blob_doh's boxes about 1.5 sigma.
    assert halo_depth(BlobParams(method="log", max_sigma=10)) == int(4 * 10 + 0.5) + 2
    assert halo_depth(BlobParams(method="doh", max_sigma=30)) == (90 + 1) // 2 + 1 + 2
    assert halo_depth(BlobParams(method="doh", max_sigma=100)) > halo_depth(
        BlobParams(method="doh", max_sigma=30)
    )


def test_building_the_tile_graph_computes_nothing() -> None:
    img = da.from_array(_blob_field((90, 110), 5, 0), chunks=(45, 55))
    with raise_if_dask_computes():
        graph = blob_table(img, BlobParams(method="log", threshold=0.05, max_sigma=4))
    assert graph.shape == (2, 2)
    assert graph.dtype == object


@pytest.mark.parametrize("max_sigma", [5.0, 30.0])
def test_chunks_smaller_than_the_halo_still_agree(max_sigma: float) -> None:
    # max_sigma=30: blob_log's halo (122 px) is larger than the whole 80 x 80 image.
    img = _blob_field((80, 80), 8, 1)
    kw = {"threshold": 0.05, "max_sigma": max_sigma}
    tiled = detect_blobs(da.from_array(img, chunks=(10, 10)), "log", **kw)
    pd.testing.assert_frame_equal(tiled, detect_blobs(img, "log", **kw))


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((4, 5, 3)), {}, "2-D image"),
        (np.zeros((8, 8)), {"min_sigma": 5, "max_sigma": 2}, "max_sigma"),
        (np.zeros((8, 8)), {"threshold": 0}, "threshold"),
        (np.zeros((8, 8)), {"method": "dog"}, "method"),
    ],
)
def test_bad_input_is_refused_with_the_reason(
    image: np.ndarray, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        detect_blobs(image, **kwargs)  # type: ignore[arg-type]


def test_black_image_has_no_blobs() -> None:
    # (A constant non-zero image does give scikit-image's blob_doh edge responses, which
    # detect_blobs reproduces; the galaxy stage rejects blank images before detecting.)
    for method in ("doh", "log"):
        found = detect_blobs(np.zeros((50, 50)), method)  # type: ignore[arg-type]
        assert found.empty
        assert list(found.columns) == ["y", "x", "sigma"]
