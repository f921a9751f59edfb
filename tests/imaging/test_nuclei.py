"""Instances from masks: the distance watershed cuts touching nuclei apart, and the classical
baseline finds the nuclei of a simple fluorescence image."""

from __future__ import annotations

import numpy as np

from pipeline.imaging.nuclei import otsu_nuclei, split_touching
from pipeline.workflows.nuclei.metrics import object_scores


def _discs(shape: tuple[int, int], centres: list[tuple[int, int]], r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=np.uint32)
    for k, (cy, cx) in enumerate(centres, start=1):
        out[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (out == 0)] = k
    return out


def test_two_touching_discs_are_cut_at_their_neck() -> None:
    truth = _discs((40, 50), [(20, 15), (20, 29), (8, 42)], 7.5)
    labels = split_touching(truth > 0)
    assert labels.dtype == np.uint32 and labels.max() == 3
    assert object_scores(truth, labels)["matched"] == 3  # each disc found, IoU > 0.5


def test_labels_are_numbered_in_raster_order_and_small_objects_dropped() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[10:16, 2:8] = True
    mask[1:5, 12:18] = True
    mask[18, 18] = True  # one pixel: noise
    labels = split_touching(mask, min_size=4)
    assert labels[1, 12] == 1 and labels[10, 2] == 2 and labels[18, 18] == 0


def test_the_otsu_baseline_finds_bright_nuclei_on_an_uneven_background() -> None:
    rng = np.random.default_rng(0)
    centres = [(12, 12), (12, 40), (40, 14), (36, 44), (50, 28), (24, 26)]
    truth = _discs((64, 60), centres, 5.5)
    ramp = np.linspace(10, 40, 60)[None, :]
    image = ramp + 120 * (truth > 0) + rng.normal(0, 6, truth.shape)
    labels = otsu_nuclei(np.clip(image, 0, 255).astype(np.uint8))
    scores = object_scores(truth, labels)
    assert scores["matched"] == 6 and scores["predicted_objects"] == 6
    assert otsu_nuclei(np.full((16, 16), 7, dtype=np.uint8)).max() == 0
