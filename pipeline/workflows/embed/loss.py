"""SimCLR's contrastive loss, NT-Xent (Chen et al. 2020, equation 1).

Each of ``n`` images is seen in two augmented views; their ``2n`` projections are
L2-normalised and compared by cosine similarity over a temperature. For every view (the
anchor), the other view of the same image is the positive and the other ``2n - 2`` views are
negatives; the loss is the cross entropy of picking the positive, averaged over all ``2n``
anchors. It is ``log(2n - 1)`` when the projections carry no information and falls towards 0
as views of the same image agree and views of different images separate.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.errors import ParameterError

__all__ = ["nt_xent"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalized temperature-scaled cross entropy of two views' projections.

    Parameters
    ----------
    z1, z2 : torch.Tensor, shape (n, d)
        Projections of the first and second view of the same ``n >= 2`` images (row ``i`` of
        both is image ``i``). Any float dtype; scale does not matter (rows are normalised).
    temperature : float
        Divides the cosine similarities; SimCLR uses 0.5 for small batches, 0.1 for large
        ones. Must be > 0.

    Returns
    -------
    torch.Tensor, shape ()
        The mean loss over the ``2n`` anchors (nats), float32, differentiable. Computed in
        float32 even for half-precision inputs or under :func:`torch.autocast`.

    Raises
    ------
    ParameterError
        If ``temperature`` is not a positive finite number, the shapes differ, are not 2-D
        with ``d >= 1``, or ``n < 2`` (a lone image has no negatives).
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ParameterError(
            f"temperature must be a positive finite number, got {temperature}; "
            "SimCLR uses 0.1-1 (0.5 is the usual choice for small batches)"
        )
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[1] < 1:
        raise ParameterError(
            f"z1 and z2 must both have shape (n, d), the same, got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}; pass the projections of the two views of the same images"
        )
    n = z1.shape[0]
    if n < 2:
        raise ParameterError(
            f"NT-Xent needs at least 2 images per batch (the others are the negatives), "
            f"got n={n}; use a larger batch (SimCLR works best with hundreds)"
        )
    # Half precision would round similarities / temperature (up to 1 / 0.1 = 10) to ~0.01,
    # which is the scale of the differences the loss learns from.
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if torch.amp.is_autocast_available(z1.device.type):
        ctx = torch.autocast(device_type=z1.device.type, enabled=False)
    with ctx:
        z = torch.cat([z1, z2], dim=0).float()
        z = F.normalize(z, dim=1)
        logits = (z @ z.T) / temperature
        # A view is not its own negative: drop self-similarity from every softmax.
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        # Row i (first views) has its positive at i + n, row i + n at i.
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, targets)
