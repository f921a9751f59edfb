"""Ingest: image files in, a chunked, labelled, compressed Zarr v3 collection out.

Three steps, each run on the Dask cluster where it touches files:

1. **read the header** of every file in batches (tasks return shapes and reasons, not pixels);
2. **plan** on the client: the collection's shape, dtype and channels; which files are
   quarantined; the chunking (whole images along ``image``, about ``chunk_mb`` per chunk);
   the arrays and coordinates are created empty (:meth:`RunStore.write_template`);
3. **write**: one task per output chunk decodes its own files and writes its own chunk-aligned
   region, then a completion marker. A rerun after an interruption writes only the chunks
   without a marker, so the result equals an uninterrupted run bit for bit (the temporary
   files a killed writer leaves in the arrays are removed first).

Hostile files (decompression bombs over ``max_pixels``, FIFOs and other non-regular files,
TIFFs whose pages differ) are quarantined by the header step, before anything is decoded.

Sources that are the store's collection plus more files grow it: only the new files' headers
are read and only their images decoded (:mod:`pipeline.io.ingest_append`). The plan itself
(headers, shape, chunking, the arrays' layout and the ``images`` table) is
:mod:`pipeline.io.ingest_plan`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.chunks import chunk_ranges, run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.manifest import QuarantineEntry, load_manifest, save_manifest
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import CollectionMismatchError, ImageDecodeError
from pipeline.io.conform import convert_mode, fit_shape
from pipeline.io.imagefiles import ImageInfo, read_header, read_image
from pipeline.io.ingest_append import Growth, find_growth, grow_collection
from pipeline.io.ingest_plan import (
    TASK,
    HeaderFn,
    IngestPlan,
    collection_fingerprint,
    collection_template,
    files_digest,
    header_frame,
    image_table,
    plan_collection,
    probe,
)
from pipeline.io.inputs import SourceSet, resolve_sources
from pipeline.io.spec import DEFAULT_MAX_PIXELS, IngestParams, ModePolicy, ShapePolicy

__all__ = [
    "HeaderFn",
    "IngestParams",
    "IngestPlan",
    "ReadFn",
    "check_ingest",
    "check_sources",
    "chunk_args",
    "ingest_fingerprint",
    "ingest_images",
    "ingest_sources",
    "plan_collection",
    "write_chunk",
]

log = logging.getLogger(__name__)

#: The arrays whose chunks the write tasks write (and a resume may find half-written).
_CHUNKED = ("images", "valid")
#: zarr's LocalStore writes each chunk to ``<key>.<32 hex digits>.partial`` and then renames
#: it; a process killed in between leaves that file behind.
_ZARR_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")

#: Decodes one source: ``read(path, format, max_pixels) -> array`` of the shape its header
#: gave, raising :class:`~pipeline.errors.ImageDecodeError` when it cannot.
#: :func:`~pipeline.io.imagefiles.read_image` for files.
ReadFn = Callable[[str, str, int], np.ndarray]


def write_chunk(
    store: RunStore,
    index: int,
    start: int,
    files: Sequence[str],
    formats: Sequence[str],
    shape: tuple[int, ...],
    dtype: str,
    mode: ModePolicy,
    shape_policy: ShapePolicy,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    read: ReadFn = read_image,
) -> dict[str, list[tuple[str, str]]]:
    """Decode the files of one chunk and write its region of ``images`` and ``valid``.

    Runs as one Dask task (:func:`pipeline.core.chunks.run_chunks` writes its marker after
    it). A file that fails to decode (corruption the header check cannot see, or a file
    changed since its header was read to one over ``max_pixels``) is stored as zeros with
    ``valid = False`` and returned under ``quarantined`` as ``(path, reason)``. ``read``
    decodes one source (files by default; see :data:`ReadFn`).
    """
    # Uninitialised: every slot is either decoded into or zeroed below (zero-filling 32 MB
    # first would cost a measurable share of the write).
    block = np.empty((len(files), *shape), dtype=dtype)
    valid = np.zeros(len(files), dtype=bool)
    bad: list[tuple[str, str]] = []
    for i, (path, fmt) in enumerate(zip(files, formats, strict=True)):
        try:
            img = convert_mode(read(path, fmt, max_pixels), mode)
            if img.shape[:2] != shape[:2] and shape_policy in ("resize", "pad"):
                img = fit_shape(img, shape[0], shape[1], shape_policy)
            if img.shape != shape:
                raise ImageDecodeError(f"decoded shape {img.shape} differs from {shape}")
            block[i] = img
            valid[i] = True
        except ImageDecodeError as exc:
            block[i] = 0
            bad.append((path, str(exc)))
    write_block(store, "images", start, block)
    write_block(store, "valid", start, valid)
    return {"quarantined": bad}


# -- the collection in the store -------------------------------------------------------------


def chunk_args(
    plan: IngestPlan,
    params: IngestParams,
    todo: Sequence[int],
    read: ReadFn = read_image,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> dict[int, tuple[Any, ...]]:
    """The arguments of :func:`write_chunk` for chunks ``todo``: file names, never pixels.

    ``ranges`` (:func:`pipeline.core.chunks.chunk_ranges`) gives the images each chunk still
    needs, where a grown collection's last old chunk is written in part already; by default
    every chunk's whole range.
    """
    args: dict[int, tuple[Any, ...]] = {}
    for index in todo:
        start, stop = plan.chunk_bounds(index) if ranges is None else ranges[index]
        args[index] = (
            start,
            list(plan.files[start:stop]),
            list(plan.formats[start:stop]),
            plan.shape,
            plan.dtype,
            params.mode,
            params.shape_policy,
            params.max_pixels,
            read,
        )
    return args


def _existing_matches(
    store: RunStore, sources: SourceSet, params: IngestParams, fingerprint: str
) -> bool | Growth:
    """Whether ``store`` holds this very collection (complete or partly written): True; or
    a complete collection ``sources`` extend (:mod:`pipeline.io.ingest_append`): how it
    grows; or nothing of it (False: a new store, or ``overwrite``).

    Raises
    ------
    CollectionMismatchError
        If it holds another collection and ``overwrite`` is false.
    """
    manifest = load_manifest(store)
    existing = manifest.collection
    if existing is not None and existing.get("fingerprint") == fingerprint:
        return True
    # Before `overwrite`: it replaces another collection, and this is the same one, larger.
    growth = find_growth(store, sources, params) if existing is not None else None
    if growth is not None:
        return growth
    n_files = len(sources.files)
    if existing is None and not store.exists("store.zarr"):
        return False
    others = sorted(n for n in manifest.stages if n != TASK)
    if existing is None and not others:
        # No stage of pipeline wrote this store.zarr (e.g. one made with xarray), and no
        # ingest (it names its collection in the manifest before writing): --overwrite
        # replaces only what pipeline wrote.
        raise CollectionMismatchError(
            f"{store.zarr_url} was not written by pipeline (the manifest records no stage), "
            "so it is not replaced, with or without --overwrite; use a new --store, or move "
            "it away first"
        )
    if params.overwrite:
        return False
    if existing is None:
        what = f"arrays written by {', '.join(others)}"
    else:
        before = existing.get("params", {})
        now = params.model_dump(mode="json", exclude={"overwrite"})
        defaults = {k: f.default for k, f in IngestParams.model_fields.items()}
        changed = [
            f"{k} {before.get(k, defaults.get(k))!r} -> {v!r}"
            for k, v in now.items()
            if k != "sources" and before.get(k, defaults.get(k)) != v
        ]
        what = (
            f"{existing.get('images', '?')} images from {existing.get('n_files', '?')} files; "
            + (
                f"options differ: {', '.join(changed)}"
                if changed
                else f"the input files differ: {n_files} now"
            )
        )
    raise CollectionMismatchError(
        f"{store.url} already holds a different collection ({what}). Use a new --store, or "
        "pass --overwrite to replace it"
    )


def check_ingest(store: RunStore, params: IngestParams) -> None:
    """Check, before any work, that the sources exist and the store can take them.

    Raises
    ------
    InputError
        A source is missing, or no image file is found.
    CollectionMismatchError
        The store holds a different collection and ``params.overwrite`` is false (sources
        that extend the store's collection are not different: they grow it).
    """
    check_sources(store, params, resolve_sources(params.sources))


def check_sources(store: RunStore, params: IngestParams, sources: SourceSet) -> None:
    """:func:`check_ingest` for sources resolved by the caller (e.g. a plate's image index).

    Raises
    ------
    CollectionMismatchError
        The store holds a different collection and ``params.overwrite`` is false.
    """
    _existing_matches(store, sources, params, collection_fingerprint(sources, params))


def ingest_fingerprint(params: IngestParams) -> str:
    """The fingerprint of the ingest's sources now (its stage's ``inputs``): files added to
    its folders or manifests make the job run the ingest again, which grows the collection.

    Raises
    ------
    InputError
        A source is missing, or no image file is found.
    """
    return collection_fingerprint(resolve_sources(params.sources), params)


def _clear_collection(store: RunStore) -> None:
    log.warning("overwriting the collection in %s", store.url)
    store.remove_zarr()
    store.clear_markers(TASK)
    store.remove("tables/images.parquet")
    store.remove("tables/quarantine.parquet")
    manifest = load_manifest(store)
    manifest.collection = None
    manifest.quarantine = [q for q in manifest.quarantine if q.stage != TASK]
    save_manifest(store, manifest)


def _remove_stale_temporaries(store: RunStore) -> int:
    """Delete the ``*.<hex>.partial`` files a killed writer left in the chunked arrays.

    Only files matching zarr's temporary-name pattern inside ``images`` and ``valid`` are
    touched: without this a resumed store holds files a clean run does not. (A concurrent
    ingest into the same store is not supported, so no live write is removed.) Object
    stores write a chunk in one PUT and leave nothing behind.

    Returns
    -------
    int
        Number of files removed.
    """
    if not store.is_local:
        return 0
    removed = 0
    for name in _CHUNKED:
        for folder, _, names in os.walk(Path(store.zarr_url, name)):
            for stale in filter(_ZARR_PARTIAL.search, names):
                Path(folder, stale).unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write", removed)
    return removed


def _load_plan(store: RunStore) -> IngestPlan:
    manifest = load_manifest(store)
    col = manifest.collection or {}
    table = read_table(store, "images")
    return IngestPlan(
        files=tuple(table["source"]),
        formats=tuple(table["format"]),
        shape=tuple(col["shape"]),
        dtype=str(col["dtype"]),
        per_chunk=int(col["per_chunk"]),
        quarantine=tuple((str(p), str(r)) for p, r in col.get("planned_quarantine", [])),
    )


def _start_collection(
    store: RunStore,
    sources: SourceSet,
    params: IngestParams,
    fingerprint: str,
    plan: IngestPlan,
    kept: Sequence[ImageInfo],
    order: Sequence[int],
) -> None:
    """Record the plan in the manifest, create the empty arrays and write the images table."""
    shape, dtype, quarantine = plan.shape, plan.dtype, list(plan.quarantine)
    # The manifest names the collection before anything is written, so an interrupted run
    # is recognised as this collection (and resumed) rather than as a foreign one.
    manifest = load_manifest(store)
    manifest.collection = {
        "fingerprint": fingerprint,
        "files_digest": files_digest(sources),
        "status": "writing",
        "images": plan.n_images,
        "n_files": len(sources.files) + len(sources.missing),
        "shape": list(shape),
        "dtype": dtype,
        "per_chunk": plan.per_chunk,
        "params": params.model_dump(mode="json"),
        # Set aside when planning; decode failures found by the chunk tasks are in the markers.
        "planned_quarantine": [list(q) for q in quarantine],
    }
    manifest.quarantine = [q for q in manifest.quarantine if q.stage != TASK] + [
        QuarantineEntry(path=p, reason=r, stage=TASK) for p, r in quarantine
    ]
    save_manifest(store, manifest)
    store.clear_markers(TASK)
    ds, encoding = collection_template(sources, plan, order, params)
    store.write_template(ds, encoding, mode="w")
    write_table(store, "images", image_table(sources, order, plan.files, header_frame(kept)))


def ingest_images(ctx: RunContext, params: IngestParams) -> dict[str, int]:
    """Ingest image files into ``ctx.store`` as the ``images`` array of ``store.zarr``.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` is where to write (created if missing). Reading headers and writing run
        as tasks on ``ctx.client``'s workers. ``ctx.forced`` reads and writes everything
        again even if this collection is already (partly) there (``--force ingest``).
        ``ctx.progress`` receives ``("headers" | "write", done, total)``.
    params : IngestParams

    Returns
    -------
    dict
        ``images``, ``quarantined``, ``chunks``, ``chunks_written`` and ``images_written``
        (decoded by this call), and ``images_added`` (by which it grew the collection).

    Raises
    ------
    InputError
        Sources missing or empty (before any work).
    CollectionMismatchError
        ``store`` holds another collection and ``params.overwrite`` is false (before any
        work).
    IngestError
        The files mix shapes, channels or dtypes under a policy that forbids it, or none can
        be ingested. Found by the header pass (it needs every file's header, read on the
        workers), before anything in the store is written or cleared.
    """
    # The readers are looked up when called, not when defined (tests record them).
    return ingest_sources(
        ctx, params, resolve_sources(params.sources), header=read_header, read=read_image
    )


def ingest_sources(
    ctx: RunContext,
    params: IngestParams,
    sources: SourceSet,
    *,
    header: HeaderFn = read_header,
    read: ReadFn = read_image,
) -> dict[str, int]:
    """:func:`ingest_images` for sources the caller resolved, read by the caller's readers.

    The ingest of plates builds ``sources`` from an image index and a plate map (its order,
    identifiers and metadata), or from an OME-Zarr plate, whose fields ``header`` and
    ``read`` open instead of files. Everything else is the ingest's: the plan, quarantine,
    chunking, the resumable write and the tables. ``params.sources`` is only recorded.

    Parameters
    ----------
    ctx : RunContext
    params : IngestParams
    sources : SourceSet
        The images in ``image`` order (:attr:`SourceSet.files` is not re-sorted here).
    header : HeaderFn
        Reads one source's header on a worker (default: image files).
    read : ReadFn
        Decodes one source on a worker (default: image files).

    Returns
    -------
    dict
        As :func:`ingest_images`.
    """
    store, client, progress = ctx.store, ctx.client, ctx.progress
    fingerprint = collection_fingerprint(sources, params)
    match = _existing_matches(store, sources, params, fingerprint)
    grown = 0
    if ctx.forced:
        match = False
    if isinstance(match, Growth):
        # Plans the new files only (IngestError leaves the store as it was), then sizes the
        # arrays and writes everything but their pixels.
        plan = grow_collection(store, client, sources, params, fingerprint, match, progress, header)
        grown = plan.n_images - match.n_images
    elif match and store.has_array("images") and store.exists("tables/images.parquet"):
        plan = _load_plan(store)
        log.info("resuming the ingest of %d images into %s", plan.n_images, store.url)
        _remove_stale_temporaries(store)
    else:
        # Plan before clearing: sources that cannot be ingested (IngestError) leave what the
        # store already holds as it was.
        plan, kept, order = probe(client, sources, params, progress, header)
        if not match and (store.exists("store.zarr") or load_manifest(store).collection):
            _clear_collection(store)
        _start_collection(store, sources, params, fingerprint, plan, kept, order)
    done = store.done_markers(TASK)
    todo = [i for i in range(plan.n_chunks) if i not in done]
    # The images each chunk still needs: all of them, but where a grown collection's last
    # old chunk holds its old images already.
    ranges = chunk_ranges(store, TASK, plan.n_images, plan.per_chunk)
    log.info(
        "ingest: %d images of %s %s in %d chunks (%d to write), %d quarantined",
        plan.n_images,
        plan.shape,
        plan.dtype,
        plan.n_chunks,
        len(todo),
        len(plan.quarantine),
    )
    markers = run_chunks(
        store,
        client,
        TASK,
        write_chunk,
        chunk_args(plan, params, range(plan.n_chunks), read, ranges),
        label="write",
        progress=progress,
    )
    decode_failures = [
        (str(p), str(r)) for i in sorted(markers) for p, r in markers[i]["quarantined"]
    ]
    quarantine = list(plan.quarantine) + decode_failures
    write_table(
        store,
        "quarantine",
        pd.DataFrame(
            {
                "path": [p for p, _ in quarantine],
                "reason": [r for _, r in quarantine],
                "stage": [TASK] * len(quarantine),
            },
            columns=["path", "reason", "stage"],
        ).astype({"path": object, "reason": object, "stage": object}),
    )
    manifest = load_manifest(store)
    manifest.collection = {**(manifest.collection or {}), "status": "complete"}
    manifest.quarantine = [q for q in manifest.quarantine if q.stage != TASK] + [
        QuarantineEntry(path=p, reason=r, stage=TASK) for p, r in quarantine
    ]
    save_manifest(store, manifest)
    return {
        "images": plan.n_images,
        "quarantined": len(quarantine),
        "chunks": plan.n_chunks,
        "chunks_written": len(todo),
        "images_written": sum(ranges[i][1] - ranges[i][0] for i in todo),
        "images_added": grown,
    }
