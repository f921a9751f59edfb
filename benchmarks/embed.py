"""Benchmark of the ``embed`` stage (``workflows.embed.infer``) against a bare torch loop.

Input: a run store whose ``cutouts`` array holds ``--images`` seeded smooth-noise 128 x 128
float32 images (Gaussian-filtered noise with a random offset and scale per image), written as
the stages write arrays (``RunStore.write_template``: an xarray Dataset with dims
``(image, y, x)``, an ``image_id`` coordinate, chunks of ``--chunk`` images, zstd level 1), and
no catalog table, so every row is embedded. The model is a ResNet-18-style encoder
(``EncoderConfig(arch="resnet18", in_channels=1, input_size=128)``, 512 features), randomly
initialised with a fixed seed and saved as the store's latest checkpoint (``save_checkpoint``),
so both sides load the same weights from the same file.

Each side is run ``--repeats`` times, alternating; every run is timed from its start (the
model load included) to its last write, and the best run of each side is compared:

- **baseline**, a bare torch loop in this process on the device: read the checkpoint file,
  ``read_checkpoint`` + ``encoder_from_checkpoint``, ``.eval()``; on CPU
  ``torch.set_num_threads(--workers)`` (default all cores: one process with the whole
  machine, as many threads as the workers have in all); loop over the Zarr array a chunk at
  a time (``zarr`` slice reads), ``prepare_batch`` per batch of ``--batch-size``, forward
  under ``torch.inference_mode()`` (autocast bfloat16/float16 and channels_last on CUDA, as
  the worker does), and write the features to a second Zarr array of shape (N, 512) (chunks
  of ``--chunk`` rows, zstd level 1);
- **ours**: ``run_embed(store, EmbedParams(batch_size, task_rows), client)`` end to end: the
  checkpoint inspected on a worker, the encoder plugin registered, each worker loading the
  model once, one task per ``--task-rows`` rows of whole chunks (read, embed, write), the
  record written. On CPU the cluster is ``LocalCluster(n_workers=--workers (default all
  cores: 2 here), threads_per_worker=1, processes=True)``; on CUDA ``LocalCluster(n_workers=1,
  threads_per_worker=1, resources={"GPU": 1})``. It is started, and the workers' imports
  warmed, before any timing.

Also printed: images/s of each side on the device measured (with its name), the largest
absolute difference between the two sides' embeddings (CPU float32 on both sides: expected
~1e-4 or better; autocast on CUDA makes it larger), the worker-side breakdown of each of our
runs (from ``models/embed.json``: tasks, rows, model loads and device per worker, and the
stage's own task-phase time; from the scheduler's task stream: checkpoint inspection, time
before the first embed task starts, each worker's busy time, idle tail) and of each baseline
run (model load, reads, prepare + forward, writes). Last diagnostics, on CPU, time the
forward pass alone (no Zarr, no tasks): in this process with all cores and with one thread,
and on all the workers at once (``client.run``), which shows how much of the gap between the
two sides is the machine (two single-thread processes sharing it) rather than the stage.

Targets: throughput ratio (ours/baseline = baseline time / our time) >= 0.8 on CPU (2 workers
x 1 thread against 1 process x 2 threads), >= 0.85 on one GPU (1 worker against this process on
the same GPU).

    .venv/bin/python benchmarks/embed.py [--quick] [--device auto|cpu|cuda] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import psutil
import torch
import xarray as xr
import zarr
from _common import Results, open_workdir
from _common import version as common_version
from distributed import Client, LocalCluster, get_task_stream
from scipy import ndimage as ndi
from zarr.codecs import ZstdCodec

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.workflows.embed.checkpoint import (
    encoder_from_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from pipeline.workflows.embed.infer import EMBED_RECORD, EMBEDDINGS, EmbedParams, run_embed
from pipeline.workflows.embed.inputs import prepare_batch
from pipeline.workflows.embed.models import EncoderConfig, build_simclr

OUT = Results()
report = OUT.report
target = OUT.target
SEED = 2026
SIZE = 128
CONFIG = EncoderConfig(arch="resnet18", in_channels=1, input_size=SIZE)

# Defaults per device (ResNet-18 at 128 x 128 runs at ~50-125 images/s on the 2 shared cores
# here: 2,560 images keep each CPU run >= ~20 s; a GPU needs many more so that start-up does
# not dominate).
FULL = {
    "cpu": {"images": 2560, "chunk": 64, "batch_size": 64, "task_rows": 256, "repeats": 2},
    "cuda": {"images": 8192, "chunk": 256, "batch_size": 256, "task_rows": 1024, "repeats": 2},
}
QUICK = {
    # task_rows 128: two tasks, so that both workers take part.
    "cpu": {"images": 256, "chunk": 64, "batch_size": 64, "task_rows": 128, "repeats": 1},
    "cuda": {"images": 2048, "chunk": 256, "batch_size": 256, "task_rows": 512, "repeats": 1},
}


def version() -> str:
    """The library state measured (see _common.version)."""
    mods = [f"pipeline/embed/{m}.py" for m in
            ("infer", "worker", "dispatch", "checkpoint", "inputs", "models")]  # fmt: skip
    mods.append("pipeline/core/store.py")
    return common_version(mods)


def cpu_name() -> str:
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return name or platform.machine()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU {cpu_name()}, {cores()} cores"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- input --------------------------------------------------------------------------------


def smooth_images(index: int, n: int) -> np.ndarray:
    """``n`` seeded smooth-noise images (the ``index``-th chunk), offset and scaled each."""
    rng = np.random.default_rng([SEED, index])
    noise = rng.standard_normal((n, SIZE, SIZE))
    img = ndi.gaussian_filter(noise, (0, 3.0, 3.0))
    scale = rng.uniform(0.5, 20.0, (n, 1, 1))
    offset = rng.uniform(-5.0, 100.0, (n, 1, 1))
    return (img * scale + offset).astype(np.float32)


def make_store(path: Path, n: int, chunk: int) -> RunStore:
    """A run store with ``cutouts`` (n, 128, 128) float32 and a seeded ResNet-18 checkpoint."""
    store = RunStore(str(path))
    ds = xr.Dataset(
        {
            "cutouts": (
                ("image", "y", "x"),
                da.zeros((n, SIZE, SIZE), chunks=(chunk, SIZE, SIZE), dtype=np.float32),
            )
        },
        coords={"image_id": ("image", np.array([f"img{i:06d}" for i in range(n)], dtype=object))},
    )
    encoding = {"cutouts": {"chunks": (chunk, SIZE, SIZE), "compressors": [ZstdCodec(level=1)]}}
    store.write_template(ds, encoding, mode="w")
    arr = store.open_array("cutouts")
    for i, start in enumerate(range(0, n, chunk)):
        stop = min(n, start + chunk)
        arr[start:stop] = smooth_images(i, stop - start)
    save_checkpoint(
        store, build_simclr(CONFIG, seed=SEED), CONFIG, epoch=0, epochs=0, train_key="bench"
    )
    return store


# -- baseline -------------------------------------------------------------------------------


@contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """As the worker: autocast on CUDA (bfloat16 where supported, else float16)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(device_type="cuda", dtype=dtype):
            yield
    else:
        yield


