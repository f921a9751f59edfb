"""The figures' building blocks: plain text in figures, plain figure files, escaped tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from pipeline.core.store import RunStore
from pipeline.report.figures import (
    figure_file,
    figure_html,
    grid_png,
    new_figure,
    plain_text,
    png_bytes,
    table_html,
)

TITLES = ["$x^{$", r"$\alpha$ $x^2$", "<b>&amp;", "100$ and 5$"]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (8, 8), dtype=np.uint8) for _ in TITLES]


def test_mathtext_in_titles_stops_matplotlib_outside_plain_text() -> None:
    # Why plain_text exists: matplotlib parses "$...$" and fails on unbalanced mathtext.
    with pytest.raises(ValueError):
        grid_png(_images(), TITLES)


def test_plain_text_draws_every_text_as_it_is() -> None:
    before = dict(matplotlib.rcParams)
    with plain_text():
        png = grid_png(_images(), TITLES)
        fig = new_figure(4, 3)
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(TITLES, [1, 2, 3, 4], label="$x^{$")  # category tick labels, made when drawn
        ax.set_xlabel("$x^{$")
        ax.legend()
        fig.tight_layout()
        chart = png_bytes(fig)
    assert png.startswith(b"\x89PNG") and chart.startswith(b"\x89PNG")
    texts = [ax.title, ax.xaxis.label, *ax.get_xticklabels(), *ax.get_legend().get_texts()]
    assert [t.get_text() for t in ax.get_xticklabels()] == TITLES
    assert not any(t.get_parse_math() or t.get_usetex() for t in texts)
    # The settings are matplotlib's only while the block runs.
    assert dict(matplotlib.rcParams) == before


def test_plain_text_turns_tex_off_whatever_the_settings() -> None:
    with matplotlib.rc_context({"text.usetex": True}), plain_text():
        fig = new_figure(2, 2)
        text = fig.text(0.5, 0.5, "$x^{$ & 100%")
        assert not text.get_usetex() and not text.get_parse_math()
        assert png_bytes(fig).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "name",
    ["montage.png", "survival_km_0_all.png", "montage_kmeans_embeddings.png", "a-b.c.png"],
)
def test_ordinary_figure_names_are_their_files(name: str) -> None:
    assert figure_file(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "montage_<script>alert(1)</script>.png",
        "montage_'><img src=x>.png",
        "../manifest.json",
        "..",
        "/etc/passwd",
        "montage_javascript:alert(1).png",
        "$x^{$_explained_variance.png",
        ".hidden.png",
        "no suffix",
    ],
)
def test_other_figure_names_become_plain_distinct_files(name: str) -> None:
    file = figure_file(name)
    assert file[0].isalnum() and "/" not in file and ".." not in file
    assert set(file) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
    assert file.endswith(".png") or file.endswith(".json")
    assert figure_file(name + "x") != file  # a digest of the name keeps two names apart
    assert figure_file(file) == file


def test_figure_html_writes_the_file_it_shows(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    tag = figure_html(store, "montage_'><img src=x>.png", b"\x89PNG", "a \"b\" <c> 'd'")
    file = figure_file("montage_'><img src=x>.png")
    assert tag == (
        f"<img src='{file}' alt='a &quot;b&quot; &lt;c&gt; &#x27;d&#x27;' style='max-width:100%'>"
    )
    assert (tmp_path / "run" / "report" / file).read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file()) == [file]


def test_table_cells_headers_and_classes_are_text() -> None:
    html = table_html(["<th>", "a"], [["<td>", 1.5], ['"x', None]], ['" onclick="x', "done"])
    assert html == (
        "<table><tr><th>&lt;th&gt;</th><th>a</th></tr>"
        '<tr class="&quot; onclick=&quot;x"><td>&lt;td&gt;</td><td>1.5</td></tr>'
        '<tr class="done"><td>&quot;x</td><td>None</td></tr></table>'
    )
