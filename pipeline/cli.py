"""The ``pipeline`` command line. The only module that prints.

Exit codes: 0 done, 1 a stage failed (its error is in the manifest and on stderr), 2 a bad job
spec, bad sources or bad usage (nothing was run).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from pipeline.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Bars
from pipeline.cli_synth import add_synth_parser, run_synth
from pipeline.errors import (
    ClusterError,
    CohortError,
    CollectionMismatchError,
    IngestError,
    InputError,
    JobSpecError,
    PipelineError,
    PlateMapError,
    StageError,
    StoreError,
)

__all__ = ["main"]


def _err(msg: str) -> None:
    print(f"pipeline: error: {msg}", file=sys.stderr)


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (default: an embedded local cluster sized to this machine)")
    g.add_argument("--workers", type=int, help="local worker processes")
    g.add_argument("--threads-per-worker", type=int, help="threads per local worker")
    g.add_argument("--memory-limit", help="memory limit per local worker, e.g. 4GB")
    g.add_argument(
        "--dashboard-address", help="where the local dashboard listens (default :8787; :0 = any)"
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use a running scheduler instead: tcp://host:port or tls://host:port",
    )
    g.add_argument("--tls-ca-file", help="CA certificate for a tls:// scheduler")
    g.add_argument("--tls-cert", help="client certificate for a tls:// scheduler")
    g.add_argument("--tls-key", help="client key for a tls:// scheduler")
    g.add_argument(
        "--worker-timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for a scheduler's first worker (default 300)",
    )
    g.add_argument(
        "--performance-report",
        metavar="PATH",
        help="save Dask's HTML performance report of the run here",
    )


def _add_set_option(
    p: argparse.ArgumentParser,
    what: str = "STAGE.PARAM=VALUE, input.X=V, cluster.X=V, seed=N",
) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="K=V",
        help=f"override a parameter: {what} (repeatable; VALUE is YAML)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if another run is using the store, wait up to this long for it (default 0: "
        "stop at once, exit 2, naming that run)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug) on stderr"
    )


_LOCAL_OPTIONS = ("workers", "threads_per_worker", "memory_limit", "dashboard_address")
_ADDRESS_OPTIONS = ("tls_ca_file", "tls_cert", "tls_key", "worker_timeout")


def _cluster_config(args: argparse.Namespace, base: dict[str, Any] | None = None) -> Any:
    """The job's cluster section with the command line's options over it; ``--scheduler``
    replaces a local cluster by that scheduler."""
    from pipeline.core.cluster_config import parse_cluster_config, with_default_kind

    cfg = with_default_kind(dict(base or {}))
    if args.scheduler:
        keep = {k: v for k, v in cfg.items() if k in _ADDRESS_OPTIONS}
        cfg = {**keep, "kind": "address", "address": args.scheduler}
    for key in (*_LOCAL_OPTIONS, *_ADDRESS_OPTIONS):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value  # an option of the other kind is refused by its model
    return parse_cluster_config(cfg)


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shape {text!r}: expected HEIGHTxWIDTH, e.g. 424x424"
        ) from None
    return h, w


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Dask-native batch processing of scientific image collections.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "ingest",
        help="image files -> a chunked, labelled Zarr run store",
        description="Ingest image files (JPEG, PNG, TIFF, FITS) into a run "
        "store. Bad files are quarantined and the run goes on; an interrupted "
        "ingest resumes when run again.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="folders (searched recursively), globs, image files, or a CSV/Parquet "
        "manifest with a `path` column and metadata columns",
    )
    p.add_argument("--store", required=True, help="run store folder or fsspec URL")
    p.add_argument(
        "--mode",
        choices=["keep", "gray", "rgb"],
        default="keep",
        help="channel conversion (default keep: mixed gray/RGB is an error)",
    )
    p.add_argument(
        "--shape-policy",
        choices=["error", "quarantine", "resize", "pad"],
        default="error",
        help="images of another size: stop (default), set aside, resize, or pad",
    )
    p.add_argument(
        "--shape",
        type=_parse_shape,
        metavar="HxW",
        help="target size for resize/pad (default: most common / largest)",
    )
    p.add_argument(
        "--chunk-mb",
        type=float,
        default=32.0,
        help="uncompressed size of one chunk of whole images (default 32)",
    )
    p.add_argument(
        "--compressor",
        choices=["zstd", "lz4"],
        default="zstd",
        help="zstd (default: smaller store) or lz4 (Blosc-LZ4 with bit-shuffle: about 4x "
        "faster to compress, about 1.8x larger)",
    )
    p.add_argument(
        "--compression-level",
        type=int,
        help="zstd level -7 (fast) to 22 (small), default 1; or Blosc level 0-9, default 5",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        help="largest image accepted, in values (height x width x channels; default 2**28): "
        "a file whose header claims more is quarantined before it is decoded",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different collection already in the store",
    )
    _add_cluster_options(p)
    _add_common(p)

    p = sub.add_parser(
        "run",
        help="run a job spec (resumable)",
        description="Run the stages of a job spec in order. A stage already "
        "complete with the same configuration is skipped.",
    )
    p.add_argument("job", help="job spec YAML file")
    _add_set_option(p)
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="redo this stage even if complete (repeatable)",
    )
    _add_cluster_options(p)
    _add_common(p)

    p = sub.add_parser(
        "train-encoder",
        help="train a SimCLR encoder on a run store's images (resumable)",
        description="Train a ResNet encoder with SimCLR on an image array of a run store "
        "(the `train_encoder` stage). Training runs on a GPU worker when the cluster has one "
        "(dask worker --resources GPU=1 --nthreads 1), else on the CPU. Checkpoints go to "
        "<store>/models/ and an interrupted run resumes from its last one; `pipeline run` with "
        "an `embed` stage then uses the latest checkpoint.",
    )
    p.add_argument("store", help="run store folder or fsspec URL")
    p.add_argument("--input", default="cutouts", help="image array (default cutouts)")
    p.add_argument(
        "--arch",
        choices=["resnet18", "resnet_small"],
        default="resnet18",
        help="resnet18 (default) or resnet_small (trains on a CPU in minutes)",
    )
    p.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument(
        "--input-size", type=int, default=128, help="views are resized to this (>= 64; 128)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA where available), cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0, help="seed of init, order, augmentations")
    _add_set_option(p, "train_encoder.PARAM=VALUE, e.g. train_encoder.augment.rot90=false")
    p.add_argument("--redo", action="store_true", help="start over instead of resuming")
    _add_cluster_options(p)
    _add_common(p)

    p = sub.add_parser(
        "stages",
        help="list the stages a job may name, with their parameters",
        description="Every stage the installed workflows declare, with a one-line summary; "
        "with a stage name, its parameters, their defaults and what they mean.",
    )
    p.add_argument("stage", nargs="?", help="show this stage's parameters")

    p = sub.add_parser("validate", help="check a job spec without running it")
    p.add_argument("job", help="job spec YAML file")
    _add_set_option(p)

    p = sub.add_parser("status", help="what a run store holds: stages, counts, quarantine")
    p.add_argument("store", help="run store folder or fsspec URL")

    p = sub.add_parser("report", help="write report/index.html for a run store")
    p.add_argument("store", help="run store folder or fsspec URL")
    p.add_argument("--montage-images", type=int, default=16, help="images in the sample montage")
    p.add_argument("--seed", type=int, default=0, help="seed choosing the montage sample")
    _add_common(p)

    p = sub.add_parser(
        "export-ome-zarr",
        help="write a run store's plate images as OME-Zarr HCS plates (NGFF 0.5)",
        description="Each plate of the store becomes OUT/<plate>.ome.zarr (wells, fields, "
        "days as acquisitions, a small pyramid per field), with the plate map beside them "
        "as OUT/plate_map.csv; ome-zarr-py, napari and other NGFF tools read them.",
    )
    p.add_argument("store", help="run store folder or fsspec URL (from ingest_plates)")
    p.add_argument("out", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace plates already in OUT")
    _add_cluster_options(p)
    _add_common(p)

    add_synth_parser(sub)
    return parser


#: The commands that start or reach a Dask cluster.
_CLUSTER_COMMANDS = ("ingest", "run", "train-encoder", "export-ome-zarr")


def _setup_logging(verbose: int, command: str) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if command not in _CLUSTER_COMMANDS:
        return  # validating, listing or reporting needs no cluster: no need to import Dask
    # Dask's own loggers are chatty at INFO (every worker start and stop): show them with -vv.
    # distributed sets its levels when first imported, so import it before overriding them.
    import distributed  # noqa: F401

    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(level if verbose >= 2 else logging.ERROR)


def _print_summary(summary: Any) -> None:
    for name in summary.skipped:
        print(f"  {name}: already complete, skipped")
    for name in summary.ran:
        counts = ", ".join(f"{k} {v}" for k, v in summary.counts[name].items())
        print(f"  {name}: done in {summary.seconds[name]:.1f} s ({counts})")


def _cmd_run(args: argparse.Namespace, job: Any) -> int:
    from pipeline.core.runner import run_job
    from pipeline.core.store import RunStore

    cluster = _cluster_config(args, job.spec.cluster.model_dump(exclude_unset=True))
    bars = Bars(args.quiet)
    store = RunStore(job.spec.store)

    def announce(client: Any) -> None:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)

    try:
        summary = run_job(
            job,
            cluster=cluster,
            force=args.force,
            progress=bars,
            performance_report=args.performance_report,
            on_start=announce,
            lock_wait=args.wait,
        )
    except StageError as exc:
        bars.close()
        _err(
            f"{exc}\n  (recorded in {store.path('manifest.json')}; fix it and run again: "
            "completed stages are skipped)"
        )
        # Bad inputs found by the stage itself (e.g. mixed shapes without a policy) are the
        # user's to fix, as when a preflight finds them: exit 2, like every bad-input error.
        return EXIT_USAGE if isinstance(exc.__cause__, _INPUT_ERRORS) else EXIT_FAILED
    finally:
        bars.close()
    if not summary.ran:
        print(f"Job {job.spec.name!r}: nothing new, every step complete: {store.url}")
    else:
        print(f"Job {job.spec.name!r} complete: {store.url}")
    _print_summary(summary)
    if store.exists("report/index.html"):
        print(f"Report: {store.path('report/index.html')}")
    return EXIT_OK


def _cmd_ingest(args: argparse.Namespace) -> int:
    from pipeline.core.jobs import build_job

    spec: dict[str, Any] = {
        "name": "ingest",
        "store": args.store,
        "input": {
            "sources": args.sources,
            "mode": args.mode,
            "shape_policy": args.shape_policy,
            "chunk_mb": args.chunk_mb,
            "compressor": args.compressor,
            "compression_level": args.compression_level,
            "overwrite": args.overwrite,
        },
    }
    if args.shape:
        spec["input"]["shape"] = list(args.shape)
    if args.max_pixels is not None:
        spec["input"]["max_pixels"] = args.max_pixels
    job = build_job(spec, "<command line>")
    args.force = []
    code = _cmd_run(args, job)
    if code == EXIT_OK:
        from pipeline.core.manifest import load_manifest
        from pipeline.core.store import RunStore

        store = RunStore(args.store)
        m = load_manifest(store)
        col = m.collection or {}
        shape = "x".join(map(str, col.get("shape", [])))
        print(
            f"Ingested {col.get('images')} images ({shape} {col.get('dtype')}) into "
            f"{store.zarr_url}; {len(m.quarantine)} quarantined"
            + (f" (see `pipeline status {args.store}`)" if m.quarantine else "")
        )
    return code


def _cmd_train_encoder(args: argparse.Namespace) -> int:
    from pipeline.core.jobs import build_job

    spec: dict[str, Any] = {
        "name": "train-encoder",
        "store": args.store,
        "seed": args.seed,
        "stages": [
            {
                "stage": "train_encoder",
                "params": {
                    "input": args.input,
                    "arch": args.arch,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "lr": args.lr,
                    "input_size": args.input_size,
                    "device": args.device,
                },
            }
        ],
    }
    job = build_job(spec, "<command line>", args.overrides)
    args.force = ["train_encoder"] if args.redo else []
    code = _cmd_run(args, job)
    if code == EXIT_OK:
        from pipeline.core.store import RunStore

        store = RunStore(args.store)
        pointer = store.read_json("models/encoder.json")
        print(
            f"Encoder: {store.path('models', pointer['checkpoint'])} after epoch "
            f"{pointer['epoch']}; loss per epoch in {store.path('models/training_loss.csv')}"
        )
    return code


def _cmd_status(args: argparse.Namespace) -> int:
    from pipeline.core.manifest import load_manifest
    from pipeline.core.store import RunStore

    store = RunStore(args.store)
    if not store.exists("manifest.json"):
        raise StoreError(f"{store.url} is not a run store (no manifest.json)")
    from pipeline.core.lock import lock_state

    m = load_manifest(store)
    print(f"Run store {store.url}")
    print(f"Lock: {lock_state(store).describe()}")
    if m.job:
        print(f"Job: {m.job.get('name')}")
    planned = []
    if m.job:
        planned = (["ingest"] if m.job.get("input") is not None else []) + [
            s.get("name") or s.get("stage") for s in m.job.get("stages", [])
        ]
    names = list(dict.fromkeys([*planned, *m.stages]))
    width = max([16, *(len(str(n)) for n in names)])
    for name in names:
        rec = m.stages.get(name)
        if rec is None:
            print(f"  {name:<{width}} pending")
            continue
        counts = ", ".join(f"{k} {v}" for k, v in rec.counts.items())
        secs = f"{rec.seconds:.1f} s" if rec.seconds is not None else ""
        line = f"  {name:<{width}} {rec.status:<8} {secs:>9}  {counts}"
        print(line + (f"\n    error: {rec.error}" if rec.error else ""))
    col = m.collection
    if col:
        print(
            f"Collection: {col.get('images')} images, shape {col.get('shape')}, "
            f"{col.get('dtype')}, {col.get('status')}"
        )
    print(f"Quarantined: {len(m.quarantine)}")
    for q in m.quarantine[:20]:
        print(f"  {q.path}: {q.reason}")
    if len(m.quarantine) > 20:
        print(f"  ... and {len(m.quarantine) - 20} more (tables/quarantine.parquet)")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.core.lock import store_lock
    from pipeline.core.store import RunStore
    from pipeline.report.page import ReportParams, write_report

    store = RunStore(args.store)
    if not store.exists("manifest.json"):
        raise StoreError(f"{store.url} is not a run store (no manifest.json)")
    with store_lock(store, "pipeline report", wait=args.wait):
        path = write_report(store, ReportParams(montage_images=args.montage_images), seed=args.seed)
    print(f"Report: {path}")
    return EXIT_OK


def _cmd_export_ome_zarr(args: argparse.Namespace) -> int:
    from pipeline.core.lock import store_lock
    from pipeline.core.runtime import cluster_client
    from pipeline.core.store import RunStore
    from pipeline.io.hcs import export_ome_zarr

    store = RunStore(args.store)
    if not store.exists("manifest.json"):
        raise StoreError(f"{store.url} is not a run store (no manifest.json)")
    bars = Bars(args.quiet)
    # The lock: a run writing the store meanwhile would export half-written images.
    with (
        store_lock(store, "pipeline export-ome-zarr", wait=args.wait),
        cluster_client(_cluster_config(args)) as client,
    ):
        try:
            done = export_ome_zarr(
                store, args.out, overwrite=args.overwrite, client=client, progress=bars
            )
        finally:
            bars.close()
    print(
        f"Wrote {len(done.plates)} plate(s), {done.images} fields, to {args.out}"
        + (f" ({done.skipped} invalid images left out)" if done.skipped else "")
        + (f"; plate map {done.plate_map}" if done.plate_map else "")
    )
    return EXIT_OK


def _cmd_stages(args: argparse.Namespace) -> int:
    import difflib

    from pipeline.core.registry import GROWTH_HELP, default_registry

    registry = default_registry()
    if args.stage is None:
        width = max(len(n) for n in registry.stages)
        for wf in sorted(registry.workflows, key=lambda w: w.name):
            if not wf.stages:
                continue
            print(f"{wf.name}: {wf.summary}")
            for stage in wf.stages:
                print(f"  {stage.name:<{width}}  {stage.summary}")
        print("\n`pipeline stages STAGE` lists a stage's parameters.")
        return EXIT_OK
    found = registry.stages.get(args.stage)
    if found is None:
        close = difflib.get_close_matches(args.stage, list(registry.stages), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        _err(f"no stage {args.stage!r}{hint}; `pipeline stages` lists them")
        return EXIT_USAGE
    stage = found
    print(f"{stage.name} ({stage.workflow}): {stage.summary}")
    print(f"  on a grown collection: {GROWTH_HELP[stage.growth]}")
    for name, field in stage.params_model.model_fields.items():
        default = (
            "required"
            if field.is_required()
            else f"default {field.get_default(call_default_factory=True)!r}"
        )
        about = f": {field.description}" if field.description else ""
        print(f"  {name} ({default}){about}")
    return EXIT_OK


def _warn_outside_manifests(job: Any) -> None:
    """Warn about manifest rows naming files outside the manifest's folder.

    Reading them is the user's right, but a manifest handed over by someone else can name any
    file the user can read; the ingest records each one's resolved path.
    """
    sources = (job.spec.input or {}).get("sources") or []
    manifests = [str(s) for s in sources if str(s).lower().endswith((".csv", ".parquet", ".pq"))]
    if not manifests:
        return
    from pipeline.io.inputs import paths_outside_manifest

    for manifest in manifests:
        try:
            outside = paths_outside_manifest(manifest)
        except InputError:
            continue  # not here (yet): a spec validates anywhere, the run checks its inputs
        if outside:
            shown = "; ".join(f"{given} -> {resolved}" for given, resolved in outside[:3])
            more = f" (and {len(outside) - 3} more)" if len(outside) > 3 else ""
            print(
                f"warning: {manifest} names {len(outside)} file(s) outside its folder: "
                f"{shown}{more}",
                file=sys.stderr,
            )


#: Errors of what the user gave (inputs, store, cluster address): exit 2, one line, no traceback.
_INPUT_ERRORS = (
    InputError,
    CollectionMismatchError,
    IngestError,
    StoreError,
    CohortError,
    ClusterError,
    PlateMapError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipeline`` console script; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0), args.command)
    try:
        if args.command == "ingest":
            return _cmd_ingest(args)
        if args.command in ("run", "validate"):
            from pipeline.core.jobs import load_job

            job = load_job(args.job, args.overrides)
            if args.command == "validate":
                _warn_outside_manifests(job)
                steps = ", ".join(s.name for s in job.steps) or "none"
                print(f"{args.job}: valid (steps: {steps}; store: {job.spec.store})")
                return EXIT_OK
            return _cmd_run(args, job)
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "train-encoder":
            return _cmd_train_encoder(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "stages":
            return _cmd_stages(args)
        if args.command == "export-ome-zarr":
            return _cmd_export_ome_zarr(args)
        return run_synth(args)
    except JobSpecError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except _INPUT_ERRORS as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ValidationError as exc:  # command-line cluster options
        _err(str(exc))
        return EXIT_USAGE
    except PipelineError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted; run the same command again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
