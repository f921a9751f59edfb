"""Parameters of the nuclei stages (pydantic only: a job spec is validated with these), and the
names of their outputs.

The default steps keep plain names (``train_segmenter`` writes ``models/segmenter.json``,
``segment`` writes ``labels``); a step with another name writes under its own, so that one
job can train two networks or segment two arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core.names import StoreName
from pipeline.core.registry import EarlierStep, JobProblems

__all__ = [
    "EvaluateParams",
    "NucleiAugment",
    "SegmentOutputs",
    "SegmentParams",
    "TrainOutputs",
    "TrainSegmenterParams",
    "check_segment_job",
    "evaluate_writes",
    "segment_outputs",
    "segment_writes",
    "train_outputs",
    "train_writes",
]

_DEVICE = r"^(auto|cpu|cuda(:\d+)?)$"


class NucleiAugment(BaseModel):
    """Training augmentations that suit microscopy: the optics have no up, no left and no
    preferred orientation, and the stain's brightness varies from image to image.

    Attributes
    ----------
    flips : bool
        Mirror left-right and top-bottom, each with probability 0.5.
    rot90 : bool
        Rotate by a uniformly random multiple of 90 degrees.
    brightness : float
        Add an offset uniform in ``[-b, b]`` (intensity units of ``[0, 1]`` images).
    contrast : float
        Scale about the image mean by a factor uniform in ``[1 - c, 1 + c]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    flips: bool = True
    rot90: bool = True
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.2, ge=0, le=1)


