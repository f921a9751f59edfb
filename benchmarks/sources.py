"""Benchmark of the SEP source catalog (``detect_sources``, method ``sep``) against SEP on the
whole image in one process, and of both against the generator's truth.

Input, made here: generated survey mosaics (``generate_mosaic``, float32 FITS with a TAN WCS,
seed 0, ~64 sources per megapixel) of ``--sizes`` px a side, each ingested into its own run
store (not timed).

- **baseline**: SEP as a survey astronomer runs it, in this process, on one core: the FITS
  read into memory, ``sep.Background`` (64 px boxes, 3 x 3 filter), its ``back()`` and
  ``rms()`` maps, ``sep.extract`` at 5 x RMS with the RMS map, then ``kron_radius``,
  ``sum_ellipse`` (FLUX_AUTO), ``sum_circle`` (a 6 px aperture) and ``flux_radius`` on every
  object;
- **ours**: both passes of the stage (:func:`pipeline.workflows.mosaic.catalog.extract_catalog`:
  background boxes per tile, the shared mesh, extraction and the same photometry per tile,
  the rows back) on the project's local cluster (``--workers`` processes of one thread) from
  the ingested Zarr mosaic. Its workers' memory limit is set below the largest mosaic's
  size, so that mosaic only completes if a worker's memory is bounded by the tile, not the
  mosaic; the workers' peak RSS is printed.

Both sides: best of ``--repeats`` runs.

Printed per size: seconds of each side, the speed ratio (baseline / ours; target >= 1.5 on 2
workers), seconds per megapixel (cost linear in the area: roughly constant), the objects both
find (matched within 0.01 px; SEP hands a deblended parent's pixels to its children at random,
so a deblend can differ by one child between any two runs of SEP), and recall / precision of
each against the truth (one-to-one within 2 px). ``--log`` adds today's Laplacian-of-Gaussian
path on the first size.

    .venv/bin/python benchmarks/sources.py [--sizes 4096 8192 16384] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import Results, open_workdir, version
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.runtime import LocalClusterConfig, cluster_client
from pipeline.core.store import RunStore
from pipeline.imaging.crossmatch import match_positions, overall_scores
from pipeline.imaging.spec import ExtractParams
from pipeline.io.mosaic import ingest_mosaic
from pipeline.io.spec import MosaicParams
from pipeline.synth.mosaic import generate_mosaic, load_mosaic_truth

MODULES = [
    "pipeline/imaging/background.py",
    "pipeline/imaging/extraction.py",
    "pipeline/workflows/mosaic/catalog.py",
]
RESULTS = Results()
report = RESULTS.report
TILE = 1024


def sep_whole(path: Path, params: ExtractParams) -> tuple[float, pd.DataFrame]:
    """SEP on the whole image in this process; seconds and x, y of every object."""
    import sep
    from astropy.io import fits

    t0 = time.perf_counter()
    data = np.asarray(fits.getdata(path), dtype=np.float32)
    bkg = sep.Background(data, bw=params.bw, bh=params.bh, fw=params.fw, fh=params.fh)
    back, rms = bkg.back(), bkg.rms()
    sub = data - back
    sep.set_extract_pixstack(max(300_000, data.size // 10))
    objs = sep.extract(sub, params.thresh, err=rms, minarea=params.minarea)
    x, y, a, b = objs["x"], objs["y"], objs["a"], objs["b"]
    theta = np.clip(objs["theta"].astype(np.float64), -np.pi / 2, np.pi / 2)
    kr, _ = sep.kron_radius(sub, x, y, a, b, theta, 6.0)
    r_auto = np.maximum(params.kron_fact * kr, params.min_radius)
    flux, _, _ = sep.sum_ellipse(sub, x, y, a, b, theta, r_auto, err=rms, subpix=params.subpix)
    sep.sum_circle(sub, x, y, 3.0, err=rms, subpix=params.subpix)
    positive = flux > 0
    sep.flux_radius(sub, x[positive], y[positive], 6.0 * a[positive], 0.5,
                    normflux=flux[positive], subpix=5)  # fmt: skip
    seconds = time.perf_counter() - t0
    return seconds, pd.DataFrame({"x": x, "y": y})


def ours(client: Client, store: RunStore, params: ExtractParams, repeats: int) -> tuple[float, Any]:
    """The stage's two passes on the cluster, best of ``repeats``."""
    from pipeline.workflows.mosaic.catalog import extract_catalog

    best, table = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        table, _ = extract_catalog(RunContext(store, client, forced=True), params, TILE)
        best = min(best, time.perf_counter() - t0)
    return best, table


