"""Learned embeddings: a ResNet encoder trained with SimCLR, and inference dispatched to the
workers that have GPUs.

- :mod:`~pipeline.embed.models`: ResNet-18-style encoder (and a small CPU variant), projection
  head, written with ``torch.nn``.
- :mod:`~pipeline.embed.augment`, :mod:`~pipeline.embed.loss`: batched view augmentations and
  NT-Xent.
- :mod:`~pipeline.embed.train`: the ``train_encoder`` stage (streams Zarr chunks, checkpoints,
  resumes).
- :mod:`~pipeline.embed.checkpoint`: weights-only checkpoints named by their hash.
- :mod:`~pipeline.embed.dispatch`, :mod:`~pipeline.embed.worker`, :mod:`~pipeline.embed.infer`:
  the ``embed`` stage (GPU resources, one model per worker, chunk-aligned writes).
"""

from pipeline.embed.augment import AugmentParams, augment_batch
from pipeline.embed.checkpoint import (
    Checkpoint,
    CheckpointRef,
    encoder_from_checkpoint,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
)
from pipeline.embed.infer import EMBEDDINGS, EmbedParams, run_embed
from pipeline.embed.inputs import prepare_batch, to_tensor
from pipeline.embed.loss import nt_xent
from pipeline.embed.models import (
    EncoderConfig,
    ProjectionHead,
    ResNetEncoder,
    SimCLRModel,
    build_encoder,
    build_simclr,
)
from pipeline.embed.train import TrainEncoderParams, run_train_encoder, train_simclr
from pipeline.embed.worker import EncoderPlugin

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
