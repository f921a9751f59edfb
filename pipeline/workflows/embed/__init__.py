"""Learned embeddings: a ResNet encoder trained with SimCLR, and inference dispatched to the
workers that have GPUs.

- :mod:`.models`: ResNet-18-style encoder (and a small CPU variant), projection
  head, written with ``torch.nn``.
- :mod:`.augment`, :mod:`.loss`: batched view augmentations and
  NT-Xent.
- :mod:`.train`: the ``train_encoder`` stage (streams Zarr chunks, checkpoints,
  resumes).
- :mod:`~pipeline.workflows.embed.checkpoint`: weights-only checkpoints named by their hash.
- :mod:`pipeline.compute.dispatch`, :mod:`.worker`, :mod:`.infer`:
  the ``embed`` stage (GPU resources, one model per worker, chunk-aligned writes).
- :mod:`.supervised`: the ``supervised_baseline`` stage, a ResNet trained supervised from
  random initialisation on the linear probe's splits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.lazy import attach

if TYPE_CHECKING:
    from pipeline.workflows.embed.augment import augment_batch
    from pipeline.workflows.embed.checkpoint import (
        Checkpoint,
        CheckpointRef,
        encoder_from_checkpoint,
        load_checkpoint,
        read_checkpoint,
        resolve_checkpoint,
    )
    from pipeline.workflows.embed.infer import EMBEDDINGS, run_embed
    from pipeline.workflows.embed.inputs import prepare_batch, to_tensor
    from pipeline.workflows.embed.loss import nt_xent
    from pipeline.workflows.embed.models import (
        EncoderConfig,
        ProjectionHead,
        ResNetEncoder,
        SimCLRModel,
        build_encoder,
        build_simclr,
    )
    from pipeline.workflows.embed.spec import AugmentParams, EmbedParams, TrainEncoderParams
    from pipeline.workflows.embed.supervised import (
        SupervisedPlan,
        plan_supervised,
        run_supervised_baseline,
        train_supervised,
    )
    from pipeline.workflows.embed.supervised_spec import SupervisedParams
    from pipeline.workflows.embed.train import run_train_encoder, train_simclr
    from pipeline.workflows.embed.worker import EncoderPlugin

#: The public names and the modules that define them (imported on first use).
_API = {
    "EMBEDDINGS": "pipeline.workflows.embed.infer",
    "AugmentParams": "pipeline.workflows.embed.spec",
    "Checkpoint": "pipeline.workflows.embed.checkpoint",
    "CheckpointRef": "pipeline.workflows.embed.checkpoint",
    "EmbedParams": "pipeline.workflows.embed.spec",
    "EncoderConfig": "pipeline.workflows.embed.models",
    "EncoderPlugin": "pipeline.workflows.embed.worker",
    "ProjectionHead": "pipeline.workflows.embed.models",
    "ResNetEncoder": "pipeline.workflows.embed.models",
    "SimCLRModel": "pipeline.workflows.embed.models",
    "SupervisedParams": "pipeline.workflows.embed.supervised_spec",
    "SupervisedPlan": "pipeline.workflows.embed.supervised",
    "TrainEncoderParams": "pipeline.workflows.embed.spec",
    "augment_batch": "pipeline.workflows.embed.augment",
    "build_encoder": "pipeline.workflows.embed.models",
    "build_simclr": "pipeline.workflows.embed.models",
    "encoder_from_checkpoint": "pipeline.workflows.embed.checkpoint",
    "load_checkpoint": "pipeline.workflows.embed.checkpoint",
    "nt_xent": "pipeline.workflows.embed.loss",
    "plan_supervised": "pipeline.workflows.embed.supervised",
    "prepare_batch": "pipeline.workflows.embed.inputs",
    "read_checkpoint": "pipeline.workflows.embed.checkpoint",
    "resolve_checkpoint": "pipeline.workflows.embed.checkpoint",
    "run_embed": "pipeline.workflows.embed.infer",
    "run_supervised_baseline": "pipeline.workflows.embed.supervised",
    "run_train_encoder": "pipeline.workflows.embed.train",
    "to_tensor": "pipeline.workflows.embed.inputs",
    "train_simclr": "pipeline.workflows.embed.train",
    "train_supervised": "pipeline.workflows.embed.supervised",
}

__getattr__, __dir__ = attach(__name__, _API)

__all__ = [
    "EMBEDDINGS",
    "AugmentParams",
    "Checkpoint",
    "CheckpointRef",
    "EmbedParams",
    "EncoderConfig",
    "EncoderPlugin",
    "ProjectionHead",
    "ResNetEncoder",
    "SimCLRModel",
    "SupervisedParams",
    "SupervisedPlan",
    "TrainEncoderParams",
    "augment_batch",
    "build_encoder",
    "build_simclr",
    "encoder_from_checkpoint",
    "load_checkpoint",
    "nt_xent",
    "plan_supervised",
    "prepare_batch",
    "read_checkpoint",
    "resolve_checkpoint",
    "run_embed",
    "run_supervised_baseline",
    "run_train_encoder",
    "to_tensor",
    "train_simclr",
    "train_supervised",
]
