"""Segmentation scores per image: the seed's five pixel metrics and object-level ones.

**Pixel level** (source document 002): accuracy, F1, Jaccard, recall and precision of the
binary masks, scikit-learn's functions with ``average="binary"`` on the flattened masks, as
the seed computes them per test image and then averages over images. Where a score's
denominator is empty (no nucleus in truth or prediction) it is 0, as scikit-learn's
``zero_division=0`` gives, which is the seed's behaviour without the warning.

**Object level** (what the seed lacks): each predicted nucleus is matched to the true one it
overlaps with intersection-over-union (IoU) above a threshold; above 0.5 a match is unique
both ways, so no assignment problem arises. At 0.5: true positives, false positives, false
negatives, precision, recall, F1 and the mean IoU of the matches. The Data Science Bowl 2018
score is the mean over thresholds 0.5, 0.55, ..., 0.95 of ``TP / (TP + FP + FN)`` (an image
with no true and no predicted nucleus scores 1). Overlaps come from one contingency count of
(true label, predicted label) pairs, so the cost is one pass over the pixels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, precision_score, recall_score

__all__ = [
    "DSB_THRESHOLDS",
    "OBJECT_METRICS",
    "PIXEL_METRICS",
    "iou_matrix",
    "object_scores",
    "pixel_scores",
]

#: The seed's pixel metrics, in its order.
PIXEL_METRICS = ("accuracy", "f1", "jaccard", "recall", "precision")
#: Object-level scores :func:`object_scores` returns.
OBJECT_METRICS = (
    "true_objects",
    "predicted_objects",
    "matched",
    "object_precision",
    "object_recall",
    "object_f1",
    "matched_iou",
    "dsb_ap",
)
#: IoU thresholds of the Data Science Bowl 2018 score.
DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def pixel_scores(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, float]:
    """The seed's five pixel metrics of one image.

    Parameters
    ----------
    truth, predicted : array_like, shape (y, x)
        Masks; non-zero is nucleus (label images may be given).

    Returns
    -------
    dict
        :data:`PIXEL_METRICS` -> value in ``[0, 1]``.
    """
    y = (np.asarray(truth) > 0).ravel().astype(np.int32)
    p = (np.asarray(predicted) > 0).ravel().astype(np.int32)
    if y.shape != p.shape:
        raise ValueError(f"truth has {y.size} pixels, prediction {p.size}: give one image's both")
    kw = {"labels": [0, 1], "average": "binary", "zero_division": 0}
    return {
        "accuracy": float(accuracy_score(y, p)),
        "f1": float(f1_score(y, p, **kw)),
        "jaccard": float(jaccard_score(y, p, **kw)),
        "recall": float(recall_score(y, p, **kw)),
        "precision": float(precision_score(y, p, **kw)),
    }


def iou_matrix(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """IoU of every true object with every predicted one.

    Parameters
    ----------
    truth, predicted : array_like of int, shape (y, x)
        Instance labels, 0 background (any numbering).

    Returns
    -------
    numpy.ndarray, shape (n_true, n_predicted)
        Rows in increasing true label, columns in increasing predicted label.
    """
    t = np.asarray(truth).ravel()
    p = np.asarray(predicted).ravel()
    if t.shape != p.shape:
        raise ValueError(f"truth has {t.size} pixels, prediction {p.size}: give one image's both")
    t_ids, t_inv = np.unique(t, return_inverse=True)
    p_ids, p_inv = np.unique(p, return_inverse=True)
    t_area = np.bincount(t_inv, minlength=len(t_ids))
    p_area = np.bincount(p_inv, minlength=len(p_ids))
    both = (t > 0) & (p > 0)
    pairs = t_inv[both].astype(np.int64) * len(p_ids) + p_inv[both]
    inter = np.bincount(pairs, minlength=len(t_ids) * len(p_ids)).reshape(len(t_ids), -1)
    union = t_area[:, None] + p_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    rows = t_ids > 0
    cols = p_ids > 0
    return np.asarray(iou[np.ix_(rows, cols)], dtype=np.float64)


def object_scores(truth: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, float]:
    """Object-level scores of one image (see the module notes).

    Parameters
    ----------
    truth, predicted : array_like of int, shape (y, x)
        Instance labels, 0 background.

    Returns
    -------
    dict
        :data:`OBJECT_METRICS` -> value: counts of true, predicted and matched (IoU > 0.5)
        nuclei; precision, recall and F1 of the matching (0 where undefined); the mean IoU of
        the matched pairs (NaN without a match); and ``dsb_ap``, the Data Science Bowl score.
    """
    iou = iou_matrix(truth, predicted)
    n_true, n_pred = iou.shape
    out: dict[str, float] = {"true_objects": float(n_true), "predicted_objects": float(n_pred)}
    aps = []
    for t in DSB_THRESHOLDS:
        tp = int((iou > t).sum())  # at IoU > 0.5 each object has at most one partner
        denominator = n_true + n_pred - tp
        aps.append(1.0 if denominator == 0 else tp / denominator)
    matched = iou > 0.5
    tp = int(matched.sum())
    out["matched"] = float(tp)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    out["object_precision"] = precision
    out["object_recall"] = recall
    out["object_f1"] = 2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0
    out["matched_iou"] = float(iou[matched].mean()) if tp else float("nan")
    out["dsb_ap"] = float(np.mean(aps))
    return out
