"""Fixtures for the embed tests: a store of small cutouts and an untrained checkpoint."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage as ndi
from zarr.codecs import ZstdCodec

from pipeline.core.store import RunStore
from pipeline.workflows.embed.checkpoint import save_checkpoint
from pipeline.workflows.embed.models import EncoderConfig, build_simclr

#: Images, size and chunk rows of the test store: chunks of 8 cut the 36 images unevenly.
N_IMAGES, SIZE, CHUNK = 36, 64, 8


def blobs(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 images of two kinds (a round blob, an elongated bar) and their kinds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    kinds = np.arange(n) % 2
    out = np.empty((n, size, size), np.float32)
    for i, kind in enumerate(kinds):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        sy, sx = (6.0, 6.0) if kind == 0 else (3.0, 14.0)
        out[i] = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2) / 2)
        out[i] += rng.normal(0, 0.05, (size, size)).astype(np.float32)
    return out, kinds


def textures(n: int, size: int, seed: int, smooth: float = 8.0) -> np.ndarray:
    """``n`` float32 images of smoothed noise: each one a pattern of its own that survives
    mild crops, flips and jitter (what SimCLR can learn to recognise in a few steps)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, size, size))
    return ndi.gaussian_filter(noise, (0, smooth, smooth)).astype(np.float32)


def make_store(path: Path, images: np.ndarray, chunk: int = CHUNK) -> RunStore:
    """A run store whose ``cutouts`` array holds ``images`` (image, y, x), chunked by rows."""
    store = RunStore(str(path))
    n, h, w = images.shape
    ds = xr.Dataset(
        {"cutouts": (("image", "y", "x"), da.zeros((n, h, w), chunks=(chunk, h, w), dtype="f4"))},
        coords={"image_id": ("image", np.array([f"img{i:03d}" for i in range(n)], dtype=object))},
    )
    encoding = {"cutouts": {"chunks": (chunk, h, w), "compressors": [ZstdCodec(level=1)]}}
    store.write_template(ds, encoding, mode="w")
    store.open_array("cutouts")[:] = images
    return store


@pytest.fixture
def cutout_store(tmp_path: Path) -> RunStore:
    """A store of 36 two-kind 64x64 cutouts in chunks of 8, with an untrained checkpoint."""
    images, _ = blobs(N_IMAGES, SIZE, seed=0)
    store = make_store(tmp_path / "run", images)
    config = EncoderConfig(arch="resnet_small", in_channels=1, input_size=SIZE)
    save_checkpoint(store, build_simclr(config, seed=3), config, epoch=0, epochs=0, train_key="t")
    return store
