"""The ``cutouts`` array of a run store: creation, chunk writes and resume.

Both the galaxy ``preprocess`` stage (one cutout per collection image) and
``detect_sources`` (one per source found in a mosaic) write ``cutouts (image, cutout_y,
cutout_x)``, float32 in [0, 1], chunked along ``image``. The dimensions are named
``cutout_y``/``cutout_x`` because xarray requires one size per dimension name in a Dataset,
and the cutouts are smaller than the images they come from.

Each chunk is written whole by one task, followed by a completion marker carrying that
chunk's table rows, so an interrupted stage resumes with the chunks it lacks and the table
is assembled from the markers. The configuration that produced the array is stored beside
the markers; a different configuration starts over.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr
from zarr.codecs import ZstdCodec
from zarr.core.array_spec import ArrayConfigParams

from pipeline.core.store import RunStore, config_key
from pipeline.errors import StoreError

__all__ = [
    "CUTOUT_DIMS",
    "chunk_bounds",
    "collect_rows",
    "prepare_cutouts",
    "write_cutout_chunk",
]

log = logging.getLogger(__name__)

#: Dimensions of the ``cutouts`` array.
CUTOUT_DIMS = ("image", "cutout_y", "cutout_x")


def chunk_bounds(n: int, per_chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of ``n`` items, ``per_chunk`` at a time."""
    return [(s, min(s + per_chunk, n)) for s in range(0, n, per_chunk)]


def prepare_cutouts(
    store: RunStore,
    *,
    task: str,
    n: int,
    size: int,
    per_chunk: int,
    config: Mapping[str, Any],
    coords: Mapping[str, Sequence[Any]] | None = None,
    redo: bool = False,
) -> set[int]:
    """Create the ``cutouts`` array for ``config`` (or reuse it) and return completed chunks.

    Parameters
    ----------
    store : RunStore
    task : str
        Name of the writing stage; its markers live under ``_progress/<task>/``.
    n : int
        Number of cutouts (length of ``image``).
    size : int
        Cutout side (px).
    per_chunk : int
        Cutouts per chunk along ``image``.
    config : mapping
        Everything that determines the cutouts; a different one clears the old array.
    coords : mapping of str to sequence, optional
        Coordinates along ``image`` to create with the array (a store without an image
        collection, e.g. sources of a mosaic); replaced together with it.
    redo : bool
        Start over even if the configuration matches.

    Returns
    -------
    set of int
        Chunk indices already written with this configuration.

    Raises
    ------
    StoreError
        If the store holds an image collection of a different length than ``n``.
    """
    key = config_key({"n": n, "size": size, "per_chunk": per_chunk, **config})
    if not redo and store.task_matches(task, key, "cutouts"):
        return set(store.done_markers(task))
    if store.has_array("images") and coords is not None:
        raise StoreError(
            f"{store.url} holds an image collection; cutouts of mosaic sources cannot share "
            "its `image` dimension. Use a run store of its own for the mosaic"
        )
    if store.has_array("images"):
        n_images = store.open_array("images", mode="r").shape[0]
        if n_images != n:
            raise StoreError(f"{n} cutouts for a collection of {n_images} images in {store.url}")
    store.reset_task(task, ["cutouts", *(coords or {})])
    data = da.zeros((n, size, size), chunks=(per_chunk, size, size), dtype=np.float32)
    ds = xr.Dataset(
        {"cutouts": (CUTOUT_DIMS, data)},
        # Object arrays become Zarr's variable-length strings (fixed-width unicode has no
        # Zarr v3 specification yet and warns).
        coords={
            k: ("image", np.asarray(v, dtype=object if isinstance(v[0], str) else None))
            for k, v in (coords or {}).items()
            if len(v)
        },
    )
    ds["cutouts"].attrs["description"] = "aligned cutouts, float32 in [0, 1]; 0 if none"
    encoding = {"cutouts": {"chunks": (per_chunk, size, size), "compressors": [ZstdCodec(level=1)]}}
    store.write_template(ds, encoding, mode="a")
    store.record_task(task, key, config=dict(config))
    log.info("%s: created cutouts (%d, %d, %d) in chunks of %d", task, n, size, size, per_chunk)
    return set()


def write_cutout_chunk(
    store: RunStore,
    task: str,
    index: int,
    start: int,
    block: npt.NDArray[np.float32],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Write one whole chunk of ``cutouts`` and then its marker with the chunk's rows."""
    config: ArrayConfigParams = {"write_empty_chunks": True}
    store.open_array("cutouts").with_config(config)[start : start + len(block)] = block
    store.mark_done(task, index, {"rows": [dict(r) for r in rows]})


def collect_rows(store: RunStore, task: str, n_chunks: int) -> list[dict[str, Any]]:
    """The rows of every chunk's marker, in chunk order.

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
