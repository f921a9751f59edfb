"""Group-aware probe splits: no group on both sides, nested k-shot sets, the same splits as
before without groups, and a probe that near-duplicates no longer flatter."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pydantic import ValidationError
from sklearn.model_selection import train_test_split

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import ParameterError
from pipeline.features.probe import ProbeParams, probe_scores, probe_splits, run_probe


def wells(
    n_wells: int = 24, days: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of wells on several days: features that identify the well (one feature per
    well, plus a little day-to-day noise), a class per well drawn at random (so the features
    say nothing about it beyond the well), and the well of each image."""
    rng = np.random.default_rng(seed)
    well = np.repeat(np.arange(n_wells), days)
    kinds = rng.permutation(np.arange(n_wells) % 3)
    x = 3.0 * np.eye(n_wells)[well] + 0.1 * rng.standard_normal((len(well), n_wells))
    y = np.asarray([f"group{k}" for k in kinds[well]], dtype=object)
    groups = np.asarray([f"P01/W{w:02d}" for w in well], dtype=object)
    return x, y, groups


def test_no_group_is_on_both_sides_and_kshot_sets_nest() -> None:
    _, y, groups = wells()
    splits = probe_splits(y, groups=groups, shots=[2, 4, "all"], repeats=4, seed=5)
    assert [s.seed for s in splits] == [5, 6, 7, 8]
    tests = []
    for s in splits:
        train = s.train[0]
        assert not set(groups[s.test]) & set(groups[train])
        assert np.array_equal(np.sort(np.concatenate([train, s.test])), np.arange(len(y)))
        # test_fraction 0.3 -> round(1 / 0.3) = 3 folds: about a third is held out.
        assert abs(len(s.test) / len(y) - 1 / 3) < 0.1
        assert set(y[s.test]) == set(y)  # stratified: every class is scored
        for small, large in ((2, 4), (4, 0)):
            assert set(s.train[small]) <= set(s.train[large])
        for k in (2, 4):
            counts = pd.Series(y[s.train[k]]).value_counts()
            assert (counts == k).all() and len(counts) == 3
        tests.append(tuple(s.test))
    assert len(set(tests)) > 1  # each repeat its own split
    again = probe_splits(y, groups=groups, shots=[2, 4, "all"], repeats=4, seed=5)
    for a, b in zip(splits, again, strict=True):
        assert np.array_equal(a.test, b.test)
        assert all(np.array_equal(a.train[k], b.train[k]) for k in a.train)


def test_without_groups_the_splits_are_the_probes_as_before() -> None:
    """The documented protocol, by hand: train_test_split(stratify) per seed, then the first
    k of a seeded permutation of each class's training rows."""
    _, y, _ = wells()
    splits = probe_splits(y, shots=[3, "all"], repeats=2, test_fraction=0.25, seed=2)
    for s, split in zip((2, 3), splits, strict=True):
        train, test = train_test_split(
            np.arange(len(y)), test_size=0.25, stratify=y, random_state=s
        )
        train = np.sort(train)
        rng = np.random.default_rng(s)
        three = np.concatenate([rng.permutation(train[y[train] == c])[:3] for c in np.unique(y)])
        assert np.array_equal(split.test, np.sort(test))
        assert np.array_equal(split.train[0], train)
        assert np.array_equal(split.train[3], np.sort(three))


def test_indices_are_into_the_labels_given_with_missing_rows_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, y, groups = wells()
    labels, g = y.copy(), groups.copy()
    labels[[0, 7]] = None
    g[[1, 50]] = "nan"  # as row_labels writes a missing value
    with caplog.at_level(logging.INFO, logger="pipeline.features.probe"):
        splits = probe_splits(labels, groups=g, shots=["all"], repeats=2)
    keep = np.ones(len(y), dtype=bool)
    keep[[0, 1, 7, 50]] = False
    rows = np.flatnonzero(keep)
    direct = probe_splits(y[keep], groups=groups[keep], shots=["all"], repeats=2)
    for a, b in zip(splits, direct, strict=True):
        assert np.array_equal(a.test, rows[b.test])
        assert np.array_equal(a.train[0], rows[b.train[0]])
    assert "dropped 2 of 96 rows without a label" in caplog.text
    assert "dropped 2 of 94 labelled rows without a group" in caplog.text


