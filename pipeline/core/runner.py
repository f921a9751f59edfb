"""Running a validated job: stages in order, resumable, each recorded in the manifest.

A step is skipped when the manifest has a completed record with the same config hash (which
chains the hashes of the steps before it), the paths the stage writes exist and, for a stage
that fingerprints its inputs (``StageDef.inputs``), the inputs are the ones it ran on: files
added to an ingest's folder or a plate added to its index run it again (and every step after
it, except a training stage that declares ``growth="keep"``: its saved model is kept and
applied by the steps after it), and the stages decide how much of that is new work
(``StageDef.growth``). ``force`` redoes named steps. A failing stage is recorded with its
error and stops the run; what earlier stages wrote stays, so the next run resumes there.

Each run that does something appends a :class:`~pipeline.core.manifest.RunRecord` to the
manifest (the steps it ran, what it added); a run with nothing to do, as a nightly job on a
day without new input, starts no cluster and leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.core.cluster_config import ClusterConfig
from pipeline.core.context import RunContext
from pipeline.core.jobs import Job, JobStep
from pipeline.core.lock import store_lock
from pipeline.core.manifest import (
    MAX_RUNS,
    Manifest,
    RunRecord,
    StageRecord,
    load_manifest,
    now_iso,
    save_manifest,
)
from pipeline.core.progress import ProgressFn, no_progress
from pipeline.core.registry import Counts
from pipeline.core.store import MANIFEST_NAME, STORE_LAYOUT, RunStore
from pipeline.errors import JobSpecError, PipelineError, StageError, StoreError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["RunSummary", "check_run_store", "input_fingerprint", "pending_steps", "run_job"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: the steps it ran, the ones it skipped, and each step's counts."""

    store: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int | float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def input_fingerprint(step: JobStep) -> str | None:
    """The fingerprint of ``step``'s inputs now (None: its stage declares none, or they cannot
    be read, which the stage's preflight then reports)."""
    fingerprint = step.stage.load_inputs()
    if fingerprint is None:
        return None
    try:
        return fingerprint(step.params)
    except (PipelineError, OSError) as exc:
        log.debug("stage %s: inputs not readable (%s); it will run", step.name, exc)
        return None


def _complete(store: RunStore, step: JobStep) -> bool:
    rec = load_manifest(store).stages.get(step.name)
    if not (
        rec is not None
        and rec.status == "done"
        and rec.config_hash == step.config_hash
        and all(store.exists(p) for p in step.writes)
    ):
        return False
    if step.stage.inputs is None:
        return True
    # A record without a fingerprint (a stage run before its stage had one) runs once more:
    # its inputs may have grown since.
    return rec.inputs is not None and rec.inputs == input_fingerprint(step)


def pending_steps(job: Job, force: Sequence[str] = ()) -> list[JobStep]:
    """The steps a run of ``job`` would run: forced ones, those not complete (or whose inputs
    changed), and every step after one of those (a later step reads what the earlier ones
    write, e.g. clustering reads the PCA of ``reduce``: rerunning one must refresh the
    others), but for complete steps whose stage keeps its trained model on a grown
    collection (``growth="keep"``) when no step before them is forced."""
    store = RunStore(job.spec.store)
    todo: list[JobStep] = []
    forced = False
    for s in job.steps:
        forced = forced or s.name in force
        if s.name in force or not _complete(store, s):
            todo.append(s)
        elif todo and (forced or s.stage.growth != "keep"):
            # Complete with this configuration (which chains the earlier steps'), so an
            # earlier step runs again for new input only: a trained model may stay.
            todo.append(s)
    return todo


def check_run_store(store: RunStore) -> None:
    """Refuse a folder that holds files but is not a run store.

    A run writes ``manifest.json``, ``tables/``, ``store.zarr`` and ``report/`` into its
    store and replaces them on ``--overwrite``: pointed at a folder of other files (a home
    folder, the image folder itself) it would mix its files with them, or replace ones it did
    not write.

    Raises
    ------
    StoreError
    """
    if not store.isdir() or store.exists(MANIFEST_NAME):
        return  # new, a file (refused with its own message by the lock), or a run store
    # Only the store's own layout (e.g. a store.zarr made by xarray for train-encoder).
    entries = [e for e in store.listdir("") if e not in STORE_LAYOUT]
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise StoreError(
            f"store {store.url} holds files but is not a run store (no {MANIFEST_NAME}; it "
            f"holds {shown}): give a new or empty folder for the run store, so that nothing "
            "a run writes or replaces mixes with files it did not write"
        )


