"""ResNet encoders and the SimCLR model that trains them, in plain :mod:`torch.nn`.

:class:`ResNetEncoder` is ResNet-18 (He et al. 2016) as torchvision builds it, without the
classifier: a 7x7 stride-2 stem, a 3x3 stride-2 max pool, four stages of basic blocks and a
global average pool, so an image becomes one feature vector. Parameter names follow
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so its ImageNet weights load
into the 3-channel encoder if someone has them. ``resnet_small`` is the same network, four
times narrower and with one block per stage, for CPU runs and tests.

:class:`SimCLRModel` adds SimCLR's projection head (Chen et al. 2020): the encoder's features
``h`` are what downstream steps embed and cluster; the projections ``z`` only feed the
contrastive loss. Its state dict holds ``encoder.*`` and ``head.*`` keys, so the trained
encoder alone is recovered with :func:`encoder_state_dict`.

:func:`build_encoder` and :func:`build_simclr` initialise from their own seed, so a model is
reproducible whatever else used the global torch generator, and building one leaves that
generator as it was.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from pipeline.errors import ParameterError

__all__ = [
    "MIN_INPUT_SIZE",
    "Arch",
    "BasicBlock",
    "EncoderConfig",
    "ProjectionHead",
    "ResNetEncoder",
    "SimCLRModel",
    "build_encoder",
    "build_simclr",
    "encoder_state_dict",
]

Arch = Literal["resnet18", "resnet_small"]

#: Smallest image side (px) the encoders take. The network downsamples by 32, so 64 px still
#: leaves a 2x2 map for the average pool; smaller inputs run but describe almost nothing.
MIN_INPUT_SIZE = 64

# (stage widths, blocks per stage) of each architecture.
_ARCHS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet_small": ((16, 32, 64, 128), (1, 1, 1, 1)),
}


class EncoderConfig(BaseModel):
    """The encoder and projection head of a SimCLR run.

    Images are resized to ``input_size x input_size`` before the encoder (see
    :func:`pipeline.workflows.embed.inputs.prepare_batch`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Arch = Field(
        "resnet18", description="resnet18 (11.2 M parameters) or resnet_small (CPU runs)"
    )
    in_channels: int = Field(1, description="image channels: 1 (grayscale) or 3 (RGB)")
    input_size: int = Field(
        128, ge=MIN_INPUT_SIZE, description="side (px) images are resized to for the encoder"
    )
    projection_dim: int = Field(128, ge=1, description="size of the projections z")
    projection_hidden: int | None = Field(
        None, ge=1, description="hidden width of the projection head (None: feature_dim)"
    )

    @field_validator("in_channels")
    @classmethod
    def _channels(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError(
                f"in_channels must be 1 (grayscale) or 3 (RGB), got {value}; "
                "convert the images to one of these first"
            )
        return value

    @property
    def feature_dim(self) -> int:
        """Length of the encoder's feature vectors ``h``: 512 (resnet18) or 128 (small)."""
        return _ARCHS[self.arch][0][-1]

    @property
    def hidden_dim(self) -> int:
        """Hidden width of the projection head: ``projection_hidden`` or ``feature_dim``."""
        return self.feature_dim if self.projection_hidden is None else self.projection_hidden


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the batch norm that follows every convolution has one.
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual shortcut (torchvision's ``BasicBlock``).

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first convolution; the shortcut is a strided 1x1 convolution plus batch
        norm when the stride or the channel count changes, the identity otherwise.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(n, in_planes, h, w)`` to ``(n, planes, ceil(h / stride), ceil(w / stride))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18 (or its small variant) without the classifier: images to feature vectors.

    Parameters
    ----------
    arch : {"resnet18", "resnet_small"}
        ``resnet18``: widths 64/128/256/512, two blocks per stage, 512 features.
        ``resnet_small``: widths 16/32/64/128, one block per stage, 128 features.
    in_channels : int
        Channels of the input images.

    Attributes
    ----------
    arch : str
    in_channels : int
    feature_dim : int
        Length of the output vectors.

    Notes
    -----
    Weights are initialised as torchvision's ``resnet18(zero_init_residual=True)``:
    Kaiming-normal convolutions (fan_out, ReLU), batch norm weight 1 and bias 0, and the last
    batch norm of every block with weight 0, so each block starts as the identity. Use
    :func:`build_encoder` for a seeded, reproducible initialisation.
    """

    def __init__(self, arch: Arch = "resnet18", in_channels: int = 1) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ParameterError(
                f"arch must be one of {sorted(_ARCHS)}, got {arch!r}; pick one of those"
            )
        if in_channels < 1:
            raise ParameterError(
                f"in_channels must be >= 1, got {in_channels}; pass the images' channel count"
            )
        widths, blocks = _ARCHS[arch]
        self.arch = arch
        self.in_channels = in_channels
        self.feature_dim = widths[-1]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = widths[0]
        stages = []
        for i, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(in_planes, planes, stride)]
            layers += [BasicBlock(planes, planes) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero gamma in each block's last norm: blocks start as identities, which helps early
        # training (Goyal et al. 2017), as torchvision's zero_init_residual=True.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch of images.

        Parameters
        ----------
        x : torch.Tensor, shape (n, in_channels, h, w)
            Float images, ``h, w >= 64`` (any size, square or not; contiguous or
            ``channels_last``), standardised as
            :func:`~pipeline.workflows.embed.inputs.to_tensor` does.

        Returns
        -------
        torch.Tensor, shape (n, feature_dim)
            One feature vector per image.

        Raises
        ------
        ParameterError
            If ``x`` is not 4-D, has the wrong channel count, or a side below 64 px.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ParameterError(
                f"the encoder takes images of shape (n, {self.in_channels}, h, w), got "
                f"{tuple(x.shape)}; pass {self.in_channels}-channel images "
                "(workflows.embed.inputs.prepare_batch makes them) or build the encoder with "
                "in_channels matching the data"
            )
        if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
            raise ParameterError(
                f"the encoder takes images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} px, "
                f"got shape {tuple(x.shape)}; resize them first (EncoderConfig.input_size, "
                "pipeline.workflows.embed.inputs.prepare_batch)"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class ProjectionHead(nn.Module):
    """SimCLR's projection MLP: Linear -> ReLU -> Linear.

    Parameters
    ----------
    in_dim : int
        Length of the encoder features.
    hidden_dim : int
        Width of the hidden layer.
    out_dim : int
        Length of the projections.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Project features ``(n, in_dim)`` to ``(n, out_dim)``."""
        return self.net(h)


class SimCLRModel(nn.Module):
    """Encoder plus projection head, as trained by SimCLR.

    Parameters
    ----------
    config : EncoderConfig

    Attributes
    ----------
    encoder : ResNetEncoder
    head : ProjectionHead
    config : EncoderConfig
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ResNetEncoder(config.arch, config.in_channels)
        self.head = ProjectionHead(config.feature_dim, config.hidden_dim, config.projection_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and project a batch.

        Parameters
        ----------
        x : torch.Tensor, shape (n, in_channels, h, w)
            As :meth:`ResNetEncoder.forward` takes.

        Returns
        -------
        h : torch.Tensor, shape (n, feature_dim)
            Encoder features (what gets embedded downstream).
        z : torch.Tensor, shape (n, projection_dim)
            Projections (what the contrastive loss compares).
        """
        h = self.encoder(x)
        return h, self.head(h)


def build_encoder(config: EncoderConfig, seed: int = 0) -> ResNetEncoder:
    """A freshly initialised encoder, the same for the same ``seed``.

    Parameters
    ----------
    config : EncoderConfig
        Only ``arch`` and ``in_channels`` matter here.
    seed : int
        Seed of the weight initialisation. The global torch generator is neither used nor
        changed.

    Returns
    -------
    ResNetEncoder
        On the CPU, in training mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNetEncoder(config.arch, config.in_channels)


def build_simclr(config: EncoderConfig, seed: int = 0) -> SimCLRModel:
    """A freshly initialised SimCLR model, the same for the same ``seed``.

    Parameters
    ----------
    config : EncoderConfig
    seed : int
        Seed of the weight initialisation. The global torch generator is neither used nor
        changed.

    Returns
    -------
    SimCLRModel
        On the CPU, in training mode. Its encoder equals ``build_encoder(config, seed)``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SimCLRModel(config)


def encoder_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's part of a :class:`SimCLRModel` state dict, with ``encoder.`` removed.

    Parameters
    ----------
    state : dict of str to torch.Tensor
        ``SimCLRModel.state_dict()`` (or a checkpoint of it).

    Returns
    -------
    dict of str to torch.Tensor
        Loads into a :class:`ResNetEncoder` of the same config with ``load_state_dict``.
    """
    prefix = "encoder."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
