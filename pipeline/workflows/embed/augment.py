"""Batched random augmentations for SimCLR training, on whatever device the batch is on.

SimCLR learns features by making two random views of each image agree (Chen et al. 2020,
section 3 and appendix A): a random resized crop, flips and right-angle rotations (images of
the sky or under a microscope have no "up"), optionally a rotation by any angle (``rotate``:
bright-field spheroids have no orientation at all), Gaussian blur and brightness/contrast
jitter.
:func:`augment_batch` draws every random number for the whole batch from one CPU
:class:`torch.Generator` and then applies them without a Python loop over images:

1. crop, flips, right-angle and any-angle rotation are one affine map per image, sampled with
   :func:`torch.nn.functional.affine_grid` and :func:`~torch.nn.functional.grid_sample`
   (bilinear, reflection padding) straight to ``out_size x out_size``;
2. the Gaussian blur is separable, a grouped convolution over all blurred images at once;
3. contrast then brightness, per image.

Because the random numbers come from a CPU generator, the same generator state gives the same
augmentation on the CPU and on a GPU (up to float rounding). Inputs are expected standardised
(:func:`~pipeline.workflows.embed.inputs.to_tensor`),
so brightness offsets are in units of the image's
standard deviation.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.errors import ParameterError
from pipeline.workflows.embed.spec import AugmentParams

__all__ = ["CROP_ATTEMPTS", "AugmentParams", "augment_batch", "crop_boxes"]

#: Candidate boxes drawn per image before falling back to the central crop (torchvision's 10).
CROP_ATTEMPTS = 10

# A crop more than this many times larger than the output (per side) is first shrunk with an
# antialiased resize of the whole batch: bilinear sampling alone would skip pixels (aliasing).
_PRESHRINK = 2.0


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    # Augmentation is data preparation: keep the caller's autocast (if any) from running the
    # sampling and blur in half precision, where grid coordinates would be off by ~0.1 px.
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw random resized crop boxes as torchvision's ``RandomResizedCrop`` does, vectorised.

    Per image, :data:`CROP_ATTEMPTS` candidates are drawn with an area fraction uniform in
    ``scale`` and an aspect ratio (width / height) log-uniform in ``ratio``; sides are
    rounded to whole pixels and the first candidate that fits is placed at a uniformly random
    whole-pixel position. Images with no fitting candidate get the central crop of the
    largest box whose ratio is within ``ratio``.

    Parameters
    ----------
    n : int
        Number of boxes.
    height, width : int
        Image size (px).
    scale, ratio : tuple of float
        As :class:`AugmentParams` ``crop_scale`` and ``crop_ratio``.
    generator : torch.Generator
        CPU generator all random numbers are drawn from (always the same amount of them).

    Returns
    -------
    torch.Tensor of float64, shape (n, 4)
        ``top, left, box_height, box_width`` in px, on the CPU.
    """
    opts: dict[str, Any] = {"generator": generator, "dtype": torch.float64}
    u_area = torch.rand(n, CROP_ATTEMPTS, **opts)
    u_ratio = torch.rand(n, CROP_ATTEMPTS, **opts)
    u_pos = torch.rand(n, CROP_ATTEMPTS, 2, **opts)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    bw = torch.round(torch.sqrt(area * aspect))
    bh = torch.round(torch.sqrt(area / aspect))
    fits = (bw > 0) & (bw <= width) & (bh > 0) & (bh <= height)
    # Like torchvision's loop, the first candidate that fits wins.
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    bh = bh.gather(1, first)[:, 0]
    bw = bw.gather(1, first)[:, 0]
    u_top = u_pos[..., 0].gather(1, first)[:, 0]
    u_left = u_pos[..., 1].gather(1, first)[:, 0]
    top = torch.minimum(torch.floor(u_top * (height - bh + 1)), height - bh)
    left = torch.minimum(torch.floor(u_left * (width - bw + 1)), width - bw)

    # torchvision's fallback: the whole image, narrowed to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), float(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = float(round(height * ratio[1])), float(height)
    else:
        fw, fh = float(width), float(height)
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float64)
    boxes = torch.stack([top, left, bh, bw], dim=1)
    return torch.where(fits.any(dim=1, keepdim=True), boxes, fallback)


