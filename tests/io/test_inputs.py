"""Resolving SOURCES: folders, globs, files and manifests, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import InputError
from pipeline.io.inputs import paths_outside_manifest, resolve_sources
from tests.conftest import make_folder


def test_folder_is_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    make_folder(tmp_path / "b", 2, suffix=".png")
    make_folder(tmp_path / "a", 2, suffix=".JPG")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    make_folder(tmp_path / ".hidden", 1)
    s = resolve_sources([str(tmp_path)])
    names = [Path(f).relative_to(tmp_path).as_posix() for f in s.files]
    assert names == ["a/img000.JPG", "a/img001.JPG", "b/img000.png", "b/img001.png"]
    # Stems repeat across folders, so ids fall back to the path below the common folder.
    assert s.image_ids == ["a/img000", "a/img001", "b/img000", "b/img001"]


def test_glob_and_explicit_files_are_deduplicated(tmp_path: Path) -> None:
    make_folder(tmp_path, 3)
    s = resolve_sources([str(tmp_path / "img00[01].png"), str(tmp_path / "img001.png")])
    assert [Path(f).name for f in s.files] == ["img000.png", "img001.png"]
    assert s.image_ids == ["img000", "img001"]


def test_manifest_columns_become_metadata(tmp_path: Path) -> None:
    make_folder(tmp_path / "plate", 3, suffix=".tif")
    pd.DataFrame(
        {
            "path": ["plate/img002.tif", "plate/img000.tif", "plate/img001.tif"],
            "well": ["B02", "B03", "C05"],
            "day": [7, 8, 9],
            "concentration": [0.1, 0.0, 1.5],
        }
    ).to_csv(tmp_path / "plate.csv", index=False)
    s = resolve_sources([str(tmp_path / "plate.csv")])
    assert [Path(f).name for f in s.files] == ["img000.tif", "img001.tif", "img002.tif"]
    assert list(s.metadata["well"]) == ["B03", "C05", "B02"]
    assert list(s.metadata["day"]) == [8, 9, 7]
    assert s.metadata["concentration"].dtype == float


def test_manifest_missing_file_is_reported_not_fatal(tmp_path: Path) -> None:
    make_folder(tmp_path, 1)
    pd.DataFrame({"path": ["img000.png", "gone.png"], "well": ["A1", "A2"]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    s = resolve_sources([str(tmp_path / "m.csv")])
    assert [Path(f).name for f in s.files] == ["img000.png"]
    assert [Path(f).name for f in s.missing] == ["gone.png"]


def test_fingerprint_changes_when_a_file_changes(tmp_path: Path) -> None:
    make_folder(tmp_path, 2)
    before = resolve_sources([str(tmp_path)]).fingerprint()
    assert resolve_sources([str(tmp_path)]).fingerprint() == before
    make_folder(tmp_path, 2, seed=5)  # same names, new content
    assert resolve_sources([str(tmp_path)]).fingerprint() != before


@pytest.mark.parametrize(
    ("setup", "sources", "message"),
    [
        (None, ["missing-folder"], "does not exist"),
        (None, [], "no sources given"),
        ("empty", ["empty"], "no image files found"),
        ("nopath", ["m.csv"], "no file column"),
        ("reserved", ["m.csv"], "reserved column name"),
        ("dupids", ["m.csv"], "repeats"),
        ("stray", ["m.csv", "imgs"], "not in the manifest"),
    ],
)
def test_bad_sources_name_the_problem(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str | None,
    sources: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "imgs", 2)
    (tmp_path / "empty").mkdir()
    frames = {
        "nopath": pd.DataFrame({"name": ["imgs/img000.png"]}),
        "reserved": pd.DataFrame({"path": ["imgs/img000.png"], "x": [1]}),
        "dupids": pd.DataFrame(
            {"path": ["imgs/img000.png", "imgs/img001.png"], "image_id": ["a", "a"]}
        ),
        "stray": pd.DataFrame({"path": ["imgs/img000.png"]}),
    }
    if setup in frames:
        frames[setup].to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match=message):
        resolve_sources(sources)


def test_manifest_paths_are_recorded_resolved_and_named_as_given(tmp_path: Path) -> None:
    make_folder(tmp_path / "store" / "blobs", 2)
    (tmp_path / "plate").mkdir()
    (tmp_path / "plate" / "A01.png").symlink_to(tmp_path / "store" / "blobs" / "img000.png")
    pd.DataFrame({"path": ["A01.png", "../store/blobs/img001.png"], "well": ["A01", "A02"]}).to_csv(
        tmp_path / "plate" / "m.csv", index=False
    )
    s = resolve_sources([str(tmp_path / "plate" / "m.csv")])
    real = (tmp_path / "store" / "blobs").resolve()
    # Sorted by the path the manifest gives; recorded where the files really are.
    assert s.files == [str(real / "img001.png"), str(real / "img000.png")]
    assert list(s.metadata["well"]) == ["A02", "A01"]
    assert s.image_ids == ["img001", "A01"]  # named as the manifest names them


def test_two_manifest_rows_for_one_file_are_refused(tmp_path: Path) -> None:
    make_folder(tmp_path, 1)
    (tmp_path / "alias.png").symlink_to(tmp_path / "img000.png")
    pd.DataFrame({"path": ["img000.png", "alias.png"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match=r"more than once.*alias\.png and .*img000\.png"):
        resolve_sources([str(tmp_path / "m.csv")])


def test_paths_outside_manifest_lists_what_resolves_outside_its_folder(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "sub", 1)
    make_folder(tmp_path / "elsewhere", 1)
    data, elsewhere = tmp_path / "data", (tmp_path / "elsewhere").resolve()
    (data / "link.png").symlink_to(elsewhere / "img000.png")
    (data / "inner.png").symlink_to(data / "sub" / "img000.png")
    rows = [
        "sub/img000.png",  # inside
        "inner.png",  # a symlink that stays inside
        "link.png",  # a symlink leading out
        "../elsewhere/img000.png",  # .. leading out
        str(elsewhere / "img000.png"),  # absolute, outside
        "sub/../sub/img000.png",  # .. that stays inside
        "s3://bucket/img.png",  # a URL: no local file
        "gone.png",  # missing, but inside
    ]
    pd.DataFrame({"path": rows}).to_csv(data / "m.csv", index=False)
    outside = str(elsewhere / "img000.png")
    assert paths_outside_manifest(data / "m.csv") == [
        ("link.png", outside),
        ("../elsewhere/img000.png", outside),
        (outside, outside),
    ]


def test_paths_outside_manifest_names_an_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        paths_outside_manifest(tmp_path / "none.csv")
    pd.DataFrame({"name": ["a.png"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="no file column"):
        paths_outside_manifest(tmp_path / "m.csv")
