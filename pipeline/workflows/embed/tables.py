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
)
