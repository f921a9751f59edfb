"""Tables of the learned-embedding stages."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="training_loss",
        description="One row per epoch of the `train_encoder` stage (SimCLR).",
        columns={
            "epoch": "epoch number, from 1",
            "loss": "mean NT-Xent loss over the epoch's batches",
            "lr": "learning rate at the end of the epoch",
            "images": "images seen in the epoch (each gives two augmented views)",
            "seconds": "wall time of the epoch, in seconds",
            "device": "where it trained: cpu, cuda or cuda:N",
            "checkpoint": "file name of the checkpoint saved after the epoch (under "
            "models/), empty if none was saved",
        },
    ),
    TableSchema(
        name="supervised_baseline",
        description="One row per (shots, seed) of the `supervised_baseline` stage: a ResNet "
        "trained from random initialisation, supervised, on the probe's k-shot training set "
        "and scored on its held-out test split. The first seven columns are the `probe` "
        "table's, so the two tables concatenate (`pd.concat([probe, supervised])`) and "
        "`summarize_probe` compares them.",
        columns={
            "features": "`supervised_<arch>`, e.g. `supervised_resnet18`",
            "shots": "training examples per class (0 = all the training split)",
            "seed": "seed of the split and of the per-class sample, as the probe's; the "
            "network's initialisation, batch order and augmentations derive from it and shots",
            "n_train": "training images",
            "n_test": "held-out images scored (not augmented)",
            "accuracy": "fraction of the test images classified correctly",
            "macro_f1": "F1 averaged over classes with equal weight",
            "epochs": "passes over the training set",
            "device": "where it trained: cpu, cuda or cuda:N",
        },
    ),
)
