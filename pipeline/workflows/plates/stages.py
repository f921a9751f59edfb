"""The plate stages: spheroid segmentation with per-image QC, morphology features, profiles.

``segment_spheroids`` is one Dask task per chunk of ``images``: a task reads its own images
from the store, segments each (:mod:`~pipeline.workflows.plates.segment`), measures it while
image and mask are in memory (:mod:`~pipeline.workflows.plates.measure`, in px), writes its
chunk of ``spheroid_masks`` and returns its QC and measure rows, which the chunk loop keeps in
the chunk's marker (:mod:`pipeline.core.chunks`): resumable, no pixels through the client.
Measuring in the same pass reads every image once instead of twice (measured: the second
read of a 1024 px image from the store cost about as much as a tenth of its segmentation).
``spheroid_features`` then turns the measures into the features table (physical units, plate
metadata, QC verdict) and ``spheroid_profiles`` aggregates them: table operations.
"""

from __future__ import annotations

import logging
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
from pipeline.core.tables import read_table, write_table
from pipeline.errors import StoreError
from pipeline.workflows.plates.measure import (
    FEATURE_COLUMNS,
    measure_spheroid,
    scale_to_micrometres,
)
from pipeline.workflows.plates.profiles import build_profiles, normalize_profiles
from pipeline.workflows.plates.segment import flag_out_of_focus, segment_spheroid
from pipeline.workflows.plates.segment_spec import FeatureParams, SegmentParams
from pipeline.workflows.plates.spec import (
    FEATURES_TABLE,
    MASK_DIMS,
    MASKS,
    METADATA,
    PROFILES_NORMALIZED_TABLE,
    PROFILES_TABLE,
    QC_FLAGS,
    QC_TABLE,
    ProfileParams,
)

__all__ = [
    "segment_chunk",
    "segment_spheroids",
    "spheroid_features",
    "spheroid_profiles",
]

log = logging.getLogger(__name__)

SEGMENT_TASK = "segment_spheroids"

#: Images per task (and per chunk of ``spheroid_masks``) at most. Segmenting costs far more
#: per byte than ingesting, so a task takes fewer images than an ingest chunk holds (a few
#: seconds of work) and the cluster's workers share even a single plate. A constant, so the
#: store's layout does not depend on the cluster.
TASK_IMAGES = 32

#: The flags a chunk task decides (``out_of_focus`` needs the whole plate's focus scores).
_CHUNK_FLAGS = ("empty_well", "touches_edge", "multiple_bodies")

#: Per-image coordinates copied into the QC table, when the collection has them.
_QC_COORDS = ("plate", "well", "field", "day")


# -- per-chunk functions (module level, pure: they run on workers) ---------------------------


def segment_chunk(
    store: RunStore, index: int, start: int, stop: int, params: SegmentParams
) -> dict[str, list[dict[str, Any]]]:
    """Segment and measure images ``[start, stop)``, write their chunk of masks, return their
    QC and measure rows (measures in px).

    An image ingest marked invalid gets an empty mask, no flags and NaN measures (its
    ``valid`` is false).
    """
    images = np.asarray(store.open_array("images", mode="r")[start:stop])
    valid = np.asarray(store.open_array("valid", mode="r")[start:stop], dtype=bool)
    block = np.zeros((stop - start, *images.shape[1:3]), dtype=np.uint8)
    nan = dict.fromkeys(FEATURE_COLUMNS, float("nan"))
    rows = []
    for i in range(stop - start):
        if not valid[i]:
            rows.append({"focus_score": float("nan"), **dict.fromkeys(_CHUNK_FLAGS, False), **nan})
            continue
        result = segment_spheroid(images[i], params)
        block[i] = result.labels
        measures = measure_spheroid(images[i], result.labels)
        rows.append(
            {
                "focus_score": float(result.focus_score),
                "empty_well": bool(result.empty_well),
                "touches_edge": bool(result.touches_edge),
                "multiple_bodies": bool(result.multiple_bodies),
                **{k: float(v) for k, v in measures.items()},
            }
        )
    write_block(store, MASKS, start, block)
    return {"rows": rows}


