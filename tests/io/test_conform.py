"""Mode and shape conversion, compared with scikit-image directly."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.transform import resize

from pipeline.io.conform import convert_mode, fit_shape
from tests.conftest import smooth_image

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_is_skimage_luminance_rounded(dtype: type) -> None:
    rgb = smooth_image(RNG, (9, 7, 3), dtype)
    top = np.iinfo(dtype).max
    expected = np.rint(rgb2gray(rgb / top) * top).astype(dtype)
    np.testing.assert_array_equal(convert_mode(rgb, "gray"), expected)


def test_rgb_repeats_gray_and_drops_alpha() -> None:
    gray = smooth_image(RNG, (5, 4), np.uint8)
    out = convert_mode(gray, "rgb")
    assert out.shape == (5, 4, 3)
    assert all(np.array_equal(out[..., c], gray) for c in range(3))
    rgba = smooth_image(RNG, (5, 4, 4), np.uint8)
    np.testing.assert_array_equal(convert_mode(rgba, "rgb"), rgba[..., :3])
    assert convert_mode(rgba, "keep") is rgba


def test_pad_centres_on_zeros() -> None:
    img = np.full((3, 4), 7, np.uint16)
    out = fit_shape(img, 7, 8, "pad")
    assert out.dtype == np.uint16
    assert out.sum() == img.sum()
    np.testing.assert_array_equal(out[2:5, 2:6], img)
    with pytest.raises(ValueError, match="larger than the pad target"):
        fit_shape(img, 2, 8, "pad")


def test_resize_matches_skimage_and_keeps_dtype() -> None:
    img = smooth_image(RNG, (20, 30, 3), np.uint8)
    out = fit_shape(img, 10, 12, "resize")
    expected = resize(img, (10, 12, 3), order=1, preserve_range=True, anti_aliasing=True)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.clip(np.rint(expected), 0, 255).astype(np.uint8))
