"""HTML and PNG building blocks of the report: image grids, figures, tables."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.core.store import RunStore

__all__ = ["figure_html", "grid_png", "new_figure", "png_bytes", "stretch", "table_html"]


def png_bytes(fig: Any) -> bytes:
    """A matplotlib ``Figure`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def stretch(img: np.ndarray) -> np.ndarray:
    # 8-bit images are already display-ready (JPEG cutouts are stretched by the survey);
    # uint16 and float data are unreadable unscaled, so they get a percentile stretch.
    if img.dtype == np.uint8:
        return img / 255.0
    img = img.astype(np.float64)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros_like(img)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        return np.zeros_like(img)
    return np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)


def grid_png(images: Sequence[np.ndarray], titles: Sequence[str], cmap: str = "gray") -> bytes:
    """A grid of images with titles, as PNG bytes."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    cols = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    fig = Figure(figsize=(2 * cols, 2.2 * rows), dpi=100)
    for k, (img, name) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        shown = stretch(img)
        ax.imshow(shown, cmap=cmap if shown.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return png_bytes(fig)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure of ``width`` x ``height`` inches (no pyplot: no global state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def figure_html(store: RunStore, name: str, png: bytes, alt: str) -> str:
    store.write_bytes(f"report/{name}", png)
    return f"<img src='{name}' alt='{html.escape(alt)}' style='max-width:100%'>"


def table_html(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
