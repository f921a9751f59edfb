"""Benchmark of the plate stages: spheroid segmentation + features, per image and at scale.

One run, on the same generated plate(s) (``pipeline.synth.generate_plates``, 16-bit TIFF):

1. **baseline**: a serial scikit-image loop doing the same per image as a lab's script would
   (read the TIFF, segment, measure with regionprops): images/s in one process;
2. **1 worker**: the ``segment_spheroids`` + ``spheroid_features`` stages on a local cluster of
   1 worker x 1 thread (on an ingested store, timed from the first stage's start to the
   second's end; best of ``--repeats``);
3. **2 workers**: the same on 2 workers x 1 thread;
4. **memory**: each worker's peak RSS in the 2-worker run, against the chunk size, with one
   plate and with ``--memory-plates`` plates: bounded by the chunk, not the plate count.

Targets: 1 worker within 10% of the serial loop; 2 workers >= 1.8x one; peak worker memory
the same (within 25%) for 1 and for more plates.

    .venv/bin/python benchmarks/plates.py [--size 1024] [--fields 1 1] [--days 7 10]
        [--memory-plates 2] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import tifffile

from pipeline import LocalClusterConfig, RunStore, cluster_client
from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.synth import generate_plates
from pipeline.workflows.plates.measure import measure_spheroid
from pipeline.workflows.plates.segment import segment_spheroid
from pipeline.workflows.plates.segment_spec import SegmentParams

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, open_workdir, version

MODULES = (
    "pipeline/workflows/plates/segment.py",
    "pipeline/workflows/plates/measure.py",
    "pipeline/workflows/plates/stages.py",
)
INGEST = """\
name: bench
store: {store}
input:
  sources: [{manifest}]
"""
STAGES = """\
stages:
  - stage: segment_spheroids
  - stage: spheroid_features
"""


def make_plates(out: Path, args: argparse.Namespace, plates: int) -> Path:
    """Generate ``plates`` plates; a manifest CSV (path + plate map) the ingest reads."""
    generate_plates(
        out,
        plates=plates,
        seed=0,
        size=args.size,
        fields=tuple(args.fields),
        days=tuple(args.days),
        fault_rate=0.0,
    )
    index = pd.read_csv(out / "image_index.csv")
    plate_map = pd.read_csv(out / "plate_map.csv")
    manifest = index.merge(plate_map, on=["plate", "well"]).rename(columns={"file": "path"})
    manifest.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"


def serial_loop(manifest: Path) -> tuple[int, float]:
    """Read each TIFF, segment it, measure it: the per-image script the stages replace."""
    paths = [manifest.parent / p for p in pd.read_csv(manifest)["path"]]
    params = SegmentParams()
    t0 = time.perf_counter()
    for path in paths:
        image = tifffile.imread(path)
        result = segment_spheroid(image, params)
        measure_spheroid(image, result.labels)
    return len(paths), time.perf_counter() - t0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stages(store: Path, manifest: Path, workers: int, repeats: int) -> tuple[float, list[int]]:
    """Best time of the two stages on ``workers`` workers, and each worker's peak RSS."""
    cluster = LocalClusterConfig(workers=workers, threads_per_worker=1, dashboard_address=":0")
    spec = INGEST.format(store=store, manifest=manifest)
    best = float("inf")
    with cluster_client(cluster) as client:
        run_job(parse_job(spec), client=client)  # ingest, not timed
        job = parse_job(spec + STAGES)
        for _ in range(repeats):
            t0 = time.perf_counter()
            run_job(job, client=client, force=["segment_spheroids", "spheroid_features"])
            best = min(best, time.perf_counter() - t0)
        peaks = sorted(client.run(_peak_rss).values())
    return best, peaks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="image side (default 1024)")
    ap.add_argument("--fields", type=int, nargs=2, default=(1, 1), help="fields per well")
    ap.add_argument("--days", type=int, nargs="+", default=[7, 10], help="days (default 7 10)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each (best of)")
    ap.add_argument("--memory-plates", type=int, default=2, help="plates of the memory check")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)
    workdir, own = open_workdir(args.workdir, "bench-plates-")
    out = Results()
    out.report(f"library measured: {version(MODULES)}")
    try:
        manifest = make_plates(workdir / "plate1", args, 1)
        n, serial = serial_loop(manifest)
        out.report(
            f"baseline, serial loop (tifffile + segment + regionprops): {n} images of "
            f"{args.size} px in {serial:.1f} s = {n / serial:.1f} images/s"
        )
        one, peaks_one = stages(workdir / "store1", manifest, 1, args.repeats)
        two, peaks_two = stages(workdir / "store2", manifest, 2, args.repeats)
        ratio1 = serial / one
        out.report(
            f"stages on 1 worker: {n / one:.1f} images/s = {ratio1:.2f}x the serial loop "
            f"(target >= 0.90: {out.target('1 worker within 10% of serial', ratio1 >= 0.9)})"
        )
        scaling = one / two
        out.report(
            f"stages on 2 workers: {n / two:.1f} images/s = {scaling:.2f}x one worker "
            f"(target >= 1.8: {out.target('2 workers >= 1.8x one', scaling >= 1.8)})"
        )
        chunk = RunStore(str(workdir / "store2")).open_dataset()["images"].encoding["chunks"]
        mib = 2**20
        out.report(
            f"peak worker RSS, 1 plate ({n} images, chunks of {chunk[0]} images): "
            f"{', '.join(f'{p / mib:.0f}' for p in peaks_two)} MiB"
        )
        if args.memory_plates > 1:
            more = make_plates(workdir / "plates_more", args, args.memory_plates)
            _, peaks_more = stages(workdir / "store_more", more, 2, 1)
            bounded = max(peaks_more) <= 1.25 * max(peaks_two)
            out.report(
                f"peak worker RSS, {args.memory_plates} plates: "
                f"{', '.join(f'{p / mib:.0f}' for p in peaks_more)} MiB "
                f"(target within 25% of 1 plate: {out.target('memory bounded', bounded)})"
            )
        del peaks_one
    finally:
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out.summary()
    return out.exit_code()


if __name__ == "__main__":
    sys.exit(main())