def test_near_duplicates_flatter_the_probe_unless_groups_are_kept_apart() -> None:
    """Each well's images are near duplicates and its class says nothing the features can see
    beyond the well: a plain split scores the wells the probe has memorised, a group split
    scores about chance (1/3)."""
    x, y, groups = wells(n_wells=30)
    plain = probe_scores({"x": x}, y, shots=["all"], repeats=3)
    grouped = probe_scores({"x": x}, y, groups=groups, shots=["all"], repeats=3)
    assert plain["accuracy"].mean() > 0.9
    assert grouped["accuracy"].mean() < 0.6
    assert list(grouped.columns) == list(plain.columns)
    # The scores are those of the shared plan's rows.
    split = probe_splits(y, groups=groups, shots=["all"], repeats=3)
    assert list(grouped["n_test"]) == [len(s.test) for s in split]
    assert list(grouped["n_train"]) == [len(s.train[0]) for s in split]


@pytest.mark.parametrize(
    ("labels", "groups", "kwargs", "match"),
    [
        (["a", "b"] * 6, ["w0", "w1"] * 6, {}, "only 2 group\\(s\\).*needs at least 3"),
        (["a", "b"] * 6, ["w0"] * 12, {"test_fraction": 0.5}, "only 1 group"),
        (
            ["a"] * 8 + ["b"] * 4,
            [f"w{i}" for i in range(8)] + ["w8"] * 4,
            {},
            "class 'b' without (training|test) rows.*in 1 group",
        ),
        (["a", "b"] * 6, ["w0"] * 5, {}, "groups have shape \\(5,\\).*\\(12,\\)"),
    ],
    ids=["fewer-groups-than-folds", "one-group", "class-in-one-group", "length-mismatch"],
)
def test_bad_groups_raise_before_fitting(
    labels: list[str], groups: list[str], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        probe_splits(np.asarray(labels, dtype=object), groups=np.asarray(groups), **kwargs)
    x = np.zeros((len(labels), 2))
    with pytest.raises(ParameterError, match=match):
        probe_scores(
            {"x": x}, np.asarray(labels, dtype=object), groups=np.asarray(groups), **kwargs
        )


def test_group_column_is_validated() -> None:
    assert ProbeParams(label_column="kind").group_column is None
    p = ProbeParams(label_column="kind", group_column="spheroid_crops.well_key")
    assert p.group_column == "spheroid_crops.well_key"
    with pytest.raises(ValidationError, match="group_column"):
        ProbeParams(label_column="kind", group_column="")


def test_run_probe_keeps_each_well_on_one_side(tmp_path: Path) -> None:
    x, y, groups = wells()
    store = RunStore(str(tmp_path / "run"))
    ds = xr.Dataset({"embeddings": (("image", "feature"), x.astype(np.float32))})
    store.write_template(ds, {}, mode="w")
    crops = pd.DataFrame({"image": np.arange(len(y)), "probe_group": y, "well_key": groups})
    buf = io.BytesIO()
    crops.to_parquet(buf, index=False)
    store.write_bytes("tables/crops.parquet", buf.getvalue())
    params = ProbeParams(
        features=["embeddings"],
        label_column="crops.probe_group",
        group_column="crops.well_key",
        rows="all",
        shots=[2, "all"],
        repeats=2,
    )
    counts = run_probe(RunContext(store, None, seed=3), params)
    assert counts == {"rows": 96, "classes": 3, "fits": 4, "groups": 24}
    table = read_table(store, "probe")
    direct = probe_scores(
        {"embeddings": x.astype(np.float32)}, y, groups=groups, shots=[2, "all"], repeats=2, seed=3
    )
    pd.testing.assert_frame_equal(table, direct)
