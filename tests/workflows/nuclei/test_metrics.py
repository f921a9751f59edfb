"""Segmentation scores: the seed's pixel metrics are scikit-learn's, object matching and the
Data Science Bowl score follow their definitions, whatever the labels' numbering."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.workflows.nuclei.metrics import iou_matrix, object_scores, pixel_scores


def test_pixel_scores_are_the_confusion_counts_ratios() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.random((30, 20)) > 0.6, rng.random((30, 20)) > 0.5
    tp, fp, fn = (y & p).sum(), (~y & p).sum(), (y & ~p).sum()
    s = pixel_scores(y, p)
    assert np.isclose(s["accuracy"], (y == p).mean())
    assert np.isclose(s["precision"], tp / (tp + fp)) and np.isclose(s["recall"], tp / (tp + fn))
    assert np.isclose(s["f1"], 2 * tp / (2 * tp + fp + fn))
    assert np.isclose(s["jaccard"], tp / (tp + fp + fn))


def test_an_image_without_nuclei_scores_without_warnings() -> None:
    empty = np.zeros((8, 8), dtype=np.uint32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = pixel_scores(empty, empty)
        o = object_scores(empty, empty)
    assert s["accuracy"] == 1.0 and s["f1"] == 0.0
    assert o["dsb_ap"] == 1.0 and o["matched"] == 0 and np.isnan(o["matched_iou"])


@settings(max_examples=40, deadline=None)
@given(
    truth=arrays(np.uint8, (6, 7), elements=st.integers(0, 4)),
    pred=arrays(np.uint8, (6, 7), elements=st.integers(0, 4)),
)
def test_iou_matrix_equals_the_pairwise_definition(truth: np.ndarray, pred: np.ndarray) -> None:
    got = iou_matrix(truth, pred)
    t_ids = [v for v in np.unique(truth) if v > 0]
    p_ids = [v for v in np.unique(pred) if v > 0]
    assert got.shape == (len(t_ids), len(p_ids))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = ((truth == a) & (pred == b)).sum()
            union = ((truth == a) | (pred == b)).sum()
            assert np.isclose(got[i, j], inter / union)


def test_the_dsb_score_counts_a_match_at_each_threshold_below_its_iou() -> None:
    truth = np.zeros((20, 30), dtype=np.uint32)
    pred = np.zeros_like(truth)
    truth[5:15, 5:15] = 1
    pred[5:15, 7:17] = 9  # IoU 80 / 120 = 0.667: counted at 0.5, 0.55, 0.6 and 0.65
    truth[2:6, 22:26] = 2  # missed
    o = object_scores(truth, pred)
    # Per threshold TP / (TP + FP + FN): 1/2 at the four thresholds below 0.667, then 0/3.
    assert np.isclose(o["dsb_ap"], 4 * 0.5 / 10)
    assert o["matched"] == 1 and o["object_recall"] == 0.5 and o["object_precision"] == 1.0
    assert np.isclose(o["matched_iou"], 80 / 120)


def test_scores_do_not_depend_on_the_numbering() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 6, (16, 16)).astype(np.uint32)
    renumbered = np.array([0, 40, 3, 17, 5, 2], dtype=np.uint32)[truth]
    same = object_scores(truth, truth)
    assert same["dsb_ap"] == 1.0 and same["object_f1"] == 1.0
    assert object_scores(truth, renumbered) == same
