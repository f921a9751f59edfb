"""How the galaxy job's stages grow with the collection: 250 to 2,000 generated galaxies.

For each size the PCA part of ``jobs/galaxy_survey.yaml`` (ingest, preprocess, reduce and the
four cluster stages; no encoder, no report) runs with ``pipeline run`` on a local cluster of
2 worker processes x 1 thread, and each stage's seconds are read from the store's manifest.
Driving the command line (not the Python API) lets the same script measure another checkout:
``--pythonpath /tmp/base`` runs that tree's ``pipeline`` (e.g. the commit before a change).

Printed per size: rows clustered, every stage's seconds, and two ratios:

* ``kmeans / preprocess``: the target is that the elbow search (k = 1..10, 3 restarts) costs
  no more than the per-image galaxy work "by a wide margin";
* ``kmeans / sklearn``: the same elbow with scikit-learn's ``KMeans`` (k-means++, ``n_init=3``)
  on the same ``reduced`` rows held in memory, timed in this process: the baseline.

Then each stage's growth from the smallest to the largest size against the rows' growth
(``x rows``): about linear is a ratio near 1.

Usage::

    python benchmarks/galaxy_scaling.py                      # 250, 500, 1000, 2000
    python benchmarks/galaxy_scaling.py --sizes 250 2000 --workdir /tmp/scale
    python benchmarks/galaxy_scaling.py --pythonpath /tmp/base   # another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Results, open_workdir, version

#: The stages measured (the PCA part of the galaxy job).
STAGES = ("ingest", "preprocess", "reduce", "kmeans", "dbscan", "agglomerative", "som")
CLUSTER_STAGES = ("kmeans", "dbscan", "agglomerative", "som")


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _pipeline(args: list[str], env: dict[str, str], cwd: Path) -> None:
    # Run outside the checkout: `python -m` puts the working folder first on sys.path, which
    # would shadow --pythonpath.
    subprocess.run([sys.executable, "-m", "pipeline", *args], check=True, env=env, cwd=cwd)


def _which(env: dict[str, str], cwd: Path) -> str:
    """The pipeline package the runs import."""
    code = "import pipeline; print(pipeline.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True)
    return out.stdout.decode().strip()


def _job(workdir: Path, n: int) -> Path:
    spec = yaml.safe_load((ROOT / "jobs" / "galaxy_survey.yaml").read_text())
    spec["stages"] = [s for s in spec["stages"] if (s.get("name") or s["stage"]) in STAGES]
    spec["name"] = f"galaxy_scaling_{n}"
    spec["store"] = str(workdir / f"run{n}")
    spec["input"]["sources"] = [str(workdir / f"galaxies{n}" / "manifest.csv")]
    path = workdir / f"job{n}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _sklearn_elbow(store: Path, seed: int = 0) -> tuple[float, int]:
    """Seconds of scikit-learn's elbow (k = 1..10, n_init=3) on the store's kept PCA rows."""
    import xarray as xr
    from sklearn.cluster import KMeans

    reduced = xr.open_zarr(store / "store.zarr")["reduced"].values
    rows = reduced[np.isfinite(reduced).all(axis=1)].astype(np.float64)
    t0 = time.perf_counter()
    for k in range(1, min(10, len(rows)) + 1):
        KMeans(k, init="k-means++", n_init=3, random_state=seed).fit(rows)
    return time.perf_counter() - t0, len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--workdir", type=Path, help="keep the data and stores here")
    parser.add_argument("--pythonpath", type=Path, help="run this checkout's pipeline instead")
    args = parser.parse_args(argv)
    workdir, own = open_workdir(args.workdir, "pipeline-scaling-")
    env = _env(args.pythonpath)
    where = _which(env, workdir)
    stamp = version(["pipeline/features/matrix.py"]) if args.pythonpath is None else "given"
    print(f"measuring {where} ({stamp})", flush=True)
    res = Results()
    seconds: dict[int, dict[str, float]] = {}
    rows: dict[int, int] = {}
    for n in args.sizes:
        data = workdir / f"galaxies{n}"
        if not (data / "manifest.csv").exists():
            synth = ["synth", "galaxies", str(data), "--count", str(n), "--seed", "0"]
            _pipeline(synth, env, workdir)
        job = _job(workdir, n)
        shutil.rmtree(workdir / f"run{n}", ignore_errors=True)
        _pipeline(
            ["run", str(job), "--workers", "2", "--threads-per-worker", "1",
             "--dashboard-address", ":0", "-q"],
            env,
            workdir,
        )  # fmt: skip
        manifest = json.loads((workdir / f"run{n}" / "manifest.json").read_text())
        seconds[n] = {s: float(manifest["stages"][s]["seconds"]) for s in STAGES}
        rows[n] = int(manifest["stages"]["kmeans"]["counts"]["rows"])
        sk, _ = _sklearn_elbow(workdir / f"run{n}")
        t = seconds[n]
        res.report(
            f"{n} images, {rows[n]} rows clustered: "
            + ", ".join(f"{s} {t[s]:.2f} s" for s in STAGES)
            + f"; sklearn elbow {sk:.2f} s; kmeans / preprocess = "
            f"{t['kmeans'] / t['preprocess']:.2f}, kmeans / sklearn = {t['kmeans'] / sk:.1f}"
        )
    lo, hi = min(args.sizes), max(args.sizes)
    if lo != hi:
        growth = rows[hi] / rows[lo]
        res.report(
            f"growth from {lo} to {hi} images (rows x{growth:.1f}): "
            + ", ".join(f"{s} x{seconds[hi][s] / seconds[lo][s]:.1f}" for s in CLUSTER_STAGES)
        )
        worst = max(seconds[hi][s] / seconds[lo][s] / growth for s in CLUSTER_STAGES)
        met = res.target("cluster stages about linear in the rows", worst <= 1.5)
        res.report(
            f"largest cluster-stage growth / rows growth: {worst:.2f} (target <= 1.5: {met})"
        )
    ratio = seconds[hi]["kmeans"] / seconds[hi]["preprocess"]
    met = res.target("kmeans no slower than preprocess by a wide margin", ratio <= 1.5)
    res.report(f"at {hi} images kmeans / preprocess = {ratio:.2f} (target <= 1.5: {met})")
    res.summary()
    if own:
        shutil.rmtree(workdir, ignore_errors=True)
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