def _record(store: RunStore, rec: StageRecord) -> None:
    manifest = load_manifest(store)  # reload: the stage itself may have written the manifest
    manifest.stages[rec.stage] = rec
    save_manifest(store, manifest)


@contextlib.contextmanager
def _client_for(
    job: Job, client: Client | None, cluster: ClusterConfig | None, performance_report: str | None
) -> Iterator[Client]:
    if client is not None:
        yield client
        return
    from pipeline.core.runtime import cluster_client

    with cluster_client(
        cluster or job.spec.cluster, performance_report_path=performance_report
    ) as c:
        yield c


def run_job(
    job: Job,
    *,
    client: Client | None = None,
    cluster: ClusterConfig | None = None,
    force: Sequence[str] = (),
    progress: ProgressFn = no_progress,
    performance_report: str | None = None,
    on_start: Callable[[Client], None] | None = None,
    lock_wait: float = 0.0,
) -> RunSummary:
    """Run ``job``'s steps in order, skipping those already complete.

    Parameters
    ----------
    job : Job
        From :func:`pipeline.core.jobs.load_job`.
    client : distributed.Client, optional
        Use this client; otherwise start the job's cluster (or ``cluster``) for the run.
    cluster : ClusterConfig, optional
        Overrides the job spec's ``cluster`` section.
    force : sequence of str
        Step names to redo even if complete.
    progress : ProgressFn
    performance_report : str, optional
        Path of a Dask performance report of the run.
    on_start : callable, optional
        Called with the client once the cluster is up (the CLI prints the dashboard link).
        No cluster is started when every step is already complete.
    lock_wait : float
        Seconds to wait for another run holding the store's lock (see
        :mod:`pipeline.core.lock`); 0 stops at once.

    Returns
    -------
    RunSummary

    Raises
    ------
    JobSpecError
        If ``force`` names a step the job does not have (before any work).
    StoreLockedError
        If another run holds the store after ``lock_wait`` seconds.
    StoreError
        If the store path is a file, under a file or read-only, or a folder holding files
        that is not a run store.
    InputError, CollectionMismatchError, CohortError, RegistryError
        From a stage's preflight check (or loading it), before any stage runs.
    StageError
        If a stage fails; its error is recorded in the manifest first.
    """
    names = [s.name for s in job.steps]
    unknown = [f for f in force if f not in names]
    if unknown:
        raise JobSpecError(
            [
                f"--force {u}: the job has no step {u!r} (steps: {', '.join(names)})"
                for u in unknown
            ],
            job.source,
        )
    store = RunStore(job.spec.store)
    check_run_store(store)
    with store_lock(store, f"run of job {job.spec.name!r} ({job.source})", wait=lock_wait):
        return _run_locked(
            job, store, client, cluster, force, progress, performance_report, on_start
        )


def _run_locked(
    job: Job,
    store: RunStore,
    client: Client | None,
    cluster: ClusterConfig | None,
    force: Sequence[str],
    progress: ProgressFn,
    performance_report: str | None,
    on_start: Callable[[Client], None] | None,
) -> RunSummary:
    todo = pending_steps(job, force)
    # Every implementation is imported before any work: a missing dependency stops the run
    # here rather than half-way through it.
    funcs = {step.name: step.stage.load() for step in todo}
    for step in todo:
        preflight = step.stage.load_preflight()
        if preflight is not None:
            preflight(store, step.params)
    summary = RunSummary(store=store.url)
    for step in job.steps:
        if step not in todo:
            log.info("stage %s: complete with this configuration, skipped", step.name)
            summary.skipped.append(step.name)
    if not todo:
        log.info("nothing to do: every step is complete and no input is new")
        return summary
    manifest = load_manifest(store)
    manifest.job = job.spec.model_dump(mode="json")
    before = _added_so_far(manifest)
    run = RunRecord(
        started=now_iso(),
        skipped=list(summary.skipped),
        growth={s.name: s.stage.growth for s in job.steps},
    )
    manifest.runs = [*manifest.runs, run][-MAX_RUNS:]
    save_manifest(store, manifest)
    try:
        with _client_for(job, client, cluster, performance_report) as c:
            if on_start is not None:
                on_start(c)
            from pipeline.core.metrics import enable_metrics

            enable_metrics(c)
            for step in todo:
                ctx = RunContext(
                    store=store,
                    client=c,
                    step=step.name,
                    upstream=step.upstream,
                    seed=job.spec.seed,
                    forced=step.name in force,
                    progress=progress,
                    log=logging.getLogger(f"pipeline.stage.{step.name}"),
                )
                _run_step(ctx, step, funcs[step.name], summary, job.spec.name)
    except BaseException as exc:
        try:
            _end_run(store, summary, before, "failed", f"{type(exc).__name__}: {exc}")
        except Exception as record_error:  # the run's own error is the one to report
            log.warning("could not record the failed run in the manifest: %s", record_error)
        raise
    _end_run(store, summary, before, "done", None)
    return summary


