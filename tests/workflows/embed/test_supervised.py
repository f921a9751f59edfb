"""The supervised baseline: it learns an easy task, writes the probe's columns on the probe's
splits (same test rows, same k-shot sets), is reproducible, runs as one task on a cluster,
and refuses bad input before training."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from pydantic import ValidationError

from pipeline.core.context import RunContext
from pipeline.core.registry import default_registry
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, table_schema
from pipeline.errors import ParameterError, StoreError
from pipeline.features.matrix import row_labels
from pipeline.features.probe import (
    PROBE_COLUMNS,
    ProbeParams,
    probe_splits,
    run_probe,
    summarize_probe,
)
from pipeline.workflows.embed import supervised
from pipeline.workflows.embed.spec import AugmentParams
from pipeline.workflows.embed.supervised import (
    SUPERVISED_COLUMNS,
    SupervisedParams,
    plan_supervised,
    run_supervised_baseline,
)
from tests.workflows.embed.conftest import make_store

#: Images (16 wells of 3 days), their side (px), images per well.
N_IMAGES, SIDE, DAYS = 48, 16, 3

#: The split, as a probe step and the baseline share it.
SPLIT: dict[str, Any] = {
    "label_column": "labels.kind",
    "group_column": "labels.well",
    "shots": [4, "all"],
    "repeats": 2,
    "test_fraction": 0.25,
    "rows": "all",
}

SMALL: dict[str, Any] = {
    "input": "cutouts",
    "arch": "resnet_small",
    "epochs": 6,
    "batch_size": 16,
    "threads": 1,
    **SPLIT,
}


def squares(n: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright square on a dark ground (kind 0) or a dark square on a bright one (kind 1),
    of random size and place, with noise; ``DAYS`` consecutive images share a well and a kind.
    (Images are standardised per image, so the kinds differ by their contrast's sign.)"""
    rng = np.random.default_rng(seed)
    kinds = (np.arange(n) // DAYS) % 2
    out = np.empty((n, side, side), np.float32)
    for i, kind in enumerate(kinds):
        s = int(rng.integers(5, 9))
        y, x = rng.integers(1, side - s, 2)
        img = np.full((side, side), float(kind), np.float32)
        img[y : y + s, x : x + s] = 1.0 - kind
        out[i] = img + rng.normal(0, 0.1, (side, side)).astype(np.float32)
    return out, kinds


def _write_labels(store: RunStore, kinds: np.ndarray) -> None:
    labels = pd.DataFrame(
        {
            "image": np.arange(len(kinds)),
            "kind": np.where(kinds == 0, "bright", "dark"),
            "well": [f"P01/W{i // DAYS:02d}" for i in range(len(kinds))],
            "constant": "untreated",
        }
    )
    buf = io.BytesIO()
    labels.to_parquet(buf, index=False)
    store.write_bytes("tables/labels.parquet", buf.getvalue())


@pytest.fixture(scope="module")
def square_store(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """48 squares of 16 x 16 px as ``cutouts`` (chunks of 8) and a ``labels`` table."""
    images, kinds = squares(N_IMAGES, SIDE, seed=0)
    store = make_store(tmp_path_factory.mktemp("supervised") / "run", images)
    _write_labels(store, kinds)
    return store


@pytest.fixture(scope="module")
def baseline(square_store: RunStore) -> tuple[pd.DataFrame, dict[str, Any], list[Any]]:
    """The stage run once in this process: its table, counts and progress calls."""
    calls: list[Any] = []
    ctx = RunContext(square_store, None, seed=0, progress=lambda *a: calls.append(a))
    counts = run_supervised_baseline(ctx, SupervisedParams(**SMALL))
    return read_table(square_store, "supervised_baseline"), counts, calls


def test_the_baseline_learns_an_easy_task_and_writes_the_probes_columns(
    baseline: tuple[pd.DataFrame, dict[str, Any], list[Any]],
) -> None:
    table, counts, calls = baseline
    assert counts == {"images": N_IMAGES, "classes": 2, "fits": 4}
    assert list(table.columns) == [*PROBE_COLUMNS, "epochs", "device"]
    assert list(table.columns) == list(SUPERVISED_COLUMNS)
    assert (table["features"] == "supervised_resnet_small").all()
    assert list(zip(table["seed"], table["shots"], strict=True)) == [(0, 4), (0, 0), (1, 4), (1, 0)]
    assert (table["epochs"] == 6).all() and (table["device"] == "cpu").all()
    assert table.dtypes["shots"] == np.int64 and table.dtypes["accuracy"] == np.float64
    kshot = table[table["shots"] == 4]
    assert (kshot["n_train"] == 4 * 2).all()
    full = table[table["shots"] == 0]
    assert (full["n_train"] + full["n_test"] == N_IMAGES).all()
    assert (full["accuracy"] >= 0.9).all() and (full["macro_f1"] >= 0.9).all()
    # One progress call before the first fit, then one per fit.
    assert calls[0] == ("supervised_baseline", 0, 4)
    assert [c[1] for c in calls[1:5]] == [1, 2, 3, 4] and calls[-1] == ("supervised_baseline", 4, 4)


def test_the_same_job_gives_the_same_table(
    square_store: RunStore, baseline: tuple[pd.DataFrame, dict[str, Any], list[Any]]
) -> None:
    run_supervised_baseline(RunContext(square_store, None, seed=0), SupervisedParams(**SMALL))
    pd.testing.assert_frame_equal(read_table(square_store, "supervised_baseline"), baseline[0])


def test_it_scores_the_probes_test_rows_and_compares_in_one_summary(
    square_store: RunStore, baseline: tuple[pd.DataFrame, dict[str, Any], list[Any]]
) -> None:
    """A probe step with the same split parameters draws the same rows: the same counts in
    the tables, the same indices from the shared planner; and the tables concatenate."""
    probe_params = ProbeParams(features=["cutouts"], **SPLIT)
    run_probe(RunContext(square_store, None, seed=0), probe_params)
    probe = read_table(square_store, "probe")
    sup = baseline[0]
    keys = ["seed", "shots", "n_train", "n_test"]
    pd.testing.assert_frame_equal(probe[keys], sup[keys])

    plan = plan_supervised(square_store, SupervisedParams(**SMALL), seed=0)
    positions = np.arange(N_IMAGES)
    labels = row_labels(square_store, "labels.kind", positions, N_IMAGES)
    groups = row_labels(square_store, "labels.well", positions, N_IMAGES)
    shared = probe_splits(labels, groups=groups, shots=[4, "all"], repeats=2, test_fraction=0.25)
    assert np.array_equal(plan.positions, positions) and plan.classes == ("bright", "dark")
    for mine, theirs in zip(plan.splits, shared, strict=True):
        assert mine.seed == theirs.seed
        assert np.array_equal(mine.test, theirs.test)
        assert mine.train.keys() == theirs.train.keys()
        assert all(np.array_equal(mine.train[k], theirs.train[k]) for k in mine.train)
        assert not set(groups[mine.test]) & set(groups[mine.train[0]])  # no well on both sides

    summary = summarize_probe(pd.concat([probe, sup], ignore_index=True))
    assert list(summary["features"]) == ["cutouts"] * 2 + ["supervised_resnet_small"] * 2
    ours = summary[summary["features"] == "supervised_resnet_small"]
    assert (ours["n_repeats"] == 2).all() and (ours["reference"] == "cutouts").all()
    assert ours["delta_macro_f1"].notna().all()  # paired with the probe's on seed and shots


def test_on_a_cluster_it_is_one_task_and_gives_the_same_table(
    square_store: RunStore,
    baseline: tuple[pd.DataFrame, dict[str, Any], list[Any]],
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Any] = []
    ctx = RunContext(square_store, client, seed=0, step="sup", progress=lambda *a: calls.append(a))
    with caplog.at_level(logging.INFO, logger="pipeline.workflows.embed.supervised"):
        run_supervised_baseline(ctx, SupervisedParams(**SMALL))
    pd.testing.assert_frame_equal(read_table(square_store, "supervised_baseline"), baseline[0])
    assert calls[0] == ("sup", 0, 4) and calls[-1] == ("sup", 4, 4)
    assert "training on worker" in caplog.text
    assert "supervised_resnet_small all-shot seed 1: accuracy" in caplog.text


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"input": "spheroid_crops"}, StoreError, "'spheroid_crops' is not in .*`spheroid_crops`"),
        ({"input": "learned"}, StoreError, "'learned' is not in .*the stage that writes it"),
        ({"label_column": "labels.species"}, ParameterError, "label column 'labels.species'"),
        ({"group_column": "batch"}, ParameterError, "label column 'batch'"),
        ({"label_column": "labels.constant"}, ParameterError, "at least 2 classes.*'untreated'"),
        ({"shots": [40]}, ParameterError, "supervised_baseline: no shots value can be used"),
        ({"test_fraction": 0.05}, ParameterError, "only 16 group\\(s\\).*needs at least 20"),
    ],
    ids=["missing-array", "unknown-array", "no-label-column", "no-group-column", "one-class",
         "no-shots", "too-few-groups"],
)  # fmt: skip
def test_bad_input_raises_before_training(
    tmp_path: Path,
    fields: dict[str, Any],
    error: type[Exception],
    match: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fit(*args: Any, **kw: Any) -> None:
        raise AssertionError("a network was trained")

    monkeypatch.setattr(supervised, "_fit", no_fit)
    images, kinds = squares(N_IMAGES, SIDE, seed=1)
    store = make_store(tmp_path / "run", images)
    _write_labels(store, kinds)
    with pytest.raises(error, match=match):
        run_supervised_baseline(RunContext(store, None), SupervisedParams(**{**SMALL, **fields}))
    assert not store.exists("tables/supervised_baseline.parquet")


def test_params_default_to_the_thesis_weak_augmentations() -> None:
    p = SupervisedParams(input="spheroid_crops", label_column="spheroid_crops.probe_group")
    assert p.augment == AugmentParams(
        crop_scale=(0.8, 1.0), rot90=False, brightness=0.0, contrast=0.0
    )
    assert p.augment.crop and p.augment.hflip and p.augment.vflip and p.augment.blur
    assert (p.arch, p.input_size, p.epochs, p.batch_size) == ("resnet18", 64, 30, 64)
    assert (p.lr, p.weight_decay, p.device, p.amp, p.threads) == (1e-3, 1e-4, "auto", True, None)
    # A job's augment block changes what it names, in a job spec (JSON, strict) as in Python.
    weak = p.augment
    spec = {"input": "cutouts", "label_column": "kind", "augment": {"blur": False}}
    for q in (
        SupervisedParams.model_validate_json(json.dumps(spec), strict=True),
        SupervisedParams(**spec),
    ):
        assert q.augment == weak.model_copy(update={"blur": False})
    spec["augment"] = {"crop_scale": [0.9, 1.0], "rot90": True}
    q = SupervisedParams.model_validate_json(json.dumps(spec), strict=True)
    assert q.augment == weak.model_copy(update={"crop_scale": (0.9, 1.0), "rot90": True})
    assert SupervisedParams.model_validate(q.model_dump(mode="json")) == q  # a round trip
    # The split parameters default as the probe's, except one repeat.
    probe = ProbeParams(label_column="x")
    assert (p.shots, p.test_fraction, p.group_column) == (probe.shots, probe.test_fraction, None)
    assert p.repeats == 1


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"input_size": 32}, "input_size"),
        ({"device": "gpu"}, "device"),
        ({"shots": [10, 10]}, "each value may be given once"),
        ({"shots": [0]}, "greater than or equal to 1"),
        ({"arch": "resnet50"}, "arch"),
        ({"batch_size": 1}, "batch_size"),
        ({"augment": {"crop_scale": [0.8, 1.2]}}, "crop_scale"),
        ({"shot": [10]}, "Extra inputs are not permitted"),
    ],
)
def test_params_are_validated(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SupervisedParams(**{"input": "cutouts", "label_column": "kind", **fields})


def test_the_stage_is_registered_with_its_table() -> None:
    stage = default_registry().stage("supervised_baseline")
    params = SupervisedParams(input="cutouts", label_column="kind")
    assert stage.outputs("supervised_baseline", params) == ("tables/supervised_baseline.parquet",)
    assert stage.load() is run_supervised_baseline
    assert list(table_schema("supervised_baseline").columns)[:7] == list(PROBE_COLUMNS)
