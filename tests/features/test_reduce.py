"""The ``reduce`` stage's outputs are named after its step: one job holds two PCAs, and each
cluster step reads the one it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client
from sklearn.decomposition import PCA

from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import JobSpecError
from pipeline.features.reduce import load_pca
from tests.conftest import make_folder


def _job(tmp_path: Path, stages: list[dict[str, object]]) -> object:
    return build_job(
        {
            "name": "two-pcas",
            "store": str(tmp_path / "run"),
            "input": {"sources": [str(tmp_path / "in")], "chunk_mb": 0.004},
            "stages": stages,
        }
    )


def test_two_reduce_steps_write_both_and_clusterings_read_the_one_they_name(
    client: Client, tmp_path: Path
) -> None:
    make_folder(tmp_path / "in", 30, shape=(12, 10))
    stages: list[dict[str, object]] = [
        {"stage": "reduce", "params": {"input": "images", "rows": "all", "n_components": 3}},
        {
            "stage": "reduce",
            "name": "pca8",
            "params": {"input": "images", "rows": "all", "n_components": 8, "method": "exact"},
        },
        {"stage": "kmeans", "params": {"k": 2}},
        {"stage": "kmeans", "name": "kmeans_pca8", "params": {"k": 2, "input": "pca8"}},
    ]
    summary = run_job(_job(tmp_path, stages), client=client)  # type: ignore[arg-type]
    assert summary.ran == ["ingest", "reduce", "pca8", "kmeans", "kmeans_pca8"]
    store = RunStore(str(tmp_path / "run"))

    # Both PCAs, each under its step's names, open side by side in one Dataset.
    ds = xr.open_zarr(store.zarr_url)
    assert ds["reduced"].dims == ("image", "component") and ds["reduced"].shape == (30, 3)
    assert ds["pca8"].dims == ("image", "pca8_component") and ds["pca8"].shape == (30, 8)
    assert len(read_table(store, "explained_variance")) == 3
    ev8 = read_table(store, "pca8_explained_variance", schema="explained_variance")
    assert len(ev8) == 8
    assert load_pca(store).n_components == 3 and load_pca(store, "pca8").n_components == 8

    # Each is the PCA of the same images (scikit-learn on the flattened pixels, up to sign).
    pixels = ds["images"].values.reshape(30, -1).astype(np.float64)
    reference = PCA(8).fit(pixels)
    np.testing.assert_allclose(ev8["explained_variance"], reference.explained_variance_, rtol=1e-6)
    ref_proj = reference.transform(pixels)
    ours = ds["pca8"].values.astype(np.float64)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref_proj), rtol=1e-3, atol=1e-3)

    # Each kmeans step clustered the array it names.
    metrics = read_table(store, "cluster_metrics").set_index("method")
    assert metrics.loc["kmeans", "space"] == "reduced (3 features)"
    assert metrics.loc["kmeans_pca8", "space"] == "pca8 (8 features)"
    clusters = read_table(store, "clusters")
    assert {"kmeans", "kmeans_pca8"} <= set(clusters.columns)

    # Unchanged, everything is skipped; a change to one PCA reruns it and what follows.
    assert run_job(_job(tmp_path, stages), client=client).ran == []  # type: ignore[arg-type]
    stages[1]["params"] = {**stages[1]["params"], "n_components": 6}  # type: ignore[dict-item]
    again = run_job(_job(tmp_path, stages), client=client)  # type: ignore[arg-type]
    assert again.ran == ["pca8", "kmeans", "kmeans_pca8"]
    assert xr.open_zarr(store.zarr_url)["pca8"].shape == (30, 6)
    assert xr.open_zarr(store.zarr_url)["reduced"].shape == (30, 3)


def test_a_cluster_step_that_names_a_reduce_step_is_told_the_array(tmp_path: Path) -> None:
    stages: list[dict[str, object]] = [
        {"stage": "reduce", "params": {"input": "images", "rows": "all"}},
        {"stage": "kmeans", "params": {"input": "reduce"}},
    ]
    with pytest.raises(JobSpecError, match="'reduce' is a step; the array it writes is 'reduced'"):
        _job(tmp_path, stages)
