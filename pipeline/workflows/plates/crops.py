"""Spheroid crops: a square of fixed physical size centred on each image's spheroid.

The learned representation (``train_encoder`` / ``embed`` on ``spheroid_crops``) should see
the spheroid, not the well around it: the meniscus shadow and the well's position in the
field differ from image to image and say nothing about the drug. Centring on the mask's
centroid removes the position; a fixed physical side (not one fitted to the spheroid) keeps
the size, which is the main effect of a drug. One Dask task per chunk of ``images`` reads
its images from the store and writes its chunk of crops; the centres come from the
features table (``Location_Center_X/Y``), so no mask is read again.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from skimage.transform import resize
from skimage.util import img_as_float

from pipeline.core.chunks import chunk_ranges, prepare_array, run_chunks, write_block
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import ParameterError, StoreError
from pipeline.workflows.plates.spec import (
    CROP_DIMS,
    CROPS,
    CROPS_TABLE,
    FEATURES_TABLE,
    PROBE_GROUPS,
    CropParams,
)

__all__ = ["crop_chunk", "crop_spheroid", "spheroid_crops"]

log = logging.getLogger(__name__)

CROP_TASK = "spheroid_crops"

#: Images per task and per chunk of ``spheroid_crops`` at most (as the segmentation's).
TASK_IMAGES = 32


def crop_spheroid(
    image: np.ndarray, centre: tuple[float, float], side_px: float, size: int
) -> np.ndarray:
    """A square crop of ``image`` centred on ``centre``, resized to ``size x size``.

    Parameters
    ----------
    image : numpy.ndarray, shape (h, w)
        A grayscale image, any real dtype (integers are scaled to [0, 1] by their range).
    centre : (float, float)
        Centre ``(x, y)`` in px (column, row); NaN takes the image centre.
    side_px : float
        Side of the square in px of ``image`` (rounded to whole px, at least 1).
    size : int
        Side of the output in px.

    Returns
    -------
    numpy.ndarray of float32, shape (size, size)
        The crop, antialiased when shrunk. Where the square leaves the image it is filled
        with the image's median border value (the background), not mirrored: a mirror
        would show a second, fake spheroid.
    """
    if image.ndim != 2:
        raise ParameterError(
            f"crop_spheroid takes a 2-D grayscale image, got shape {image.shape}; "
            "convert multi-channel images to one channel first"
        )
    h, w = image.shape
    x, y = centre
    if not (math.isfinite(x) and math.isfinite(y)):
        x, y = (w - 1) / 2.0, (h - 1) / 2.0
    side = max(1, round(side_px))
    top = round(y - (side - 1) / 2.0)
    left = round(x - (side - 1) / 2.0)
    data = img_as_float(image)
    border = np.concatenate([data[0], data[-1], data[1:-1, 0], data[1:-1, -1]])
    box = np.full((side, side), float(np.median(border)), dtype=np.float64)
    r0, r1 = max(top, 0), min(top + side, h)
    c0, c1 = max(left, 0), min(left + side, w)
    if r0 < r1 and c0 < c1:
        box[r0 - top : r1 - top, c0 - left : c1 - left] = data[r0:r1, c0:c1]
    if side == size:
        return box.astype(np.float32)
    out = resize(box, (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
    return np.asarray(out, dtype=np.float32)


def crop_chunk(
    store: RunStore,
    index: int,
    start: int,
    stop: int,
    centres: list[tuple[float, float]],
    side_px: float,
    size: int,
) -> dict[str, Any]:
    """Crop images ``[start, stop)`` around ``centres`` and write their chunk of crops."""
    images = np.asarray(store.open_array("images", mode="r")[start:stop])
    if images.ndim == 4:
        images = images.mean(axis=-1) if images.shape[-1] > 1 else images[..., 0]
    block = np.stack(
        [crop_spheroid(images[i], centres[i], side_px, size) for i in range(stop - start)]
    )
    write_block(store, CROPS, start, block)
    return {}


def crop_table(features: pd.DataFrame) -> pd.DataFrame:
    """The ``spheroid_crops`` table: one row per image, what to train on and the probe's
    labels.

    Parameters
    ----------
    features : DataFrame
        ``tables/spheroid_features`` (one row per image, in image order).

    Returns
    -------
    DataFrame
        ``image`` (position), ``image_id``, ``plate``, ``well``, ``well_key`` (``plate/well``:
        the unit a split keeps together), ``day``, ``field``, ``group``, ``centre_x`` and
        ``centre_y`` (px; NaN: no spheroid found, the image centre was used), ``ok`` (passed
        QC and has a spheroid: the rows to train on, embed and aggregate) and
        ``probe_group`` (the thesis' three groups, missing for the others).
    """

    def column(name: str, default: object) -> pd.Series:
        if name in features:
            return features[name]
        return pd.Series([default] * len(features), index=features.index)

    plate = column("Metadata_Plate", "").astype(str)
    well = column("Metadata_Well", "").astype(str)
    group = column("Metadata_Group", "").astype(str)
    cx = features["Location_Center_X"].astype(float)
    cy = features["Location_Center_Y"].astype(float)
    ok = features["Metadata_QCOk"].astype(bool) & cx.notna() & cy.notna()
    probe = group.where(group.isin(PROBE_GROUPS) & ok, None)
    return pd.DataFrame(
        {
            "image": np.arange(len(features), dtype=np.int64),
            "image_id": features["Metadata_ImageID"].astype(str).to_numpy(),
            "plate": plate.to_numpy(),
            "well": well.to_numpy(),
            "well_key": (plate + "/" + well).to_numpy(),
            "day": column("Metadata_Day", -1).astype(np.int64).to_numpy(),
            "field": column("Metadata_Field", 1).astype(np.int64).to_numpy(),
            "group": group.to_numpy(),
            "centre_x": cx.to_numpy(),
            "centre_y": cy.to_numpy(),
            "ok": ok.to_numpy(),
            "probe_group": probe.to_numpy(dtype=object),
        }
    )


def spheroid_crops(ctx: RunContext, params: CropParams) -> dict[str, int]:
    """Crop every image around its spheroid at a fixed physical size.

    Parameters
    ----------
    ctx : RunContext
        ``ctx.store`` holds ``images`` and ``tables/spheroid_features``; it receives
        ``spheroid_crops (image, crop_y, crop_x)`` float32 in [0, 1] and
        ``tables/spheroid_crops.parquet`` (:func:`crop_table`).
    params : CropParams

    Returns
    -------
    dict
        ``images``, ``cropped`` (by this call: a grown collection crops only its new
        images), ``ok`` (crops to train on) and ``side_px``.

    Raises
    ------
    StoreError
        If the store has no features table (run ``spheroid_features`` first) or it does not
        describe the collection's images.
    """
    store = ctx.store
    if not store.has_array("images") or not store.exists(f"tables/{FEATURES_TABLE}.parquet"):
        raise StoreError(
            f"{store.url} has no images or no {FEATURES_TABLE} table: put segment_spheroids "
            "and spheroid_features steps before spheroid_crops"
        )
    ds = store.open_dataset()
    n = int(ds.sizes["image"])
    height, width = (int(v) for v in ds["images"].shape[1:3])
    features = read_table(store, FEATURES_TABLE)
    if len(features) != n:
        raise StoreError(
            f"{FEATURES_TABLE} has {len(features)} rows but the collection has {n} images: "
            "rerun spheroid_features (the collection changed since)"
        )
    side_px = params.side_px(height, width)
    per_chunk = min(int(ds["images"].encoding["chunks"][0]), TASK_IMAGES)
    prepare_array(
        store,
        task=CROP_TASK,
        name=CROPS,
        dims=CROP_DIMS,
        shape=(n, params.size, params.size),
        chunks=(per_chunk, params.size, params.size),
        dtype=np.float32,
        config={**params.model_dump(mode="json"), "side_px": side_px},
        attrs={
            "description": "spheroid crops, centred on the mask's centroid, in [0, 1]",
            "side_px": side_px,
        },
        redo=ctx.forced,
        grow=True,
    )
    done = store.done_markers(CROP_TASK)
    table = crop_table(features)
    centres = list(zip(table["centre_x"].tolist(), table["centre_y"].tolist(), strict=True))
    ranges = chunk_ranges(store, CROP_TASK, n, per_chunk)
    args = {i: (s, e, centres[s:e], side_px, params.size) for i, (s, e) in enumerate(ranges)}
    run_chunks(store, ctx.client, CROP_TASK, crop_chunk, args, progress=ctx.progress)
    write_table(store, CROPS_TABLE, table)
    return {
        "images": n,
        "cropped": sum(e - s for i, (s, e) in enumerate(ranges) if i not in done),
        "ok": int(table["ok"].sum()),
        "side_px": round(side_px),
    }
