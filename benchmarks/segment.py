"""Benchmark of the ``segment`` stage (``workflows.nuclei``) against a bare torch loop.

Input, made here: a generated fluorescence field of ``--size`` x ``--size`` px
(``generate_nuclei(large=...)``, uint16 tiled TIFF) ingested with ``ingest_mosaic`` into a run
store, and a Multi-ResUNet (``--widths``, ``--bridge``; default the narrow 8-64/128 that a CPU
runs in minutes, ``--seed-widths`` for the seed's 32-256/512) trained for ``--epochs`` on 40
generated 128 x 128 images with ``train_segmenter``, so the mask (and so the labelling's work)
looks like a real one.

Both sides infer the same tiles (``plane_tiles``: cores of ``--tile`` px, windows grown by the
default halo of 160 px and clipped on the 16 grid), write float16 probabilities and uint8
masks into Zarr arrays chunked by the cores, and load the same checkpoint file:

- **baseline**: a bare torch loop in this process: ``segmenter_from_checkpoint`` +
  ``.eval()``, ``torch.set_num_threads(--workers)`` on CPU, one window at a time read from
  the Zarr mosaic (``window_of``), ``to_channels`` + forward under ``torch.inference_mode``
  (autocast on CUDA), core cropped and written;
- **ours**: ``run_segment`` end to end on ``LocalCluster(n_workers=--workers,
  threads_per_worker=1, processes=True)`` (CUDA: one worker with ``resources={"GPU": 1}``):
  checkpoint inspected on a worker, the plugin registered, tasks of ``tiles_per_task`` tiles
  that read, infer and write their tiles and markers; then the labelling (scan and write
  passes over the mask's chunks, the nuclei table). Inference is timed by the stage
  (``models/segment.json``'s ``infer_seconds``: from submitting the first task to the last
  result), the whole path as ``infer_seconds + label_seconds``.

Printed: megapixels (cores), seconds and MP/s of each side, the throughput ratio (baseline
time / our inference time), the whole path's MP/s, and the largest difference between the two
sides' probabilities. Target: ratio >= 0.85.

    .venv/bin/python benchmarks/segment.py [--size 2048] [--device auto|cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import Results, open_workdir, version
from distributed import Client, LocalCluster

from pipeline.compute.checkpoints import CheckpointRef, digest
from pipeline.compute.serving import autocast
from pipeline.core.context import RunContext
from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.synth.nuclei import generate_nuclei
from pipeline.workflows.nuclei.checkpoint import (
    load_segmenter,
    resolve_segmenter,
    segmenter_from_checkpoint,
)
from pipeline.workflows.nuclei.data import to_channels, unit_scale
from pipeline.workflows.nuclei.model import receptive_radius
from pipeline.workflows.nuclei.segment import run_segment
from pipeline.workflows.nuclei.spec import SegmentParams
from pipeline.workflows.nuclei.tiles import default_halo, plane_tiles, window_of

MODULES = [
    "pipeline/workflows/nuclei/segment.py",
    "pipeline/workflows/nuclei/infer.py",
    "pipeline/workflows/nuclei/labels.py",
    "pipeline/imaging/instances.py",
]
RESULTS = Results()
report = RESULTS.report


def prepare(workdir: Path, args: argparse.Namespace, client: Client) -> RunStore:
    """Generate the data, ingest it, train the segmenter (not timed)."""
    data = workdir / "data"
    if not (data / "large" / "field.tif").exists():
        generate_nuclei(data, count=40, size=128, seed=0, large=args.size, tile=512)
    widths = [int(w) for w in args.widths.split(",")]
    job = build_job(
        {
            "name": "bench_segment",
            "store": str(workdir / "run"),
            "seed": 0,
            "input": {"sources": [str(data / "images")]},
            "stages": [
                {"stage": "ingest_masks"},
                {
                    "stage": "train_segmenter",
                    "params": {
                        "input_size": 128,
                        "widths": widths,
                        "bridge": args.bridge,
                        "epochs": args.epochs,
                        "lr": 1e-3,
                        "device": args.device,
                    },
                },
                {
                    "stage": "ingest_mosaic",
                    "params": {"source": str(data / "large" / "field.tif"), "tile": args.tile},
                },
            ],
        }
    )
    run_job(job, client=client)
    return RunStore(str(workdir / "run"))


def baseline(store: RunStore, tile: int, device: torch.device, threads: int) -> tuple[float, Any]:
    """The bare loop over the same tiles; returns seconds and the probabilities it wrote."""
    import zarr

    t0 = time.perf_counter()
    url, options = resolve_segmenter(store, None)
    data = Path(url).read_bytes()
    ckpt = load_segmenter(CheckpointRef(url, digest(data), options))
    model = segmenter_from_checkpoint(ckpt).eval().to(device)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    mosaic = store.open_array("mosaic", mode="r")
    h, w = mosaic.shape
    out = Path(store.path("baseline.zarr"))
    shutil.rmtree(out, ignore_errors=True)
    root = zarr.open_group(str(out), mode="w")
    prob = root.create_array("p", shape=(h, w), chunks=(tile, tile), dtype="float16")
    mask = root.create_array("m", shape=(h, w), chunks=(tile, tile), dtype="uint8")
    scale = unit_scale(mosaic.dtype)
    halo = default_halo(receptive_radius(ckpt.config))
    with torch.inference_mode():
        for t in plane_tiles(1, h, w, tile, halo):
            x = to_channels(window_of(mosaic, t)[None], ckpt.config.in_channels, scale)
            xt = torch.from_numpy(x).to(device)
            with autocast(device, True):
                p = torch.sigmoid(model(xt).float())[0, 0].cpu().numpy()
            core = p[t.y0 - t.wy0 : t.y1 - t.wy0, t.x0 - t.wx0 : t.x1 - t.wx0]
            prob[t.y0 : t.y1, t.x0 : t.x1] = core.astype(np.float16)
            mask[t.y0 : t.y1, t.x0 : t.x1] = (core > 0.5).astype(np.uint8)
    return time.perf_counter() - t0, np.asarray(prob[:], dtype=np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="field side (px)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--widths", default="8,16,32,64")
    ap.add_argument("--bridge", type=int, default=128)
    ap.add_argument("--seed-widths", action="store_true", help="the seed's 32-256 / 512")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="a 1024 px field")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.seed_widths:
        args.widths, args.bridge = "32,64,128,256", 512
    if args.quick:
        args.size = 1024
    workdir, own = open_workdir(args.workdir, "bench-segment-")
    print(version(MODULES), flush=True)
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )  # fmt: skip
    kw: dict[str, Any] = {"n_workers": args.workers}
    if device.type == "cuda":
        kw = {"n_workers": 1, "resources": {"GPU": 1}}
    cluster = LocalCluster(
        threads_per_worker=1, processes=True, dashboard_address=":0",
        local_directory=str(workdir / "dask-scratch"), **kw,
    )  # fmt: skip
    client = Client(cluster)
    try:
        store = prepare(workdir, args, client)
        report(
            f"field {args.size} x {args.size} px, tiles {args.tile} px, widths {args.widths} "
            f"bridge {args.bridge}, device {device}"
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        )
        client.run(lambda: __import__("pipeline.workflows.nuclei.segment"))  # warm imports
        params = SegmentParams(input="mosaic", tile=args.tile, device=args.device)
        t0 = time.perf_counter()
        run_segment(RunContext(store, client, forced=True), params)
        ours_total = time.perf_counter() - t0
        record = store.read_json("models/segment.json")
        base_s, base_prob = baseline(store, args.tile, device, args.workers)
        mp = record["megapixels"]
        ours_s = record["infer_seconds"]
        path_s = record["infer_seconds"] + record["label_seconds"]
        ours_prob = np.asarray(store.open_array("nuclei_probability", mode="r")[:], np.float32)
        report(f"baseline (bare torch loop, 1 process): {base_s:.2f} s, {mp / base_s:.3f} MP/s")
        report(
            f"ours (segment, {kw.get('n_workers')} worker(s)): inference {ours_s:.2f} s "
            f"({mp / ours_s:.3f} MP/s), labelling {record['label_seconds']:.2f} s, "
            f"{record['nuclei']} nuclei; stage wall {ours_total:.2f} s"
        )
        report(f"whole path (inference + stitching): {mp / path_s:.3f} MP/s over {mp:.2f} MP")
        report(f"largest |probability difference|: {np.abs(ours_prob - base_prob).max():.2e}")
        ratio = base_s / ours_s
        report(f"throughput ratio ours/baseline {ratio:.3f} (target >= 0.85: "
               f"{RESULTS.target('segment throughput', ratio >= 0.85)})")  # fmt: skip
    finally:
        client.close()
        cluster.close()
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.summary()
    return RESULTS.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
