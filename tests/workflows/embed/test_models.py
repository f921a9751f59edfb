"""Tests of the encoders, the SimCLR model and input preparation (embed.models and inputs)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F

from pipeline.errors import ParameterError
from pipeline.workflows.embed import inputs
from pipeline.workflows.embed.inputs import prepare_batch, to_tensor
from pipeline.workflows.embed.models import (
    BasicBlock,
    EncoderConfig,
    ResNetEncoder,
    SimCLRModel,
    build_encoder,
    build_simclr,
    encoder_state_dict,
)

SMALL = EncoderConfig(arch="resnet_small", input_size=64, projection_dim=16)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- EncoderConfig ---------------------------------------------------------------------------


def test_config_defaults_and_feature_dim() -> None:
    cfg = EncoderConfig()
    assert (cfg.arch, cfg.in_channels, cfg.input_size, cfg.projection_dim) == (
        "resnet18",
        1,
        128,
        128,
    )
    assert cfg.feature_dim == 512
    assert cfg.hidden_dim == 512
    assert EncoderConfig(arch="resnet_small").feature_dim == 128
    assert EncoderConfig(projection_hidden=64).hidden_dim == 64


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("in_channels", 2, "1 (grayscale) or 3 (RGB)"),
        ("input_size", 32, "64"),
        ("projection_dim", 0, "1"),
        ("arch", "resnet50", "resnet18"),
        ("colour", True, "colour"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, words: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field) as info:
        EncoderConfig.model_validate({field: value})
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        EncoderConfig().in_channels = 3  # type: ignore[misc]


# --- ResNetEncoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (96, 96), (128, 128), (64, 80)])
def test_small_encoder_output_shapes(channels: int, size: tuple[int, int]) -> None:
    cfg = EncoderConfig(arch="resnet_small", in_channels=channels)
    model = SimCLRModel(cfg).eval()
    with torch.no_grad():
        h, z = model(torch.randn(2, channels, *size))
    assert h.shape == (2, 128)
    assert z.shape == (2, cfg.projection_dim)
    assert torch.isfinite(h).all() and torch.isfinite(z).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_output_shape(channels: int) -> None:
    encoder = build_encoder(EncoderConfig(in_channels=channels)).eval()
    with torch.no_grad():
        h = encoder(torch.randn(2, channels, 64, 80))
    assert h.shape == (2, 512)


def test_resnet18_parameter_count_matches_torchvision() -> None:
    # torchvision's resnet18 has 11,689,512 parameters; its fc (512 x 1000 + 1000) is
    # 513,000 of them. One input channel instead of three saves 2 x 64 x 7 x 7 stem weights.
    assert n_params(ResNetEncoder("resnet18", in_channels=3)) == 11_689_512 - 513_000
    assert n_params(ResNetEncoder("resnet18", in_channels=1)) == 11_176_512 - 2 * 64 * 7 * 7


def test_parameter_names_follow_torchvision() -> None:
    keys = set(ResNetEncoder("resnet18", 3).state_dict())
    for name in [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "layer4.1.conv2.weight",
    ]:
        assert name in keys
    assert "layer1.0.downsample.0.weight" not in keys  # stage 1 keeps width and stride
    assert not any(k.startswith("fc.") for k in keys)


def test_initialisation_as_torchvision_zero_init_residual() -> None:
    encoder = build_encoder(EncoderConfig(arch="resnet18"), seed=3)
    for name, p in encoder.named_parameters():
        if name.endswith("bn2.weight"):
            assert torch.all(p == 0), name  # every block starts as the identity
        elif "bn" in name or "downsample.1" in name:
            expected = 1.0 if name.endswith("weight") else 0.0
            assert torch.all(p == expected), name
    # Kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k)).
    block = encoder.layer3[0]
    assert isinstance(block, BasicBlock)
    w = block.conv1.weight.detach()
    assert float(w.std()) == pytest.approx(np.sqrt(2 / (256 * 9)), rel=0.02)


def test_encoder_rejects_small_images() -> None:
    encoder = build_encoder(SMALL)
    with pytest.raises(ParameterError, match=r"at least 64x64.*\(2, 1, 32, 32\)"):
        encoder(torch.randn(2, 1, 32, 32))
    with pytest.raises(ParameterError, match=r"\(2, 1, 64, 48\)"):
        encoder(torch.randn(2, 1, 64, 48))


def test_encoder_rejects_wrong_channels() -> None:
    encoder = build_encoder(SMALL)
    with pytest.raises(ParameterError, match=r"\(n, 1, h, w\), got \(2, 3, 64, 64\)"):
        encoder(torch.randn(2, 3, 64, 64))
    with pytest.raises(ParameterError, match=r"got \(1, 64, 64\)"):
        encoder(torch.randn(1, 64, 64))


# --- seeds, state dicts, memory format -------------------------------------------------------


def test_same_seed_same_weights_whatever_the_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_simclr(SMALL, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)  # global generator untouched
    torch.manual_seed(999)
    b = build_simclr(SMALL, seed=7).state_dict()
    c = build_simclr(SMALL, seed=8).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.conv1.weight"], c["encoder.conv1.weight"])
    assert not torch.equal(a["head.net.0.weight"], c["head.net.0.weight"])
    # build_simclr's encoder is build_encoder's.
    e = build_encoder(SMALL, seed=7).state_dict()
    assert all(torch.equal(e[k], a["encoder." + k]) for k in e)


def test_state_dict_keys_and_round_trip() -> None:
    model = build_simclr(SMALL, seed=0)
    assert {k.split(".")[0] for k in model.state_dict()} == {"encoder", "head"}
    x = torch.randn(4, 1, 64, 64)
    model.train()
    with torch.no_grad():
        model(x)  # moves batch norm running statistics away from their initial values
    model.eval()
    fresh = build_simclr(SMALL, seed=1).eval()
    fresh.load_state_dict(model.state_dict())
    encoder = build_encoder(SMALL, seed=2).eval()
    encoder.load_state_dict(encoder_state_dict(model.state_dict()))
    with torch.no_grad():
        h, z = model(x)
        h2, z2 = fresh(x)
        h3 = encoder(x)
    assert torch.equal(h, h2) and torch.equal(z, z2)
    assert torch.equal(h, h3)


def test_channels_last_gives_the_same_features() -> None:
    model = build_simclr(EncoderConfig(arch="resnet_small", in_channels=3), seed=0).eval()
    x = torch.randn(3, 3, 96, 80)
    with torch.no_grad():
        h, z = model(x)
        h_cl, z_cl = model(x.to(memory_format=torch.channels_last))
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        h_both, _ = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(h_cl, h, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z_cl, z, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h_both, h, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_features_match_cpu() -> None:
    model = build_simclr(EncoderConfig(arch="resnet_small", in_channels=3), seed=0).eval()
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        h, z = model(x)
        h_gpu, z_gpu = model.cuda()(x.cuda())
    # cuDNN may use TF32 for float32 convolutions: about 3 significant digits.
    torch.testing.assert_close(h_gpu.cpu(), h, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(z_gpu.cpu(), z, rtol=2e-2, atol=2e-2)


# --- inputs ----------------------------------------------------------------------------------


def test_to_tensor_standardises_each_image_and_channel() -> None:
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 60000, size=(3, 20, 30, 3)).astype(np.uint16)
    batch[1, ..., 2] //= 100  # channels of very different ranges
    x = to_tensor(batch, in_channels=3)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 20, 30)
    assert x.is_contiguous()
    mean = x.double().mean(dim=(2, 3))
    std = x.double().std(dim=(2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(3, 3, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(std, torch.ones(3, 3, dtype=torch.float64), atol=1e-5, rtol=0)
    # The layout is (n, c, h, w): pixel (i, j, k) of image n is x[n, k, i, j], standardised.
    ref = batch[2, :, :, 1].astype(np.float64)
    ref = (ref - ref.mean()) / ref.std()
    np.testing.assert_allclose(x[2, 1].numpy(), ref, atol=1e-5)


def test_to_tensor_keeps_precision_of_large_offsets() -> None:
    rng = np.random.default_rng(1)
    small = rng.normal(size=(2, 16, 16))
    x = to_tensor(1e7 + small, in_channels=1)  # float32 would round the offset to 1
    ref = to_tensor(small, in_channels=1)
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)


def test_to_tensor_in_blocks_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = np.random.default_rng(5).normal(3.0, 2.0, size=(5, 8, 8, 3))
    whole = to_tensor(batch, in_channels=3)
    monkeypatch.setattr(inputs, "_BLOCK_BYTES", 2 * 8 * 8 * 8 * 3)  # two images per block
    assert torch.equal(to_tensor(batch, in_channels=3), whole)


def test_to_tensor_sets_non_finite_pixels_to_zero_first() -> None:
    rng = np.random.default_rng(2)
    batch = rng.normal(5.0, 2.0, size=(2, 8, 8))
    bad = batch.copy()
    bad[0, 1, 1] = np.nan
    bad[0, 2, 3] = np.inf
    bad[1, 0, 0] = -np.inf
    fixed = batch.copy()
    fixed[0, 1, 1] = fixed[0, 2, 3] = fixed[1, 0, 0] = 0.0
    x = to_tensor(bad, in_channels=1)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, to_tensor(fixed, in_channels=1))


def test_to_tensor_constant_image_becomes_zeros() -> None:
    batch = np.stack([np.full((10, 12), 7, np.uint8), np.full((10, 12), 0.1)])
    x = to_tensor(batch, in_channels=1)
    assert torch.isfinite(x).all()
    assert torch.all(x[0] == 0)
    torch.testing.assert_close(x[1], torch.zeros(1, 10, 12), atol=1e-6, rtol=0)
    all_nan = to_tensor(np.full((1, 4, 4), np.nan), in_channels=1)
    assert torch.all(all_nan == 0)


@pytest.mark.parametrize("shape", [(2, 9, 11), (2, 9, 11, 1)])
def test_to_tensor_repeats_grayscale_to_three_channels(shape: tuple[int, ...]) -> None:
    batch = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    x3 = to_tensor(batch, in_channels=3)
    x1 = to_tensor(batch, in_channels=1)
    assert x3.shape == (2, 3, 9, 11) and x1.shape == (2, 1, 9, 11)
    for c in range(3):
        assert torch.equal(x3[:, c], x1[:, 0])


def test_to_tensor_errors() -> None:
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ParameterError, match=r"3 channels.*in_channels=1.*grayscale"):
        to_tensor(rgb, in_channels=1)
    with pytest.raises(ParameterError, match=r"4 channels.*in_channels=3"):
        to_tensor(np.zeros((2, 8, 8, 4)), in_channels=3)
    with pytest.raises(ParameterError, match=r"\(n, h, w\).*got shape \(8, 8\)"):
        to_tensor(np.zeros((8, 8)), in_channels=1)
    with pytest.raises(ParameterError, match=r"\(1, 2, 8, 8, 1\)"):
        to_tensor(np.zeros((1, 2, 8, 8, 1)), in_channels=1)
    with pytest.raises(ParameterError, match="complex"):
        to_tensor(np.zeros((1, 8, 8), np.complex64), in_channels=1)
    with pytest.raises(ParameterError, match="at least one pixel"):
        to_tensor(np.zeros((1, 0, 8)), in_channels=1)


def test_prepare_batch_resizes_with_antialiased_bilinear() -> None:
    rng = np.random.default_rng(4)
    cfg = EncoderConfig(arch="resnet_small", in_channels=3, input_size=64)
    batch = rng.integers(0, 255, size=(2, 150, 100)).astype(np.uint8)  # non-square, gray
    x = prepare_batch(batch, cfg)
    expected = F.interpolate(
        to_tensor(batch, 3), size=(64, 64), mode="bilinear", align_corners=False, antialias=True
    )
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert x.device.type == "cpu"
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    # Already of the input size: no interpolation at all.
    same = rng.normal(size=(2, 64, 64, 3))
    assert torch.equal(prepare_batch(same, cfg), to_tensor(same, 3))
    # And the result goes straight into the encoder.
    with torch.no_grad():
        assert build_encoder(cfg).eval()(x).shape == (2, 128)
