"""Tests of the batched SimCLR augmentations (pipeline.workflows.embed.augment)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from pipeline.errors import ParameterError
from pipeline.workflows.embed.augment import AugmentParams, augment_batch, crop_boxes

OFF: dict[str, Any] = {
    "crop": False,
    "hflip": False,
    "vflip": False,
    "rot90": False,
    "blur": False,
    "brightness": 0.0,
    "contrast": 0.0,
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def params(**on: Any) -> AugmentParams:
    """Everything off but what is named."""
    return AugmentParams(**{**OFF, **on})


def smooth_batch(n: int, size: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Smooth random images (white noise would make every transform look alike)."""
    g = gen(seed)
    coarse = torch.randn(n, channels, size // 8, size // 8, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def dihedral(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations and reflections of ``img`` (..., h, w), rotation index k first."""
    out = []
    for k in range(4):
        r = torch.rot90(img, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def which_dihedral(out: torch.Tensor, img: torch.Tensor, atol: float = 1e-4) -> int:
    matches = [i for i, t in enumerate(dihedral(img)) if torch.allclose(out, t, atol=atol)]
    assert len(matches) == 1, matches
    return matches[0]


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.8, 0.5)),
        ("crop_scale", (0.5, 1.5)),
        ("crop_ratio", (0.0, 1.0)),
        ("crop_ratio", (2.0, 1.0)),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_prob", 1.5),
        ("brightness", -0.1),
        ("contrast", 1.2),
        ("jitter", 0.1),
    ],
)
def test_params_reject_bad_values(field: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        AugmentParams.model_validate({field: value})


def test_augment_errors() -> None:
    x = torch.zeros(2, 1, 16, 16)
    with pytest.raises(ParameterError, match=r"\(n, c, h, w\).*\(16, 16\)"):
        augment_batch(torch.zeros(16, 16), AugmentParams(), 16, gen())
    with pytest.raises(ParameterError, match=r"torch.int64"):
        augment_batch(torch.zeros(2, 1, 16, 16, dtype=torch.long), AugmentParams(), 16, gen())
    with pytest.raises(ParameterError, match="out_size"):
        augment_batch(x, AugmentParams(), 0, gen())


# --- identity, determinism, sizes ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_everything_off_is_the_identity(dtype: torch.dtype) -> None:
    x = torch.randn(5, 3, 24, 24, dtype=dtype)
    y = augment_batch(x, params(), 24, gen())
    assert y.dtype == dtype
    assert torch.equal(y, x)
    y[0] = 0  # the output is the caller's to edit: the input must not change with it
    assert not torch.equal(y, x)
    # The whole crop box with no resize is the identity too, through the sampling.
    y = augment_batch(x, params(crop=True, crop_scale=(1, 1), crop_ratio=(1, 1)), 24, gen())
    torch.testing.assert_close(y, x, atol=1e-4, rtol=0)


def test_same_seed_same_views_other_seed_other_views() -> None:
    x = smooth_batch(8, 64)
    p = AugmentParams()
    a = augment_batch(x, p, 48, gen(1))
    b = augment_batch(x, p, 48, gen(1))
    c = augment_batch(x, p, 48, gen(2))
    assert a.shape == (8, 1, 48, 48)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Consecutive calls on one generator give new views (two views of the same image).
    g = gen(1)
    assert not torch.allclose(augment_batch(x, p, 48, g), augment_batch(x, p, 48, g))


def test_downsizes_128_to_64_like_antialiased_interpolation() -> None:
    x = smooth_batch(4, 128, channels=3) + 0.3 * torch.randn(4, 3, 128, 128, generator=gen(5))
    y = augment_batch(x, params(), 64, gen())
    assert y.shape == (4, 3, 64, 64)
    ref = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=0)
    # With every augmentation on the output has the same size.
    assert augment_batch(x, AugmentParams(), 64, gen()).shape == (4, 3, 64, 64)


def test_half_precision_and_autocast() -> None:
    x = smooth_batch(6, 64, channels=3)
    p = AugmentParams()
    ref = augment_batch(x, p, 64, gen(4))
    for dtype in (torch.float16, torch.bfloat16):
        y = augment_batch(x.to(dtype), p, 64, gen(4))
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = augment_batch(x, p, 64, gen(4))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=0)


# --- flips and rotations ---------------------------------------------------------------------


def test_flips_and_rotations_are_the_dihedral_group() -> None:
    x = smooth_batch(64, 16)
    y = augment_batch(x, params(hflip=True, vflip=True, rot90=True), 16, gen(0))
    seen = {which_dihedral(y[i], x[i]) for i in range(64)}
    assert len(seen) >= 6  # 8 equally likely transforms over 64 images


