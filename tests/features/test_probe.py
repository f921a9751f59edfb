"""The linear probe: agreement with scikit-learn by hand, the few-shot protocol, dropped rows,
errors, and the ``probe`` stage end to end on scikit-learn's digits."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client
from pydantic import ValidationError
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, table_schema, write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.features.probe import (
    PROBE_COLUMNS,
    ProbeParams,
    probe_scores,
    run_probe,
    summarize_probe,
)

N_DIGITS = 300


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The first 300 digits: (300, 64) pixels and their digit as a string (~30 per class)."""
    d = load_digits()
    return np.asarray(d.data[:N_DIGITS]), np.asarray([str(t) for t in d.target[:N_DIGITS]])


def blobs(n_per_class: int = 30, n_classes: int = 4, dim: int = 8, seed: int = 0) -> Any:
    """Well separated Gaussian classes, noise with no relation to them, and the labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * 10
    y = np.repeat([f"c{i}" for i in range(n_classes)], n_per_class)
    good = centres[np.repeat(np.arange(n_classes), n_per_class)] + rng.standard_normal(
        (len(y), dim)
    )
    noise = rng.standard_normal((len(y), dim))
    return good, noise, y


def by_hand(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[float, float]:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    pred = model.fit(x[train], y[train]).predict(x[test])
    return accuracy_score(y[test], pred), f1_score(y[test], pred, average="macro")


# -- the protocol -----------------------------------------------------------------------------


def test_scores_equal_sklearn_on_the_same_split_and_sample(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Each repeat's split is train_test_split(stratify) with its own seed; the k-shot set is
    the first k of a seeded permutation of each class's training rows (documented)."""
    x, y = digits
    table = probe_scores({"pixels": x}, y, shots=[5, "all"], repeats=2, seed=3)
    tests = []
    for s in (3, 4):
        train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=s)
        train, test = np.sort(train), np.sort(test)
        tests.append(test)
        rng = np.random.default_rng(s)
        five = np.sort(
            np.concatenate([rng.permutation(train[y[train] == c])[:5] for c in np.unique(y)])
        )
        for shots, rows in ((0, train), (5, five)):
            got = table[(table["seed"] == s) & (table["shots"] == shots)].iloc[0]
            acc, f1 = by_hand(x, y, rows, test)
            assert got["n_train"] == len(rows) and got["n_test"] == len(test)
            assert got["accuracy"] == pytest.approx(acc, abs=1e-12)
            assert got["macro_f1"] == pytest.approx(f1, abs=1e-12)
    assert not np.array_equal(tests[0], tests[1])  # each repeat its own split


