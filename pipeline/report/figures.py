"""HTML and PNG building blocks of the report: image grids, figures, tables.

Text in figures is plain text. Matplotlib would otherwise read ``$...$`` in a title, a tick
label or a legend as mathtext (an image id ``$x^{$`` fails to parse and stops the report) and
hand every string to TeX under ``text.usetex``. :func:`plain_text` turns both off; the report
page enters it once around all its sections (:func:`pipeline.report.page.write_report`), so
every figure a section makes is drawn with user names as they are.

In the HTML, every value goes through :func:`~pipeline.report.format.escape` (text and
attributes) or :func:`~pipeline.report.format.url` (``src``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.store import RunStore
from pipeline.report.format import escape, url

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = [
    "figure_file",
    "figure_html",
    "grid_png",
    "new_figure",
    "plain_text",
    "png_bytes",
    "stretch",
    "table_html",
]

#: Figure file names kept as they are: the names the report's own figures have.
_PLAIN_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@contextlib.contextmanager
def plain_text() -> Iterator[None]:
    """Draw every text of the figures made inside as plain text (no mathtext, no TeX).

    Matplotlib reads ``text.parse_math`` and ``text.usetex`` when it creates a text (a title,
    a legend entry, a tick label, which axes create as they are drawn), so the whole of a
    figure's making, from :func:`new_figure` to :func:`png_bytes`, must be inside. The
    settings are matplotlib's (process-wide) while the block runs and restored after it.
    """
    import matplotlib

    plain: dict[RcKeyType, Any] = {
        "text.parse_math": False,  # "$...$" is mathtext otherwise
        "text.usetex": False,  # every string goes to TeX otherwise
        # Formatters that write "$\mathdefault{...}$" would show it raw once mathtext is off.
        "axes.formatter.use_mathtext": False,
    }
    with matplotlib.rc_context(plain):
        yield


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


def figure_file(name: str) -> str:
    """The file name under ``report/`` of the figure called ``name``.

    Parameters
    ----------
    name : str
        The figure's name, often made from a step name (``montage_kmeans.png``).

    Returns
    -------
    str
        ``name`` itself when it is a plain file name (ASCII letters, digits and ``_.-``,
        starting with a letter or a digit), as every name the report makes from the job
        steps the validator accepts is.
        Otherwise each run of other characters becomes ``_`` and a digest of ``name`` is added
        before the suffix, so that no name can leave ``report/`` (``/``, ``..``) and two
        names stay two files.
    """
    if _PLAIN_FILE.fullmatch(name):
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not re.fullmatch(r"[A-Za-z0-9]+", suffix):
        stem, suffix = name, "png"
    plain = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-") or "figure"
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{plain}-{digest}.{suffix}"


def figure_html(store: RunStore, name: str, png: bytes, alt: str) -> str:
    """Write the figure as ``report/<file>`` and return the ``<img>`` that shows it.

    Parameters
    ----------
    store : RunStore
    name : str
        The figure's name; its file is :func:`figure_file`'s.
    png : bytes
        The PNG image.
    alt : str
        The alternative text, as plain text (it is escaped here).

    Returns
    -------
    str
        ``<img src='<file>' alt='<alt>' style='max-width:100%'>``.
    """
    file = figure_file(name)
    store.write_bytes(f"report/{file}", png)
    return f"<img src='{url(file)}' alt='{escape(alt)}' style='max-width:100%'>"


def table_html(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    """A table: a header row and one row per entry of ``rows``, every cell as plain text.

    Parameters
    ----------
    header : list of str
        The column titles.
    rows : list of list
        The cells of each row (``str()`` of each value, escaped).
    classes : list of str, optional
        A CSS class per row.

    Returns
    -------
    str
    """
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{escape(classes[i])}"' if classes else ""
        cells = "".join(f"<td>{escape(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
