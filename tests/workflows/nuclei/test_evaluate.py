"""evaluate_segmentation: every test image is scored for the network and the baseline with
the seed's pixel metrics and the object-level ones, and the network's nuclei are kept."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client

from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import StageError
from pipeline.imaging.nuclei import otsu_nuclei
from pipeline.workflows.nuclei.evaluate import score_image
from pipeline.workflows.nuclei.metrics import OBJECT_METRICS, PIXEL_METRICS
from tests.workflows.nuclei.conftest import TINY


def _run(client: Client, store: RunStore, split: list[float]) -> None:
    job = build_job(
        {
            "name": "evaluate",
            "store": store.url,
            "stages": [
                {
                    "name": "short",
                    "stage": "train_segmenter",
                    "params": {
                        "input_size": 48,
                        "batch_size": 4,
                        "epochs": 1,
                        "split": split,
                        **TINY,
                    },
                },
                {"stage": "evaluate_segmentation", "params": {"segmenter": "short"}},
            ],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]


def test_both_methods_are_scored_on_every_test_image(
    client: Client, nuclei_store: RunStore
) -> None:
    _run(client, nuclei_store, [0.5, 0.2, 0.3])
    split = read_table(nuclei_store, "short_split", schema="segmentation_split")
    test = sorted(split.loc[split["split"] == "test", "row"])
    assert len(test) == 3
    scores = read_table(nuclei_store, "segmentation_scores")
    assert sorted(set(scores["row"])) == test
    assert sorted(scores["method"].unique()) == ["network", "otsu"]
    assert len(scores) == 2 * len(test)
    images = nuclei_store.open_array("images", mode="r")
    masks = nuclei_store.open_array("masks", mode="r")
    # The baseline's row is exactly what the baseline and the metrics give on that image.
    row = scores[(scores["method"] == "otsu") & (scores["row"] == test[0])].iloc[0]
    expected = score_image(np.asarray(masks[test[0]]), otsu_nuclei(np.asarray(images[test[0]])))
    for k in (*PIXEL_METRICS, *OBJECT_METRICS):
        np.testing.assert_allclose(row[k], expected[k], equal_nan=True)
    predicted = np.asarray(nuclei_store.open_array("predicted_masks", mode="r")[:])
    train_rows = sorted(set(range(10)) - set(test))
    assert not predicted[train_rows].any()
    network = scores[(scores["method"] == "network") & (scores["row"] == test[0])].iloc[0]
    assert network["predicted_objects"] == len(np.unique(predicted[test[0]])) - 1
    summary = read_table(nuclei_store, "segmentation_summary").set_index("method")
    np.testing.assert_allclose(
        summary.loc["otsu", "f1"], scores.loc[scores["method"] == "otsu", "f1"].mean()
    )
    assert (summary["images"] == 3).all()


def test_a_split_without_test_images_is_refused(client: Client, nuclei_store: RunStore) -> None:
    with pytest.raises(StageError, match="no test image"):
        _run(client, nuclei_store, [0.8, 0.2, 0.0])
