"""The ``evaluate_segmentation`` stage: the trained network against the classical baseline on
the held-out test images.

For each test image (the ``train_segmenter`` step's split), on the workers (GPU ones if any,
the model loaded once per worker): the network's probability at ``threshold`` gives the mask,
the distance watershed (:func:`~pipeline.imaging.nuclei.split_touching`) its nuclei; the
baseline (:func:`~pipeline.imaging.nuclei.otsu_nuclei`) goes through the same watershed. Both
are scored against the truth at the pixel level (the seed's five metrics) and the object level
(:mod:`.metrics`). The network's instance labels are written as ``predicted_masks`` for the
report's gallery; the per-image scores and their means become tables.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.compute.dispatch import task_resources
from pipeline.compute.serving import worker_plugin
from pipeline.core.chunks import prepare_array
from pipeline.core.context import RunContext
from pipeline.core.progress import gather_with_progress
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.errors import ParameterError
from pipeline.imaging.nuclei import otsu_nuclei, split_touching
from pipeline.workflows.nuclei.checkpoint import resolve_segmenter
from pipeline.workflows.nuclei.infer import SegmenterPlugin, plugin_name, preflight
from pipeline.workflows.nuclei.metrics import (
    OBJECT_METRICS,
    PIXEL_METRICS,
    object_scores,
    pixel_scores,
)
from pipeline.workflows.nuclei.spec import (
    PREDICTED_MASKS,
    SCORES_TABLE,
    SUMMARY_TABLE,
    EvaluateParams,
    train_outputs,
)
from pipeline.workflows.nuclei.train import pair_arrays

__all__ = ["evaluate_rows", "run_evaluate_segmentation", "score_image"]

log = logging.getLogger(__name__)

_METRICS = (*PIXEL_METRICS, *OBJECT_METRICS)


def score_image(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pixel and object scores of one image's predicted ``labels`` against ``truth``."""
    return {**pixel_scores(truth, labels), **object_scores(truth, labels)}


def evaluate_rows(
    store_url: str,
    storage_options: Mapping[str, Any],
    images: str,
    masks: str,
    rows: Sequence[int],
    plugin: str,
    params: EvaluateParams,
) -> list[dict[str, Any]]:
    """One task: segment test ``rows`` with the network and the baseline, and score both.

    Writes the network's instance labels of each row into ``predicted_masks`` (one chunk per
    image) and returns one score row per (image, method).
    """
    model: SegmenterPlugin = worker_plugin(plugin, SegmenterPlugin)
    store = RunStore(store_url, storage_options)
    img = store.open_array(images, mode="r")
    msk = store.open_array(masks, mode="r")
    dst = store.open_array(PREDICTED_MASKS).with_config({"write_empty_chunks": True})
    out: list[dict[str, Any]] = []
    for r in rows:
        image = np.asarray(img[r])
        truth = np.asarray(msk[r])
        (prob,) = model.predict([image])
        network = split_touching(prob > params.threshold, h=params.h, min_size=params.min_size)
        dst[r] = network
        baseline = otsu_nuclei(
            image, sigma=params.baseline_sigma, h=params.h, min_size=params.min_size
        )
        for method, labels in (("network", network), ("otsu", baseline)):
            out.append({"row": int(r), "method": method, **score_image(truth, labels)})
    return out


def run_evaluate_segmentation(ctx: RunContext, params: EvaluateParams) -> dict[str, int | float]:
    """Score the network and the Otsu baseline on the test split of ``params.segmenter``.

    Returns
    -------
    dict
        ``images`` scored, and the network's and baseline's mean pixel F1 and DSB AP.

    Raises
    ------
    ParameterError
        If the split has no test image.
    """
    store, progress = ctx.store, ctx.progress
    client = ctx.require_client("evaluate_segmentation")
    seg = train_outputs(params.segmenter)
    split = read_table(store, seg.split, schema="segmentation_split")
    test = [int(r) for r in split.loc[split["split"] == "test", "row"]]
    if not test:
        raise ParameterError(
            f"evaluate_segmentation: the split of {params.segmenter!r} has no test image; give "
            "train_segmenter a test fraction (split: [0.6, 0.2, 0.2]) or more images"
        )
    pointer = store.read_json(seg.pointer) if store.exists(seg.pointer) else {}
    images, masks = (
        str(pointer.get("images", "images")),
        str(pointer.get("masks", "masks")),
    )
    _, shape, _ = pair_arrays(store, images, masks, "evaluate_segmentation")
    url, options = resolve_segmenter(store, None, params.segmenter)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    resources = task_resources(workers)
    ref, _ = client.submit(
        preflight, url, options, params.device, resources=resources, pure=False
    ).result()
    prepare_array(
        store,
        task="evaluate_segmentation",
        name=PREDICTED_MASKS,
        dims=[str(d) for d in store.open_dataset()[masks].dims],
        shape=shape[:3],
        chunks=(1, shape[1], shape[2]),
        dtype=np.uint32,
        config={"checkpoint": ref.digest, **params.model_dump(mode="json")},
        attrs={"description": "the network's nuclei on the test images (0 elsewhere)"},
        redo=True,
    )
    name = plugin_name(ref)
    client.register_plugin(SegmenterPlugin(ref, params.device, params.amp), name=name)
    per_task = max(1, -(-len(test) // (2 * max(1, len(workers)))))
    token = uuid.uuid4().hex[:8]
    try:
        futures = [
            client.submit(
                evaluate_rows,
                store.url,
                dict(store.storage_options),
                images,
                masks,
                test[i : i + per_task],
                name,
                params,
                resources=resources,
                pure=False,
                key=f"evaluate-{ref.short}-{i}-{token}",
            )
            for i in range(0, len(test), per_task)
        ]
        parts = gather_with_progress(client, futures, "evaluate_segmentation", progress)
    finally:
        client.unregister_worker_plugin(name)
    scores = pd.DataFrame([row for part in parts for row in part])
    ids = split.set_index("row")["image_id"]
    scores.insert(1, "image_id", [str(ids[r]) for r in scores["row"]])
    scores = scores.sort_values(["row", "method"], kind="stable").reset_index(drop=True)
    write_table(store, SCORES_TABLE, scores[["row", "image_id", "method", *_METRICS]])
    summary = scores.groupby("method", sort=True)[list(_METRICS)].mean().reset_index()
    summary.insert(1, "images", len(test))
    write_table(store, SUMMARY_TABLE, summary)
    by: dict[str, Any] = {str(r["method"]): r for r in summary.to_dict("records")}
    for method in ("network", "otsu"):
        log.info(
            "evaluate_segmentation: %s on %d test image(s): pixel F1 %.3f, Jaccard %.3f, "
            "object F1 %.3f, DSB AP %.3f",
            method,
            len(test),
            by[method]["f1"],
            by[method]["jaccard"],
            by[method]["object_f1"],
            by[method]["dsb_ap"],
        )
    return {
        "images": len(test),
        "network_f1": round(float(by["network"]["f1"]), 4),
        "otsu_f1": round(float(by["otsu"]["f1"]), 4),
        "network_dsb_ap": round(float(by["network"]["dsb_ap"]), 4),
        "otsu_dsb_ap": round(float(by["otsu"]["dsb_ap"]), 4),
    }
