"""Benchmark of a screen that grows: the plate job's rerun after one more plate is added.

One run, on generated plates (``pipeline.synth.generate_plates``, 16-bit TIFF, image index +
plate map):

1. the plate job (``ingest_plates``, ``segment_spheroids``, ``spheroid_features``,
   ``spheroid_profiles``) on ``--plates`` plates;
2. **growth**: one more plate appended to the index and the plate map, the same job run
   again on the same store (timed);
3. **baseline**: the same job on all the plates into a new store (timed), which is what a
   rerun cost before a collection could grow.

Reports the images each timed run decoded and segmented, each stage's seconds, and the
baseline's time over the growth's (beside the ideal, all images over the new ones: the
cluster's start and the table stages cost the same in both runs). Target (the issue's): the
growth decodes and segments exactly the new plate's images.

    .venv/bin/python benchmarks/plate_growth.py [--plates 3] [--size 512] [--workers 2]
        [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from pipeline.core.jobs import parse_job
from pipeline.core.runner import RunSummary, run_job
from pipeline.synth import generate_plates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, open_workdir, version

MODULES = (
    "pipeline/core/chunks.py",
    "pipeline/io/ingest.py",
    "pipeline/io/ingest_append.py",
    "pipeline/workflows/plates/stages.py",
)
JOB = """\
name: growth
store: {store}
cluster: {{kind: local, workers: {workers}, threads_per_worker: 1, dashboard_address: ':0'}}
stages:
  - stage: ingest_plates
    params: {{index: {index}, plate_map: {plate_map}}}
  - stage: segment_spheroids
  - stage: spheroid_features
  - stage: spheroid_profiles
"""


def _write(folder: Path, index: pd.DataFrame, plate_map: pd.DataFrame, plates: list[str]) -> None:
    index[index["plate"].isin(plates)].to_csv(folder / "index.csv", index=False)
    plate_map[plate_map["plate"].isin(plates)].to_csv(folder / "map.csv", index=False)


def _run(store: Path, folder: Path, workers: int) -> tuple[RunSummary, float]:
    spec = JOB.format(
        store=store, index=folder / "index.csv", plate_map=folder / "map.csv", workers=workers
    )
    t0 = time.perf_counter()
    summary = run_job(parse_job(spec, "plate_growth.yaml"))
    return summary, time.perf_counter() - t0


def _work(summary: RunSummary) -> str:
    ingest, segment = summary.counts["ingest_plates"], summary.counts["segment_spheroids"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    return (
        f"{ingest['images_written']} images decoded, {segment['segmented']} segmented "
        f"(of {ingest['images']}); {stages}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plates", type=int, default=3, help="plates before the new one")
    ap.add_argument("--size", type=int, default=512, help="image side (default 512)")
    ap.add_argument("--workers", type=int, default=2, help="local workers (default 2)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)
    workdir, own = open_workdir(args.workdir, "bench-growth-")
    out = Results()
    out.report(f"library measured: {version(MODULES)}")
    try:
        data = workdir / "plates"
        generate_plates(
            data, plates=args.plates + 1, seed=0, size=args.size, fields=(1, 1), days=(7, 10)
        )
        index = pd.read_csv(data / "image_index.csv")
        plate_map = pd.read_csv(data / "plate_map.csv")
        names = sorted(index["plate"].unique())
        _write(data, index, plate_map, names[:-1])
        first, t_first = _run(workdir / "grown", data, args.workers)
        out.report(f"first run, {args.plates} plate(s): {_work(first)} in {t_first:.1f} s")
        _write(data, index, plate_map, names)
        grown, t_grown = _run(workdir / "grown", data, args.workers)
        n_new = int(grown.counts["ingest_plates"]["images_added"])
        out.report(f"growth, plate {names[-1]} added ({n_new} images): {_work(grown)}; "
                   f"{t_grown:.1f} s in all")  # fmt: skip
        full, t_full = _run(workdir / "full", data, args.workers)
        out.report(f"baseline, all {len(names)} plates into a new store: {_work(full)}; "
                   f"{t_full:.1f} s in all")  # fmt: skip
        n_total = int(full.counts["ingest_plates"]["images"])
        only_new = (
            n_new > 0
            and n_new == n_total - int(first.counts["ingest_plates"]["images"])
            and grown.counts["ingest_plates"]["images_written"]
            == grown.counts["segment_spheroids"]["segmented"]
            == n_new
        )
        out.report(
            "growth decodes and segments only the new plate's images: "
            + out.target("only the new plate", only_new)
        )
        out.report(
            f"baseline / growth: {t_full / t_grown:.2f}x (all images / new ones: "
            f"{n_total / n_new:.2f}x; the rest is what every run does)"
        )
    finally:
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out.summary()
    return out.exit_code()


if __name__ == "__main__":
    sys.exit(main())
