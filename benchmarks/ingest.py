"""Benchmark: `pipeline ingest` with 2 local workers against a bare single-process decode loop.

What it measures, in one run:

1. **bare decode**: one process, ``np.asarray(Image.open(p))`` for every file (the very decode
   the ingest does, without the probe, the compression or the writing);
2. **ingest, API on a warm cluster**: :func:`pipeline.ingest_images` on an already-started local
   cluster of 2 workers x 1 thread (workers have imported ``pipeline.io.ingest``); only the
   ``ingest`` call is timed, once with the default compressor (zstd) and once with ``lz4``.
   These are the figures the goal uses;
3. **ingest, CLI end-to-end**: ``pipeline ingest DIR --store S --workers 2 ...`` as a
   subprocess, as a user runs it (interpreter and cluster start-up included).

The images are 424x424 RGB JPEGs (quality 90) that look like survey cutouts (from
``pipeline.synth`` when it is importable, else smooth Gaussian blobs plus noise); a few hundred
distinct images are copied to reach ``--count`` files, since decoding cost is per file.
Generating is not timed; the OS file cache is warmed before anything is timed, so every
measurement reads cached files. Each ingest goes into a fresh store and is checked (image
count, nothing quarantined, a few images equal to the bare decode).

Goal: ingest with 2 workers at least 1.0x the bare decode rate (compression and writing must not
be the bottleneck).

Run it with ``make bench`` or::

    .venv/bin/python benchmarks/ingest.py --count 3000 [--repeats 2] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from PIL import Image

from pipeline import (
    IngestParams,
    LocalClusterConfig,
    RunStore,
    cluster_client,
    ingest_images,
    load_manifest,
)
from pipeline.core.context import RunContext

SIZE = 424
QUALITY = 90
DISTINCT = 200
WORKERS = 2
THREADS_PER_WORKER = 1
SPOT_CHECKS = 5
GOAL = 1.0
COMPRESSORS = ("zstd", "lz4")  # the default first
MB = 1e6

GenerateFn = Callable[[Path, int, int], list[Path]]


@dataclass(frozen=True)
class Timing:
    """One measured figure: wall seconds for ``images`` images."""

    seconds: float
    images: int

    @property
    def rate(self) -> float:
        """Images per second."""
        return self.images / self.seconds


@dataclass(frozen=True)
class Dataset:
    """The benchmark's input files."""

    folder: Path
    files: list[Path]
    distinct: int
    source: str

    @property
    def jpeg_bytes(self) -> int:
        """Total size of the files."""
        return sum(p.stat().st_size for p in self.files)


# -- input images ----------------------------------------------------------------------------


def _synth_generator() -> GenerateFn | None:
    """``pipeline.synth.generate_galaxies`` wrapped as a generator, if it is importable."""
    try:
        synth = importlib.import_module("pipeline.synth")
    except ImportError:
        return None
    generate: Callable[..., Any] = synth.generate_galaxies

    def run(out_dir: Path, count: int, seed: int) -> list[Path]:
        generate(out_dir, count=count, seed=seed, size=SIZE, quality=QUALITY)
        return sorted(out_dir.glob("*.jpg"))

    return run