def baseline(
    store: RunStore, out_path: Path, batch_size: int, device: torch.device
) -> tuple[float, dict[str, float]]:
    """The bare torch loop: seconds from start (model load included) to the last write."""
    parts = {"load": 0.0, "read": 0.0, "compute": 0.0, "write": 0.0}
    t0 = time.perf_counter()
    url, options = resolve_checkpoint(store, None)
    with fsspec.open(url, "rb", **options) as fh:
        data = fh.read()
    ckpt = read_checkpoint(data, url)
    encoder = encoder_from_checkpoint(ckpt).eval().to(device)
    if device.type == "cuda":
        encoder = encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    config = ckpt.config
    src = zarr.open_array(store.zarr_store(), path="cutouts", mode="r")
    n, chunk = src.shape[0], src.chunks[0]
    dst = zarr.create_array(
        store=str(out_path), shape=(n, config.feature_dim), chunks=(chunk, config.feature_dim),
        dtype="float32", compressors=[ZstdCodec(level=1)], overwrite=True,
    )  # fmt: skip
    sync(device)
    t1 = time.perf_counter()
    parts["load"] = t1 - t0
    with torch.inference_mode():
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            images = src[start:stop]
            t2 = time.perf_counter()
            out = np.empty((stop - start, config.feature_dim), dtype=np.float32)
            for i in range(0, len(images), batch_size):
                x = prepare_batch(images[i : i + batch_size], config).to(device, non_blocking=True)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device):
                    h = encoder(x)
                out[i : i + len(x)] = h.float().cpu().numpy()
            t3 = time.perf_counter()
            dst[start:stop] = out
            t4 = time.perf_counter()
            parts["read"] += t2 - t1
            parts["compute"] += t3 - t2
            parts["write"] += t4 - t3
            t1 = t4
    return time.perf_counter() - t0, parts


