"""segment and train_segmenter where the cluster has GPU workers: every inference task goes to
the worker started with ``--resources GPU=1`` (here it computes on CPU), which loads the model
once; and, where a CUDA device exists, CUDA (with AMP) gives the CPU's mask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed import Client

from pipeline.compute.checkpoints import CheckpointRef, digest
from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.workflows.nuclei.checkpoint import (
    load_segmenter,
    resolve_segmenter,
    segmenter_from_checkpoint,
)
from pipeline.workflows.nuclei.infer import predict_image
from pipeline.workflows.nuclei.segment import run_segment
from pipeline.workflows.nuclei.spec import SegmentParams
from tests.workflows.embed.test_dispatch_cluster import _loopback_cluster
from tests.workflows.nuclei.test_segment import trained  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One worker started with ``--resources GPU=1`` and one without."""
    tmp = tmp_path_factory.mktemp("nuclei-gpu-cluster")
    with _loopback_cluster(
        tmp, [["--resources", "GPU=1", "--name", "gpu"], ["--name", "cpu"]]
    ) as c:
        yield c


def _model(store: RunStore) -> tuple[torch.nn.Module, object]:
    url, options = resolve_segmenter(store, None)
    ckpt = load_segmenter(CheckpointRef(url, digest(Path(url).read_bytes()), options))
    return segmenter_from_checkpoint(ckpt).eval(), ckpt.config


def test_inference_runs_on_the_gpu_worker_which_loads_the_model_once(
    gpu_cluster: Client,
    trained: RunStore,  # noqa: F811
) -> None:
    workers = gpu_cluster.scheduler_info(n_workers=-1)["workers"]
    gpu = next(a for a, w in workers.items() if w["name"] == "gpu")
    counts = run_segment(
        RunContext(trained, gpu_cluster, step="segment_gpu", forced=True),
        SegmentParams(tile=32, tiles_per_task=3),
    )
    record = trained.read_json("models/segment_gpu.json")
    assert counts["tiles"] == 40 and record["inferred"] == 40  # 10 images x 4 tiles
    assert set(record["loads"]) == {gpu} and record["loads"][gpu] == 1  # 14 tasks, one load
    plugins = gpu_cluster.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert not any(p.startswith("pipeline-segmenter") for ps in plugins.values() for p in ps)
    model, config = _model(trained)
    images = trained.open_array("images", mode="r")
    mask = trained.open_array("segment_gpu_mask", mode="r")
    for i in (0, 9):
        whole = predict_image(model, np.asarray(images[i]), config)  # type: ignore[arg-type]
        clear = np.abs(whole - 0.5) > 1e-4
        np.testing.assert_array_equal(np.asarray(mask[i])[clear] > 0, (whole > 0.5)[clear])


@pytest.mark.gpu
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_gives_the_cpu_mask(trained: RunStore, amp: bool) -> None:  # noqa: F811
    model, config = _model(trained)
    image = np.asarray(trained.open_array("images", mode="r")[0])
    cpu = predict_image(model, image, config)  # type: ignore[arg-type]
    cuda = predict_image(model.to("cuda"), image, config, "cuda", amp)  # type: ignore[arg-type]
    np.testing.assert_allclose(cuda, cpu, atol=2e-2 if amp else 1e-4)
    clear = np.abs(cpu - 0.5) > 0.05
    assert ((cuda > 0.5) == (cpu > 0.5))[clear].all()
