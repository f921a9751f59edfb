"""The plan of an ingest: from the sources' headers to the collection it writes.

Everything here is metadata: headers are read on the workers in batches (tasks return
shapes and reasons, never pixels), then the client decides the collection's shape, dtype and
chunking and which files are set aside (:func:`plan_collection`), and lays out its arrays,
coordinates (:func:`collection_template`) and ``images`` table (:func:`image_table`). The
ingest (:mod:`pipeline.io.ingest`) writes what is planned; growing a collection
(:mod:`pipeline.io.ingest_append`) plans only the new files, against the collection's shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from pipeline.core.progress import ProgressFn, gather_with_progress
from pipeline.errors import IngestError
from pipeline.io.conform import target_channels
from pipeline.io.imagefiles import ImageInfo, read_header
from pipeline.io.inputs import SourceSet
from pipeline.io.spec import DEFAULT_MAX_PIXELS, IngestParams

__all__ = [
    "IMAGE_COLUMNS",
    "MISSING_REASON",
    "TASK",
    "HeaderFn",
    "IngestPlan",
    "collection_fingerprint",
    "collection_template",
    "files_digest",
    "header_batch",
    "header_frame",
    "image_coordinates",
    "image_table",
    "images_per_chunk",
    "plan_collection",
    "probe",
    "read_headers",
]

log = logging.getLogger(__name__)

#: The ingest's task name (its chunk markers live under ``_progress/ingest/``).
TASK = "ingest"
_PROBE_BATCH = 256
#: Why a file a manifest (or an image index) lists is quarantined when it does not exist.
MISSING_REASON = "listed in the manifest but missing"

#: The columns of ``tables/images.parquet`` before the sources' metadata columns.
IMAGE_COLUMNS = ("image", "image_id", "source", "height", "width", "channels", "format")

#: Reads one source's header: ``header(path, max_pixels) -> ImageInfo`` (a module-level
#: function: it runs on the workers). :func:`~pipeline.io.imagefiles.read_header` for files.
HeaderFn = Callable[[str, int], ImageInfo]


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


def header_batch(
    paths: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS, header: HeaderFn = read_header
) -> list[ImageInfo]:
    """Probe a batch of files (one Dask task): headers only, no pixels leave the worker.

    A file whose header claims more than ``max_pixels`` values is given a reason (and so
    quarantined) without being decoded. ``header`` reads one source (files by default).
    """
    return [header(p, max_pixels) for p in paths]


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


def images_per_chunk(shape: tuple[int, ...], dtype: str, chunk_mb: float) -> int:
    """Whole images of ``shape`` and ``dtype`` per chunk of about ``chunk_mb`` MB (at least 1)."""
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


def image_coordinates(
    sources: SourceSet, order: Sequence[int], files: Sequence[str]
) -> dict[str, tuple[str, np.ndarray]]:
    """The eager coordinates along ``image``: ``image_id``, ``source`` and every metadata
    column of ``sources``, for the sources at positions ``order`` (stored as ``files``)."""
    coords = {
        "image_id": ("image", np.array([sources.image_ids[i] for i in order], dtype=object)),
        "source": ("image", np.array(list(files), dtype=object)),
    }
    meta = sources.metadata.iloc[list(order)]
    for col in meta.columns:
        values = meta[col].to_numpy()
        # Object arrays become Zarr's variable-length strings.
        coords[str(col)] = (
            "image",
            values.astype(object) if values.dtype.kind in "OUS" else values,
        )
    return coords


def collection_template(
    sources: SourceSet, plan: IngestPlan, order: Sequence[int], params: IngestParams
) -> tuple[xr.Dataset, dict[str, Any]]:
    """The collection's arrays, created empty (``images``, ``valid``) with its coordinates.

    Returns
    -------
    dataset : xarray.Dataset
        ``images (image, y, x[, channel])`` and ``valid (image,)`` as Dask zeros, the
        coordinates of :func:`image_coordinates` for the kept sources ``order``.
    encoding : dict
        Chunks (whole images, ``plan.per_chunk`` per chunk) and compressors.
    """
    dims = ("image", "y", "x", "channel")[: 1 + len(plan.shape)]
    chunks = (plan.per_chunk, *plan.shape)
    images = da.zeros((plan.n_images, *plan.shape), chunks=chunks, dtype=plan.dtype)
    coords: dict[str, Any] = {
        **image_coordinates(sources, order, plan.files),
        "valid": ("image", da.zeros(plan.n_images, chunks=plan.per_chunk, dtype=bool)),
    }
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


def image_table(
    sources: SourceSet, order: Sequence[int], files: Sequence[str], infos: pd.DataFrame
) -> pd.DataFrame:
    """``tables/images.parquet``: one row per image of the collection, in ``image`` order.

    Parameters
    ----------
    sources : SourceSet
    order : sequence of int
        Position in ``sources`` of each image.
    files : sequence of str
        Each image's stored source path.
    infos : pandas.DataFrame
        ``height``, ``width``, ``channels`` (of the file, as its header gave them) and
        ``format`` of each image.
    """
    table = pd.DataFrame(
        {
            "image": np.arange(len(order)),
            "image_id": [sources.image_ids[i] for i in order],
            "source": list(files),
            **{c: list(infos[c]) for c in IMAGE_COLUMNS[3:]},
        }
    )
    meta = sources.metadata.iloc[list(order)].reset_index(drop=True)
    return pd.concat([table, meta], axis=1)


def header_frame(kept: Sequence[ImageInfo]) -> pd.DataFrame:
    """The header columns of :func:`image_table` for the kept files' headers."""
    return pd.DataFrame(
        {
            "height": [i.shape[0] for i in kept],
            "width": [i.shape[1] for i in kept],
            "channels": [i.channels for i in kept],
            "format": [i.format for i in kept],
        }
    )