def test_kshot_sets_have_k_per_class_and_one_test_split_per_seed(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = digits
    rng = np.random.default_rng(1)
    features = {"pixels": x, "noise": rng.standard_normal((len(y), 5))}
    table = probe_scores(features, y, shots=[2, 7, "all"], repeats=3, seed=10)

    assert list(table.columns) == list(PROBE_COLUMNS) == list(table_schema("probe").columns)
    assert len(table) == 2 * 3 * 3
    assert set(table["seed"]) == {10, 11, 12}
    kshot = table[table["shots"] > 0]
    assert (kshot["n_train"] == kshot["shots"] * 10).all()
    full = table[table["shots"] == 0]
    assert (full["n_train"] + full["n_test"] == len(y)).all()
    assert table.groupby("seed")["n_test"].nunique().eq(1).all()  # same split for all
    assert table["n_test"].iloc[0] == int(np.ceil(0.3 * len(y)))
    assert table.dtypes["shots"] == np.int64 and table.dtypes["accuracy"] == np.float64

    again = probe_scores(features, y, shots=[2, 7, "all"], repeats=3, seed=10)
    pd.testing.assert_frame_equal(table, again)
    # Different seeds, different samples: the 2-shot scores of the pixels vary.
    assert table[(table["features"] == "pixels") & (table["shots"] == 2)]["accuracy"].nunique() > 1


def test_a_good_embedding_beats_a_noise_baseline() -> None:
    good, noise, y = blobs()
    table = probe_scores({"good": good, "noise": noise}, y, shots=[5, "all"], repeats=3)
    summary = summarize_probe(table).set_index(["features", "shots"])

    assert (summary.loc["good", "macro_f1_mean"] > 0.95).all()
    assert (summary.loc["good", "accuracy_mean"] > 0.95).all()
    chance = 1 / 4
    assert (summary.loc["noise", "accuracy_mean"] - chance).abs().max() < 0.2
    assert (summary.loc["noise", "reference"] == "good").all()
    assert summary.loc["noise", "reference_beats"].astype(bool).all()
    assert (summary.loc["noise", "delta_macro_f1"] > 0.4).all()
    assert summary.loc["good", "reference_beats"].isna().all()
    assert summary.loc["good", "delta_macro_f1"].isna().all()
    assert (summary["n_repeats"] == 3).all()
    # The noise is the reference when asked: it beats nothing.
    flipped = summarize_probe(table, reference="noise").set_index(["features", "shots"])
    assert not flipped.loc["good", "reference_beats"].astype(bool).any()


def test_summary_statistics_are_over_seeds() -> None:
    table = pd.DataFrame(
        {
            "features": ["a", "a", "b", "b"],
            "shots": [0, 0, 0, 0],
            "seed": [0, 1, 0, 1],
            "n_train": [10] * 4,
            "n_test": [5] * 4,
            "accuracy": [0.8, 0.6, 0.5, 0.5],
            "macro_f1": [0.9, 0.7, 0.6, 0.4],
        }
    )
    s = summarize_probe(table).set_index("features")
    assert s.loc["a", "macro_f1_mean"] == pytest.approx(0.8)
    assert s.loc["a", "macro_f1_std"] == pytest.approx(np.std([0.9, 0.7], ddof=1))
    assert s.loc["b", "accuracy_std"] == 0
    assert s.loc["b", "delta_macro_f1"] == pytest.approx(0.3)
    with pytest.raises(ParameterError, match="reference 'c' is not among"):
        summarize_probe(table, reference="c")
    with pytest.raises(ParameterError, match="missing columns \\['macro_f1'\\]"):
        summarize_probe(table.drop(columns="macro_f1"))


# -- dropped rows ---------------------------------------------------------------------------


def test_rows_with_non_finite_features_are_dropped_from_every_array(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, noise, y = blobs()
    bad = noise.copy()
    bad[[3, 50, 77]] = np.nan
    bad[90, 2] = np.inf
    keep = np.ones(len(y), dtype=bool)
    keep[[3, 50, 77, 90]] = False
    with caplog.at_level(logging.INFO, logger="pipeline.features.probe"):
        got = probe_scores({"good": good, "noise": bad}, y, shots=[3, "all"], repeats=2)
    ref = probe_scores(
        {"good": good[keep], "noise": noise[keep]}, y[keep], shots=[3, "all"], repeats=2
    )
    pd.testing.assert_frame_equal(got, ref)
    assert "dropped 4 of 120 labelled rows with non-finite features" in caplog.text


def test_rows_without_a_label_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    good, _, y = blobs()
    labels = y.astype(object)
    gone = [0, 31, 62, 63, 119]
    for i, v in zip(gone, [None, np.nan, "", "nan", "<NA>"], strict=True):
        labels[i] = v
    keep = np.ones(len(y), dtype=bool)
    keep[gone] = False
    with caplog.at_level(logging.INFO, logger="pipeline.features.probe"):
        got = probe_scores({"good": good}, labels, shots=["all"], repeats=2)
    pd.testing.assert_frame_equal(
        got, probe_scores({"good": good[keep]}, y[keep], shots=["all"], repeats=2)
    )
    assert "dropped 5 of 120 rows without a label" in caplog.text


def test_shots_a_class_cannot_fill_are_skipped_for_every_repeat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, _, y = blobs(n_per_class=30)  # 21 training rows per class
    with caplog.at_level(logging.WARNING, logger="pipeline.features.probe"):
        table = probe_scores({"good": good}, y, shots=[10, 25, "all"], repeats=2)
    assert sorted(set(table["shots"])) == [0, 10]
    assert len(table) == 4
    assert "skipping 25-shot: class" in caplog.text and "only 21 training examples" in caplog.text


def test_convergence_warnings_are_logged_once_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    good, noise, y = blobs()
    with (
        warnings.catch_warnings(),
        caplog.at_level(logging.WARNING, logger="pipeline.features.probe"),
    ):
        warnings.simplefilter("error")
        table = probe_scores(
            {"noise": noise, "good": good}, y, shots=["all"], repeats=2, max_iter=1
        )
    assert len(table) == 4
    lines = [r for r in caplog.records if "max_iter" in r.getMessage()]
    assert len(lines) == 1 and "of 4 fits stopped at max_iter = 1" in lines[0].getMessage()


# -- errors -----------------------------------------------------------------------------------


def _labels(*counts: int) -> np.ndarray:
    return np.asarray([f"k{i}" for i, n in enumerate(counts) for _ in range(n)], dtype=object)


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (_labels(20), {}, "at least 2 classes.*only 'k0'"),
        (np.asarray([None] * 20, dtype=object), {}, "at least 2 classes.*found none"),
        (_labels(10, 9, 1), {}, "fewer than 2 examples.*'k2' \\(1 example\\)"),
        (_labels(10, 10), {"n_rows": 19}, "shape \\(19, 3\\).*n_rows = 20"),
        (_labels(3, 3, 3, 3), {"test_fraction": 0.1}, "2 test rows.*one row per class \\(4\\)"),
        (_labels(10, 10), {"shots": [20]}, "no shots value can be used.*only 7 training"),
        (_labels(10, 10), {"shots": [0]}, "shots value 0: expected an integer >= 1"),
        (_labels(10, 10), {"shots": ["most"]}, "shots value 'most'"),
        (_labels(10, 10), {"shots": [True]}, "shots value True"),
        (_labels(10, 10), {"shots": [5, 5]}, "each value may be given once"),
        (_labels(10, 10), {"shots": []}, "shots is empty"),
        (_labels(10, 10), {"repeats": 0}, "repeats = 0"),
        (_labels(10, 10), {"test_fraction": 1.0}, "test_fraction = 1.0"),
        (_labels(10, 10), {"C": 0.0}, "C = 0.0"),
        (_labels(10, 10), {"max_iter": 0}, "max_iter = 0"),
        (_labels(10, 10), {"seed": -1}, "seed = -1"),
    ],
    ids=[
        "one-class",
        "no-labels",
        "singleton-class",
        "length-mismatch",
        "test-too-small",
        "no-usable-shots",
        "zero-shots",
        "bad-shots",
        "bool-shots",
        "duplicate-shots",
        "empty-shots",
        "repeats",
        "test-fraction",
        "C",
        "max-iter",
        "negative-seed",
    ],
)
def test_bad_input_raises_before_fitting(
    labels: np.ndarray, kwargs: dict[str, Any], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fit(*args: Any, **kw: Any) -> None:
        raise AssertionError("a model was fitted")

    monkeypatch.setattr(LogisticRegression, "fit", no_fit)
    n_rows = kwargs.pop("n_rows", len(labels))
    x = np.random.default_rng(0).standard_normal((n_rows, 3))
    with pytest.raises(ParameterError, match=match):
        probe_scores({"x": x}, labels, **kwargs)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({}, "label_column"),
        ({"features": []}, "features"),
        ({"features": ["reduced", "reduced"]}, "each array may be named once"),
        ({"shots": [0]}, "greater than or equal to 1"),
        ({"shots": ["most"]}, "shots"),
        ({"shots": [10, "all", "all"]}, "each value may be given once"),
        ({"repeats": 0}, "repeats"),
        ({"test_fraction": 1}, "test_fraction"),
        ({"C": -1}, "C"),
        ({"max_iter": 0}, "max_iter"),
        ({"rows": "some"}, "rows"),
        ({"shot": [10]}, "Extra inputs are not permitted"),
    ],
)
def test_params_are_validated(fields: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {"label_column": "digit"} if fields else {}
    with pytest.raises(ValidationError, match=match):
        ProbeParams(**{**base, **fields})


def test_params_defaults_follow_the_seed() -> None:
    p = ProbeParams(label_column="digit")
    assert p.features == ["embeddings", "reduced"] and p.shots == [10, 20, 30, "all"]
    assert (p.repeats, p.test_fraction, p.C, p.max_iter, p.rows) == (5, 0.3, 1.0, 1000, "kept")


# -- the stage ------------------------------------------------------------------------------


def _store(folder: Path, arrays: dict[str, np.ndarray], labels: list[Any]) -> RunStore:
    """A run store with ``arrays`` (image first) and an ``images`` table with a digit column."""
    store = RunStore(str(folder))
    ds = xr.Dataset({name: (("image", f"{name}_dim"), a) for name, a in arrays.items()})
    store.write_template(ds, {}, mode="w")
    n = len(labels)
    images = pd.DataFrame(
        {
            "image": np.arange(n),
            "image_id": [f"d{i:04d}" for i in range(n)],
            "source": [f"/data/d{i:04d}.png" for i in range(n)],
            "height": 8,
            "width": 8,
            "channels": 1,
            "format": "png",
            "digit": labels,
        }
    )
    write_table(store, "images", images)
    return store


@pytest.fixture(scope="module")
def digit_store(
    tmp_path_factory: pytest.TempPathFactory, digits: tuple[np.ndarray, np.ndarray]
) -> RunStore:
    """Embeddings = the pixels; reduced = noise, NaN for 6 images; 4 digits unlabelled."""
    x, y = digits
    rng = np.random.default_rng(0)
    reduced = rng.standard_normal((len(y), 6)).astype(np.float32)
    reduced[[5, 6, 7, 100, 101, 299]] = np.nan
    labels: list[Any] = [int(v) for v in y]
    for i in (10, 11, 200, 201):
        labels[i] = None
    return _store(tmp_path_factory.mktemp("probe") / "run", {"embeddings": x.astype(np.float32),
                  "reduced": reduced}, labels)  # fmt: skip


def test_run_probe_writes_the_table_and_the_embedding_wins(
    digit_store: RunStore, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    params = ProbeParams(label_column="digit", shots=[5, 10, "all"], repeats=2)
    with caplog.at_level(logging.INFO, logger="pipeline.features.probe"):
        counts = run_probe(RunContext(digit_store, client, seed=7), params)
    assert counts == {"rows": N_DIGITS - 6 - 4, "classes": 10, "fits": 2 * 3 * 2}
    table = read_table(digit_store, "probe")
    assert list(table.columns) == list(PROBE_COLUMNS) and len(table) == 12
    assert set(table["seed"]) == {7, 8} and set(table["shots"]) == {0, 5, 10}
    assert (table["n_test"] == int(np.ceil(0.3 * 290))).all()

    summary = summarize_probe(table).set_index(["features", "shots"])
    assert summary.loc[("embeddings", 0), "accuracy_mean"] > 0.85
    assert summary.loc["reduced", "accuracy_mean"].max() < 0.35  # chance: 0.1
    assert summary.loc["reduced", "reference_beats"].astype(bool).all()
    assert "dropped 6 of 296 labelled rows with non-finite features" in caplog.text
    assert "dropped 4 of 300 rows without a label" in caplog.text
    lines = {r.getMessage().split(":")[1].strip(): r.getMessage() for r in caplog.records}
    assert "beat" not in lines["embeddings 5-shot"]  # the reference itself
    assert "embeddings beats it" in lines["reduced all-shot"]
    assert "embeddings beats it (macro-F1 difference +" in caplog.text

    # The stage is the pure function on the store's rows: the same numbers without a client.
    x = digit_store.open_dataset()
    labels = read_table(digit_store, "images")["digit"].to_numpy()
    direct = probe_scores(
        {"embeddings": x["embeddings"].values, "reduced": x["reduced"].values},
        np.asarray([str(v) for v in labels], dtype=object),
        shots=[5, 10, "all"],
        repeats=2,
        seed=7,
    )
    pd.testing.assert_frame_equal(table, direct)


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        (
            {"features": ["embeddings", "cutouts"]},
            StoreError,
            "'cutouts' is not in .*run the `preprocess` stage",
        ),
        ({"features": ["learned"]}, StoreError, "'learned' is not in .*the stage that writes it"),
        ({"label_column": "species"}, ParameterError, "label column 'species'.*digit"),
        ({"label_column": "format"}, ParameterError, "at least 2 classes.*only 'png'"),
        ({"shots": [500]}, ParameterError, "no shots value can be used"),
    ],
    ids=["missing-array", "unknown-array", "missing-label-column", "one-class", "no-shots"],
)
def test_bad_stage_input_raises_before_anything_is_written(
    digit_store: RunStore, fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    digit_store.remove("tables/probe.parquet")
    params = ProbeParams(**{"label_column": "digit", **fields})
    with pytest.raises(error, match=match):
        run_probe(RunContext(digit_store, None), params)
    assert not digit_store.exists("tables/probe.parquet")


def test_a_store_without_embeddings_names_the_embed_stage(tmp_path: Path) -> None:
    store = _store(tmp_path / "run", {"reduced": np.zeros((4, 2))}, [0, 1, 0, 1])
    with pytest.raises(StoreError, match=r"'embeddings' is not in .*run the `embed` stage"):
        run_probe(RunContext(store, None), ProbeParams(label_column="digit"))
    assert not store.exists("tables/probe.parquet")
