"""Growing a collection: the ingest of sources that extend the one in the store.

A screen gains plates over weeks, a survey folder gains files every night. When the sources
are the store's collection plus more (its files unchanged: paths, sizes, times, identifiers;
its images' metadata the same values; the same ingest options), the ingest grows the
collection instead of starting over: it reads the headers of the new files only, checks them
against the collection (shape, dtype, channels under its shape policy), appends their images
after the existing ones (``image`` order: the collection's first, then the new in the
sources' order), and decodes and writes only them. What was written stays as it is; every
array along ``image`` grows (:func:`pipeline.core.chunks.resize_dimension`), so stages that
opt in (``prepare_array(..., grow=True)``) then process only the new images too.

A growth interrupted half-way is either redone from the start (the manifest still names the
smaller collection: the store's arrays are sized again) or resumed (the manifest names the
grown one), as any ingest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client
from pydantic import ValidationError

from pipeline.core.chunks import extend_task, resize_dimension
from pipeline.core.manifest import QuarantineEntry, load_manifest, now_iso, save_manifest
from pipeline.core.progress import ProgressFn
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import IngestError
from pipeline.io.imagefiles import read_header
from pipeline.io.ingest_plan import (
    IMAGE_COLUMNS,
    MISSING_REASON,
    TASK,
    HeaderFn,
    IngestPlan,
    files_digest,
    header_frame,
    image_coordinates,
    image_table,
    plan_collection,
    read_headers,
)
from pipeline.io.inputs import SourceSet
from pipeline.io.spec import IngestParams

__all__ = ["Growth", "find_growth", "grow_collection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Growth:
    """The store's collection and the sources that extend it.

    Attributes
    ----------
    n_images : int
        Images the collection has now.
    table : pandas.DataFrame
        Its ``images`` table (``n_images`` rows).
    collection : dict
        Its record in the manifest.
    new : SourceSet
        The sources it does not have yet, in the sources' order.
    """

    n_images: int
    table: pd.DataFrame
    collection: dict[str, Any]
    new: SourceSet


def _subset(sources: SourceSet, keep: Callable[[str], bool]) -> SourceSet:
    """The sources whose path ``keep`` accepts, in order."""
    idx = [k for k, f in enumerate(sources.files) if keep(f)]
    return SourceSet(
        files=[sources.files[k] for k in idx],
        sizes=[sources.sizes[k] for k in idx],
        mtimes=[sources.mtimes[k] for k in idx],
        image_ids=[sources.image_ids[k] for k in idx],
        metadata=sources.metadata.iloc[idx].reset_index(drop=True),
        missing=[m for m in sources.missing if keep(m)],
    )


def _missing_value(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    """Equal value by value, whatever the dtypes (new rows may widen ``int`` to ``float``)."""
    if len(a) != len(b):
        return False
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        return bool(
            np.array_equal(a.to_numpy(dtype=float), b.to_numpy(dtype=float), equal_nan=True)
        )
    left = [None if _missing_value(v) else v for v in a.to_numpy(dtype=object)]
    right = [None if _missing_value(v) else v for v in b.to_numpy(dtype=object)]
    return left == right


def _options(params: dict[str, Any]) -> dict[str, Any] | None:
    """The options that decide a collection's content (not its sources), or None if a
    manifest's record of them is not valid parameters."""
    try:
        valid = IngestParams.model_validate(params)
    except ValidationError:
        return None
    return valid.model_dump(mode="json", exclude={"sources", "overwrite"})


def find_growth(store: RunStore, sources: SourceSet, params: IngestParams) -> Growth | None:
    """The store's complete collection, if ``sources`` extend it (see the module); else None.

    Reads the manifest and the ``images`` table, and compares; nothing is written.
    """
    collection = load_manifest(store).collection
    if (
        not collection
        or collection.get("status") != "complete"
        or "files_digest" not in collection
        or _options(dict(collection.get("params", {}))) != _options(params.model_dump())
        or not store.exists("tables/images.parquet")
        or not store.has_array("images")
    ):
        return None
    n_images = int(collection["images"])
    # Only the collection's rows: a growth interrupted before its manifest was written may
    # have written the grown table already.
    table = read_table(store, "images").iloc[:n_images].reset_index(drop=True)
    old = set(table["source"]) | {str(p) for p, _ in collection.get("planned_quarantine", [])}
    before = _subset(sources, old.__contains__)
    new = _subset(sources, lambda f: f not in old)
    if (not new.files and not new.missing) or files_digest(before) != collection["files_digest"]:
        return None
    meta = [c for c in table.columns if c not in IMAGE_COLUMNS]
    if sorted(meta) != sorted(map(str, sources.metadata.columns)):
        return None
    position = {f: k for k, f in enumerate(before.files)}
    if any(f not in position for f in table["source"]):
        return None
    now = before.metadata.iloc[[position[f] for f in table["source"]]].reset_index(drop=True)
    if not all(_same_values(table[c], now[c]) for c in meta):
        return None
    return Growth(n_images=n_images, table=table, collection=dict(collection), new=new)