class TrainSegmenterParams(BaseModel):
    """Parameters of ``train_segmenter`` (source document 002's recipe as defaults).

    Attributes
    ----------
    images, masks : str
        Image array ``(image, y, x[, channel])`` and its ground truth ``(image, y, x)``
        (non-zero is nucleus), as ``ingest`` and ``ingest_masks`` write them.
    split : (float, float, float)
        Train / validation / test fractions of the images (seeded), the seed's 60/20/20.
    input_size : int
        Side of the square training patches (a multiple of 16; the seed's 256). Larger
        images give a random patch per epoch, smaller ones are zero-padded.
    widths, bridge : the network's widths (the seed's 32-256 and 512; narrower trains faster)
    epochs, batch_size, lr : the seed's 10 epochs, batches of 8, Adam at 1e-4
    dice_weight : float
        Weight of a soft Dice term added to the binary cross-entropy (0: BCE alone, as the
        seed).
    plateau_patience, plateau_factor : ReduceLROnPlateau on the validation loss (5, 0.1)
    early_stop_patience : int
        Stop after this many epochs without a better validation loss (20).
    augment : NucleiAugment
    device : str
        ``auto`` (a GPU worker's CUDA when the cluster has one, else CPU), ``cpu``, ``cuda[:N]``.
    amp : bool
        Mixed precision on CUDA.
    resume : bool
        Continue a stopped run of the same configuration from its last checkpoint.
    threads : int, optional
        CPU threads for torch (default: the training worker's host's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: StoreName = "images"
    masks: StoreName = "masks"
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    input_size: int = Field(256, ge=16)
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    bridge: int = Field(512, ge=1)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    dice_weight: float = Field(0.0, ge=0)
    plateau_patience: int = Field(5, ge=1)
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    early_stop_patience: int = Field(20, ge=1)
    augment: NucleiAugment = Field(default_factory=NucleiAugment)
    device: str = Field("auto", pattern=_DEVICE)
    amp: bool = True
    resume: bool = True
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _valid(self) -> TrainSegmenterParams:
        if self.input_size % 16:
            raise ValueError(
                f"input_size must be a multiple of 16 (four 2x2 poolings), got "
                f"{self.input_size}; e.g. {16 * round(self.input_size / 16) or 16}"
            )
        train, val, test = self.split
        if min(self.split) < 0 or train <= 0 or val <= 0 or abs(train + val + test - 1) > 1e-6:
            raise ValueError(
                f"split must be (train, validation, test) fractions >= 0 summing to 1 with "
                f"train and validation > 0, got {self.split}; e.g. (0.6, 0.2, 0.2)"
            )
        return self


class EvaluateParams(BaseModel):
    """Parameters of ``evaluate_segmentation``.

    Attributes
    ----------
    segmenter : str
        The ``train_segmenter`` step whose best checkpoint and test split are evaluated.
    threshold : float
        Probability above which a pixel is nucleus (the seed's 0.5).
    h, min_size : the instance step's neck depth (px) and smallest object (px), applied to
        the network's mask and the baseline's alike
    baseline_sigma : float
        Gaussian smoothing (px) of the Otsu baseline.
    gallery : int
        Test images whose image / truth / prediction triptychs the report shows.
    device, amp : as ``train_segmenter``
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    segmenter: StoreName = "train_segmenter"
    threshold: float = Field(0.5, gt=0, lt=1)
    h: float = Field(1.0, ge=0)
    min_size: int = Field(8, ge=1)
    baseline_sigma: float = Field(1.0, ge=0)
    gallery: int = Field(6, ge=0)
    device: str = Field("auto", pattern=_DEVICE)
    amp: bool = True


class SegmentParams(BaseModel):
    """Parameters of ``segment``: tiled inference over images of any size, then instance
    labels joined across tiles.

    Attributes
    ----------
    input : str
        ``(image, y, x[, channel])`` images or a 2-D ``mosaic``.
    segmenter : str
        The ``train_segmenter`` step whose best checkpoint is used when ``checkpoint`` is unset.
    checkpoint : str, optional
        A checkpoint file (a name under ``models/``, a path or an fsspec URL), or a run store
        (a folder or URL holding ``models/segmenter.json``) whose latest trained segmenter is
        used: a model trained once segments any store.
    tile : int
        Output tile side (a multiple of 16): one Zarr chunk of every output, and one forward
        pass of ``tile + 2 * halo`` pixels.
    halo : int, optional
        Context read around each tile (default: the network's receptive radius rounded up to
        16, 160 px for the seed's architecture; smaller is refused, as the tiles would then
        differ from whole-image inference).
    tiles_per_task : int
        Tiles one task infers (one model load per worker whatever this is).
    threshold : float
        Probability above which a pixel is nucleus.
    max_extent : int
        A connected foreground region at most this many pixels tall and wide is split into
        nuclei by the distance watershed; a larger one is labelled as one object. Also the
        context read around each labelling block.
    h, min_size : the instance step's neck depth (px) and smallest object (px)
    device, amp : as ``train_segmenter``
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: StoreName = "images"
    segmenter: StoreName = "train_segmenter"
    checkpoint: str | None = None
    tile: int = Field(1024, ge=16)
    halo: int | None = Field(None, ge=0)
    tiles_per_task: int = Field(4, ge=1)
    threshold: float = Field(0.5, gt=0, lt=1)
    max_extent: int = Field(96, ge=8)
    h: float = Field(1.0, ge=0)
    min_size: int = Field(8, ge=1)
    device: str = Field("auto", pattern=_DEVICE)
    amp: bool = True

    @model_validator(mode="after")
    def _valid(self) -> SegmentParams:
        if self.tile % 16 or (self.halo is not None and self.halo % 16):
            raise ValueError(
                f"tile and halo must be multiples of 16 (the network's pooling grid), got "
                f"tile {self.tile}, halo {self.halo}; e.g. tile 1024, halo 160"
            )
        if self.min_size > self.max_extent:
            raise ValueError(
                f"min_size ({self.min_size}) must not exceed max_extent ({self.max_extent})"
            )
        return self


class TrainOutputs(BaseModel):
    """Where a ``train_segmenter`` step writes: the pointer to its best checkpoint, the file
    prefix, the per-epoch table and CSV log, and the split table."""

    model_config = ConfigDict(frozen=True)

    pointer: str
    prefix: str
    table: str
    csv: str
    split: str


def train_outputs(step: str) -> TrainOutputs:
    """Outputs of ``train_segmenter`` step ``step`` (``models/segmenter.json``, tables
    ``segmenter_training`` and ``segmentation_split`` for the step ``train_segmenter``)."""
    if step == "train_segmenter":
        return TrainOutputs(
            pointer="models/segmenter.json",
            prefix="segmenter",
            table="segmenter_training",
            csv="models/segmenter_training.csv",
            split="segmentation_split",
        )
    return TrainOutputs(
        pointer=f"models/{step}.json",
        prefix=step,
        table=f"{step}_training",
        csv=f"models/{step}_training.csv",
        split=f"{step}_split",
    )


def train_writes(step: str, params: TrainSegmenterParams) -> tuple[str, ...]:
    """Store paths ``train_segmenter`` step ``step`` writes (besides its checkpoints)."""
    out = train_outputs(step)
    return (out.pointer, out.csv, f"tables/{out.table}.parquet", f"tables/{out.split}.parquet")


#: The tables and array ``evaluate_segmentation`` writes.
SCORES_TABLE = "segmentation_scores"
SUMMARY_TABLE = "segmentation_summary"
PREDICTED_MASKS = "predicted_masks"


def evaluate_writes(step: str, params: EvaluateParams) -> tuple[str, ...]:
    """Store paths ``evaluate_segmentation`` writes."""
    return (
        f"tables/{SCORES_TABLE}.parquet",
        f"tables/{SUMMARY_TABLE}.parquet",
        f"store.zarr/{PREDICTED_MASKS}/zarr.json",
    )


class SegmentOutputs(BaseModel):
    """Where a ``segment`` step writes: three arrays shaped as its input's planes, the nuclei
    table and a record (which checkpoint, halo, tiles)."""

    model_config = ConfigDict(frozen=True)

    probability: str
    mask: str
    labels: str
    table: str
    record: str


def segment_outputs(step: str) -> SegmentOutputs:
    """Outputs of ``segment`` step ``step``: ``nuclei_probability``, ``nuclei_mask``,
    ``labels``, table ``nuclei`` and ``models/segment.json`` for the step ``segment``, else
    prefixed with the step's name."""
    if step == "segment":
        return SegmentOutputs(
            probability="nuclei_probability",
            mask="nuclei_mask",
            labels="labels",
            table="nuclei",
            record="models/segment.json",
        )
    return SegmentOutputs(
        probability=f"{step}_probability",
        mask=f"{step}_mask",
        labels=f"{step}_labels",
        table=f"{step}_nuclei",
        record=f"models/{step}.json",
    )


def segment_writes(step: str, params: SegmentParams) -> tuple[str, ...]:
    """Store paths ``segment`` step ``step`` writes."""
    out = segment_outputs(step)
    return (
        f"store.zarr/{out.labels}/zarr.json",
        f"tables/{out.table}.parquet",
        out.record,
    )


def check_segment_job(
    params: SegmentParams | EvaluateParams, earlier: Sequence[EarlierStep]
) -> JobProblems:
    """``segmenter`` names one of the job's ``train_segmenter`` steps (when the job has any
    and no ``checkpoint`` is given)."""
    trains = [e.name for e in earlier if e.stage == "train_segmenter"]
    if getattr(params, "checkpoint", None) is not None or not trains:
        return []
    if params.segmenter in trains:
        return []
    return [
        (
            ("segmenter",),
            f"{params.segmenter!r} is not a train_segmenter step of this job (those are "
            f"{', '.join(trains)}); set segmenter: {trains[-1]}",
        )
    ]
