"""Geometry of objects in images (grayscale, major axis, aligned cutouts) against direct
numpy / scikit-image oracles."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2gray

from pipeline.imaging.geometry import cutout, major_axis, to_gray
from tests.workflows.galaxy.test_preprocess import angle_error, ellipse_image


def test_to_gray_matches_scikit_image() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert np.allclose(to_gray(rgb), rgb2gray(rgb))
    assert np.allclose(to_gray(rgb[..., :1]), rgb[..., 0] / 255)
    with pytest.raises(ValueError, match="channels"):
        to_gray(np.zeros((4, 4, 2)))


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0, 170.0])
def test_major_axis_recovers_the_angle(angle: float) -> None:
    img = ellipse_image((101, 121), 48.3, 61.7, 14, 5, angle)
    y, x, measured, semi = major_axis(img, 50, 60, 10, 0.25)
    assert angle_error(measured, angle) < 1.0
    assert abs(y - 48.3) < 0.5 and abs(x - 61.7) < 0.5
    assert 14 < semi < 40


@pytest.mark.parametrize("angle", [20.0, 75.0, 120.0])
def test_cutout_brings_the_major_axis_to_x(angle: float) -> None:
    img = ellipse_image((120, 120), 60, 60, 16, 5, angle)
    cut = cutout(img, 60, 60, 40, angle, 64)
    assert cut.shape == (64, 64)
    assert cut.min() == 0.0 and cut.max() == 1.0
    _, _, measured, _ = major_axis(cut, 31.5, 31.5, 8, 0.25)
    assert angle_error(measured, 0.0) < 1.5


def test_cutout_of_a_galaxy_at_the_border_is_centred_on_it() -> None:
    img = ellipse_image((100, 100), 3, 96, 6, 6, 0)
    cut = cutout(img, 3, 96, 20, 0.0, 40)
    # The galaxy is at the cutout's centre; beyond the image edge the cutout is 0.
    assert cut[19:21, 19:21].min() > 0.9
    assert cut[0, :].max() == 0.0
