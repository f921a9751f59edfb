"""Chunked arrays written one whole chunk per task, resumably: the one chunk-task loop.

A stage that writes an array chunk by chunk (ingest's images, the galaxy and mosaic cutouts,
a mosaic's bands) does three things, all here:

1. :func:`prepare_array` creates the array (metadata only) for a configuration, or keeps it
   when it was created with the same one, and says which chunks are already written;
2. :func:`run_chunks` runs one Dask task per chunk still to do. Each task calls a module-level
   function that reads its own inputs, writes its own chunk-aligned region
   (:func:`write_block`) and returns a small JSON-able payload; the loop then writes the
   chunk's completion marker holding that payload, after the data, so a chunk interrupted
   half-way is redone on resume;
3. :func:`collect_rows` (or the markers :func:`run_chunks` returns) gathers what the tasks
   reported, e.g. a table's rows, in chunk order.

No pixels pass through the client: tasks receive the store, a chunk index and small
arguments.

**Growing.** A collection that gains images (a plate added to a screen) grows along its first
dimension instead of starting over: the ingest resizes every array along it
(:func:`resize_dimension`), and a stage that opts in (``prepare_array(..., grow=True)``) keeps
its chunks. Only the new items are then processed: the chunk that was the last, partly filled
one keeps what it holds, its marker becomes a partial one (:func:`extend_task`), and its task
writes just the rest of it (:func:`chunk_ranges`); the chunk loop joins the two payloads
(lists concatenated, e.g. a table's rows) into its full marker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.progress import ProgressFn, compute_with_progress, no_progress
from pipeline.core.store import RunStore, config_key
from pipeline.errors import StoreError

if TYPE_CHECKING:
    from dask.delayed import Delayed
    from distributed import Client

__all__ = [
    "chunk_bounds",
    "chunk_graph",
    "chunk_ranges",
    "chunk_task",
    "collect_rows",
    "extend_task",
    "prepare_array",
    "resize_dimension",
    "run_chunks",
    "write_block",
]

log = logging.getLogger(__name__)

ChunkFn = Callable[..., Mapping[str, Any]]


def chunk_bounds(n: int, per_chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of ``n`` items, ``per_chunk`` at a time."""
    return [(s, min(s + per_chunk, n)) for s in range(0, n, per_chunk)]