def _dihedral(hflip: torch.Tensor, vflip: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # The 2x2 matrix R^k F mapping output to input coordinates (x right, y down, normalised):
    # flips F = diag(+-1, +-1) and R = [[0, -1], [1, 0]], the map of torch.rot90(dims=(-2, -1)).
    f = torch.zeros(k.shape[0], 2, 2, dtype=torch.float64)
    f[:, 0, 0] = 1.0 - 2.0 * hflip.to(torch.float64)
    f[:, 1, 1] = 1.0 - 2.0 * vflip.to(torch.float64)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    powers = torch.stack([torch.linalg.matrix_power(rot, i) for i in range(4)])
    return powers[k] @ f


def _rotated_box(
    bh: torch.Tensor, bw: torch.Tensor, h: int, w: int, angle: torch.Tensor
) -> torch.Tensor:
    # The (n, 2, 2) map from the output's normalised coordinates to the input's, for a box of
    # bh x bw px turned by `angle` (rad) about its centre. Normalised x and y have different
    # pixel scales on a non-square box or image, so the turn happens in pixels: scale by the
    # box's sides in px, rotate, divide by the image's (the factors 2 of [-1, 1] cancel). At
    # angle 0 this is the unrotated map diag(bw / w, bh / h).
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)
    to_px = torch.diag_embed(torch.stack([bw, bh], dim=1))
    from_px = torch.diag(torch.tensor([1.0 / w, 1.0 / h], dtype=torch.float64))
    return from_px @ rot @ to_px


def _exact_dihedral(
    x: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor, k: torch.Tensor
) -> torch.Tensor:
    # Same maps as _dihedral but by moving pixels (square images, no resize): exact, and no
    # interpolation blur. out(p) = in(R^k F p) is rotate-by-k first, then flip.
    def where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(x.device).view(-1, 1, 1, 1), a, b)

    for i in (1, 2, 3):
        if bool((k == i).any()):
            x = where(k == i, torch.rot90(x, i, dims=(-2, -1)), x)
    if bool(hflip.any()):
        x = where(hflip, x.flip(-1), x)
    if bool(vflip.any()):
        x = where(vflip, x.flip(-2), x)
    return x


def _reflect_index(size: int, radius: int, device: torch.device) -> torch.Tensor:
    # Indices of a signal padded by `radius` on each side with the edge pixel repeated
    # (scipy.ndimage's mode "reflect", numpy's "symmetric"); any radius, even > size.
    idx = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(idx < size, idx, 2 * size - 1 - idx)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    # Separable Gaussian with a per-image sigma (px), truncated at ceil(3 * max sigma), as a
    # grouped convolution over all n * c channels at once.
    n, c, h, w = x.shape
    radius = math.ceil(3.0 * float(sigma.max()))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    y = x.reshape(1, n * c, h, w)
    y = y.index_select(2, _reflect_index(h, radius, x.device))
    y = F.conv2d(y, kernel.view(n * c, 1, -1, 1), groups=n * c)
    y = y.index_select(3, _reflect_index(w, radius, x.device))
    y = F.conv2d(y, kernel.view(n * c, 1, 1, -1), groups=n * c)
    return y.view(n, c, h, w)


