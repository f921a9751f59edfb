"""The Multi-ResUNet is the seed's network: its trainable parameter count equals the Keras
model's, inputs whose sides are multiples of 16 keep their size, and its receptive field is
what tiled inference takes as the halo."""

from __future__ import annotations

import pytest
import torch

from pipeline.workflows.nuclei.model import (
    SegmenterConfig,
    build_segmenter,
    multires_widths,
    receptive_radius,
)


def _keras_trainable(in_channels: int) -> int:
    """Trainable parameters of the seed's ``build_multiresunet``, counted from its code.

    Conv2D(use_bias=False) in ``conv_block``: k*k*cin*cout; BatchNormalization: gamma and beta
    (its moving mean and variance are not trainable); Conv2DTranspose(2, strides=2) and the
    head's Conv2D keep Keras' default bias.
    """

    def conv_block(cin: int, cout: int, k: int) -> int:
        return k * k * cin * cout + 2 * cout

    def multires(cin: int, filters: int) -> tuple[int, int]:
        w = filters * 1.67
        a, b, c = int(w * 0.167), int(w * 0.333), int(w * 0.5)
        nf = a + b + c
        n = conv_block(cin, a, 3) + conv_block(a, b, 3) + conv_block(b, c, 3)
        n += 2 * nf  # BatchNormalization of the concatenation
        n += conv_block(cin, nf, 1)  # shortcut
        n += 2 * nf  # BatchNormalization after the sum's ReLU
        return n, nf

    def res_path(cin: int, filters: int, length: int) -> int:
        n = 0
        for _ in range(length):
            n += conv_block(cin, filters, 3) + conv_block(cin, filters, 1) + 2 * filters
            cin = filters
        return n

    total, cin, skips = 0, in_channels, []
    for filters, length in ((32, 4), (64, 3), (128, 2), (256, 1)):
        n, nf = multires(cin, filters)
        total += n + res_path(nf, filters, length)
        skips.append(filters)
        cin = nf
    n, cin = multires(cin, 512)
    total += n
    for filters in (256, 128, 64, 32):
        total += 2 * 2 * cin * filters + filters  # Conv2DTranspose with bias
        n, cin = multires(filters + skips.pop(), filters)
        total += n
    return total + cin + 1  # the 1x1 sigmoid head, with bias


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_the_seeds_first_layers_have_the_seeds_widths() -> None:
    # The seed's model summary: conv2d (None, 256, 256, 8) 216, conv2d_1 (..., 17) 1224.
    assert multires_widths(32) == (8, 17, 26)
    model = build_segmenter(SegmenterConfig(in_channels=3))
    first = model.encoders[0]
    assert first.conv3.conv.weight.numel() == 216 and first.conv5.conv.weight.numel() == 1224


@pytest.mark.parametrize("channels", [1, 3])
def test_trainable_parameters_equal_the_keras_models(channels: int) -> None:
    model = build_segmenter(SegmenterConfig(in_channels=channels))
    assert _trainable(model) == _keras_trainable(channels)


@pytest.mark.parametrize(("channels", "height", "width"), [(1, 48, 80), (3, 32, 32)])
def test_sides_that_are_multiples_of_16_keep_their_size(
    channels: int, height: int, width: int
) -> None:
    model = build_segmenter(SegmenterConfig(in_channels=channels)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, height, width))
    assert out.shape == (2, 1, height, width)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, channels, 40, 50))


def test_the_same_seed_builds_the_same_weights() -> None:
    a, b = build_segmenter(SegmenterConfig(), seed=3), build_segmenter(SegmenterConfig(), seed=3)
    c = build_segmenter(SegmenterConfig(), seed=4)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_bad_configs_name_the_value() -> None:
    with pytest.raises(ValueError, match="in_channels must be 1"):
        SegmenterConfig(in_channels=2)
    with pytest.raises(ValueError, match=r"too narrow: \[2\]"):
        SegmenterConfig(widths=(32, 64, 2, 256))


def test_the_receptive_radius_is_the_networks_exact_reach() -> None:
    assert receptive_radius(SegmenterConfig()) == 153
    # The reach is the layout's, not the widths': a narrow network probes it quickly. With its
    # ReLUs as identities and its max pools as average pools (same windows), the network is
    # linear and an output pixel's gradient touches exactly the input it can depend on, with
    # no dead unit or unpicked pool element hiding part of it.
    config = SegmenterConfig(widths=(8, 8, 8, 8), bridge=8)
    model = build_segmenter(config).eval()
    for name, module in list(model.named_modules()):
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        if isinstance(module, torch.nn.ReLU):
            setattr(parent, name.rpartition(".")[2], torch.nn.Identity())
        elif isinstance(module, torch.nn.MaxPool2d):
            setattr(parent, name.rpartition(".")[2], torch.nn.AvgPool2d(2))
    side, centre = 352, 160
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, side, side, generator=generator).requires_grad_(True)
    out = model(x)
    rows = torch.arange(16)  # every offset on the 16 px pooling grid, one per image
    out[rows, 0, centre + rows, centre + rows].sum().backward()
    assert x.grad is not None
    reach = 0
    for r in range(16):
        ys, xs = torch.nonzero(x.grad[r, 0] != 0, as_tuple=True)
        c = centre + r
        reach = max(
            reach, c - int(ys.min()), int(ys.max()) - c, c - int(xs.min()), int(xs.max()) - c
        )
    assert reach == receptive_radius(config) == 153
