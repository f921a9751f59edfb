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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from pipeline.core.chunks import run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.manifest import QuarantineEntry, load_manifest, save_manifest
from pipeline.core.progress import ProgressFn, gather_with_progress
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import CollectionMismatchError, ImageDecodeError, IngestError
from pipeline.io.conform import convert_mode, fit_shape, target_channels
from pipeline.io.imagefiles import ImageInfo, read_header, read_image
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
    "ingest_images",
    "ingest_sources",
    "plan_collection",
    "write_chunk",
]

log = logging.getLogger(__name__)

TASK = "ingest"
_PROBE_BATCH = 256
#: The arrays whose chunks the write tasks write (and a resume may find half-written).
_CHUNKED = ("images", "valid")
#: zarr's LocalStore writes each chunk to ``<key>.<32 hex digits>.partial`` and then renames
#: it; a process killed in between leaves that file behind.
_ZARR_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")

#: Reads one source's header: ``header(path, max_pixels) -> ImageInfo`` (a module-level
#: function: it runs on the workers). :func:`~pipeline.io.imagefiles.read_header` for files.
HeaderFn = Callable[[str, int], ImageInfo]
#: Decodes one source: ``read(path, format, max_pixels) -> array`` of the shape its header
#: gave, raising :class:`~pipeline.errors.ImageDecodeError` when it cannot.
#: :func:`~pipeline.io.imagefiles.read_image` for files.
ReadFn = Callable[[str, str, int], np.ndarray]


