"""Parameters of the ``supervised_baseline`` stage (pydantic only: a job spec is validated
with these).

The spheroid thesis (source document 001, section 6.2) compares the linear probe on learned
features with a ResNet-18 trained from random initialisation, supervised, on the same labelled
images with weak augmentations, and scored on the same test wells. The split parameters
(``label_column``, ``group_column``, ``shots``, ``repeats``, ``test_fraction``) and ``rows``
mean what they mean for the ``probe`` stage: set them as in the job's probe step and both
draw the same test rows and k-shot training sets for each seed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core.names import StoreName
from pipeline.features.spec import DEFAULT_SHOTS, LabelColumn, RowSelection, ShotsList
from pipeline.workflows.embed.spec import AugmentParams

__all__ = ["SUPERVISED_TABLE", "SupervisedParams", "weak_augment"]

#: The table the stage writes (``tables/supervised_baseline.parquet``).
SUPERVISED_TABLE = "supervised_baseline"


def weak_augment() -> AugmentParams:
    """The thesis' weak augmentations: flips, crop-and-resize to 80-100 % of the area, blur.

    Right-angle rotations and brightness/contrast jitter are off.
    """
    return AugmentParams(
        crop=True,
        crop_scale=(0.8, 1.0),
        hflip=True,
        vflip=True,
        rot90=False,
        blur=True,
        brightness=0.0,
        contrast=0.0,
    )


class SupervisedParams(BaseModel):
    """Parameters of the ``supervised_baseline`` stage.

    Attributes
    ----------
    input : str
        Image array, ``(image, y, x[, channel])`` with 1 or 3 channels (e.g.
        ``spheroid_crops``): the images whose features the probe step scores.
    rows : RowSelection
        The images used, as for the probe (e.g. ``{table: spheroid_crops, where: ok}``).
    label_column : str
        The known class of each image (e.g. ``spheroid_crops.probe_group``), as the probe's.
    group_column : str, optional
        As the probe's: every split keeps each group (e.g. ``spheroid_crops.well_key``) on
        one side, with an approximate test fraction.
    shots : list of int or "all"
        Training examples per class (0 = all in the table), as the probe's; a value above the
        training examples of some class is skipped, with a warning in the log.
    repeats : int
        Seeded repeats (seeds ``seed, seed + 1, ...``), each with its own split; one network
        is trained per repeat and shots value.
    test_fraction : float
        As the probe's.
    arch : {"resnet18", "resnet_small"}
        The network, from random initialisation; ``resnet_small`` for CPU runs and tests.
    input_size : int
        Images are resized (training: cropped and resized) to this square side (px, >= 64).
    epochs, batch_size : int
        Passes over each training set, and images per step.
    lr, weight_decay : float
        AdamW, the learning rate following a cosine from ``lr`` to 0 over all the steps.
    augment : AugmentParams
        Training views; default the thesis' weak set (:func:`weak_augment`), and a job's
        ``augment:`` changes only the fields it names (``{blur: false}``: the weak set
        without blur). Test images are not augmented.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    amp : bool
        Mixed precision on CUDA.
    threads : int, optional
        CPU threads for torch (default: the threads of the training worker's host).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: StoreName
    rows: RowSelection = "all"
    label_column: LabelColumn
    group_column: LabelColumn | None = None
    shots: ShotsList = Field(default_factory=lambda: list(DEFAULT_SHOTS))
    repeats: int = Field(1, ge=1)
    test_fraction: float = Field(0.3, gt=0, lt=1)
    arch: Literal["resnet18", "resnet_small"] = "resnet18"
    input_size: int = Field(64, ge=64)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    augment: AugmentParams = Field(default_factory=weak_augment)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    amp: bool = True
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _from_weak(self) -> SupervisedParams:
        # Fields a job names replace the weak set's; the others keep it (AugmentParams' own
        # defaults are SimCLR's strong ones). After validation, so JSON's lists are tuples.
        if "augment" in self.model_fields_set:
            named = {name: getattr(self.augment, name) for name in self.augment.model_fields_set}
            object.__setattr__(self, "augment", weak_augment().model_copy(update=named))
        return self