def collection_fingerprint(sources: SourceSet, params: IngestParams) -> str:
    """A hash of the sources (paths, sizes, times, identifiers, metadata) and the options
    that decide the collection: the same inputs, the same collection."""
    options = params.model_dump(mode="json", exclude={"sources", "overwrite"})
    if options["max_pixels"] == DEFAULT_MAX_PIXELS:
        # Stores ingested before the budget existed hold the same collection: keep their
        # fingerprint, so they resume instead of being refused as another collection.
        del options["max_pixels"]
    blob = json.dumps({"sources": sources.fingerprint(), "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def files_digest(sources: SourceSet) -> str:
    """A hash of the sources' files alone (paths, sizes, times, identifiers; missing ones),
    in order: what must be unchanged for a collection to grow by more files (its metadata is
    compared value by value, as its types may widen with the new rows)."""
    h = hashlib.sha256()
    for f, s, m, i in zip(
        sources.files, sources.sizes, sources.mtimes, sources.image_ids, strict=True
    ):
        h.update(f"{f}\0{s}\0{m:.6f}\0{i}\n".encode())
    for f in sources.missing:
        h.update(f"missing\0{f}\n".encode())
    return h.hexdigest()


def read_headers(
    client: Client | None,
    files: Sequence[str],
    params: IngestParams,
    progress: ProgressFn,
    header: HeaderFn = read_header,
) -> list[ImageInfo]:
    """Every file's header, read in batches on the workers (here without a client)."""
    batches = [files[i : i + _PROBE_BATCH] for i in range(0, len(files), _PROBE_BATCH)]
    if client is None:
        return [i for batch in batches for i in header_batch(batch, params.max_pixels, header)]
    futures = client.map(
        header_batch, batches, max_pixels=params.max_pixels, header=header, pure=False
    )
    parts = gather_with_progress(client, futures, "headers", progress)
    return [i for batch in parts for i in batch]


def probe(
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
    infos = read_headers(client, sources.files, params, progress, header)
    kept, shape, dtype, quarantine = plan_collection(infos, params)
    quarantine = [(p, MISSING_REASON) for p in sources.missing] + quarantine
    index_of = {f: k for k, f in enumerate(sources.files)}
    order = [index_of[i.path] for i in kept]
    plan = IngestPlan(
        files=tuple(i.path for i in kept),
        formats=tuple(i.format for i in kept),
        shape=shape,
        dtype=dtype,
        per_chunk=images_per_chunk(shape, dtype, params.chunk_mb),
        quarantine=tuple(quarantine),
    )
    return plan, kept, order
