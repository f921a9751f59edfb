"""Benchmark of the survival workflow's bootstraps as Dask tasks against a serial loop.

The notebook way of bootstrapping is a Python loop over replicates in one process. The
``phenotypes`` and ``cox`` stages run their replicates as Dask tasks (``run_replicates``), each
replicate seeded on its own. On the bundled GBSG2 development cohort of ``jobs/survival.yaml``
(396 patients), this script times, best of ``--repeats``:

1. **phenotype count**: ``--replicates`` (200) bootstrap resamples, each re-clustering the
   patients (Ward on sqrt-Gower, k = 2..8, silhouette) — the expensive bootstrap;
2. **concordance**: ``--replicates`` resamples of Harrell's C of the multivariate Cox risk.

Each is run serially in this process (the baseline) and on a ``LocalCluster`` of one
single-threaded worker process per CPU (``--workers``); the script checks that both give the
same replicate values, then prints the speed-up. Cluster start-up is not timed (a job's cluster
is up for the whole run).

Targets: identical replicates; phenotype-count speed-up >= 0.6 x workers (it is the bootstrap
worth spreading). The concordance bootstrap is printed for information: each replicate takes
about a millisecond, so it gains little.

    .venv/bin/python benchmarks/survival.py [--replicates 200] [--workers N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import Results, open_workdir, version
from distributed import Client, LocalCluster

from pipeline.compute.replicates import replicate_seeds, run_replicates
from pipeline.core.jobs import load_job
from pipeline.workflows.survival.cohort import load_cohort
from pipeline.workflows.survival.cox import concordance_replicate, multivariate_cox
from pipeline.workflows.survival.phenotypes import (
    PhenotypeParams,
    cluster_phenotypes,
    count_replicate,
)
from pipeline.workflows.survival.spec import CohortParams

MODULES = ["pipeline/compute/replicates.py", "pipeline/survival/phenotypes.py"]


def _best(fn: Callable[[], list[Any]], repeats: int) -> tuple[float, list[Any]]:
    best, out = float("inf"), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    open_workdir(None, "bench-survival-")
    print(version(MODULES), flush=True)
    res = Results()

    job = load_job("jobs/survival.yaml")
    cohort_params = job.step("cohort").params
    pheno_params = job.step("phenotypes").params
    assert isinstance(cohort_params, CohortParams) and isinstance(pheno_params, PhenotypeParams)
    cohort = load_cohort(cohort_params)
    frame, record = cohort.frame, cohort.record
    covs = {c.name: c for c in record.params.covariates}
    chosen = [covs[n] for n in pheno_params.covariates or covs]
    _, distances = cluster_phenotypes(frame, chosen, pheno_params)
    count_payload = (distances, pheno_params.linkage, pheno_params.k_range, pheno_params.min_size)
    _, fit = multivariate_cox(frame, [covs[n] for n in ("size", "grade", "nodes", "prog_recp")])
    risk = fit.fitter.predict_log_partial_hazard(fit.design).to_numpy()
    conc_payload = (frame["duration"].to_numpy(), frame["event"].to_numpy(), risk)
    seeds = replicate_seeds(0, args.replicates)
    print(
        f"cohort: {len(frame)} patients; {args.replicates} replicates; {args.workers} workers",
        flush=True,
    )

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: None)  # workers up before timing
        for name, func, payload in [
            ("phenotype count", count_replicate, count_payload),
            ("concordance", concordance_replicate, conc_payload),
        ]:
            t_serial, serial = _best(lambda f=func, p=payload: run_replicates(None, f, p, seeds),
                                     args.repeats)  # fmt: skip
            t_dask, spread = _best(
                lambda f=func, p=payload: run_replicates(client, f, p, seeds), args.repeats
            )
            same = np.array_equal(np.asarray(serial), np.asarray(spread), equal_nan=True)
            speedup = t_serial / t_dask
            line = (
                f"{name}: serial loop {t_serial:.2f} s, Dask tasks {t_dask:.2f} s "
                f"({args.workers} workers): speed-up {speedup:.2f}x; identical replicates: {same}"
            )
            if name == "phenotype count":
                ok = same and speedup >= 0.6 * args.workers
                line += f" [target >= {0.6 * args.workers:.1f}x and identical: "
                line += f"{res.target(name, ok)}]"
            else:
                res.target("concordance identical", same)
            res.report(line)
    res.summary()
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
