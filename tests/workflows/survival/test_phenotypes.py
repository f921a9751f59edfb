"""Phenotype clustering: Gower distance, k selection, numbering, profiles, bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score

from pipeline.compute.replicates import replicate_seeds, run_replicates
from pipeline.errors import ParameterError
from pipeline.workflows.survival.phenotypes import (
    PhenotypeParams,
    cluster_phenotypes,
    coinciding_covariates,
    count_replicate,
    gower_distance,
    phenotype_profiles,
)
from pipeline.workflows.survival.spec import Covariate


def _cohort(seed: int = 0, per: int = 40) -> tuple[pd.DataFrame, list[Covariate]]:
    """Three well-separated patient groups with different survival (group 0 lives longest)."""
    rng = np.random.default_rng(seed)
    centres = [(30.0, 1.0), (60.0, 8.0), (80.0, 20.0)]
    rows = []
    for g, (age, nodes) in enumerate(centres):
        for _ in range(per):
            rows.append(
                {
                    "age": rng.normal(age, 2.0),
                    "nodes": rng.normal(nodes, 0.5),
                    "stage": ["early", "mid", "late"][g],
                    "duration": rng.exponential(10.0 / (g + 1)),
                    "event": int(rng.random() < 0.8),
                    "truth": g,
                }
            )
    frame = pd.DataFrame(rows)
    frame["stage"] = pd.Categorical(frame["stage"], categories=["early", "mid", "late"])
    covs = [
        Covariate(name="age", kind="numeric"),
        Covariate(name="nodes", kind="numeric"),
        Covariate(
            name="stage",
            kind="categorical",
            levels={"early": "early", "mid": "mid", "late": "late"},
        ),
    ]
    return frame, covs


def test_gower_distance_by_hand() -> None:
    numeric = np.array([[0.0, 10.0], [5.0, 10.0], [10.0, 10.0]])  # 2nd column constant
    categorical = np.array([[0], [1], [0]])
    d = gower_distance(numeric, categorical)
    # pair (0, 1): |0-5|/10 = 0.5, constant column 0, category differs 1 -> 1.5 / 3
    assert d[0, 1] == pytest.approx(1.5 / 3)
    assert d[0, 2] == pytest.approx(1.0 / 3)
    np.testing.assert_allclose(d, d.T)
    assert np.all(np.diag(d) == 0)


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, (6, 2), elements=st.floats(-100, 100)),
    arrays(np.int64, (6, 2), elements=st.integers(0, 2)),
)
def test_gower_distance_is_a_bounded_symmetric_dissimilarity(
    numeric: np.ndarray, categorical: np.ndarray
) -> None:
    d = gower_distance(numeric, categorical)
    assert d.shape == (6, 6)
    assert np.all(d >= 0) and np.all(d <= 1 + 1e-12)
    np.testing.assert_allclose(d, d.T)


def test_well_separated_groups_are_found_and_numbered_by_survival() -> None:
    frame, covs = _cohort()
    result, distances = cluster_phenotypes(frame, covs, PhenotypeParams(k_range=(2, 6)))
    assert result.k == 3 and result.distance == "gower"
    # Phenotype 1 = best survival at the horizon = the longest-lived true group (0).
    crosstab = pd.crosstab(result.labels, frame["truth"])
    assert (crosstab.to_numpy() == np.diag([40, 40, 40])).all()
    # The silhouette in the table is scikit-learn's on the clustered distances.
    tree = linkage(squareform(distances, checks=False), method="ward")
    labels = fcluster(tree, 3, criterion="maxclust")
    row = result.selection.set_index("k").loc[3]
    assert row["silhouette"] == pytest.approx(
        silhouette_score(distances, labels, metric="precomputed")
    )
    assert row["chosen"] and result.selection["chosen"].sum() == 1


def test_numeric_only_covariates_use_the_euclidean_distance() -> None:
    frame, covs = _cohort()
    result, _ = cluster_phenotypes(frame, covs[:2], PhenotypeParams(k_range=(2, 5)))
    assert result.distance == "euclidean" and result.k == 3


def test_no_eligible_k_names_the_smallest_phenotypes() -> None:
    frame, covs = _cohort()
    with pytest.raises(ParameterError, match="min_size"):
        cluster_phenotypes(frame, covs, PhenotypeParams(k_range=(5, 6), min_size=0.3))


def test_profiles_are_means_and_shares_per_phenotype() -> None:
    frame, covs = _cohort()
    labels = frame["truth"].to_numpy() + 1
    prof = phenotype_profiles(frame, covs, labels)
    age = prof[(prof.covariate == "age") & (prof.phenotype == 2)].iloc[0]
    assert age["value"] == pytest.approx(frame.loc[labels == 2, "age"].mean())
    assert age["overall"] == pytest.approx(frame["age"].mean())
    late = prof[(prof.covariate == "stage") & (prof.level == "late")].set_index("phenotype")
    assert late["value"].tolist() == [0.0, 0.0, 1.0]
    shares = prof[prof.covariate == "stage"].groupby("phenotype")["value"].sum()
    np.testing.assert_allclose(shares, 1.0)


def test_bootstrap_count_does_not_depend_on_batching_or_cluster(client: Client) -> None:
    frame, covs = _cohort()
    _, distances = cluster_phenotypes(frame, covs, PhenotypeParams(k_range=(2, 6)))
    payload = (distances, "ward", (2, 6), 0.05)
    seeds = replicate_seeds(3, 12)
    local = run_replicates(None, count_replicate, payload, seeds)
    on_cluster = run_replicates(client, count_replicate, payload, seeds, per_task=5)
    assert local == on_cluster
    assert set(local) == {3.0}  # three clear groups survive resampling
    assert replicate_seeds(3, 4) == replicate_seeds(3, 4)
    assert replicate_seeds(3, 4, stream=1) != replicate_seeds(3, 4)


def test_weights_make_a_weighted_mean_of_the_covariates() -> None:
    numeric = np.array([[0.0], [10.0]])
    categorical = np.array([[0], [1]])
    # |0-10|/10 = 1 with weight 1, mismatch 1 with weight 0.25 -> (1 + 0.25) / 1.25 = 1.
    assert gower_distance(numeric, categorical, [1.0], [0.25])[0, 1] == pytest.approx(1.0)
    numeric = np.array([[0.0], [5.0], [10.0]])
    categorical = np.array([[0], [1], [0]])
    d = gower_distance(numeric, categorical, [1.0], [0.5])
    assert d[0, 1] == pytest.approx((0.5 + 0.5) / 1.5)
    with pytest.raises(ValueError, match="weights"):
        PhenotypeParams(weights={"age": -1.0})


def test_phenotypes_that_merely_reproduce_a_category_are_named() -> None:
    frame, covs = _cohort()
    result, _ = cluster_phenotypes(frame, covs, PhenotypeParams(k_range=(2, 6)))
    assert coinciding_covariates(frame, covs, result.labels) == ["stage"]
    mixed = np.where(np.arange(len(frame)) % 2 == 0, 1, 2)
    assert coinciding_covariates(frame, covs, mixed) == []
    with pytest.raises(ParameterError, match="not clustered covariates"):
        cluster_phenotypes(frame, covs, PhenotypeParams(weights={"grade": 0.5}))
