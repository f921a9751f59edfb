"""What the learned-embedding workflow contributes: ``train_encoder``, ``embed`` and the
``supervised_baseline`` the learned features are compared with."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.embed import spec, supervised_spec, tables

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="embed",
    summary="learned embeddings: a SimCLR-trained ResNet encoder, inference on GPU workers",
    stages=(
        StageDef(
            "train_encoder",
            spec.TrainEncoderParams,
            "pipeline.workflows.embed.train:run_train_encoder",
            "SimCLR training of a ResNet encoder on a store array (on a GPU worker if any); "
            "checkpoints resume; per-epoch loss",
            writes=spec.train_encoder_writes,
            growth="keep",
        ),
        StageDef(
            "embed",
            spec.EmbedParams,
            "pipeline.workflows.embed.infer:run_embed",
            "encoder features of every image -> an (image, feature) array named after the "
            "step (`embeddings` for the step `embed`); tasks run on GPU workers when the "
            "cluster has any, the model loaded once per worker",
            writes=spec.embed_writes,
            check_job=spec.check_embed_job,
        ),
        StageDef(
            "supervised_baseline",
            supervised_spec.SupervisedParams,
            "pipeline.workflows.embed.supervised:run_supervised_baseline",
            "the probe's baseline of document 001: a ResNet from random initialisation trained "
            "supervised (weak augmentations) on the probe's k-shot splits, scored on its test "
            "rows (one task, on a GPU worker if any)",
            writes=(f"tables/{supervised_spec.SUPERVISED_TABLE}.parquet",),
            growth="refit",
        ),
    ),
    tables=tables.TABLES,
    sections=(ReportSection("embed", 300, "pipeline.workflows.embed.report:embed_section"),),
)