@dataclass(frozen=True)
class IngestPlan:
    """The collection an ingest writes.

    ``files``/``formats`` are in ``image`` order; ``shape`` is the stored per-image shape
    ``(height, width)`` or ``(height, width, channels)``.
    """

    files: tuple[str, ...]
    formats: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    per_chunk: int
    quarantine: tuple[tuple[str, str], ...]

    @property
    def n_images(self) -> int:
        """Number of images in the collection."""
        return len(self.files)

    @property
    def n_chunks(self) -> int:
        """Number of chunks along ``image``."""
        return -(-self.n_images // self.per_chunk)

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        """``[start, stop)`` image range of chunk ``index``."""
        start = index * self.per_chunk
        return start, min(start + self.per_chunk, self.n_images)


# -- per-task functions (module level, pure: they run on workers) ---------------------------


def header_batch(
    paths: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS, header: HeaderFn = read_header
) -> list[ImageInfo]:
    """Probe a batch of files (one Dask task): headers only, no pixels leave the worker.

    A file whose header claims more than ``max_pixels`` values is given a reason (and so
    quarantined) without being decoded. ``header`` reads one source (files by default).
    """
    return [header(p, max_pixels) for p in paths]


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


# -- planning (client side, metadata only) ---------------------------------------------------


def _examples(paths: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(paths[:k])
    return shown + (f", ... ({len(paths) - k} more)" if len(paths) > k else "")


def _majority(values: Sequence[Any]) -> Any:
    # Most common value; ties go to the one seen first, so the plan is deterministic.
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def _describe_groups(label: str, groups: dict[Any, list[str]]) -> str:
    parts = [
        f"{label} {key}: {len(files)} file(s), e.g. {_examples(files)}"
        for key, files in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]
    return "; ".join(parts)


def plan_collection(
    infos: Sequence[ImageInfo], params: IngestParams
) -> tuple[list[ImageInfo], tuple[int, ...], str, list[tuple[str, str]]]:
    """Decide the collection's shape and dtype and which files are set aside.

    Parameters
    ----------
    infos : sequence of ImageInfo
        Probe results, in the order of the files.
    params : IngestParams

    Returns
    -------
    kept : list of ImageInfo
        Files that go into the collection, in order.
    shape : tuple of int
        Stored per-image shape, ``(height, width)`` or ``(height, width, channels)``.
    dtype : str
        Stored dtype.
    quarantine : list of (path, reason)

    Raises
    ------
    IngestError
        If no file is usable, or the files mix shapes, channels or dtypes under a policy that
        does not allow it; the message lists what was found and a few files of each.
    """
    quarantine = [(i.path, i.reason) for i in infos if not i.ok]
    good = [i for i in infos if i.ok]
    if not good:
        raise IngestError(
            f"none of the {len(infos)} file(s) can be ingested: {quarantine[0][1]} "
            f"({quarantine[0][0]}) and so on; check the sources"
        )

    def channels(i: ImageInfo) -> int:
        return target_channels(params.mode, i.channels)

    lenient = params.shape_policy == "quarantine"
    for label, key in (("dtype", lambda i: i.dtype), ("channels", channels)):
        groups: dict[Any, list[str]] = {}
        for i in good:
            groups.setdefault(key(i), []).append(i.path)
        if len(groups) > 1:
            if not lenient:
                fix = (
                    "pass mode gray or rgb (--mode)"
                    if label == "channels"
                    else "convert the files to one bit depth"
                )
                raise IngestError(
                    f"the sources mix {label}: {_describe_groups(label, groups)}; {fix}, or "
                    "shape_policy quarantine to set the minority aside"
                )
            keep_key = _majority([key(i) for i in good])
            quarantine += [
                (i.path, f"{label} {key(i)} differs from the collection's {keep_key}")
                for i in good
                if key(i) != keep_key
            ]
            good = [i for i in good if key(i) == keep_key]

    sizes = [i.shape[:2] for i in good]
    if params.shape is not None:
        target = tuple(params.shape)
    elif params.shape_policy == "pad":
        target = (max(s[0] for s in sizes), max(s[1] for s in sizes))
    else:
        target = _majority(sizes)
    if params.shape_policy == "error":
        groups = {}
        for i in good:
            groups.setdefault("x".join(map(str, i.shape[:2])), []).append(i.path)
        if len(groups) == 1 and sizes[0] != target:
            raise IngestError(
                f"the images are {sizes[0][0]}x{sizes[0][1]} but shape asks for "
                f"{target[0]}x{target[1]}; choose shape_policy resize or pad (--shape-policy), "
                "or drop --shape"
            )
        if len(groups) > 1:
            raise IngestError(
                f"the images differ in size: {_describe_groups('size', groups)}; choose "
                "shape_policy resize, pad or quarantine (--shape-policy)"
            )
    elif params.shape_policy == "quarantine":
        quarantine += [
            (
                i.path,
                f"size {i.shape[0]}x{i.shape[1]} differs from the collection's "
                f"{target[0]}x{target[1]}",
            )
            for i in good
            if i.shape[:2] != target
        ]
        good = [i for i in good if i.shape[:2] == target]
    elif params.shape_policy == "pad":
        too_big = [i for i in good if i.shape[0] > target[0] or i.shape[1] > target[1]]
        quarantine += [
            (
                i.path,
                f"size {i.shape[0]}x{i.shape[1]} is larger than the pad target "
                f"{target[0]}x{target[1]}",
            )
            for i in too_big
        ]
        good = [i for i in good if i not in too_big]
    if not good:
        raise IngestError("every file was set aside by the shape policy; check --shape")
    n_channels = channels(good[0])
    shape = (*target, n_channels) if n_channels > 1 else tuple(target)
    return good, shape, good[0].dtype, quarantine


def _per_chunk(shape: tuple[int, ...], dtype: str, chunk_mb: float) -> int:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return max(1, int(chunk_mb * 1e6 // nbytes))


def _compressor(params: IngestParams, dtype: str) -> ZstdCodec | BloscCodec:
    if params.compressor == "lz4":
        level = 5 if params.compression_level is None else params.compression_level
        return BloscCodec(
            cname="lz4",
            clevel=min(max(level, 0), 9),
            shuffle=BloscShuffle.bitshuffle,
            typesize=np.dtype(dtype).itemsize,
        )
    return ZstdCodec(level=1 if params.compression_level is None else params.compression_level)


def _template(
    sources: SourceSet, plan: IngestPlan, order: Sequence[int], params: IngestParams
) -> tuple[xr.Dataset, dict[str, Any]]:
    dims = ("image", "y", "x", "channel")[: 1 + len(plan.shape)]
    chunks = (plan.per_chunk, *plan.shape)
    images = da.zeros((plan.n_images, *plan.shape), chunks=chunks, dtype=plan.dtype)
    coords: dict[str, Any] = {
        "image_id": ("image", np.array([sources.image_ids[i] for i in order], dtype=object)),
        "source": ("image", np.array(list(plan.files), dtype=object)),
        "valid": ("image", da.zeros(plan.n_images, chunks=plan.per_chunk, dtype=bool)),
    }
    meta = sources.metadata.iloc[list(order)]
    for col in meta.columns:
        values = meta[col].to_numpy()
        coords[col] = ("image", values.astype(object) if values.dtype.kind in "OUS" else values)
    ds = xr.Dataset({"images": (dims, images)}, coords=coords)
    ds.attrs["pipeline_collection"] = 1
    encoding = {
        "images": {
            "chunks": chunks,
            "compressors": [_compressor(params, plan.dtype)],
            "fill_value": 0,
        },
        "valid": {"chunks": (plan.per_chunk,)},
    }
    return ds, encoding


def chunk_args(
    plan: IngestPlan, params: IngestParams, todo: Sequence[int], read: ReadFn = read_image
) -> dict[int, tuple[Any, ...]]:
    """The arguments of :func:`write_chunk` for chunks ``todo``: file names, never pixels."""
    args: dict[int, tuple[Any, ...]] = {}
    for index in todo:
        start, stop = plan.chunk_bounds(index)
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


def _fingerprint(sources: SourceSet, params: IngestParams) -> str:
    options = params.model_dump(mode="json", exclude={"sources", "overwrite"})
    if options["max_pixels"] == DEFAULT_MAX_PIXELS:
        # Stores ingested before the budget existed hold the same collection: keep their
        # fingerprint, so they resume instead of being refused as another collection.
        del options["max_pixels"]
    blob = json.dumps({"sources": sources.fingerprint(), "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _existing_matches(
    store: RunStore, fingerprint: str, params: IngestParams, n_files: int
) -> bool:
    """Whether ``store`` holds this very collection (complete or partly written).

    Raises
    ------
    CollectionMismatchError
        If it holds another collection and ``overwrite`` is false.
    """
    manifest = load_manifest(store)
    existing = manifest.collection
    if existing is not None and existing.get("fingerprint") == fingerprint:
        return True
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
        The store holds a different collection and ``params.overwrite`` is false.
    """
    check_sources(store, params, resolve_sources(params.sources))


def check_sources(store: RunStore, params: IngestParams, sources: SourceSet) -> None:
    """:func:`check_ingest` for sources resolved by the caller (e.g. a plate's image index).

    Raises
    ------
    CollectionMismatchError
        The store holds a different collection and ``params.overwrite`` is false.
    """
    _existing_matches(store, _fingerprint(sources, params), params, len(sources.files))


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


def _probe(
    client: Client | None,
    sources: SourceSet,
    params: IngestParams,
    progress: ProgressFn,
    header: HeaderFn = read_header,
) -> tuple[IngestPlan, list[ImageInfo], list[int]]:
    """Read every header (on the workers) and plan the collection; writes nothing.

    Returns the plan, the kept files' infos and their positions in ``sources.files``.

    Raises
    ------
    IngestError
        From :func:`plan_collection`.
    """
    batches = [
        sources.files[i : i + _PROBE_BATCH] for i in range(0, len(sources.files), _PROBE_BATCH)
    ]
    if client is None:
        infos = [i for batch in batches for i in header_batch(batch, params.max_pixels, header)]
    else:
        futures = client.map(
            header_batch, batches, max_pixels=params.max_pixels, header=header, pure=False
        )
        parts = gather_with_progress(client, futures, "headers", progress)
        infos = [i for batch in parts for i in batch]
    kept, shape, dtype, quarantine = plan_collection(infos, params)
    quarantine = [(p, "listed in the manifest but missing") for p in sources.missing] + quarantine
    index_of = {f: k for k, f in enumerate(sources.files)}
    order = [index_of[i.path] for i in kept]
    plan = IngestPlan(
        files=tuple(i.path for i in kept),
        formats=tuple(i.format for i in kept),
        shape=shape,
        dtype=dtype,
        per_chunk=_per_chunk(shape, dtype, params.chunk_mb),
        quarantine=tuple(quarantine),
    )
    return plan, kept, order


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
    ds, encoding = _template(sources, plan, order, params)
    store.write_template(ds, encoding, mode="w")
    table = pd.DataFrame(
        {
            "image": np.arange(plan.n_images),
            "image_id": [sources.image_ids[i] for i in order],
            "source": list(plan.files),
            "height": [i.shape[0] for i in kept],
            "width": [i.shape[1] for i in kept],
            "channels": [i.channels for i in kept],
            "format": list(plan.formats),
        }
    )
    meta = sources.metadata.iloc[list(order)].reset_index(drop=True)
    write_table(store, "images", pd.concat([table, meta], axis=1))


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
        ``images``, ``quarantined``, ``chunks`` and ``chunks_written`` (by this call).

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
    fingerprint = _fingerprint(sources, params)
    resumable = _existing_matches(store, fingerprint, params, len(sources.files)) and not ctx.forced
    if resumable and store.has_array("images") and store.exists("tables/images.parquet"):
        plan = _load_plan(store)
        log.info("resuming the ingest of %d images into %s", plan.n_images, store.url)
        _remove_stale_temporaries(store)
    else:
        # Plan before clearing: sources that cannot be ingested (IngestError) leave what the
        # store already holds as it was.
        plan, kept, order = _probe(client, sources, params, progress, header)
        if not resumable and (store.exists("store.zarr") or load_manifest(store).collection):
            _clear_collection(store)
        _start_collection(store, sources, params, fingerprint, plan, kept, order)
    todo = [i for i in range(plan.n_chunks) if i not in store.done_markers(TASK)]
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
        chunk_args(plan, params, range(plan.n_chunks), read),
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
    }
