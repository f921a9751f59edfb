"""Figures of the mosaic report: the field with its sources, magnitudes, completeness and
purity, the background map, deblended pairs. Each takes tables and arrays, returns PNG bytes."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from pipeline.report.figures import new_figure, png_bytes

__all__ = [
    "background_png",
    "completeness_png",
    "deblended_png",
    "field_png",
    "magnitude_png",
    "thumbnail",
]

# The field figure is drawn from block means of at most this many pixels a side.
_THUMB_SIDE = 1000


def thumbnail(mosaic: Any) -> tuple[np.ndarray, int]:
    """Block means of the mosaic (NaN-aware), at most ~1000 px a side, and the block size.

    Read in bands of whole tile rows, so a mosaic larger than memory is never loaded whole
    (block means, not every step-th pixel: single pixels are mostly sky noise).
    """
    h, w = (int(n) for n in mosaic.shape)
    step = max(1, int(np.ceil(max(h, w) / _THUMB_SIDE)))
    band = step * max(1, int(mosaic.chunks[0]) // step)
    hh, ww = h - h % step, w - w % step
    rows = []
    for r in range(0, hh, band):
        block = np.asarray(mosaic[r : min(hh, r + band), :ww], dtype=np.float32)
        cells = block.reshape(block.shape[0] // step, step, ww // step, step)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
            rows.append(np.nanmean(cells, axis=(1, 3)))
    small = np.concatenate(rows, axis=0) if rows else np.zeros((1, 1), dtype=np.float32)
    return small, step


def _stretch(img: np.ndarray) -> np.ndarray:
    finite = img[np.isfinite(img)]
    if not finite.size:
        return np.zeros_like(img)
    lo, hi = np.percentile(finite, [1.0, 99.8])
    return np.clip((np.nan_to_num(img, nan=lo) - lo) / max(float(hi - lo), 1e-12), 0, 1) ** 0.5


def field_png(small: np.ndarray, step: int, src: pd.DataFrame, title: str) -> bytes:
    """The field with every source: Kron-sized ellipses for SEP, circles for blobs."""
    from matplotlib.patches import Ellipse

    h, w = small.shape
    fig = new_figure(8, 8 * h / max(w, 1))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(_stretch(small), cmap="gray", vmin=0, vmax=1)
    if "a" in src.columns and len(src) <= 20_000:
        for x, y, a, b, theta in src[["x", "y", "a", "b", "theta"]].to_numpy(dtype=float):
            size = 2.0 * 3.0 * max(a, 0.5) / step
            ax.add_patch(
                Ellipse(
                    (x / step, y / step),
                    size,
                    size * b / max(a, 1e-6),
                    angle=float(np.degrees(theta)),
                    fill=False,
                    edgecolor="r",
                    linewidth=0.6,
                )
            )
    else:
        ax.scatter(
            src.x / step, src.y / step, s=12, facecolors="none", edgecolors="r", linewidths=0.6
        )
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return png_bytes(fig)


def magnitude_png(src: pd.DataFrame) -> bytes:
    """Histogram of MAG_AUTO (or of log flux where no magnitude is finite)."""
    fig = new_figure(6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    mag = src["mag_auto"].to_numpy(dtype=float)
    mag = mag[np.isfinite(mag)]
    edges = np.arange(np.floor(mag.min() * 4) / 4, mag.max() + 0.25, 0.25) if mag.size else 10
    ax.hist(mag, bins=edges, color="0.4")
    ax.set_xlabel("mag_auto (mag)")
    ax.set_ylabel("sources per 0.25 mag")
    ax.set_yscale("log")
    ax.set_title(f"{mag.size} sources with a positive flux_auto", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)


def completeness_png(bins: pd.DataFrame, ref_label: str) -> bytes:
    """Completeness against the reference magnitude, purity against MAG_AUTO."""
    fig = new_figure(9, 3.2)
    for k, (col, n, label) in enumerate(
        [
            ("completeness", "n_reference", f"reference magnitude ({ref_label})"),
            ("purity", "n_detected", "mag_auto (mag)"),
        ]
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        keep = bins[n] > 0
        centre = (bins["mag_lo"] + bins["mag_hi"]) / 2
        ax.step(centre[keep], bins[col][keep], where="mid", color="k")
        ax.scatter(centre[keep], bins[col][keep], s=np.clip(bins[n][keep], 4, 60), color="k")
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel(label)
        ax.set_ylabel(col)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def background_png(mesh: np.ndarray, bw: int, bh: int) -> bytes:
    """The filtered background and RMS meshes, in image units."""
    fig = new_figure(9, 3.8)
    for k, name in enumerate(["background", "background RMS"]):
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(mesh[k], cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(
            f"{name} ({mesh.shape[1]} x {mesh.shape[2]} boxes of {bw} x {bh} px)", fontsize=8
        )
        ax.axis("off")
    fig.tight_layout()
    return png_bytes(fig)


def deblended_png(mosaic: Any, src: pd.DataFrame, picks: pd.DataFrame) -> bytes:
    """Crops around deblended sources, every catalog source in them as its ellipse."""
    from matplotlib.patches import Ellipse

    n = len(picks)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = new_figure(2.4 * cols, 2.4 * rows)
    h, w = mosaic.shape
    names = picks["image_id"].astype(str).tolist()
    for k, (px, py, pa) in enumerate(picks[["x", "y", "a"]].to_numpy(dtype=float)):
        half = int(np.ceil(max(12.0, 5.0 * pa)))
        r0, r1 = max(0, int(py) - half), min(h, int(py) + half + 1)
        c0, c1 = max(0, int(px) - half), min(w, int(px) + half + 1)
        crop = np.asarray(mosaic[r0:r1, c0:c1], dtype=np.float32)
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(_stretch(crop), cmap="gray", vmin=0, vmax=1)
        near = src[(src.x >= c0) & (src.x < c1) & (src.y >= r0) & (src.y < r1)]
        fields = ["x", "y", "a", "b", "theta", "flags"]
        for x, y, a, b, theta, flags in near[fields].to_numpy(dtype=float):
            ax.add_patch(
                Ellipse(
                    (x - c0, y - r0),
                    6 * a,
                    6 * b,
                    angle=float(np.degrees(theta)),
                    fill=False,
                    edgecolor="r" if int(flags) & 2 else "c",
                    linewidth=0.8,
                )
            )
        ax.set_title(names[k], fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return png_bytes(fig)
