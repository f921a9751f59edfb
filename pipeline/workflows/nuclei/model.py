"""Multi-ResUNet (Ibtehaz & Rahman 2020) in plain :mod:`torch.nn`, as source document 002 builds it.

The seed's Keras model, block for block:

- ``conv_block``: a bias-free convolution ("same" padding), batch norm, and a ReLU unless
  ``act=False``;
- ``multires_block``: with ``W = filters * alpha`` (alpha 1.67), three chained 3x3 conv blocks
  of ``int(W * 0.167)``, ``int(W * 0.333)`` and ``int(W * 0.5)`` channels, concatenated and
  batch-normed, plus a 1x1 conv block shortcut of the summed width; ReLU of the sum, then batch
  norm;
- ``res_path``: ``length`` times a 3x3 and a 1x1 conv block (no activation), summed, ReLU,
  batch norm: the skip connection of each level;
- encoder widths 32, 64, 128, 256 with res paths of length 4, 3, 2, 1 and 2x2 max pooling;
  a 512-wide bridge; decoders of a 2x2 stride-2 transposed convolution (with bias), the skip
  concatenated, and a multires block; a 1x1 convolution (with bias) to one channel.

Batch norm uses Keras' epsilon (1e-3) and momentum (0.99, ``momentum=0.01`` in torch's
convention), and convolutions Keras' Glorot-uniform initialisation, so the network trains as
the seed's does. :meth:`MultiResUNet.forward` returns the head's *logits*: the seed's sigmoid
is applied by the loss (binary cross-entropy on logits, which stays exact under mixed
precision, where a sigmoid then ``log`` does not) and by :func:`probabilities`.

An input whose sides are multiples of 16 (four poolings) keeps its size. Each output pixel
depends on the input within :func:`receptive_radius` pixels of it; tiled inference uses that
as its halo.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

__all__ = [
    "ALPHA",
    "DOWNSAMPLE",
    "ConvBlock",
    "MultiResBlock",
    "MultiResUNet",
    "ResPath",
    "SegmenterConfig",
    "build_segmenter",
    "multires_widths",
    "probabilities",
    "receptive_radius",
]

#: The multires block's width factor (the seed's ``alpha``).
ALPHA = 1.67
#: Input sides must be multiples of this (four 2x2 poolings).
DOWNSAMPLE = 16
# Keras' BatchNormalization defaults: epsilon 1e-3, moving average kept at 0.99.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class SegmenterConfig(BaseModel):
    """The architecture of a Multi-ResUNet: what a checkpoint needs to rebuild it.

    Attributes
    ----------
    in_channels : {1, 3}
        Image channels (grey fluorescence or RGB, as the Data Science Bowl's PNGs).
    widths : tuple of 4 int
        Encoder (and decoder) level widths, the seed's 32, 64, 128, 256.
    bridge : int
        Width of the bottom block, the seed's 512.
    res_lengths : tuple of 4 int
        Residual-path length of each level's skip connection, the seed's 4, 3, 2, 1.
    alpha : float
        Multires block width factor, the seed's 1.67.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_channels: int = Field(1, description="image channels: 1 (grey) or 3 (RGB)")
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    bridge: int = Field(512, ge=1)
    res_lengths: tuple[int, int, int, int] = (4, 3, 2, 1)
    alpha: float = Field(ALPHA, gt=0)

    @model_validator(mode="after")
    def _valid(self) -> SegmenterConfig:
        if self.in_channels not in (1, 3):
            raise ValueError(
                f"in_channels must be 1 (grey) or 3 (RGB), got {self.in_channels}; convert "
                "other images at ingest (input.mode: gray or rgb)"
            )
        narrow = [w for w in (*self.widths, self.bridge) if min(multires_widths(w, self.alpha)) < 1]
        if narrow or min(self.res_lengths) < 0:
            raise ValueError(
                f"every width must give each multires convolution at least one channel "
                f"(int(width * alpha * 0.167) >= 1; too narrow: {narrow}) and res_lengths "
                f"must be non-negative (got {self.res_lengths}); e.g. widths (32, 64, 128, "
                "256), bridge 512"
            )
        return self


def multires_widths(filters: int, alpha: float = ALPHA) -> tuple[int, int, int]:
    """The three chained convolutions' widths of a multires block, as the seed rounds them.

    Parameters
    ----------
    filters : int
    alpha : float

    Returns
    -------
    (int, int, int)
        ``int(W * 0.167), int(W * 0.333), int(W * 0.5)`` with ``W = filters * alpha``
        (truncation, as Python's ``int`` in the seed; e.g. 8, 17, 26 for 32 filters).
    """
    w = filters * alpha
    return int(w * 0.167), int(w * 0.333), int(w * 0.5)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class ConvBlock(nn.Module):
    """The seed's ``conv_block``: bias-free "same" convolution, batch norm, optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
        self.bn = _bn(out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MultiResBlock(nn.Module):
    """The seed's ``multires_block``; ``out_channels`` is the sum of its three widths."""

    def __init__(self, in_channels: int, filters: int, alpha: float = ALPHA):
        super().__init__()
        a, b, c = multires_widths(filters, alpha)
        self.out_channels = a + b + c
        self.conv3 = ConvBlock(in_channels, a, 3)
        self.conv5 = ConvBlock(a, b, 3)
        self.conv7 = ConvBlock(b, c, 3)
        self.bn_cat = _bn(self.out_channels)
        self.shortcut = ConvBlock(in_channels, self.out_channels, 1, act=False)
        self.relu = nn.ReLU(inplace=True)
        self.bn_out = _bn(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv3(x)
        x2 = self.conv5(x1)
        x3 = self.conv7(x2)
        xc = self.bn_cat(torch.cat([x1, x2, x3], dim=1))
        return self.bn_out(self.relu(xc + self.shortcut(x)))


class _ResUnit(nn.Module):
    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = ConvBlock(in_channels, filters, 3, act=False)
        self.shortcut = ConvBlock(in_channels, filters, 1, act=False)
        self.relu = nn.ReLU(inplace=True)
        self.bn = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.relu(self.conv(x) + self.shortcut(x)))


class ResPath(nn.Module):
    """The seed's ``res_path``: ``length`` residual 3x3 + 1x1 units on a skip connection."""

    def __init__(self, in_channels: int, filters: int, length: int):
        super().__init__()
        self.units = nn.Sequential(
            *(_ResUnit(in_channels if i == 0 else filters, filters) for i in range(length))
        )
        self.out_channels = filters if length else in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x)


