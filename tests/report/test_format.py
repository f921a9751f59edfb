"""join_parts: the one way the report's optional parts are put together."""

from __future__ import annotations

from pipeline.report.format import join_parts


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
