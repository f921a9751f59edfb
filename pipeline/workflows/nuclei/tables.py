"""Tables of the nuclei segmentation stages."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

_PIXEL = {
    "accuracy": "fraction of pixels classified correctly (scikit-learn's accuracy_score)",
    "f1": "pixel F1 of the nucleus class (= Dice), binary average",
    "jaccard": "pixel intersection over union of the nucleus class, binary average",
    "recall": "fraction of true nucleus pixels predicted as nucleus",
    "precision": "fraction of predicted nucleus pixels that are nucleus",
}
_OBJECT = {
    "true_objects": "nuclei in the ground truth",
    "predicted_objects": "nuclei predicted (after instance labelling)",
    "matched": "predicted nuclei matched to a true one at IoU > 0.5 (one to one)",
    "object_precision": "matched / predicted_objects (0 when nothing is predicted)",
    "object_recall": "matched / true_objects (0 when there is no true nucleus)",
    "object_f1": "harmonic mean of object precision and recall",
    "matched_iou": "mean IoU of the matched pairs (NaN when none)",
    "dsb_ap": "Data Science Bowl 2018 score: mean over IoU thresholds 0.5-0.95 of "
    "TP / (TP + FP + FN)",
}

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="segmenter_training",
        description="One row per epoch of `train_segmenter` (also written as the CSV log "
        "models/segmenter_training.csv; a step with another name writes `<step>_training`).",
        columns={
            "epoch": "epoch number, from 1",
            "loss": "mean training loss over the epoch's batches (BCE, plus dice_weight x "
            "soft Dice loss)",
            "val_loss": "the same loss on the validation images (whole images, not augmented)",
            "val_dice": "pixel Dice (F1) of the validation masks at probability 0.5",
            "val_iou": "pixel IoU (Jaccard) of the validation masks at probability 0.5",
            "val_recall": "pixel recall of the validation masks at probability 0.5",
            "val_precision": "pixel precision of the validation masks at probability 0.5",
            "lr": "Adam's learning rate during the epoch (ReduceLROnPlateau lowers it)",
            "seconds": "wall time of the epoch, in seconds",
            "device": "where it trained: cpu, cuda or cuda:N",
            "best": "whether val_loss is the lowest so far (its weights are the best checkpoint's)",
            "checkpoint": "file name (under models/) of the best checkpoint after the epoch",
        },
    ),
    TableSchema(
        name="segmentation_split",
        description="The seeded train / validation / test split of `train_segmenter`, one "
        "row per image.",
        columns={
            "row": "index along the `image` dimension of the image array",
            "image_id": "the image's id (as in the images table)",
            "split": "train, validation or test",
        },
    ),
    TableSchema(
        name="segmentation_scores",
        description="One row per test image and method of `evaluate_segmentation`: the "
        "network (Multi-ResUNet mask, then the distance watershed) and the classical baseline "
        "(Otsu threshold, then the same watershed).",
        columns={
            "row": "index along the `image` dimension",
            "image_id": "the image's id",
            "method": "network or otsu",
            **_PIXEL,
            **_OBJECT,
        },
    ),
    TableSchema(
        name="segmentation_summary",
        description="One row per method of `evaluate_segmentation`: each score averaged over "
        "the test images (as the seed reports its means).",
        columns={"method": "network or otsu", "images": "test images", **_PIXEL, **_OBJECT},
    ),
    TableSchema(
        name="nuclei",
        description="One row per nucleus `segment` found (step `segment`; another step "
        "writes `<step>_nuclei`). Positions are pixels of the image (0-based, y down).",
        columns={
            "image": "index of the image plane along `image` (0 for a 2-D mosaic)",
            "image_id": "the image's id (the mosaic's name for a 2-D input)",
            "label": "its value in the labels array, 1..n per image",
            "area": "pixels",
            "centroid_y": "mean row of its pixels (px)",
            "centroid_x": "mean column of its pixels (px)",
            "bbox_y0": "first row (px)",
            "bbox_x0": "first column (px)",
            "bbox_y1": "last row + 1 (px)",
            "bbox_x1": "last column + 1 (px)",
            "mean_intensity": "mean image intensity over its pixels (channels averaged; "
            "units of the input array)",
            "eccentricity": "of the ellipse with the same second moments (NaN for `whole`)",
            "solidity": "area / convex hull area (NaN for `whole`)",
            "orientation": "angle (rad) between the rows axis and the major axis, as "
            "scikit-image's regionprops (NaN for `whole`)",
            "major_axis_length": "px (NaN for `whole`)",
            "minor_axis_length": "px (NaN for `whole`)",
            "perimeter": "px (NaN for `whole`)",
            "whole": "True for a connected region larger than max_extent, labelled whole "
            "rather than split into nuclei",
        },
    ),
)