# -- ours -----------------------------------------------------------------------------------


def make_cluster(workdir: Path, device: torch.device, workers: int) -> tuple[LocalCluster, Client]:
    kw: dict[str, Any] = {"n_workers": workers}
    if device.type == "cuda":
        kw = {"n_workers": 1, "resources": {"GPU": 1}}
    cluster = LocalCluster(
        threads_per_worker=1, processes=True, dashboard_address=":0",
        local_directory=str(workdir / "dask-scratch"), **kw,
    )  # fmt: skip
    client = Client(cluster)

    def _env() -> str:
        # Warm the imports (torch, the stage), as a long-lived cluster would have them.
        import torch as t

        import pipeline.workflows.embed.infer
        import pipeline.workflows.embed.worker  # noqa: F401

        rss = psutil.Process().memory_info().rss / 2**20
        return (
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch threads "
            f"{t.get_num_threads()} (interop {t.get_num_interop_threads()}), CUDA "
            f"{t.cuda.is_available()}; RSS after imports {rss:.0f} MiB"
        )

    envs = client.run(_env)
    for value in sorted(set(envs.values())):  # one line per distinct setup
        n = sum(v == value for v in envs.values())
        report(f"  {n} worker(s) x 1 thread: {value}")
    return cluster, client


def ours(
    client: Client, store: RunStore, params: EmbedParams
) -> tuple[float, dict[str, Any], list[dict[str, Any]], float, float]:
    """``run_embed`` end to end: seconds, its return value, the task stream, start and end."""
    with get_task_stream(client) as ts:
        w0 = time.time()
        t0 = time.perf_counter()
        out = run_embed(RunContext(store, client), params)
        dt = time.perf_counter() - t0
        w1 = time.time()
    return dt, out, list(ts.data), w0, w1


def breakdown(store: RunStore, stream: list[dict[str, Any]], w0: float, w1: float) -> None:
    """Print ``models/embed.json``'s per-worker record and where the time went (task stream)."""
    record = store.read_json(EMBED_RECORD)
    print(
        f"    models/embed.json: stage task phase {record['seconds']:.2f} s, devices "
        f"{record['devices']}",
        flush=True,
    )
    for addr, w in sorted(record["workers"].items()):
        print(
            f"      {addr}: {w['tasks']} task(s), {w['rows']} rows, {w['loads']} model load(s), "
            f"device {w['device']}",
            flush=True,
        )
    spans: dict[str, list[tuple[str, float, float]]] = {}
    for t in stream:
        for ss in t.get("startstops", ()):
            if ss.get("action") == "compute":
                spans.setdefault(str(t["key"]), []).append(
                    (str(t.get("worker", "?")), ss["start"], ss["stop"])
                )
    inspect = [s for k, v in spans.items() if "inspect_checkpoint" in k for s in v]
    embed = sorted((s for k, v in spans.items() if k.startswith("embed-") for s in v),
                   key=lambda s: s[1])  # fmt: skip
    if inspect:
        _, a, b = inspect[0]
        print(
            f"    task stream: inspect_checkpoint ran {b - a:.2f} s (ended {b - w0:.2f} s in)",
            flush=True,
        )
    if not embed:
        print("    task stream: no embed task recorded", flush=True)
        return
    first, last = embed[0][1], max(s[2] for s in embed)
    print(
        f"    task stream: first embed task started {first - w0:.2f} s after run_embed was "
        f"called; last one ended {w1 - last:.2f} s before it returned",
        flush=True,
    )
    per: dict[str, list[tuple[float, float]]] = {}
    for worker, a, b in embed:
        per.setdefault(worker, []).append((a, b))
    for worker, ss in sorted(per.items()):
        busy = sum(b - a for a, b in ss)
        durations = ", ".join(f"{b - a:.1f}" for a, b in ss)
        print(
            f"      {worker}: busy {busy:.2f} s of the {last - first:.2f} s task phase "
            f"({busy / max(last - first, 1e-9):.0%}); idle at the end {last - ss[-1][1]:.2f} s; "
            f"task durations (s, the first includes the model load): {durations}",
            flush=True,
        )


