"""The ``preprocess`` stage: galaxy catalog and aligned cutouts of an image collection.

Each chunk of the ``images`` array is one Dask task: it reads its images from the store,
runs :func:`~pipeline.workflows.galaxy.preprocess.analyse_galaxy` on each,
 writes its chunk of ``cutouts``
and a marker holding its catalog rows. No pixels pass through the client; there is no loop
over images on the client. The catalog (``tables/catalog.parquet``) is then assembled from
the markers, in the order of the ``image`` dimension.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd
from distributed import Client

from pipeline.core.chunks import chunk_bounds, collect_rows, prepare_cutouts, write_cutout_chunk
from pipeline.core.progress import ProgressFn, gather_with_progress, no_progress
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import StoreError
from pipeline.workflows.galaxy.preprocess import REASONS, GalaxyParams, GalaxyResult, analyse_galaxy

__all__ = ["CATALOG_COLUMNS", "TASK", "build_catalog", "preprocess_chunk"]

log = logging.getLogger(__name__)

#: Marker folder and stage name.
TASK = "preprocess"

#: Columns of ``tables/catalog.parquet``, in order.
CATALOG_COLUMNS = (
    "image_id",
    "status",
    "reason",
    "x",
    "y",
    "sigma",
    "radius",
    "angle_deg",
    "stripe_score",
)


def preprocess_chunk(
    store: RunStore,
    index: int,
    start: int,
    stop: int,
    image_ids: Sequence[str],
    params: GalaxyParams,
) -> int:
    """Analyse images ``[start, stop)`` and write their cutouts and catalog rows (one task).

    Returns the number of images kept. An image that ingest marked invalid is rejected
    ``invalid``; anything wrong with an image's content is a rejection with its reason,
    never an exception.
    """
    images = np.asarray(store.open_array("images", mode="r")[start:stop])
    valid = np.asarray(store.open_array("valid", mode="r")[start:stop], dtype=bool)
    size = params.cutout_size
    block = np.zeros((stop - start, size, size), dtype=np.float32)
    rows = []
    for i in range(stop - start):
        result = (
            analyse_galaxy(images[i], params) if valid[i] else GalaxyResult("rejected", "invalid")
        )
        if result.cutout is not None:
            block[i] = result.cutout
        rows.append({"image_id": str(image_ids[i]), **result.row()})
    write_cutout_chunk(store, TASK, index, start, block, rows)
    return sum(r["status"] == "kept" for r in rows)


def build_catalog(
    store: RunStore,
    params: GalaxyParams,
    client: Client,
    *,
    redo: bool = False,
    progress: ProgressFn = no_progress,
) -> dict[str, int]:
    """Run the galaxy preprocessing over the store's collection.

    Parameters
    ----------
    store : RunStore
        Holds ``images`` (from ingest); receives ``cutouts`` and ``tables/catalog.parquet``.
    params : GalaxyParams
    client : distributed.Client
    redo : bool
        Recompute every chunk even if written with these parameters.
    progress : ProgressFn
        Receives ``("preprocess", done, total)`` per chunk.

    Returns
    -------
    dict
        ``images``, ``kept``, ``rejected`` and one ``rejected_<reason>`` count per reason.

    Raises
    ------
    StoreError
        If the store has no ingested collection.
    """
    if not store.has_array("images"):
        raise StoreError(
            f"{store.url} has no image collection; ingest one first (the job's `input`)"
        )
    ds = store.open_dataset()
    n = int(ds.sizes["image"])
    per_chunk = int(ds["images"].encoding["chunks"][0])
    image_ids = [str(v) for v in ds["image_id"].values]
    bounds = chunk_bounds(n, per_chunk)
    done = prepare_cutouts(
        store,
        task=TASK,
        n=n,
        size=params.cutout_size,
        per_chunk=per_chunk,
        config=params.model_dump(mode="json"),
        redo=redo,
    )
    todo = [i for i in range(len(bounds)) if i not in done]
    log.info("preprocess: %d images in %d chunks (%d to do)", n, len(bounds), len(todo))
    tasks = [
        dask.delayed(preprocess_chunk, pure=True)(
            store,
            i,
            bounds[i][0],
            bounds[i][1],
            image_ids[bounds[i][0] : bounds[i][1]],
            params,
            dask_key_name=f"preprocess-chunk-{i:08d}",
        )
        for i in todo
    ]
    if tasks:
        gather_with_progress(client, client.compute(tasks), TASK, progress)
    catalog = pd.DataFrame(collect_rows(store, TASK, len(bounds)), columns=list(CATALOG_COLUMNS))
    write_table(store, "catalog", catalog)
    reasons: Counter[str] = Counter(catalog.loc[catalog.status == "rejected", "reason"])
    counts: dict[str, Any] = {
        "images": n,
        "kept": int((catalog.status == "kept").sum()),
        "rejected": int((catalog.status == "rejected").sum()),
    }
    counts.update({f"rejected_{r}": int(reasons.get(r, 0)) for r in REASONS})
    return counts