def chunk_ranges(store: RunStore, task: str, n: int, per_chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of what each chunk of ``n`` items still needs written.

    :func:`chunk_bounds`, but a chunk with a partial marker (:func:`extend_task`) starts
    where its written part stops.
    """
    parts = store.partial_markers(task)
    bounds = chunk_bounds(n, per_chunk)
    return [
        (max(start, int(parts[i]["stop"])) if i in parts else start, stop)
        for i, (start, stop) in enumerate(bounds)
    ]


def extend_task(store: RunStore, task: str, length: int, per_chunk: int) -> None:
    """Prepare ``task``'s markers for items appended after the first ``length``.

    The chunk the first ``length`` items end in, if partly filled and written, gets a partial
    marker (its payload so far and where its part stops) in place of its full one; chunks
    after it have none. Safe to repeat (an interrupted append).
    """
    index, rest = divmod(length, per_chunk)
    if not rest:
        return
    marker = store.done_markers(task).get(index)
    if marker is not None:
        store.mark_partial(task, index, length, marker)


def resize_dimension(store: RunStore, dim: str, length: int) -> list[str]:
    """Resize every array of ``store.zarr`` that has dimension ``dim`` to ``length`` along it.

    For the stage that owns ``dim`` (the ingest owns ``image``), when its collection grows.
    Data within the new length stays; the new region reads as each array's fill value until
    written. Shrinking deletes what lies beyond ``length``: only the owner may do that, to
    undo a growth it had not finished. Coordinates along ``dim`` are the caller's to write
    anew.

    Returns
    -------
    list of str
        The arrays resized.
    """
    import zarr

    group = zarr.open_group(store.zarr_store(), mode="r+", use_consolidated=False)
    resized = []
    for name, array in sorted(group.arrays()):
        dims = list(getattr(array.metadata, "dimension_names", None) or [])
        if dim not in dims:
            continue
        axis = dims.index(dim)
        if array.shape[axis] != length:
            shape = list(array.shape)
            shape[axis] = length
            array.resize(tuple(shape))
            resized.append(str(name))
    store.consolidate()
    if resized:
        log.info("resized %s to %d along `%s`", ", ".join(resized), length, dim)
    return resized


def _grow(
    store: RunStore,
    task: str,
    name: str,
    shape: Sequence[int],
    per_chunk: int,
    growth: str,
    key: str,
    config: Mapping[str, Any],
) -> set[int] | None:
    """Keep ``task``'s array and chunks when only ``shape[0]`` grew; None if it cannot."""
    info = store.task_info(task)
    length = info.get("length")
    if (
        info.get("growth") != growth
        or not isinstance(length, int)
        or length >= shape[0]
        or not store.has_array(name)
    ):
        return None
    array = store.open_array(name)
    if array.shape[0] > shape[0] or tuple(array.shape[1:]) != tuple(shape[1:]):
        return None
    if array.shape[0] < shape[0]:
        array.resize((shape[0], *array.shape[1:]))
        store.consolidate()
    extend_task(store, task, length, per_chunk)
    store.record_task(task, key, config=dict(config), growth=growth, length=int(shape[0]))
    log.info("%s: %s grows from %d to %d along its first dimension", task, name, length, shape[0])
    return set(store.done_markers(task))


def _dimension_length(store: RunStore, dim: str) -> tuple[int, list[str]] | None:
    """Length of dimension ``dim`` in the store's arrays, and the arrays that have it."""
    if not store.exists("store.zarr/zarr.json"):
        return None
    ds = store.open_dataset()
    if dim not in ds.sizes:
        return None
    names = [str(k) for k, v in ds.variables.items() if dim in v.dims and k != dim]
    return int(ds.sizes[dim]), names


def prepare_array(
    store: RunStore,
    *,
    task: str,
    name: str,
    dims: Sequence[str],
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: Any,
    config: Mapping[str, Any],
    coords: Mapping[str, Sequence[Any]] | None = None,
    attrs: Mapping[str, Any] | None = None,
    redo: bool = False,
    grow: bool = False,
    compress: bool = True,
) -> set[int]:
    """Create ``store.zarr/<name>`` for ``config`` (or keep it) and return the chunks done.

    Parameters
    ----------
    store : RunStore
    task : str
        The writing task; its markers live under ``_progress/<task>/``.
    name : str
        The array.
    dims, shape, chunks : sequences
        Its dimension names, shape and chunk shape. Chunks are counted along ``dims[0]``.
    dtype : numpy dtype
    config : mapping
        Everything that determines the array's content; a different one starts over.
    coords : mapping of str to sequence, optional
        Coordinates along ``dims[0]`` created with the array (a store whose ``dims[0]`` is
        new, e.g. the sources of a mosaic); replaced together with it.
    attrs : mapping, optional
        Attributes of the array (e.g. ``description``).
    redo : bool
        Start over even if the configuration matches.
    grow : bool
        When the array exists with this configuration but fewer items along ``dims[0]``
        (the collection grew), keep it and its chunks: only the new items are to do, and
        the chunks' ranges come from :func:`chunk_ranges`. Only for arrays whose item ``i``
        depends on input item ``i`` alone.
    compress : bool
        Zstandard-compress the chunks (the default); off for data that barely compresses
        and is read often.

    Returns
    -------
    set of int
        Chunk indices (along ``dims[0]``) already written with this configuration.

    Raises
    ------
    StoreError
        If the store's arrays already have ``dims[0]`` with another length, or ``coords``
        would define ``dims[0]`` anew where other arrays already have it.
    """
    import dask.array as da
    import xarray as xr
    from zarr.codecs import ZstdCodec

    key = config_key({"shape": list(shape), "chunks": list(chunks), "dims": list(dims), **config})
    if not redo and store.task_matches(task, key, name):
        return set(store.done_markers(task))
    # The same configuration but for the length along dims[0].
    growth = config_key(
        {"item_shape": list(shape[1:]), "chunks": list(chunks), "dims": list(dims), **config}
    )
    if grow and not redo:
        kept = _grow(store, task, name, shape, chunks[0], growth, key, config)
        if kept is not None:
            return kept
    existing = _dimension_length(store, dims[0])
    if existing is not None:
        length, owners = existing
        others = [o for o in owners if o != name and o not in (coords or {})]
        if others and coords is not None:
            raise StoreError(
                f"{store.url} already has a `{dims[0]}` dimension of {length} (arrays "
                f"{others[:4]}); {name!r} would define a new one. Use a run store of its own "
                "for it"
            )
        if others and length != shape[0]:
            raise StoreError(
                f"{name!r} of {shape[0]} along `{dims[0]}`, but {store.url} has {length} "
                f"there (arrays {others[:4]}); redo the stage that wrote them, or use a new store"
            )
    store.reset_task(task, [name, *(coords or {})])
    data = da.zeros(tuple(shape), chunks=tuple(chunks), dtype=dtype)
    ds = xr.Dataset(
        {name: (tuple(dims), data)},
        # Object arrays become Zarr's variable-length strings (fixed-width unicode has no
        # Zarr v3 specification yet and warns).
        coords={
            k: (dims[0], np.asarray(v, dtype=object if isinstance(v[0], str) else None))
            for k, v in (coords or {}).items()
            if len(v)
        },
    )
    ds[name].attrs.update(dict(attrs or {}))
    compressors = [ZstdCodec(level=1)] if compress else None
    encoding = {name: {"chunks": tuple(chunks), "compressors": compressors}}
    store.write_template(ds, encoding, mode="a")
    store.record_task(task, key, config=dict(config), growth=growth, length=int(shape[0]))
    log.info("%s: created %s %s in chunks of %s", task, name, tuple(shape), tuple(chunks))
    return set()


def write_block(store: RunStore, name: str, start: int, block: np.ndarray) -> None:
    """Write ``block`` into ``store.zarr/<name>`` from ``start`` along the first dimension.

    The region must cover whole chunks (or end at the array's end), or be the rest of a
    chunk whose first part is written (:func:`chunk_ranges`): one task owns each chunk.
    """
    # Every chunk is written whole, so zarr's scan for all-fill-value chunks (which costs as
    # much as compressing, measured on ingest) buys nothing: skip it.
    array = store.open_array(name).with_config({"write_empty_chunks": True})
    array[start : start + len(block)] = block


def chunk_task(
    func: ChunkFn, store: RunStore, task: str, index: int, *args: Any, partial: bool = False
) -> Mapping[str, Any]:
    """Run ``func(store, index, *args)`` (one chunk), then write its completion marker.

    The marker holds what ``func`` returned and is written after the chunk's data, so a chunk
    without a marker is redone on resume. A chunk with a partial marker (its array grew) gets
    the part's payload joined before this one's: lists are concatenated, other values are
    this task's.
    """
    payload = dict(func(store, index, *args))
    # Only a chunk the graph found partial reads its part (no lookup per chunk otherwise).
    part = store.partial_marker(task, index) if partial else None
    if part is not None:
        # The chunk's first part was written before the array grew: its payload comes first.
        before = dict(part["payload"])
        payload = {
            k: before[k] + payload[k]
            if isinstance(before.get(k), list) and isinstance(payload.get(k), list)
            else payload.get(k, before.get(k))
            for k in {**before, **payload}
        }
    store.mark_done(task, index, payload)
    if part is not None:
        store.remove_partial(task, index)
    return payload


def chunk_graph(
    store: RunStore, task: str, func: ChunkFn, chunk_args: Mapping[int, Sequence[Any]]
) -> list[Delayed]:
    """One Dask task per chunk of ``chunk_args`` (:func:`chunk_task` of ``func``); nothing is
    computed. Each task carries the store and its small arguments, never pixels."""
    import dask

    # A fresh token per graph: a key the scheduler still holds from an earlier, failed run
    # of the same chunks would get the new task cancelled.
    token = uuid.uuid4().hex[:8]
    parts = store.partial_markers(task)
    return [
        dask.delayed(chunk_task, pure=False)(
            func,
            store,
            task,
            i,
            *chunk_args[i],
            partial=i in parts,
            dask_key_name=f"{task}-chunk-{i:08d}-{token}",
        )
        for i in sorted(chunk_args)
    ]


def run_chunks(
    store: RunStore,
    client: Client | None,
    task: str,
    func: ChunkFn,
    chunk_args: Mapping[int, Sequence[Any]],
    *,
    label: str | None = None,
    progress: ProgressFn = no_progress,
) -> dict[int, dict[str, Any]]:
    """Run ``func`` for every chunk of ``chunk_args`` that has no marker yet; return all markers.

    Parameters
    ----------
    store : RunStore
    client : distributed.Client or None
        Where the tasks run (None: in this process, one after the other).
    task : str
        Marker folder (``_progress/<task>/``) and task-key prefix.
    func : callable
        A module-level function ``func(store, index, *args) -> payload`` (a small JSON-able
        mapping) that writes chunk ``index`` itself.
    chunk_args : mapping of int to sequence
        Every chunk's index and the further arguments of its task (file names, bounds,
        parameters; never pixel data).
    label : str, optional
        Progress label (default: ``task``).
    progress : ProgressFn

    Returns
    -------
    dict of int to dict
        The markers of every chunk written so far (by this call or an earlier one).
    """
    done = store.done_markers(task)
    todo = {i: a for i, a in chunk_args.items() if i not in done}
    log.info("%s: %d chunk(s), %d to do", task, len(chunk_args), len(todo))
    if todo:
        compute_with_progress(client, chunk_graph(store, task, func, todo), label or task, progress)
    return store.done_markers(task)


def collect_rows(store: RunStore, task: str, n_chunks: int) -> list[dict[str, Any]]:
    """The ``rows`` of every chunk's marker, in chunk order.

    Raises
    ------
    StoreError
        If a chunk has no marker (its task did not finish).
    """
    markers = store.done_markers(task)
    missing = [i for i in range(n_chunks) if i not in markers]
    if missing:
        raise StoreError(
            f"{task}: chunks {missing[:5]} of {n_chunks} are not written; run the stage again"
        )
    return [row for i in range(n_chunks) for row in markers[i]["rows"]]