# -- diagnostic ------------------------------------------------------------------------------


def forward_only(store: RunStore, batch_size: int, batches: int, workers: int) -> None:
    """CPU: steady-state forward throughput in this process, the baseline's threads vs one."""
    url, options = resolve_checkpoint(store, None)
    with fsspec.open(url, "rb", **options) as fh:
        encoder = encoder_from_checkpoint(read_checkpoint(fh.read(), url)).eval()
    x = prepare_batch(zarr.open_array(store.zarr_store(), path="cutouts")[:batch_size], CONFIG)
    before = torch.get_num_threads()
    try:
        for threads in sorted({workers, 1}, reverse=True):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                encoder(x)  # warm-up
                t0 = time.perf_counter()
                for _ in range(batches):
                    encoder(x)
                dt = time.perf_counter() - t0
            rate = batches * len(x) / dt
            extra = f" (x {workers} processes: {rate * workers:.1f})" if threads == 1 else ""
            report(
                f"  (diagnostic) forward only, batches of {len(x)}, {threads} thread(s) in one "
                f"process: {rate:.1f} images/s{extra}"
            )
    finally:
        torch.set_num_threads(before)


def _worker_forward(url: str, batch_size: int, batches: int) -> float:
    """On a worker: forward-only images/s of the checkpoint's encoder on its own threads."""
    import torch as t

    from pipeline.workflows.embed.checkpoint import encoder_from_checkpoint, read_checkpoint
    from pipeline.workflows.embed.inputs import prepare_batch

    with open(url, "rb") as fh:
        ckpt = read_checkpoint(fh.read(), url)
    encoder = encoder_from_checkpoint(ckpt).eval()
    rng = np.random.default_rng(0)
    x = prepare_batch(rng.standard_normal((batch_size, SIZE, SIZE)), ckpt.config)
    with t.inference_mode():
        encoder(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(batches):
            encoder(x)
        return batches * len(x) / (time.perf_counter() - t0)


def workers_forward(client: Client, store: RunStore, batch_size: int, batches: int) -> None:
    """CPU: forward-only throughput on every worker at once (no Zarr, no tasks)."""
    url, _ = resolve_checkpoint(store, None)
    rates = client.run(_worker_forward, url, batch_size, batches)
    each = ", ".join(f"{r:.1f}" for r in rates.values())
    report(
        f"  (diagnostic) forward only on all {len(rates)} workers at once (client.run, 1 thread "
        f"each): {sum(rates.values()):.1f} images/s in all ({each})"
    )


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CUDA if torch sees it, else CPU")  # fmt: skip
    ap.add_argument("--images", type=int, help="images (default 2,560 on CPU, 8,192 on CUDA)")
    ap.add_argument("--chunk", type=int, help="Zarr chunk rows (default 64 CPU, 256 CUDA)")
    ap.add_argument("--batch-size", type=int, help="images per forward (64 CPU, 256 CUDA)")
    ap.add_argument("--task-rows", type=int, help="rows per embed task (256 CPU, 1,024 CUDA)")
    ap.add_argument("--repeats", type=int, help="timed runs of each side (best of; default 2)")
    ap.add_argument(
        "--workers",
        type=int,
        default=cores(),
        help=f"CPU: workers of 1 thread, and the baseline's threads (default all cores: {cores()})",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    for key, value in (QUICK if args.quick else FULL)[device.type].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    workdir, own = open_workdir(args.workdir, "bench-embed-", f"; torch {torch.__version__}")
    report(f"library measured: {version()}")
    if device.type == "cpu":
        torch.set_num_threads(args.workers)
        threads = f"torch.set_num_threads({args.workers})"
        if torch.cuda.is_available():
            report("  (CUDA is available but --device cpu was asked for)")
    else:
        threads = "autocast + channels_last"
    report(f"device: {device_name(device)}")
    if device.type == "cpu" and not torch.cuda.is_available():
        report("  no CUDA device here: the GPU target (0.85) is not measured")

    cluster: LocalCluster | None = None
    client: Client | None = None
    try:
        print(f"\nwriting {args.images:,} images of {SIZE}x{SIZE} float32 ...", flush=True)
        t0 = time.perf_counter()
        store = make_store(workdir / "run", args.images, args.chunk)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
        tasks = -(-args.images // max(args.task_rows, args.chunk))
        report(
            f"ResNet-18-style encoder (1 channel, {SIZE}x{SIZE}, 512 features, seed {SEED}); "
            f"{args.images:,} images in chunks of {args.chunk}, batches of {args.batch_size}, "
            f"~{tasks} task(s) of {max(args.task_rows, args.chunk)} rows; best of {args.repeats}"
        )
        print("\nstarting the cluster ...", flush=True)
        cluster, client = make_cluster(workdir, device, args.workers)
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        if tasks < n_workers:
            report(f"  WARNING: {tasks} task(s) for {n_workers} workers: some workers stay idle")
        params = EmbedParams(
            batch_size=args.batch_size, task_rows=args.task_rows, device=device.type
        )
        base_label = f"baseline (1 process, {threads})"
        ours_label = f"ours (run_embed, {n_workers} worker(s) x 1 thread" + (
            ", resources GPU=1)" if device.type == "cuda" else ")"
        )
        print(f"\n== timed runs: {base_label} vs {ours_label} ==", flush=True)
        base_path = workdir / "baseline.zarr"
        t_base, t_ours = float("inf"), float("inf")
        n = args.images
        for r in range(1, args.repeats + 1):
            dt, parts = baseline(store, base_path, args.batch_size, device)
            t_base = min(t_base, dt)
            report(
                f"  run {r} baseline: {dt:7.2f} s  {n / dt:7.1f} images/s  (model load "
                f"{parts['load']:.2f} s, reads {parts['read']:.2f} s, prepare + forward "
                f"{parts['compute']:.2f} s, writes {parts['write']:.2f} s)"
            )
            dt, out, stream, w0, w1 = ours(client, store, params)
            t_ours = min(t_ours, dt)
            report(
                f"  run {r} ours:     {dt:7.2f} s  {n / dt:7.1f} images/s  ({out['tasks']} tasks, "
                f"{out['gpu_tasks']} on GPU workers, {out['rows']} rows)"
            )
            breakdown(store, stream, w0, w1)
            if r == 1:
                a = np.asarray(zarr.open_array(str(base_path), mode="r")[:])
                b = np.asarray(store.open_array(EMBEDDINGS, mode="r")[:])
                diff = float(np.abs(a - b).max())
                rel = diff / max(float(np.abs(a).max()), 1e-30)
                report(
                    f"  embeddings agree: max abs diff {diff:.2e} (largest |value| "
                    f"{float(np.abs(a).max()):.3g}, relative {rel:.1e}); NaN rows in ours: "
                    f"{int(np.isnan(b).any(axis=1).sum())}, in baseline: "
                    f"{int(np.isnan(a).any(axis=1).sum())}"
                )
        print("\n== result ==", flush=True)
        report(f"  baseline best {t_base:.2f} s = {n / t_base:.1f} images/s on {device.type}")
        report(f"  ours     best {t_ours:.2f} s = {n / t_ours:.1f} images/s on {device.type}")
        goal = 0.85 if device.type == "cuda" else 0.8
        ratio = t_base / t_ours
        report(
            f"  => throughput ratio (ours/baseline) {ratio:.2f} (target >= {goal}): "
            f"{target(f'embed throughput {device.type}', ratio >= goal)}"
            + (" (--quick: start-up weighs more; judge on the default sizes)" if args.quick else "")
        )
        if device.type == "cpu":
            forward_only(store, args.batch_size, 2 if args.quick else 4, n_workers)
            workers_forward(client, store, args.batch_size, 2 if args.quick else 4)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        OUT.summary()
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return OUT.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
