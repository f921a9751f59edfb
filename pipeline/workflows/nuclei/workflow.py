"""What the nuclei workflow contributes: ``train_segmenter``, ``evaluate_segmentation`` and
``segment``, their tables and their report section."""

from __future__ import annotations

from pipeline.core.registry import ReportSection, StageDef, Workflow
from pipeline.workflows.nuclei import spec, tables

__all__ = ["WORKFLOW"]

WORKFLOW = Workflow(
    name="nuclei",
    summary="nuclei segmentation: a Multi-ResUNet trained on image/mask pairs, evaluated "
    "against a classical baseline, and run tiled over images of any size",
    stages=(
        StageDef(
            "train_segmenter",
            spec.TrainSegmenterParams,
            "pipeline.workflows.nuclei.train:run_train_segmenter",
            "the seed's Multi-ResUNet recipe on images + masks (seeded 60/20/20 split, BCE, "
            "Adam, ReduceLROnPlateau, early stopping, best-validation checkpoint; on a GPU "
            "worker if any); resumes",
            writes=spec.train_writes,
            growth="keep",
        ),
        StageDef(
            "evaluate_segmentation",
            spec.EvaluateParams,
            "pipeline.workflows.nuclei.evaluate:run_evaluate_segmentation",
            "the test images' pixel scores (the seed's five) and object scores (matched at IoU "
            "0.5, DSB mean AP), network against the Otsu + watershed baseline",
            writes=spec.evaluate_writes,
            check_job=spec.check_segment_job,
        ),
        StageDef(
            "segment",
            spec.SegmentParams,
            "pipeline.workflows.nuclei.segment:run_segment",
            "tiled inference with a halo over images of any size (GPU workers if any), "
            "probabilities and mask to Zarr, then instance labels joined across tiles and a "
            "table of nuclei; resumes by tile",
            writes=spec.segment_writes,
            check_job=spec.check_segment_job,
        ),
    ),
    tables=tables.TABLES,
    sections=(ReportSection("nuclei", 130, "pipeline.workflows.nuclei.report:nuclei_section"),),
)