# -- stages --------------------------------------------------------------------------------------


def _collection(store: RunStore) -> tuple[Any, int, int]:
    """The dataset, its number of images and the images per task."""
    if not store.has_array("images"):
        raise StoreError(
            f"{store.url} has no image collection; ingest the plates first (the job's "
            "`ingest_plates` step, or `input`)"
        )
    ds = store.open_dataset()
    n = int(ds.sizes["image"])
    return ds, n, min(int(ds["images"].encoding["chunks"][0]), TASK_IMAGES)


def _coords(ds: Any, names: Sequence[str]) -> pd.DataFrame:
    """The image coordinates ``names`` the collection has, one row per image."""
    data = {"image_id": [str(v) for v in ds["image_id"].values]}
    for name in names:
        if name in ds.coords:
            data[name] = ds[name].values
    return pd.DataFrame(data)


def segment_spheroids(ctx: RunContext, params: SegmentParams) -> dict[str, int]:
    """Segment the spheroid (and its debris) in every image and check each image's quality.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds ``images`` and receives ``spheroid_masks (image, y, x)`` uint8
        (0 background, 1 spheroid, 2 debris) and ``tables/spheroid_qc.parquet``.
    params : SegmentParams

    Returns
    -------
    dict
        ``images``, ``segmented`` (by this call: a collection grown by a plate segments only
        the new plate's images), ``ok``, ``invalid`` and one count per QC flag.

    Raises
    ------
    StoreError
        If the store has no ingested collection.
    """
    store = ctx.store
    ds, n, per_chunk = _collection(store)
    height, width = (int(v) for v in ds["images"].shape[1:3])
    bounds = chunk_bounds(n, per_chunk)
    # A collection grown by new plates keeps its segmented chunks: only new images are done.
    prepare_array(
        store,
        task=SEGMENT_TASK,
        name=MASKS,
        dims=MASK_DIMS,
        shape=(n, height, width),
        chunks=(per_chunk, height, width),
        dtype=np.uint8,
        config=params.model_dump(mode="json"),
        attrs={"description": "spheroid labels: 0 background, 1 spheroid, 2 debris"},
        redo=ctx.forced,
        grow=True,
    )
    done = store.done_markers(SEGMENT_TASK)
    ranges = chunk_ranges(store, SEGMENT_TASK, n, per_chunk)
    args = {i: (s, e, params) for i, (s, e) in enumerate(ranges)}
    run_chunks(store, ctx.client, SEGMENT_TASK, segment_chunk, args, progress=ctx.progress)
    rows = pd.DataFrame(collect_rows(store, SEGMENT_TASK, len(bounds)))
    qc = pd.concat([_coords(ds, _QC_COORDS), rows.drop(columns=list(FEATURE_COLUMNS))], axis=1)
    qc.insert(1, "valid", ds["valid"].values.astype(bool))
    qc["out_of_focus"] = _out_of_focus(qc, params)
    qc["ok"] = qc["valid"] & ~qc[list(QC_FLAGS)].any(axis=1)
    order = ["image_id", *(c for c in _QC_COORDS if c in qc), "valid", "focus_score"]
    qc = qc[[*order, *QC_FLAGS, "ok"]]
    write_table(store, QC_TABLE, qc)
    counts = {
        "images": n,
        "segmented": sum(e - s for i, (s, e) in enumerate(ranges) if i not in done),
        "ok": int(qc["ok"].sum()),
        "invalid": int((~qc["valid"]).sum()),
    }
    counts.update({f: int(qc[f].sum()) for f in QC_FLAGS})
    return counts


def _out_of_focus(qc: pd.DataFrame, params: SegmentParams) -> np.ndarray:
    """Out of focus against the image's own plate (its imager, its day's settings): only
    images with a spheroid have a focus score to compare."""
    flags = np.zeros(len(qc), dtype=bool)
    scored = qc["valid"] & ~qc["empty_well"] & np.isfinite(qc["focus_score"])
    groups = qc["plate"] if "plate" in qc else pd.Series("", index=qc.index)
    for _, part in qc[scored].groupby(groups[scored], sort=False):
        flags[part.index.to_numpy()] = flag_out_of_focus(part["focus_score"].to_numpy(), params)
    return flags