def render_blobs(rng: np.random.Generator, size: int = SIZE) -> npt.NDArray[np.uint8]:
    """A cutout-like RGB image: a few smooth elliptical Gaussian sources on a noisy sky."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.full((size, size, 3), rng.uniform(5, 20), dtype=np.float32)
    for k in range(int(rng.integers(2, 7))):
        # The first source is a central "galaxy"; the others are smaller neighbours or stars.
        centre = size / 2 + rng.normal(0, 8, 2) if k == 0 else rng.uniform(0, size, 2)
        scale = rng.uniform(15, 50) if k == 0 else rng.uniform(1.5, 12)
        sx, sy = scale, scale * rng.uniform(0.4, 1.0)
        angle = rng.uniform(0, np.pi)
        dx, dy = xx - centre[0], yy - centre[1]
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        flux = rng.uniform(60, 220) * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
        img += flux[..., None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _blob_generator(out_dir: Path, count: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = out_dir / f"{i:06d}.jpg"
        Image.fromarray(render_blobs(rng)).save(path, quality=QUALITY)
        files.append(path)
    return files


def make_dataset(workdir: Path, count: int, distinct: int, seed: int) -> Dataset:
    """Write ``distinct`` images, then copy them round-robin to ``count`` files in one folder."""
    distinct = max(1, min(distinct, count))
    synth = _synth_generator()
    generate, source = (
        (synth, "pipeline.synth.generate_galaxies")
        if synth is not None
        else (_blob_generator, "Gaussian blobs + noise (pipeline.synth not importable)")
    )
    originals = generate(workdir / "distinct", distinct, seed)
    if len(originals) != distinct:
        raise RuntimeError(f"expected {distinct} generated images, found {len(originals)}")
    folder = workdir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"{i:06d}.jpg"
        shutil.copyfile(originals[i % distinct], path)
        files.append(path)
    return Dataset(folder=folder, files=files, distinct=distinct, source=source)


def warm_cache(files: Sequence[Path]) -> int:
    """Read every file once so that all measurements see the OS file cache; returns bytes."""
    return sum(len(p.read_bytes()) for p in files)


# -- measurements ----------------------------------------------------------------------------


def decode(path: Path | str) -> npt.NDArray[np.uint8]:
    """Decode one JPEG fully to an RGB array (the bare loop's unit of work)."""
    with Image.open(path) as im:
        return np.asarray(im)


def time_bare_decode(files: Sequence[Path]) -> Timing:
    """Decode every file in this process, one after the other."""
    start = time.perf_counter()
    for path in files:
        decode(path)
    return Timing(time.perf_counter() - start, len(files))


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("pipeline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


def time_cli_ingest(folder: Path, store: Path, count: int) -> Timing:
    """Run ``pipeline ingest`` with 2 local workers as a subprocess (start-up included)."""
    cmd = [
        *_cli_command(),
        "ingest",
        str(folder),
        "--store",
        str(store),
        "--workers",
        str(WORKERS),
        "--threads-per-worker",
        str(THREADS_PER_WORKER),
        "--dashboard-address",
        ":0",
        "-q",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{proc.stderr}"
        )
    return Timing(seconds, count)


def _import_ingest() -> None:
    importlib.import_module("pipeline.io.ingest")


def time_api_ingest(client: Any, folder: Path, store: Path, count: int, compressor: str) -> Timing:
    """Time only :func:`pipeline.ingest_images` on the running cluster of ``client``."""
    params = IngestParams(sources=[str(folder)], compressor=compressor)
    start = time.perf_counter()
    result = ingest_images(RunContext(RunStore(str(store)), client), params)
    seconds = time.perf_counter() - start
    if result["images"] != count or result["quarantined"] != 0:
        raise RuntimeError(
            f"ingest into {store}: {result['images']} images and {result['quarantined']} "
            f"quarantined; expected {count} and 0"
        )
    return Timing(seconds, count)


# -- checks and sizes ------------------------------------------------------------------------


def verify_store(store: Path, count: int, seed: int) -> None:
    """Check the image count, that nothing is quarantined, and a few images bit for bit.

    Raises
    ------
    RuntimeError
        If the store differs from what the bare decode gives.
    """
    quarantined = len(load_manifest(RunStore(str(store))).quarantine)
    ds = xr.open_zarr(store / "store.zarr")
    if ds.sizes["image"] != count or quarantined:
        raise RuntimeError(
            f"{store}: {ds.sizes['image']} images, {quarantined} quarantined; expected "
            f"{count} and 0"
        )
    rng = np.random.default_rng(seed)
    for i in rng.choice(count, size=min(SPOT_CHECKS, count), replace=False):
        source = str(ds["source"].values[i])
        if not np.array_equal(ds["images"][int(i)].values, decode(source)):
            raise RuntimeError(f"{store}: image {i} differs from the decode of {source}")


def tree_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    """Best-of-repeats figures of one benchmark run."""

    bare: Timing
    api: dict[str, Timing]
    ratios: dict[str, float]
    cli: Timing
    store_bytes: dict[str, int]
    raw_bytes: int
    load: tuple[float, float]


def best(timings: Sequence[Timing]) -> Timing:
    """The timing with the highest rate."""
    return max(timings, key=lambda t: t.rate)


def run_cli(data: Dataset, stores: Path, repeats: int, seed: int, keep: bool) -> Timing:
    """CLI ingests, each into a fresh store, verified; the best of ``repeats``."""
    timings = []
    for r in range(repeats):
        store = _fresh(stores / f"cli-{r}")
        timings.append(time_cli_ingest(data.folder, store, len(data.files)))
        verify_store(store, len(data.files), seed)
        if not keep:
            shutil.rmtree(store)
    return best(timings)


def run_api(
    data: Dataset, stores: Path, repeats: int, seed: int, keep: bool
) -> tuple[dict[str, Timing], dict[str, float], dict[str, int]]:
    """API ingests on one warm cluster, each into a fresh store, for each compressor.

    The machine's speed drifts (shared hosts), so every ingest is paired with a bare decode
    timed just before it, and the ratio of the pair is what counts. Returns the best timing,
    the median paired ratio and the store.zarr size per compressor.
    """
    config = LocalClusterConfig(
        workers=WORKERS, threads_per_worker=THREADS_PER_WORKER, dashboard_address=":0"
    )
    timings: dict[str, list[Timing]] = {c: [] for c in COMPRESSORS}
    ratios: dict[str, list[float]] = {c: [] for c in COMPRESSORS}
    sizes: dict[str, int] = {}
    with cluster_client(config) as client:
        client.wait_for_workers(WORKERS)
        client.run(_import_ingest)
        for r in range(repeats):
            for compressor in COMPRESSORS:
                store = _fresh(stores / f"api-{compressor}-{r}")
                bare = time_bare_decode(data.files)
                timing = time_api_ingest(client, data.folder, store, len(data.files), compressor)
                timings[compressor].append(timing)
                ratios[compressor].append(timing.rate / bare.rate)
                verify_store(store, len(data.files), seed)
                sizes[compressor] = tree_bytes(store / "store.zarr")
                if not keep:
                    shutil.rmtree(store)
    medians = {c: float(np.median(r)) for c, r in ratios.items()}
    return {c: best(t) for c, t in timings.items()}, medians, sizes


def run_benchmark(data: Dataset, workdir: Path, repeats: int, seed: int, keep: bool) -> Results:
    """Bare decode, CLI ingest (no other cluster running), then API ingest on a warm cluster."""
    load_before = os.getloadavg()[0]
    warm_cache(data.files)
    bare = best([time_bare_decode(data.files) for _ in range(repeats)])
    stores = workdir / "stores"
    cli = run_cli(data, stores, repeats, seed, keep)
    api, ratios, store_bytes = run_api(data, stores, repeats, seed, keep)
    raw = len(data.files) * SIZE * SIZE * 3
    load = (load_before, os.getloadavg()[0])
    return Results(
        bare=bare,
        api=api,
        ratios=ratios,
        cli=cli,
        store_bytes=store_bytes,
        raw_bytes=raw,
        load=load,
    )


def format_report(data: Dataset, results: Results, repeats: int) -> str:
    """The printed table and the goal line."""
    n = len(data.files)
    bare = results.bare.rate
    rows = [
        ("bare decode (1 process, Pillow)", results.bare),
        *[(f"ingest {c}, API, warm {WORKERS}-worker cluster", t) for c, t in results.api.items()],
        (f"ingest {COMPRESSORS[0]}, CLI end-to-end ({WORKERS} workers)", results.cli),
    ]
    lines = [
        f"images: {n} files of {SIZE}x{SIZE} RGB JPEG q{QUALITY}, {data.jpeg_bytes / MB:.0f} MB; "
        f"{data.distinct} distinct images copied to reach {n}",
        f"  generated by: {data.source}",
        f"ingest: {WORKERS} workers x {THREADS_PER_WORKER} thread on {os.cpu_count()} cores; "
        f"best of {repeats} repeat(s); files in the OS cache",
        f"1-min load average before/after: {results.load[0]:.2f}/{results.load[1]:.2f} "
        "(other processes on this machine distort the figures)",
        "",
        f"{'':<40}{'seconds':>9}{'images/s':>10}{'vs bare':>9}",
    ]
    lines += [
        f"{label:<40}{t.seconds:>9.2f}{t.rate:>10.0f}{t.rate / bare:>8.2f}x" for label, t in rows
    ]
    lines.append("")
    for c, size in results.store_bytes.items():
        lines.append(
            f"store.zarr with {c}: {size / MB:.0f} MB on disk vs {results.raw_bytes / MB:.0f} MB "
            f"raw uint8 (compression {results.raw_bytes / size:.2f}x)"
        )
    for c, ratio in results.ratios.items():
        lines.append(
            f"goal (ingest >= {GOAL:.1f}x bare decode) with {c}: "
            f"{'met' if ratio >= GOAL else 'NOT met'} ({ratio:.2f}x: median over {repeats} "
            "repeat(s) of ingest rate / bare rate timed just before it, warm cluster)"
        )
    return "\n".join(lines)


def cleanup(workdir: Path, *, keep: bool, own: bool) -> None:
    """Remove what the benchmark wrote: the whole temp dir, or its folders in a given one."""
    if keep:
        print(f"kept {workdir}")
    elif own:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        for name in ("distinct", "images", "stores"):
            shutil.rmtree(workdir / name, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=3000, help="number of JPEG files")
    parser.add_argument(
        "--distinct", type=int, default=DISTINCT, help="distinct images generated, then copied"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and spot checks")
    parser.add_argument("--repeats", type=int, default=1, help="take the best of this many runs")
    parser.add_argument(
        "--workdir", type=Path, help="where files go (default: a temp dir, removed at the end)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the images and the stores")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeats < 1 or args.distinct < 1:
        parser.error("--count, --distinct and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit code."""
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating {args.count} images in {workdir} (not timed) ...", flush=True)
        data = make_dataset(workdir, args.count, args.distinct, args.seed)
        results = run_benchmark(data, workdir, args.repeats, args.seed, args.keep)
        print(format_report(data, results, args.repeats))
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup(workdir, keep=args.keep, own=args.workdir is None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