def _check_new(infos_ok: list[Any], plan_shape: tuple[int, ...], params: IngestParams) -> None:
    """Under ``shape_policy: error`` every new image must have the collection's size."""
    if params.shape_policy != "error":
        return
    odd = [i for i in infos_ok if tuple(i.shape[:2]) != tuple(plan_shape[:2])]
    if odd:
        h, w = plan_shape[:2]
        shown = ", ".join(f"{i.path} ({i.shape[0]}x{i.shape[1]})" for i in odd[:3])
        raise IngestError(
            f"{len(odd)} new file(s) differ in size from the collection's {h}x{w} images: "
            f"{shown}; choose shape_policy resize, pad or quarantine (--shape-policy), or "
            "ingest them into a store of their own"
        )


def _plan_new(
    client: Client | None,
    growth: Growth,
    params: IngestParams,
    progress: ProgressFn,
    header: HeaderFn,
) -> tuple[list[Any], list[tuple[str, str]]]:
    """The new files' kept headers and quarantine, planned against the collection's shape.

    Raises
    ------
    IngestError
        If they cannot join the collection (size under ``shape_policy: error``, dtype or
        channels), or none of them can be ingested.
    """
    col = growth.collection
    shape, dtype = tuple(int(v) for v in col["shape"]), str(col["dtype"])
    infos = read_headers(client, growth.new.files, params, progress, header)
    _check_new([i for i in infos if i.ok], shape, params)
    # The collection's size is the target of the resize, pad and quarantine policies.
    fixed = params.model_copy(update={"shape": (shape[0], shape[1])})
    kept, new_shape, new_dtype, quarantine = plan_collection(infos, fixed)
    if tuple(new_shape) != shape or new_dtype != dtype:
        raise IngestError(
            f"the new files are {new_dtype} images of {new_shape}, the collection in the store "
            f"holds {dtype} images of {shape}: convert them (mode gray or rgb, one bit depth), "
            "or ingest them into a store of their own"
        )
    return kept, [(p, MISSING_REASON) for p in growth.new.missing] + quarantine


def _rewrite_coordinates(
    store: RunStore, sources: SourceSet, order: list[int], files: list[str]
) -> None:
    """Write the coordinates along ``image`` anew, for the grown collection.

    Recreated rather than written into: a new image's metadata may widen a coordinate's
    dtype (an integer column gains a fraction).
    """
    coords = image_coordinates(sources, order, files)
    attrs = dict(store.open_dataset().attrs)
    for name in coords:
        store.remove(f"store.zarr/{name}")
    store.consolidate()  # the group's listing no longer names them
    ds = xr.Dataset(coords=coords)
    # xarray replaces the group's attributes with the written dataset's: keep them.
    ds.attrs.update(attrs)
    store.write_template(ds, {}, mode="a")


def grow_collection(
    store: RunStore,
    client: Client | None,
    sources: SourceSet,
    params: IngestParams,
    fingerprint: str,
    growth: Growth,
    progress: ProgressFn,
    header: HeaderFn = read_header,
) -> IngestPlan:
    """Extend the store's collection by ``growth.new``; return the grown collection's plan.

    Writes everything but the new images' pixels: the arrays' new size, the coordinates, the
    ``images`` table, the chunk markers (the last old chunk's becomes partial) and, last, the
    manifest's record of the grown collection (``status: writing``). The ingest's chunk tasks
    then decode and write the new images.

    Raises
    ------
    IngestError
        The new files cannot join the collection (:func:`_plan_new`); nothing is written.
    """
    col = growth.collection
    kept, new_quarantine = _plan_new(client, growth, params, progress, header)
    index_of = {f: k for k, f in enumerate(sources.files)}
    old_files = [str(f) for f in growth.table["source"]]
    new_files = [i.path for i in kept]
    files = old_files + new_files
    order = [index_of[f] for f in files]
    n_total = len(files)
    plan = IngestPlan(
        files=tuple(files),
        formats=(*map(str, growth.table["format"]), *(i.format for i in kept)),
        shape=tuple(int(v) for v in col["shape"]),
        dtype=str(col["dtype"]),
        per_chunk=int(col["per_chunk"]),
        quarantine=(
            *((str(p), str(r)) for p, r in col.get("planned_quarantine", [])),
            *new_quarantine,
        ),
    )
    log.info(
        "ingest: the collection in %s grows by %d image(s) to %d (%d new file(s) set aside)",
        store.url,
        len(new_files),
        n_total,
        len(new_quarantine),
    )
    resize_dimension(store, "image", n_total)
    _rewrite_coordinates(store, sources, order, files)
    headers = pd.concat(
        [growth.table[list(IMAGE_COLUMNS[3:])], header_frame(kept)], ignore_index=True
    )
    write_table(store, "images", image_table(sources, order, files, headers))
    extend_task(store, TASK, growth.n_images, plan.per_chunk)
    manifest = load_manifest(store)
    manifest.collection = {
        **col,
        "fingerprint": fingerprint,
        "files_digest": files_digest(sources),
        "status": "writing",
        "images": n_total,
        "n_files": len(sources.files) + len(sources.missing),
        "planned_quarantine": [list(q) for q in plan.quarantine],
        "grown": [*col.get("grown", []), {"from": growth.n_images, "to": n_total, "at": now_iso()}],
    }
    manifest.quarantine = [q for q in manifest.quarantine if q.stage != TASK] + [
        QuarantineEntry(path=p, reason=r, stage=TASK) for p, r in plan.quarantine
    ]
    save_manifest(store, manifest)
    return plan
