"""Seeded replicates as Dask tasks: the same results on one core or on a cluster."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.compute.replicates import percentile_interval, replicate_seeds, run_replicates
from pipeline.core.cluster_config import LocalClusterConfig
from pipeline.core.runtime import cluster_client
from pipeline.workflows.survival.cox import concordance_replicate


def test_replicate_seeds_are_stable_and_streams_apart() -> None:
    assert replicate_seeds(3, 4) == replicate_seeds(3, 4)
    assert replicate_seeds(3, 4, stream=1) != replicate_seeds(3, 4)
    assert replicate_seeds(3, 6)[:4] != replicate_seeds(4, 4)


def test_percentile_interval_ignores_undefined_replicates() -> None:
    lo, hi = percentile_interval([1.0, 2.0, 3.0, float("nan")], alpha=0.0)
    assert (lo, hi) == (1.0, 3.0)
    assert np.isnan(percentile_interval([float("nan")])[0])


@pytest.mark.slow
def test_the_same_bootstrap_twice_on_a_process_cluster() -> None:
    # Re-scattering identical data used to reuse a key the scheduler was still releasing, and
    # the second bootstrap failed with "lost dependencies".
    rng = np.random.default_rng(0)
    payload = (rng.exponential(size=80), rng.integers(0, 2, 80), rng.normal(size=80))
    seeds = replicate_seeds(0, 20)
    expected = run_replicates(None, concordance_replicate, payload, seeds)
    cfg = LocalClusterConfig(workers=2, threads_per_worker=1, dashboard_address=":0")
    with cluster_client(cfg) as cl:
        for _ in range(3):
            got = run_replicates(cl, concordance_replicate, payload, seeds, per_task=5)
            assert got == expected