def test_without_rot90_flips_never_turn_by_90_degrees() -> None:
    x = smooth_batch(64, 16)
    y = augment_batch(x, params(hflip=True, vflip=True), 16, gen(0))
    ks = {which_dihedral(y[i], x[i]) // 2 for i in range(64)}
    # Identity, hflip, vflip (= rot180 + hflip) and rot180 only: k in {0, 2}.
    assert ks == {0, 2}


def test_sampled_path_turns_like_the_exact_path() -> None:
    # A crop box that is the whole image forces the affine sampling; the same draws must give
    # the same flips and rotations as the pixel-moving path used without a crop.
    x = smooth_batch(32, 32)
    dih = {"hflip": True, "vflip": True, "rot90": True}
    exact = augment_batch(x, params(**dih), 32, gen(9))
    sampled = augment_batch(
        x, params(**dih, crop=True, crop_scale=(1, 1), crop_ratio=(1, 1)), 32, gen(9)
    )
    torch.testing.assert_close(sampled, exact, atol=1e-4, rtol=0)


# --- any-angle rotation ----------------------------------------------------------------------


def soft_disc(h: int, w: int, radius: float) -> torch.Tensor:
    """A centred disc with a smooth (1 px) edge, so bilinear resampling barely changes it."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.sigmoid(radius - torch.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2))


def inscribed(h: int, w: int, out: int) -> torch.Tensor:
    """Output pixels of a whole h x w image resized to out x out that show input points within
    half the short side of the centre: any turn keeps those inside the image, so no padding."""
    i = (torch.arange(out, dtype=torch.float64) + 0.5) * h / out - 0.5 - (h - 1) / 2
    j = (torch.arange(out, dtype=torch.float64) + 0.5) * w / out - 0.5 - (w - 1) / 2
    return torch.hypot(i[:, None], j[None, :]) < min(h, w) / 2 - 1


def drawn_angles(n: int, h: int, w: int, p: AugmentParams, seed: int) -> torch.Tensor:
    """The angles (rad) augment_batch turns by: its draws replayed, in order and amount."""
    g = gen(seed)
    crop_boxes(n, h, w, p.crop_scale, p.crop_ratio, g)
    torch.rand(n, 2, generator=g)
    torch.randint(0, 4, (n,), generator=g)
    for _ in range(4):  # blur, sigma, brightness, contrast
        torch.rand(n, generator=g, dtype=torch.float64)
    return 2.0 * np.pi * torch.rand(n, generator=g, dtype=torch.float64)


def test_rotate_turns_an_off_centre_dot_by_the_drawn_angle() -> None:
    size, radius = 64, 16.0
    centre = (size - 1) / 2  # pixel centres: the image turns about the middle of the grid
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float64),
        torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )
    # A Gaussian dot (sigma 2 px): nothing reaches the border, where reflections would add.
    dot = torch.exp(-((xx - centre - radius) ** 2 + (yy - centre) ** 2) / 8.0)
    dot = dot.expand(16, 1, size, size)
    p = params(rotate=True)
    y = augment_batch(dot, p, size, gen(7))
    angle = drawn_angles(16, size, size, p, seed=7)
    mass = y[:, 0].sum(dim=(1, 2))
    cx = (y[:, 0] * xx).sum(dim=(1, 2)) / mass - centre
    cy = (y[:, 0] * yy).sum(dim=(1, 2)) / mass - centre
    # Counter-clockwise on screen (y down): the dot at angle 0 moves to (cos a, -sin a) r.
    torch.testing.assert_close(cx, radius * torch.cos(angle), atol=0.3, rtol=0)
    torch.testing.assert_close(cy, -radius * torch.sin(angle), atol=0.3, rtol=0)
    # The dot keeps its light, and the angles spread over the whole turn.
    torch.testing.assert_close(mass, dot[:, 0].sum(dim=(1, 2)), rtol=0.02, atol=0)
    assert float(angle.min()) < 1.0 and float(angle.max()) > 2 * np.pi - 1.0


def test_rotate_leaves_a_centred_disc_a_disc() -> None:
    # Radius 18 of a 48 px image: its mirror images across the borders start 30 px from the
    # centre, within reach of a turned view's corners (up to 34 px).
    disc = soft_disc(48, 48, 18.0).expand(8, 1, 48, 48)
    y = augment_batch(disc, params(rotate=True), 48, gen(1))
    keep = inscribed(48, 48, 48)
    torch.testing.assert_close(y[..., keep], disc[..., keep], atol=0.02, rtol=0)
    # Outside the inscribed circle a turned view shows the reflections in its corners.
    assert float((y - disc).abs().amax()) > 0.1


def test_rotate_turns_non_square_images_in_pixels_without_shear() -> None:
    # A disc in a 48 x 80 image, stretched to the 48 x 48 output without a crop: the same
    # axis-aligned ellipse at every angle. Turning in normalised coordinates instead (whose
    # x and y px scales differ here) would shear it into a tilted ellipse.
    disc = soft_disc(48, 80, 14.0).expand(8, 1, 48, 80)
    still = augment_batch(disc, params(), 48, gen(2))
    turned = augment_batch(disc, params(rotate=True), 48, gen(2))
    keep = inscribed(48, 80, 48)
    torch.testing.assert_close(turned[..., keep], still[..., keep], atol=0.03, rtol=0)
    assert float((turned - still).abs().amax()) > 0.1  # the turn did happen


def test_rotate_is_deterministic_per_seed_and_composes_with_the_rest() -> None:
    x = smooth_batch(8, 64, channels=3)
    p = AugmentParams(rotate=True)
    a = augment_batch(x, p, 48, gen(5))
    assert a.shape == (8, 3, 48, 48) and torch.isfinite(a).all()
    assert torch.equal(a, augment_batch(x, p, 48, gen(5)))
    assert not torch.allclose(a, augment_batch(x, p, 48, gen(6)))
    # Switching rotate on changes the geometry only: crop, flips, blur and jitter draws stay.
    assert not torch.allclose(a, augment_batch(x, AugmentParams(), 48, gen(5)))


def test_rotate_off_keeps_the_views_as_they_were() -> None:
    # Sums of views made before `rotate` existed (its draw is appended after all others), in
    # float64 so they hold to ~1e-12 on any CPU.
    coarse = torch.randn(4, 1, 4, 4, generator=gen(0), dtype=torch.float64)
    x = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)
    before = {
        24: (
            [-28.46698926309955, -6.908564622227749, 179.59050343019092, 109.92117802604852],
            [-63.98727977544726, -90.25069524988447, 70.01139466413476, 16.251070403755158],
        ),
        32: (
            [9.786118559578155, -139.71055940105728, 362.51487517780873, -271.2058686839134],
            [-82.48278869276294, -237.4721254213899, 183.37188761315173, -107.80668660917644],
        ),
    }
    for p, out in ((AugmentParams(), 24), (AugmentParams(crop=False, blur=False), 32)):
        assert not p.rotate
        y = augment_batch(x, p, out, gen(3))
        ramp = torch.arange(out * out, dtype=torch.float64).view(out, out) / (out * out)
        sums = torch.stack([y.sum(dim=(1, 2, 3)), (y * ramp).sum(dim=(1, 2, 3))])
        expected = torch.tensor(before[out], dtype=torch.float64)
        torch.testing.assert_close(sums, expected, rtol=1e-12, atol=1e-10)


# --- crop ------------------------------------------------------------------------------------


def test_crop_boxes_as_torchvision_draws_them() -> None:
    boxes = crop_boxes(2000, 60, 80, (0.25, 0.5), (3 / 4, 4 / 3), gen(0))
    top, left, bh, bw = boxes.T
    assert torch.all(boxes == torch.round(boxes))  # whole pixels
    assert torch.all((top >= 0) & (left >= 0) & (top + bh <= 60) & (left + bw <= 80))
    area = bh * bw / (60 * 80)
    assert float(area.min()) > 0.23 and float(area.max()) < 0.52  # up to rounding of sides
    ratio = bw / bh
    assert float(ratio.min()) > 0.7 and float(ratio.max()) < 1.4
    # Positions cover the image: some boxes touch each edge.
    assert float(top.min()) == 0 and float(left.min()) == 0
    assert float((top + bh).max()) == 60 and float((left + bw).max()) == 80


def test_crop_boxes_fall_back_to_the_central_crop() -> None:
    # No box of ratio 2 and the whole area fits a square image: torchvision's fallback is the
    # full width with height width / 2, centred.
    boxes = crop_boxes(5, 64, 64, (1.0, 1.0), (2.0, 2.0), gen(0))
    assert torch.equal(boxes, torch.tensor([[16.0, 0.0, 32.0, 64.0]] * 5, dtype=torch.float64))


def test_crop_of_a_quarter_of_the_area_zooms_in_by_two() -> None:
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    ramp = (xx + yy).expand(16, 1, 128, 128)
    y = augment_batch(ramp, params(crop=True, crop_scale=(0.25, 0.25)), 128, gen(0))
    value_range = y.amax(dim=(1, 2, 3)) - y.amin(dim=(1, 2, 3))
    in_range = float(ramp.max() - ramp.min())
    # Box sides are 0.43-0.58 of the image (ratio 3/4-4/3), so the ramp's range halves.
    assert torch.all((value_range > 0.42 * in_range) & (value_range < 0.58 * in_range))
    # The crops sit at different places: their means differ.
    assert float(y.mean(dim=(1, 2, 3)).std()) > 5.0
    # Still a linear ramp in the interior (no aliasing, no reflection artefacts inside).
    interior = y[:, 0, 8:-8, 8:-8]
    lap = interior[:, 1:-1, 1:-1] * 4 - (
        interior[:, 2:, 1:-1]
        + interior[:, :-2, 1:-1]
        + interior[:, 1:-1, 2:]
        + interior[:, 1:-1, :-2]
    )
    assert float(lap.abs().max()) < 1e-2


# --- blur, brightness, contrast --------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_blur_matches_scipy_gaussian_filter(sigma: float) -> None:
    x = torch.randn(4, 2, 36, 36, generator=gen(3), dtype=torch.float64)
    p = params(blur=True, blur_sigma=(sigma, sigma), blur_prob=1.0)
    y = augment_batch(x, p, 36, gen(0))
    for i in range(4):
        for c in range(2):
            # Borders too: the padding repeats the edge pixel, as scipy's "reflect" does.
            ref = ndimage.gaussian_filter(x[i, c].numpy(), sigma, mode="reflect", truncate=3.0)
            np.testing.assert_allclose(y[i, c].numpy(), ref, atol=1e-10)


def test_blur_probability_and_float32() -> None:
    x = torch.randn(200, 1, 32, 32, generator=gen(4))
    y = augment_batch(x, params(blur=True, blur_sigma=(1.0, 1.0), blur_prob=0.5), 32, gen(0))
    unchanged = torch.tensor([torch.equal(y[i], x[i]) for i in range(200)])
    assert 70 < int(unchanged.sum()) < 130  # about half are blurred; the others stay exact
    blurred = y[~unchanged]
    ref = ndimage.gaussian_filter(x[~unchanged].numpy(), (0, 0, 1.0, 1.0), truncate=3.0)
    np.testing.assert_allclose(blurred.numpy(), ref, atol=1e-5)
    # Blur never adds or removes light.
    torch.testing.assert_close(blurred.mean(dim=(1, 2, 3)), x[~unchanged].mean(dim=(1, 2, 3)))


def test_brightness_shifts_the_mean_within_range() -> None:
    x = smooth_batch(200, 16, channels=3)
    y = augment_batch(x, params(brightness=0.4), 16, gen(0))
    shift = (y - x).mean(dim=(1, 2, 3))
    torch.testing.assert_close(y - x, shift.view(-1, 1, 1, 1).expand_as(x), atol=1e-5, rtol=0)
    assert float(shift.abs().max()) <= 0.4 + 1e-6
    assert float(shift.min()) < -0.3 and float(shift.max()) > 0.3  # uniform over [-b, b]


def test_contrast_scales_about_the_mean_within_range() -> None:
    x = smooth_batch(200, 16, channels=3) + 1.0
    y = augment_batch(x, params(contrast=0.4), 16, gen(0))
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)
    factor = y.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert float(factor.min()) >= 0.6 - 1e-5 and float(factor.max()) <= 1.4 + 1e-5
    assert float(factor.min()) < 0.7 and float(factor.max()) > 1.3


def test_default_augmentation_is_fast_enough() -> None:
    import time

    x = torch.randn(256, 1, 128, 128)
    g = gen(0)
    augment_batch(x[:8], AugmentParams(), 128, g)  # first call sets up kernels
    start = time.perf_counter()
    y = augment_batch(x, AugmentParams(), 128, g)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert time.perf_counter() - start < 2.0  # typically ~0.15 s on 2 cores


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_cpu_for_the_same_generator_state(dtype: torch.dtype) -> None:
    x = smooth_batch(16, 96, channels=3)
    p = AugmentParams()
    cpu = augment_batch(x, p, 64, gen(11))
    gpu = augment_batch(x.cuda().to(dtype), p, 64, gen(11))
    assert gpu.device.type == "cuda" and gpu.dtype == dtype
    # cuDNN may run the blur's float32 convolution in TF32 (about 3 significant digits).
    torch.testing.assert_close(gpu.float().cpu(), cpu, atol=2e-2, rtol=2e-2)
    with torch.autocast("cuda", dtype=torch.float16):
        amp = augment_batch(x.cuda(), p, 64, gen(11))
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp.cpu(), cpu, atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
def test_cuda_rotate_matches_cpu() -> None:
    x = smooth_batch(16, 96, channels=3)
    p = AugmentParams(rotate=True)
    cpu = augment_batch(x, p, 64, gen(12))
    gpu = augment_batch(x.cuda(), p, 64, gen(12))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-2, rtol=2e-2)