def scores(found: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    m = match_positions(found[["x", "y"]].to_numpy(), truth[["x", "y"]].to_numpy(), 2.0)
    s = overall_scores(m)
    return float(s["recall"]), float(s["precision"])


def log_path(client: Client, store: RunStore) -> tuple[float, pd.DataFrame]:
    """Today's LoG detection over the tiles (without cutouts), as detect_sources runs it."""
    from pipeline.workflows.mosaic.sources import _blob_sources
    from pipeline.workflows.mosaic.spec import SourceParams

    t0 = time.perf_counter()
    found, _ = _blob_sources(RunContext(store, client), SourceParams(method="log"))
    return time.perf_counter() - t0, found


def peak_rss_mib(client: Client) -> float:
    def rss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    return max(client.run(rss).values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--halo", type=int, help="the extraction's starting halo (px)")
    ap.add_argument("--log", action="store_true", help="also time the LoG path (slow)")
    ap.add_argument("--quick", action="store_true", help="sizes 2048 and 4096")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.sizes = [2048, 4096]
    workdir, own = open_workdir(args.workdir, "bench-sources-")
    print(version(MODULES), flush=True)
    params = ExtractParams() if args.halo is None else ExtractParams(halo=args.halo)
    largest = max(args.sizes) ** 2 * 4
    # Below the largest mosaic's bytes where it is large (a worker's own libraries take
    # ~400 MiB, a tile's task ~100 MiB more: the limit must leave that room).
    limit = int(max(768 * 2**20, 0.9 * largest))
    # The project's own local cluster (pipeline.core.runtime: its workers' malloc settings).
    stack = contextlib.ExitStack()
    config = LocalClusterConfig(
        workers=args.workers,
        threads_per_worker=1,
        memory_limit=f"{limit // 2**20}MiB",
        dashboard_address=":0",
    )
    client = stack.enter_context(cluster_client(config))
    report(
        f"{args.workers} workers x 1 thread, memory limit {limit / 2**20:.0f} MiB each; "
        f"largest mosaic {largest / 2**20:.0f} MiB (float32)"
    )
    client.run(lambda: __import__("pipeline.workflows.mosaic.catalog"))  # warm imports
    ratios, per_mp = [], []
    try:
        for k, size in enumerate(args.sizes):
            path = workdir / f"mosaic{size}.fits"
            if not path.exists():
                generate_mosaic(path, height=size, width=size, seed=0, density=64.0)
            truth = load_mosaic_truth(path)
            store = RunStore(str(workdir / f"run{size}"))
            ingest_mosaic(RunContext(store, client), MosaicParams(source=str(path), tile=TILE))
            mine_s, mine = ours(client, store, params, args.repeats)
            # Best of the same number of runs on both sides (SEP's first run in a process
            # pays for its maps' fresh pages: up to 0.4 s more at 4096 px, measured).
            base_s, base = min((sep_whole(path, params) for _ in range(args.repeats)),
                               key=lambda r: r[0])  # fmt: skip
            both = match_positions(mine[["x", "y"]].to_numpy(), base[["x", "y"]].to_numpy(), 0.01)
            mp = size * size / 1e6
            ratio = base_s / mine_s
            ratios.append(ratio)
            per_mp.append(mine_s / mp)
            r_m, p_m = scores(mine, truth)
            r_b, p_b = scores(base, truth)
            report(
                f"{size} x {size} ({mp:.1f} MP, {len(truth)} true sources): SEP whole image "
                f"{base_s:.2f} s, ours {mine_s:.2f} s -> ratio {ratio:.2f}; ours "
                f"{mine_s / mp * 1000:.1f} ms/MP; objects: ours {len(mine)}, SEP {len(base)}, "
                f"identical {both.n_matched}"
            )
            report(
                f"  recall/precision vs truth: ours {r_m:.4f}/{p_m:.4f}, SEP {r_b:.4f}/{p_b:.4f}"
            )
            if args.log and k == 0:
                log_s, blobs = log_path(client, store)
                r_l, p_l = scores(blobs, truth)
                report(f"  LoG path: {log_s:.2f} s, recall/precision {r_l:.4f}/{p_l:.4f}")
            shutil.rmtree(workdir / f"run{size}", ignore_errors=True)
        rss = peak_rss_mib(client)
        report(f"workers' peak RSS {rss:.0f} MiB (limit {limit / 2**20:.0f} MiB)")
        spread = max(per_mp) / min(per_mp)
        report(
            f"cost per megapixel across sizes: {', '.join(f'{c * 1000:.1f}' for c in per_mp)} "
            f"ms/MP (max/min {spread:.2f}; linear in the area: "
            f"{RESULTS.target('linear', spread < 1.5)})"
        )
        report(
            f"speed ratio vs SEP single process: {', '.join(f'{r:.2f}' for r in ratios)} "
            f"(target >= 1.5: {RESULTS.target('speed', min(ratios) >= 1.5)})"
        )
        if largest > limit:
            done = RESULTS.target("memory", rss < limit / 2**20)
            report(f"the {largest / 2**20:.0f} MiB mosaic completed on workers limited to "
                   f"{limit / 2**20:.0f} MiB: memory {done}")  # fmt: skip
    finally:
        stack.close()
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.summary()
    return RESULTS.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
