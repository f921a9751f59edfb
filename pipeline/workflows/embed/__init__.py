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
"""

from pipeline.workflows.embed.augment import AugmentParams, augment_batch
from pipeline.workflows.embed.checkpoint import (
    Checkpoint,
    CheckpointRef,
    encoder_from_checkpoint,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
)
from pipeline.workflows.embed.infer import EMBEDDINGS, EmbedParams, run_embed
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
from pipeline.workflows.embed.train import TrainEncoderParams, run_train_encoder, train_simclr
from pipeline.workflows.embed.worker import EncoderPlugin

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
    "TrainEncoderParams",
    "augment_batch",
    "build_encoder",
    "build_simclr",
    "encoder_from_checkpoint",
    "load_checkpoint",
    "nt_xent",
    "prepare_batch",
    "read_checkpoint",
    "resolve_checkpoint",
    "run_embed",
    "run_train_encoder",
    "to_tensor",
    "train_simclr",
]
