"""join_parts, the one way the report's optional parts are put together, and escape and url,
the one way a value gets into its HTML."""

from __future__ import annotations

import pytest

from pipeline.report.format import escape, join_parts, url


def test_none_and_empty_parts_are_dropped() -> None:
    assert join_parts(["<h3>a</h3>", None, "", "<p>b</p>"]) == "<h3>a</h3>\n<p>b</p>"


def test_none_when_nothing_is_left() -> None:
    assert join_parts([]) is None
    assert join_parts([None, None]) is None
    assert join_parts(["", None]) is None


def test_separator_and_order() -> None:
    assert join_parts(["<p>1</p>", None, "<p>2</p>", "<p>3</p>"], sep="") == (
        "<p>1</p><p>2</p><p>3</p>"
    )
    assert join_parts(iter(["c", "a", "b"]), sep=", ") == "c, a, b"
    assert join_parts(["only"]) == "only"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('"onerror="x', "&quot;onerror=&quot;x"),
        ("'><img src=x>", "&#x27;&gt;&lt;img src=x&gt;"),
        ("&amp;", "&amp;amp;"),
        (r"$\alpha$ $x^2$", r"$\alpha$ $x^2$"),
        (0.5, "0.5"),
        (None, "None"),
    ],
)
def test_escape_makes_text_that_opens_no_tag_and_closes_no_attribute(
    value: object, text: str
) -> None:
    assert escape(value) == text


@pytest.mark.parametrize(
    ("path", "src"),
    [
        ("survival_km_0_all.png", "survival_km_0_all.png"),  # ordinary names are unchanged
        ("montage_kmeans-2.v1.png", "montage_kmeans-2.v1.png"),
        ("javascript:alert(1)", "javascript%3Aalert%281%29"),  # no scheme: a relative path
        ("a b'c\"d.png", "a%20b%27c%22d.png"),
        ("'><img src=x>.png", "%27%3E%3Cimg%20src%3Dx%3E.png"),
        ("x.png#top?q=1&r=2", "x.png%23top%3Fq%3D1%26r%3D2"),
        ("100%.png", "100%25.png"),
        ("//evil.example/x.png", ".//evil.example/x.png"),  # not another server
        ("/etc/x.png", "./etc/x.png"),
        ("sub/figure.png", "sub/figure.png"),
    ],
)
def test_url_is_a_relative_percent_encoded_path(path: str, src: str) -> None:
    assert url(path) == src
    assert not set(url(path)) & set("'\"<>&: ")