def augment_batch(
    x: torch.Tensor, params: AugmentParams, out_size: int, generator: torch.Generator
) -> torch.Tensor:
    """One random view of each image in a batch.

    Parameters
    ----------
    x : torch.Tensor, shape (n, c, h, w)
        Float images (any float dtype, any device), standardised as
        :func:`pipeline.workflows.embed.inputs.to_tensor` makes them.
    params : AugmentParams
        Which augmentations to apply.
    out_size : int
        Side (px) of the square output: the encoder's input size.
    generator : torch.Generator
        A CPU generator; every random number is drawn from it (the same amount whatever
        ``params`` switches on), then moved to ``x.device``.

    Returns
    -------
    torch.Tensor, shape (n, c, out_size, out_size)
        Same device and dtype as ``x``. Half-precision input is computed in float32 (and
        autocast is switched off inside), then cast back. With everything off and
        ``out_size == h == w`` the input comes back unchanged. Without a crop the whole image
        is resized (non-square ones stretched) to the output.

    Raises
    ------
    ParameterError
        If ``x`` is not a 4-D float tensor with pixels, ``out_size < 1`` or ``generator`` is
        not a CPU generator.

    Notes
    -----
    Crop, flips and rotations are sampled together, bilinearly, with reflection padding; where
    all images' crops are at least twice the output per side, the batch is first shrunk with
    an antialiased resize so the sampling does not alias. Without a crop, resize or
    ``rotate``, the flips and right-angle rotations move pixels exactly instead.

    With ``rotate`` the crop box (the whole image without a crop) turns about its centre by
    ``a = 2 pi u`` rad, ``u`` uniform in ``[0, 1)``, in pixel units (no shear on non-square
    boxes): a point at pixel offset ``v`` from the box centre moves to ``R(-a) v`` with
    ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` in x-right, y-down coordinates (the image
    turns counter-clockwise on screen by ``a``), then the box is resized to the output and
    flipped and turned by right angles. Corners from outside the image are reflections.

    The blur's sigma is in output pixels; it
    uses scipy.ndimage's ``"reflect"`` boundary (the edge pixel repeated).
    """
    if x.ndim != 4 or not x.is_floating_point() or x.shape[2] == 0 or x.shape[3] == 0:
        raise ParameterError(
            f"augment_batch takes a float tensor of shape (n, c, h, w), got {x.dtype} of "
            f"shape {tuple(x.shape)}; make it with pipeline.workflows.embed.inputs.to_tensor"
        )
    if out_size < 1:
        raise ParameterError(f"out_size must be >= 1 px, got {out_size}; use the input size")
    if generator.device.type != "cpu":
        raise ParameterError(
            f"generator must be a CPU torch.Generator, got one on {generator.device}; "
            "create it with torch.Generator().manual_seed(seed), so CPU and GPU runs agree"
        )
    n, c, h, w = x.shape
    source = x
    in_dtype = x.dtype
    if in_dtype in (torch.float16, torch.bfloat16):
        x = x.float()

    # Draw everything first, in a fixed order and amount, so switching one augmentation off
    # does not change the others' draws.
    boxes = crop_boxes(n, h, w, params.crop_scale, params.crop_ratio, generator)
    flips = torch.rand(n, 2, generator=generator) < 0.5
    k = torch.randint(0, 4, (n,), generator=generator)
    blur_draw = torch.rand(n, generator=generator, dtype=torch.float64)
    u_sigma = torch.rand(n, generator=generator, dtype=torch.float64)
    u_bright = torch.rand(n, generator=generator, dtype=torch.float64)
    u_contrast = torch.rand(n, generator=generator, dtype=torch.float64)
    # Drawn last, so that views with `rotate` off are the same as before it existed.
    u_angle = torch.rand(n, generator=generator, dtype=torch.float64)
    if n == 0:
        return x.new_zeros((0, c, out_size, out_size), dtype=in_dtype)

    hflip = flips[:, 0] & params.hflip
    vflip = flips[:, 1] & params.vflip
    k = k if params.rot90 else torch.zeros_like(k)
    with _no_autocast(x.device):
        if not params.crop and not params.rotate and out_size == h == w:
            x = _exact_dihedral(x, hflip, vflip, k)
        else:
            if not params.crop:
                boxes = torch.tensor([[0.0, 0.0, h, w]], dtype=torch.float64).expand(n, 4)
            top, left, bh, bw = boxes.unbind(dim=1)
            shrink = float(torch.minimum(bh, bw).min()) / out_size
            if shrink >= _PRESHRINK:
                size = (max(1, round(h / shrink)), max(1, round(w / shrink)))
                x = F.interpolate(
                    x, size=size, mode="bilinear", align_corners=False, antialias=True
                )
            # Box in normalised coordinates (align_corners=False: -1 and 1 are the outer
            # pixel edges, so the map does not depend on the shrink above).
            theta = torch.zeros(n, 2, 3, dtype=torch.float64)
            if params.rotate:
                theta[:, :, :2] = _rotated_box(bh, bw, h, w, 2.0 * math.pi * u_angle) @ (
                    _dihedral(hflip, vflip, k)
                )
            else:
                scale = torch.stack([bw / w, bh / h], dim=1)
                theta[:, :, :2] = scale[:, :, None] * _dihedral(hflip, vflip, k)
            theta[:, 0, 2] = (2 * left + bw) / w - 1
            theta[:, 1, 2] = (2 * top + bh) / h - 1
            theta_dev = theta.to(device=x.device, dtype=x.dtype)
            grid = F.affine_grid(theta_dev, [n, c, out_size, out_size], align_corners=False)
            x = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )

        if params.blur and params.blur_prob > 0:
            blurred = blur_draw < params.blur_prob
            if bool(blurred.any()):
                lo, hi = params.blur_sigma
                sigma = (lo + (hi - lo) * u_sigma)[blurred]
                idx = blurred.nonzero()[:, 0].to(x.device)
                # Only the blurred images go through the convolution; the others stay exact.
                x = x.index_copy(0, idx, _gaussian_blur(x.index_select(0, idx), sigma))

        if params.contrast > 0:
            factor = 1.0 + params.contrast * (2.0 * u_contrast - 1.0)
            factor_dev = factor.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = mean + (x - mean) * factor_dev
        if params.brightness > 0:
            offset = params.brightness * (2.0 * u_bright - 1.0)
            x = x + offset.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)
    # Never hand back the caller's tensor itself (all off): editing the view must not edit it.
    return x.clone() if x is source else x.to(in_dtype)
