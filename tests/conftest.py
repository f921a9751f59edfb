"""Shared fixtures: small synthetic images on disk, an in-process Dask client, helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import tifffile
from distributed import Client
from PIL import Image

#: The repository checkout the tests belong to (found from this file, not the working folder).
REPO = Path(__file__).resolve().parent.parent
#: The job specs shipped in ``jobs/``.
JOBS = REPO / "jobs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests where torch sees no CUDA device (CI, laptops)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False here")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """An in-process cluster (threads): fast, and enough where dispatch is not under test."""
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


def smooth_image(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A smooth random image (blobs + mild noise): like real data, unlike white noise."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), dtype=np.float64)
    for _ in range(3):
        cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, max(3, h / 3))
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img = img / img.max() * 0.8 + rng.uniform(0, 0.2, size=(h, w))
    if len(shape) == 3:
        img = np.stack([img * (0.6 + 0.2 * c) for c in range(shape[2])], axis=-1)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return (np.clip(img, 0, 1) * top).astype(dtype)


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` in the format the suffix names (JPEG, PNG, TIFF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    elif path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, quality=92)
    else:
        Image.fromarray(array).save(path)
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG (valid CRCs, empty image data) whose IHDR claims ``width`` x ``height`` gray
    pixels: a decompression bomb when the claim is large."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


def fits_claiming(path: Path, width: int, height: int) -> Path:
    """A FITS header block claiming an 8-bit ``height`` x ``width`` image, with no data."""
    cards = [
        f"{'SIMPLE':<8}= {'T':>20}",
        f"{'BITPIX':<8}= {8:>20}",
        f"{'NAXIS':<8}= {2:>20}",
        f"{'NAXIS1':<8}= {width:>20}",
        f"{'NAXIS2':<8}= {height:>20}",
        "END",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii"))
    return path


def make_folder(
    folder: Path,
    n: int,
    shape: tuple[int, ...] = (24, 20, 3),
    suffix: str = ".png",
    seed: int = 0,
    dtype: Any = np.uint8,
) -> list[np.ndarray]:
    """``n`` smooth images named img000.png, ... in ``folder``; returns the arrays in order."""
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(n):
        a = smooth_image(rng, shape, dtype)
        write_image(folder / f"img{i:03d}{suffix}", a)
        arrays.append(a)
    return arrays


class CountingScheduler:
    """A Dask scheduler that counts computes and refuses more than ``max_computes``.

    As in xarray's tests: proof that building a graph computes nothing.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"too many computes: {self.total_computes} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Fail if anything inside the block computes a Dask graph (beyond ``max_computes``)."""
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler
