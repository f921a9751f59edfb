"""The ``preprocess`` stage: galaxy catalog and aligned cutouts of an image collection.

Each chunk of the ``images`` array is one Dask task: it reads its images from the store, runs
:func:`~pipeline.workflows.galaxy.preprocess.analyse_galaxy` on each, writes its chunk of
``cutouts`` and returns its catalog rows, which the chunk loop keeps in the chunk's marker
(:mod:`pipeline.core.chunks`). No pixels pass through the client; there is no loop over
images on the client. The catalog (``tables/catalog.parquet``) is then assembled from the
markers, in the order of the ``image`` dimension.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.chunks import (
    chunk_bounds,
    chunk_ranges,
    collect_rows,
    prepare_array,
    run_chunks,
    write_block,
)
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.errors import StoreError
from pipeline.workflows.galaxy.preprocess import GalaxyResult, analyse_galaxy
from pipeline.workflows.galaxy.spec import CUTOUT_DIMS, CUTOUTS, REASONS, GalaxyParams

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
) -> dict[str, list[dict[str, Any]]]:
    """Analyse images ``[start, stop)``, write their cutouts and return their catalog rows.

    An image that ingest marked invalid is rejected ``invalid``; anything wrong with an
    image's content is a rejection with its reason, never an exception.
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
    write_block(store, CUTOUTS, start, block)
    return {"rows": rows}


def build_catalog(ctx: RunContext, params: GalaxyParams) -> dict[str, int]:
    """Run the galaxy preprocessing over the store's collection.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds ``images`` (from ingest) and receives ``cutouts`` and
        ``tables/catalog.parquet``; ``ctx.forced`` recomputes every chunk even if written
        with these parameters; ``ctx.progress`` receives ``("preprocess", done, total)``.
    params : GalaxyParams

    Returns
    -------
    dict
        ``images``, ``kept``, ``rejected`` and one ``rejected_<reason>`` count per reason.

    Raises
    ------
    StoreError
        If the store has no ingested collection.
    """
    store = ctx.store
    if not store.has_array("images"):
        raise StoreError(
            f"{store.url} has no image collection; ingest one first (the job's `input`)"
        )
    ds = store.open_dataset()
    n = int(ds.sizes["image"])
    per_chunk = int(ds["images"].encoding["chunks"][0])
    image_ids = [str(v) for v in ds["image_id"].values]
    bounds = chunk_bounds(n, per_chunk)
    size = params.cutout_size
    # A collection grown by new files keeps its cutouts: only the new images are analysed.
    prepare_array(
        store,
        task=TASK,
        name=CUTOUTS,
        dims=CUTOUT_DIMS,
        shape=(n, size, size),
        chunks=(per_chunk, size, size),
        dtype=np.float32,
        config=params.model_dump(mode="json"),
        attrs={"description": "aligned cutouts, float32 in [0, 1]; 0 if none"},
        redo=ctx.forced,
        grow=True,
    )
    done = store.done_markers(TASK)
    ranges = chunk_ranges(store, TASK, n, per_chunk)
    args = {i: (s, e, image_ids[s:e], params) for i, (s, e) in enumerate(ranges)}
    run_chunks(store, ctx.client, TASK, preprocess_chunk, args, progress=ctx.progress)
    catalog = pd.DataFrame(collect_rows(store, TASK, len(bounds)), columns=list(CATALOG_COLUMNS))
    write_table(store, "catalog", catalog)
    reasons: Counter[str] = Counter(catalog.loc[catalog.status == "rejected", "reason"])
    counts: dict[str, Any] = {
        "images": n,
        "analysed": sum(e - s for i, (s, e) in enumerate(ranges) if i not in done),
        "kept": int((catalog.status == "kept").sum()),
        "rejected": int((catalog.status == "rejected").sum()),
    }
    counts.update({f"rejected_{r}": int(reasons.get(r, 0)) for r in REASONS})
    return counts
