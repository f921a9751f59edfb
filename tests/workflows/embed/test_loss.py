"""Tests of SimCLR's NT-Xent loss (pipeline.workflows.embed.loss)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.errors import ParameterError
from pipeline.workflows.embed.loss import nt_xent


def paper_nt_xent(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """Chen et al. (2020), algorithm 1, term by term in float64: views 2k-1 and 2k pair up."""
    n = z1.shape[0]
    z = np.empty((2 * n, z1.shape[1]))
    z[0::2], z[1::2] = z1, z2  # the paper interleaves the two views

    def sim(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    def ell(i: int, j: int) -> float:
        den = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        return -math.log(math.exp(sim(z[i], z[j]) / tau) / den)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize(("n", "d", "tau"), [(2, 3, 0.5), (7, 16, 0.5), (12, 5, 0.1), (5, 8, 2.0)])
def test_matches_the_paper_formula(n: int, d: int, tau: float) -> None:
    rng = np.random.default_rng(n * d)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    z2[: n // 2] += 2 * z1[: n // 2]  # some positives agree, so the loss is not at chance
    loss = nt_xent(torch.from_numpy(z1).float(), torch.from_numpy(z2).float(), tau)
    assert loss.shape == () and loss.dtype == torch.float32
    assert float(loss) == pytest.approx(paper_nt_xent(z1, z2, tau), abs=1e-5)


def test_symmetric_in_the_views_and_scale_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    ref = nt_xent(z1, z2)
    torch.testing.assert_close(nt_xent(z2, z1), ref)
    # Rows are normalised: per-row positive scales change nothing.
    scale = torch.rand(16, 1, generator=g) * 10 + 0.1
    torch.testing.assert_close(nt_xent(3.0 * z1, scale * z2), ref)


def test_agreeing_views_score_low_random_ones_near_chance() -> None:
    n = 32
    chance = math.log(2 * n - 1)
    separated = torch.eye(n) * 5.0  # identical views, orthogonal across images
    assert float(nt_xent(separated, separated, temperature=0.1)) < 0.01
    # Positives at cosine 1, the 2n - 2 negatives at 0: log(1 + (2n - 2) exp(-1 / tau)).
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / 0.5))
    assert float(nt_xent(separated, separated, temperature=0.5)) == pytest.approx(expected)
    g = torch.Generator().manual_seed(1)
    random = nt_xent(torch.randn(n, 256, generator=g), torch.randn(n, 256, generator=g))
    assert float(random) == pytest.approx(chance, rel=0.03)
    # Lower temperature sharpens: agreeing views score lower still.
    assert float(nt_xent(separated, separated, 0.2)) < float(nt_xent(separated, separated, 0.5))


def test_gradients_flow_to_both_views() -> None:
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(8, 4, generator=g, requires_grad=True)
    z2 = torch.randn(8, 4, generator=g, requires_grad=True)
    nt_xent(z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is not None
        assert torch.isfinite(z.grad).all()
        assert float(z.grad.abs().sum()) > 0
    # A gradient step lowers the loss.
    with torch.no_grad():
        before = float(nt_xent(z1, z2))
        assert z1.grad is not None and z2.grad is not None
        after = float(nt_xent(z1 - 0.1 * z1.grad, z2 - 0.1 * z2.grad))
    assert after < before


def test_half_precision_and_autocast_compute_in_float32() -> None:
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    z1[:8] = z2[:8]
    ref = nt_xent(z1, z2, 0.1)
    for dtype in (torch.float16, torch.bfloat16):
        loss = nt_xent(z1.to(dtype), z2.to(dtype), 0.1)
        assert loss.dtype == torch.float32
        assert float(loss) == pytest.approx(float(ref), rel=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z1, z2, 0.1)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf")])
def test_rejects_bad_temperature(temperature: float) -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ParameterError, match="temperature must be a positive"):
        nt_xent(z, z, temperature)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ParameterError, match=r"got \(4, 3\) and \(4, 2\)"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ParameterError, match=r"got \(4, 3\) and \(5, 3\)"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ParameterError, match=r"got \(4,\) and \(4,\)"):
        nt_xent(torch.randn(4), torch.randn(4))
    with pytest.raises(ParameterError, match=r"at least 2 images.*n=1"):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(64, 128, generator=g), torch.randn(64, 128, generator=g)
    cpu = nt_xent(z1, z2, 0.2)
    gpu = nt_xent(z1.cuda(), z2.cuda(), 0.2)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    assert float(gpu) == pytest.approx(float(cpu), rel=1e-4)
    with torch.autocast("cuda", dtype=torch.float16):
        amp = nt_xent(z1.cuda(), z2.cuda(), 0.2)
    assert amp.dtype == torch.float32
    assert float(amp) == pytest.approx(float(cpu), rel=1e-4)