def _added_so_far(manifest: Manifest) -> tuple[int, set[str]]:
    """The collection's size and the quarantined files, to tell what a run adds."""
    images = int((manifest.collection or {}).get("images", 0) or 0)
    return images, {q.path for q in manifest.quarantine}


def _end_run(
    store: RunStore,
    summary: RunSummary,
    before: tuple[int, set[str]],
    status: str,
    error: str | None,
) -> None:
    manifest = load_manifest(store)  # reload: stages write the manifest too
    if not manifest.runs:
        return
    images, quarantined = _added_so_far(manifest)
    update = {
        "ended": now_iso(),
        "status": status,
        "error": error,
        "ran": list(summary.ran),
        "counts": dict(summary.counts),
        "added": {
            "images": max(images - before[0], 0),
            "quarantined": len(quarantined - before[1]),
        },
    }
    manifest.runs[-1] = manifest.runs[-1].model_copy(update=update)
    save_manifest(store, manifest)


@contextlib.contextmanager
def _stage_span(client: Client | None, job: str, stage: str) -> Iterator[None]:
    """Tasks the stage submits, tagged with a Dask span ``(job, stage)``: the dashboard's
    and the scheduler's per-span metrics show which stage they belong to (the chunk tasks'
    keys also begin with their stage's name)."""
    if client is None:
        yield
        return
    from distributed import span

    with span(job, stage):
        yield


def _run_step(
    ctx: RunContext,
    step: JobStep,
    func: Callable[[RunContext, object], Counts],
    summary: RunSummary,
    job: str,
) -> None:
    from pipeline.core.metrics import report_stage

    # Taken before the stage reads its inputs: what changes while it runs is seen next time.
    inputs = input_fingerprint(step)
    started, t0 = now_iso(), time.perf_counter()
    running = StageRecord(
        stage=step.name,
        config_hash=step.config_hash,
        params=step.params.model_dump(mode="json"),
        inputs=inputs,
        status="running",
        started=started,
    )
    _record(ctx.store, running)
    log.info("stage %s: running", step.name)
    kind = step.stage.name
    report_stage(ctx.client, job, step.name, "start", kind=kind)
    try:
        with _stage_span(ctx.client, job, step.name):
            counts = dict(func(ctx, step.params))
    except BaseException as exc:
        seconds = time.perf_counter() - t0
        report_stage(ctx.client, job, step.name, "failed", kind=kind, seconds=seconds)
        if not isinstance(exc, Exception):
            raise  # an interrupt: the record stays "running", as the next run expects
        error = f"{type(exc).__name__}: {exc}"
        ended = {"ended": now_iso(), "seconds": seconds}
        _record(ctx.store, running.model_copy(update={"status": "failed", "error": error, **ended}))
        raise StageError(f"stage {step.name} failed: {error}") from exc
    seconds = time.perf_counter() - t0
    report_stage(ctx.client, job, step.name, "done", kind=kind, seconds=seconds, counts=counts)
    done = {"status": "done", "ended": now_iso(), "seconds": seconds, "counts": counts}
    _record(ctx.store, running.model_copy(update=done))
    summary.ran.append(step.name)
    summary.counts[step.name] = counts
    summary.seconds[step.name] = seconds
    log.info("stage %s: done in %.1f s %s", step.name, seconds, counts)