class _Decoder(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, filters: int, alpha: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, filters, 2, stride=2)
        self.block = MultiResBlock(filters + skip_channels, filters, alpha)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class MultiResUNet(nn.Module):
    """The seed's ``build_multiresunet``, returning logits (see the module notes).

    Parameters
    ----------
    config : SegmenterConfig

    Notes
    -----
    ``forward(x)`` maps ``(n, in_channels, h, w)`` float images, ``h`` and ``w`` multiples of
    :data:`DOWNSAMPLE`, to ``(n, 1, h, w)`` logits of "nucleus".
    """

    def __init__(self, config: SegmenterConfig):
        super().__init__()
        self.config = config
        alpha = config.alpha
        encoders, paths = [], []
        cin = config.in_channels
        for filters, length in zip(config.widths, config.res_lengths, strict=True):
            block = MultiResBlock(cin, filters, alpha)
            encoders.append(block)
            paths.append(ResPath(block.out_channels, filters, length))
            cin = block.out_channels
        self.encoders = nn.ModuleList(encoders)
        self.res_paths = nn.ModuleList(paths)
        self.pool = nn.MaxPool2d(2)
        self.bridge = MultiResBlock(cin, config.bridge, alpha)
        cin = self.bridge.out_channels
        decoders = []
        for filters, path in zip(reversed(config.widths), reversed(paths), strict=True):
            dec = _Decoder(cin, path.out_channels, filters, alpha)
            decoders.append(dec)
            cin = dec.block.out_channels
        self.decoders = nn.ModuleList(decoders)
        self.head = nn.Conv2d(cin, 1, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                # Keras' defaults (glorot_uniform kernels, zero biases), as the seed trains.
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % DOWNSAMPLE or x.shape[-2] % DOWNSAMPLE:
            raise ValueError(
                f"MultiResUNet: input of {tuple(x.shape[-2:])} px; both sides must be "
                f"multiples of {DOWNSAMPLE} (pad the image, as segment does)"
            )
        skips = []
        for enc, path in zip(self.encoders, self.res_paths, strict=True):
            x = enc(x)
            skips.append(path(x))
            x = self.pool(x)
        x = self.bridge(x)
        for dec, skip in zip(self.decoders, reversed(skips), strict=True):
            x = dec(x, skip)
        return self.head(x)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The seed's sigmoid head: per-pixel probability of "nucleus", in float32."""
    return torch.sigmoid(logits.float())


def build_segmenter(config: SegmenterConfig, seed: int = 0) -> MultiResUNet:
    """A freshly initialised Multi-ResUNet, the same for the same ``seed``.

    Parameters
    ----------
    config : SegmenterConfig
    seed : int
        Seed of the weight initialisation. The global torch generator is neither used nor
        changed.

    Returns
    -------
    MultiResUNet
        On the CPU, in training mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultiResUNet(config)


def receptive_radius(config: SegmenterConfig) -> int:
    """How far (px) from an output pixel the input it depends on reaches.

    Parameters
    ----------
    config : SegmenterConfig

    Returns
    -------
    int
        The largest offset, along either axis, of an input pixel that can change an output
        pixel: 153 for the seed's network. A tile whose halo is at least this wide, and whose
        origin lies on the :data:`DOWNSAMPLE` grid (so the poolings see the same blocks),
        gives inside its core what the network gives on the whole image.

    Notes
    -----
    Exact interval arithmetic along one axis: a feature pixel ``i`` at level ``k`` (scale
    ``s = 2**k``) sees the input pixels ``s * i + [lo, hi]``. A 3x3 convolution widens both
    ends by ``s``; a 2x2 pooling adds ``s`` to ``hi`` (the second pixel of its pair); a 2x2
    stride-2 transposed convolution takes ``s`` off ``lo`` (an odd pixel's coarse parent starts
    one pixel earlier); a concatenation unites its inputs' intervals (the skip's res path is
    ``length`` more convolutions on the encoder's block).
    """

    def convs(iv: tuple[int, int], n: int, s: int) -> tuple[int, int]:
        return iv[0] - n * s, iv[1] + n * s

    iv = (0, 0)
    skips = []
    for k, length in enumerate(config.res_lengths):
        iv = convs(iv, 3, 2**k)  # the multires block's chained 3x3 convolutions
        skips.append(convs(iv, length, 2**k))
        iv = (iv[0], iv[1] + 2**k)  # pooling
    iv = convs(iv, 3, 2 ** len(config.widths))  # bridge
    for k in reversed(range(len(config.widths))):
        up = (iv[0] - 2**k, iv[1])
        cat = (min(up[0], skips[k][0]), max(up[1], skips[k][1]))
        iv = convs(cat, 3, 2**k)
    return max(-iv[0], iv[1])
