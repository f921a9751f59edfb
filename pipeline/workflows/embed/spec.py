"""Parameters of the learned-embedding stages (pydantic only: a job spec is validated with
these), and the names of their outputs, taken from the step.

The default steps keep the historical names (``train_encoder`` writes ``models/encoder.json``,
``embed`` writes ``embeddings``); a step with another name writes under its own, so that one
job can train two encoders and embed with both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.core.names import StoreName
from pipeline.core.registry import EarlierStep, JobProblems
from pipeline.features.spec import RowSelection

__all__ = [
    "AugmentParams",
    "EmbedOutputs",
    "EmbedParams",
    "EncoderOutputs",
    "TrainEncoderParams",
    "check_embed_job",
    "embed_outputs",
    "embed_writes",
    "encoder_outputs",
    "train_encoder_writes",
]


class AugmentParams(BaseModel):
    """Which augmentations :func:`augment_batch` applies, and how strongly.

    Defaults follow SimCLR's (Chen et al. 2020, appendix A) with a milder crop (area fraction
    0.5-1 rather than 0.08-1: scientific images are often centred on one object) and
    right-angle rotations; galaxy jobs switch ``rot90`` off when their cutouts are aligned.
    ``rotate`` (off by default) turns each view by any angle, for objects with no orientation
    at all such as bright-field spheroids.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    crop: bool = Field(True, description="random resized crop")
    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0), description="range of the crop's area, fraction of the image (0, 1]"
    )
    crop_ratio: tuple[float, float] = Field(
        (3 / 4, 4 / 3), description="range of the crop's width / height (log-uniform)"
    )
    hflip: bool = Field(True, description="mirror left-right with probability 0.5")
    vflip: bool = Field(True, description="mirror top-bottom with probability 0.5")
    rot90: bool = Field(True, description="rotate by a uniformly random multiple of 90 deg")
    rotate: bool = Field(False, description="rotate by an angle uniform in [0, 360) deg")
    blur: bool = Field(True, description="Gaussian blur")
    blur_sigma: tuple[float, float] = Field(
        (0.1, 2.0), description="range of the blur's sigma (px of the output)"
    )
    blur_prob: float = Field(0.5, ge=0, le=1, description="probability an image is blurred")
    brightness: float = Field(
        0.4, ge=0, description="add an offset uniform in [-b, b] (std units; 0: off)"
    )
    contrast: float = Field(
        0.4, ge=0, le=1, description="scale about the mean by [1 - c, 1 + c] (0: off)"
    )

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 < lo <= hi <= 1:
            raise ValueError(
                f"crop_scale must satisfy 0 < lo <= hi <= 1 (area fractions), got {value}; "
                "e.g. (0.5, 1.0)"
            )
        return value

    @field_validator("crop_ratio", "blur_sigma")
    @classmethod
    def _positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(
                f"range must satisfy 0 < lo <= hi < inf, got {value}; e.g. (0.75, 1.333) "
                "for crop_ratio, (0.1, 2.0) for blur_sigma"
            )
        return value

    @model_validator(mode="after")
    def _finite(self) -> AugmentParams:
        if not math.isfinite(self.brightness):
            raise ValueError(f"brightness must be finite, got {self.brightness}; e.g. 0.4")
        return self


