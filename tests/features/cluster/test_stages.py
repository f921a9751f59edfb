"""The reduce and cluster stages end to end on a real bundled dataset: scikit-learn's digits
ingested as 1,797 8x8 PNG images with their digit as a manifest column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from PIL import Image
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from pipeline.core.artifacts import load_arrays
from pipeline.core.context import RunContext
from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import ParameterError, StoreError
from pipeline.features.cluster.stages import DBSCANParams, KMeansParams, run_dbscan, run_kmeans
from pipeline.features.matrix import open_matrix
from pipeline.features.reduce import ReduceParams, load_pca, run_reduce

SPEC = """\
name: digits
store: {store}
seed: 0
input:
  sources: [{manifest}]
stages:
  - stage: reduce
    params: {{input: images, n_components: 20}}
  - stage: kmeans
    params: {{k: 10, n_init: 3, label_column: digit}}
  - stage: dbscan
    params: {{max_fit_size: 500, eps_range: [200, 400], eps_step: 20, max_noise: 0.25,
              label_column: digit}}
  - stage: agglomerative
    params: {{n_clusters: 10, label_column: digit}}
  - stage: som
    params: {{method: batch, side: 12, epochs: 8, cluster_n: 10, label_column: digit}}
  - stage: report
    params: {{montage_images: 4}}
"""


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, np.ndarray]:
    digits = load_digits()
    folder = tmp_path_factory.mktemp("digits")
    pixels = (digits.images * 15).astype(np.uint8)  # 0..16 -> 0..240
    rows = []
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"d{i:04d}.png")
        rows.append({"file": f"d{i:04d}.png", "digit": int(digits.target[i])})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    store = folder / "run"
    job = parse_job(SPEC.format(store=store, manifest=folder / "manifest.csv"), "digits.yaml")
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as c:
        run_job(job, client=c)
    return RunStore(str(store)), pixels.reshape(len(pixels), -1).astype(np.float64)


def test_reduce_explained_variance_matches_sklearn(digits_run: tuple[RunStore, np.ndarray]) -> None:
    store, x = digits_run
    ev = read_table(store, "explained_variance")
    ref = PCA(20, svd_solver="full").fit(x)
    np.testing.assert_allclose(
        ev["explained_variance_ratio"], ref.explained_variance_ratio_, atol=1e-3
    )
    np.testing.assert_allclose(
        ev["cumulative_ratio"], np.cumsum(ref.explained_variance_ratio_), atol=1e-3
    )


def test_saved_basis_projects_new_data_like_reduced(
    digits_run: tuple[RunStore, np.ndarray],
) -> None:
    store, x = digits_run
    reduced = store.open_dataset()["reduced"].values
    assert reduced.shape == (1797, 20) and reduced.dtype == np.float32
    basis = load_pca(store)
    np.testing.assert_allclose(basis.transform(x[:50]), reduced[:50], rtol=1e-4, atol=1e-3)


def test_kmeans_recovers_the_digits(digits_run: tuple[RunStore, np.ndarray]) -> None:
    store, _ = digits_run
    metrics = read_table(store, "cluster_metrics").set_index("method")
    assert metrics.loc["kmeans", "n_clusters"] == 10
    assert metrics.loc["kmeans", "ari"] > 0.5  # chance is 0
    centers = load_arrays(store, "kmeans")[0]["centers"]
    assert centers.shape == (10, 20)


def test_agglomerative_equals_sklearn_on_the_reduced_features(
    digits_run: tuple[RunStore, np.ndarray],
) -> None:
    store, _ = digits_run
    features = open_matrix(store, "reduced").data.compute().astype(np.float64)
    ref = AgglomerativeClustering(n_clusters=10, linkage="ward").fit(features).labels_
    ours = read_table(store, "clusters")["agglomerative"].to_numpy()
    np.testing.assert_array_equal(ours, ref)


def test_dbscan_above_the_fit_size_is_sampled_assigned_and_said_so(
    digits_run: tuple[RunStore, np.ndarray],
) -> None:
    store, _ = digits_run
    m = read_table(store, "cluster_metrics").set_index("method")
    assert bool(m.loc["dbscan", "sampled"]) and m.loc["dbscan", "fit_size"] == 500
    assert m.loc["dbscan", "n_points"] == 1797
    sweep = read_table(store, "dbscan_sweep")
    chosen = json.loads(m.loc["dbscan", "params"])["eps"]
    assert sweep.loc[sweep["chosen"], "eps"].tolist() == [chosen]
    labels = read_table(store, "clusters")["dbscan"]
    assert labels.notna().all() and (labels >= 0).mean() > 0.5
    assert "sampled" in (Path(store.path("report/index.html"))).read_text()


def test_som_scores_its_winners_and_keeps_the_map(digits_run: tuple[RunStore, np.ndarray]) -> None:
    store, _ = digits_run
    clusters = read_table(store, "clusters")
    assert clusters["som_row"].between(0, 11).all() and clusters["som_col"].between(0, 11).all()
    m = read_table(store, "cluster_metrics").set_index("method")
    assert m.loc["som", "space"].startswith("som winners")
    assert m.loc["som", "ari"] > 0.3
    arrays, meta = load_arrays(store, "som")
    assert arrays["weights"].shape == (12, 12, 20) and arrays["distance_map"].shape == (12, 12)
    assert meta["method"] == "batch" and meta["quantization_error"] > 0


def test_report_shows_the_clustering(digits_run: tuple[RunStore, np.ndarray]) -> None:
    store, _ = digits_run
    page = Path(store.path("report/index.html")).read_text()
    for png in (
        "explained_variance",
        "som_umatrix",
        "cluster_sizes",
        "cluster_projection",
        "montage_kmeans",
        "dbscan_sweep",
    ):
        assert f"{png}.png" in page and store.exists(f"report/{png}.png"), png
    assert "ARI" in page and "digit" in page


@pytest.mark.parametrize(
    ("run", "match"),
    [
        (
            lambda store: run_reduce(
                RunContext(store, None), ReduceParams(input="images", n_components=500)
            ),
            "n_components = 500.*choose n_components <= 64",
        ),
        (
            lambda store: run_kmeans(
                RunContext(store, None), KMeansParams(k=3, input="embeddings")
            ),
            "'embeddings' is not in",
        ),
        (
            lambda store: run_kmeans(
                RunContext(store, None), KMeansParams(k=3, label_column="species")
            ),
            "label column 'species'.*digit",
        ),
        (
            lambda store: run_dbscan(RunContext(store, None), DBSCANParams(label_column="species")),
            "label column 'species'",
        ),
    ],
    ids=["too-many-components", "missing-array", "unknown-label", "unknown-label-dbscan"],
)
def test_bad_stage_input_names_it_and_keeps_earlier_results(
    digits_run: tuple[RunStore, np.ndarray], run: Any, match: str
) -> None:
    store, _ = digits_run
    before = read_table(store, "clusters")
    with pytest.raises((ParameterError, StoreError), match=match):
        run(store)
    # Checked before any work: the earlier results are untouched.
    pd.testing.assert_frame_equal(read_table(store, "clusters"), before)
    assert store.open_dataset()["reduced"].shape == (1797, 20)