def spheroid_features(ctx: RunContext, params: FeatureParams) -> dict[str, int]:
    """CellProfiler-named morphology and intensity features of every image's spheroid.

    The measures were taken by ``segment_spheroids`` (in px, kept in its chunk markers);
    this stage puts them in physical units and joins the plate metadata and QC verdict.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds ``spheroid_masks`` and ``tables/spheroid_qc`` (and the
        segmentation's markers); it receives ``tables/spheroid_features.parquet``.
    params : FeatureParams

    Returns
    -------
    dict
        ``images`` and ``measured`` (images with a spheroid).

    Raises
    ------
    StoreError
        If the segmentation is missing or incomplete (run ``segment_spheroids`` first).
    """
    store = ctx.store
    ds, n, per_chunk = _collection(store)
    bounds = chunk_bounds(n, per_chunk)
    done = store.done_markers(SEGMENT_TASK)
    if MASKS not in ds or not store.exists(f"tables/{QC_TABLE}.parquet") or len(done) < len(bounds):
        raise StoreError(
            f"{store.url} has no complete {MASKS}: put a segment_spheroids step before "
            "spheroid_features"
        )
    rows = pd.DataFrame(collect_rows(store, SEGMENT_TASK, len(bounds)))
    measured = rows[list(FEATURE_COLUMNS)].copy()
    if params.pixel_size_um is not None:
        scale_to_micrometres(measured, params.pixel_size_um)
    table = pd.concat([_metadata(ds), _qc_columns(read_table(store, QC_TABLE)), measured], axis=1)
    write_table(store, FEATURES_TABLE, table)
    return {"images": n, "measured": int(measured["AreaShape_Area"].notna().sum())}


def _metadata(ds: Any) -> pd.DataFrame:
    """``Metadata_ImageID``, the plate coordinates as pycytominer metadata, and the field."""
    coords = _coords(ds, [*METADATA, "field"])
    renamed = {c: m for c, m in METADATA.items() if c in coords}
    renamed.update({"image_id": "Metadata_ImageID", "field": "Metadata_Field"})
    return coords.rename(columns=renamed)


def _qc_columns(qc: pd.DataFrame) -> pd.DataFrame:
    flags = qc[list(QC_FLAGS)]
    return pd.DataFrame(
        {
            "Metadata_Valid": qc["valid"].to_numpy(),
            "Metadata_QCOk": qc["ok"].to_numpy(),
            "Metadata_QCFlags": [
                ",".join(f for f, on in zip(QC_FLAGS, row, strict=True) if on)
                if valid
                else "invalid"
                for row, valid in zip(flags.to_numpy(), qc["valid"], strict=True)
            ],
        }
    )


def spheroid_profiles(ctx: RunContext, params: ProfileParams) -> dict[str, int]:
    """Per plate, well and day profiles, and their normalisation against untreated wells.

    Writes ``tables/spheroid_profiles.parquet`` and
    ``tables/spheroid_profiles_normalized.parquet`` (see
    :mod:`~pipeline.workflows.plates.profiles`).

    Returns
    -------
    dict
        ``profiles`` (rows), ``wells``, ``plates``.
    """
    store = ctx.store
    if not store.exists(f"tables/{FEATURES_TABLE}.parquet"):
        raise StoreError(
            f"{store.url} has no {FEATURES_TABLE} table: put a spheroid_features step before "
            "spheroid_profiles"
        )
    features = read_table(store, FEATURES_TABLE)
    columns = [c for c in FEATURE_COLUMNS if c in features]
    profiles = build_profiles(features, columns, params)
    write_table(store, PROFILES_TABLE, profiles)
    write_table(
        store, PROFILES_NORMALIZED_TABLE, normalize_profiles(profiles, params.control_group)
    )
    wells = profiles[["Metadata_Plate", "Metadata_Well"]].drop_duplicates()
    return {
        "profiles": len(profiles),
        "wells": len(wells),
        "plates": int(wells["Metadata_Plate"].nunique()),
    }