class TrainEncoderParams(BaseModel):
    """Parameters of the ``train_encoder`` stage (SimCLR, source document 001 section 6.1).

    Attributes
    ----------
    input : str
        Image array, ``(image, y, x[, channel])``.
    rows : RowSelection
        The images trained on (as for the feature stages: ``kept``, ``all`` or a table's).
    arch : {"resnet18", "resnet_small"}
        ``resnet_small`` (16-128 channels, one block per stage) trains on a CPU in minutes.
    input_size : int
        Views are cropped and resized to this square size (>= 64).
    projection_dim : int
        Width of the projection head's output, where the loss is taken.
    epochs, batch_size : int
    lr, weight_decay : float
        AdamW, with the learning rate following a cosine from ``lr`` to 0 over all steps.
    temperature : float
        NT-Xent temperature.
    augment : AugmentParams
        The views' augmentations (switch ``rot90`` off for aligned galaxy cutouts).
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    amp : bool
        Mixed precision on CUDA (with ``channels_last``).
    checkpoint_every : int
        Save after every this many epochs (and after the last).
    resume : bool
        Continue from the last checkpoint of a run with the same configuration.
    threads : int, optional
        CPU threads for torch (default: the threads of the training worker's host).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: StoreName = "cutouts"
    rows: RowSelection = "kept"
    arch: Literal["resnet18", "resnet_small"] = "resnet18"
    input_size: int = Field(128, ge=64)
    projection_dim: int = Field(128, ge=1)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    temperature: float = Field(0.5, gt=0)
    augment: AugmentParams = Field(default_factory=AugmentParams)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    amp: bool = True
    checkpoint_every: int = Field(1, ge=1)
    resume: bool = True
    threads: int | None = Field(None, ge=1)


class EmbedParams(BaseModel):
    """Parameters of the ``embed`` stage.

    Attributes
    ----------
    input : str
        Image array to embed, ``(image, y, x[, channel])`` (``cutouts``, ``images``).
    rows : RowSelection
        The images embedded (``kept``: the catalog's kept ones); the other rows are NaN.
    encoder : str
        The ``train_encoder`` step whose latest checkpoint is used when ``checkpoint`` is
        unset (default: the step ``train_encoder``).
    checkpoint : str, optional
        Unset: the latest checkpoint of the ``encoder`` step. Else a file name under the
        store's ``models/``, a path or an fsspec URL that every worker can read.
    batch_size : int
        Images per forward pass.
    task_rows : int
        Rows per task (rounded to whole chunks of ``input``): larger tasks amortise more,
        smaller ones balance better across workers.
    device : str
        ``auto`` (CUDA where the worker has it, else CPU), ``cpu`` or ``cuda[:N]``.
    amp : bool
        Mixed precision (autocast) on CUDA; CPU always computes in float32.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: StoreName = "cutouts"
    rows: RowSelection = "kept"
    encoder: StoreName = "train_encoder"
    checkpoint: str | None = None
    batch_size: int = Field(256, ge=1)
    task_rows: int = Field(1024, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    amp: bool = True


class EncoderOutputs(BaseModel):
    """Where a ``train_encoder`` step writes.

    Attributes
    ----------
    pointer : str
        The JSON file naming the latest checkpoint (relative to the store).
    prefix : str
        Checkpoint files are ``models/<prefix>-<first 16 hex of sha256>.pt``.
    loss_csv : str
        The per-epoch loss, appended as training goes.
    table : str
        The per-epoch loss table.
    """

    model_config = ConfigDict(frozen=True)

    pointer: str
    prefix: str
    loss_csv: str
    table: str


def encoder_outputs(step: str) -> EncoderOutputs:
    """The outputs of ``train_encoder`` step ``step`` (historical names for the step
    ``train_encoder``; else ``models/<step>.json``, ``models/<step>-<hash>.pt``, ...)."""
    if step == "train_encoder":
        return EncoderOutputs(
            pointer="models/encoder.json",
            prefix="encoder",
            loss_csv="models/training_loss.csv",
            table="training_loss",
        )
    return EncoderOutputs(
        pointer=f"models/{step}.json",
        prefix=step,
        loss_csv=f"models/{step}_training_loss.csv",
        table=f"{step}_training_loss",
    )


def train_encoder_writes(step: str, params: TrainEncoderParams) -> tuple[str, ...]:
    """The store paths ``train_encoder`` step ``step`` writes (besides its checkpoints)."""
    out = encoder_outputs(step)
    return (out.pointer, f"tables/{out.table}.parquet")


class EmbedOutputs(BaseModel):
    """Where an ``embed`` step writes: its array ``(image, dim)`` and its record."""

    model_config = ConfigDict(frozen=True)

    array: str
    dim: str
    record: str


def embed_outputs(step: str) -> EmbedOutputs:
    """The outputs of ``embed`` step ``step``: ``embeddings (image, feature)`` and
    ``models/embed.json`` for the step ``embed``, else ``<step> (image, <step>_feature)`` and
    ``models/<step>.json`` (its own dimension: two encoders may differ in width)."""
    if step == "embed":
        return EmbedOutputs(array="embeddings", dim="feature", record="models/embed.json")
    return EmbedOutputs(array=step, dim=f"{step}_feature", record=f"models/{step}.json")


def embed_writes(step: str, params: EmbedParams) -> tuple[str, ...]:
    """The store paths ``embed`` step ``step`` writes."""
    out = embed_outputs(step)
    return (f"store.zarr/{out.array}/zarr.json", out.record)


def check_embed_job(params: EmbedParams, earlier: Sequence[EarlierStep]) -> JobProblems:
    """``encoder`` names one of the job's ``train_encoder`` steps (when the job has any and no
    ``checkpoint`` is given)."""
    trains = [e.name for e in earlier if e.stage == "train_encoder"]
    if params.checkpoint is not None or not trains or params.encoder in trains:
        return []
    return [
        (
            ("encoder",),
            f"{params.encoder!r} is not a train_encoder step of this job (those are "
            f"{', '.join(trains)}); set encoder: {trains[-1]}",
        )
    ]
