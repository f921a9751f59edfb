"""The ``embed`` stage on real multi-process clusters on loopback, started as a user would:
``dask scheduler --scheduler-file`` and ``dask worker --nthreads 1 [--resources GPU=1]``.

Here the "GPU" worker has no GPU (it computes on CPU): what is under test is the dispatch —
every inference task goes to the resourced worker, which loads the model once — and that the
result does not depend on where it ran.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed import Client

from pipeline.core.context import RunContext
from pipeline.core.store import RunStore
from pipeline.workflows.embed.checkpoint import (
    CheckpointRef,
    encoder_from_checkpoint,
    load_checkpoint,
)
from pipeline.workflows.embed.infer import EMBED_RECORD, EMBEDDINGS, EmbedParams, run_embed
from pipeline.workflows.embed.inputs import prepare_batch
from pipeline.workflows.embed.worker import EncoderPlugin

pytestmark = pytest.mark.slow

_DASK = [sys.executable, "-m", "dask"]


@contextlib.contextmanager
def _loopback_cluster(tmp: Path, worker_args: list[list[str]]) -> Iterator[Client]:
    """A scheduler and one ``dask worker`` process per entry of ``worker_args``."""
    tmp.mkdir(parents=True, exist_ok=True)
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    common = ["--host", "127.0.0.1", "--scheduler-file", str(sched_file)]
    procs = [
        subprocess.Popen(
            [*_DASK, "scheduler", *common, "--port", "0", "--dashboard-address", ":0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "scheduler.log", "w"),  # noqa: SIM115  (closed with the process)
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the scheduler did not start")
            time.sleep(0.1)
        for i, extra in enumerate(worker_args):
            procs.append(
                subprocess.Popen(
                    [*_DASK, "worker", *common, "--nthreads", "1", "--no-dashboard", *extra],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp / f"worker{i}.log", "w"),  # noqa: SIM115
                )
            )
        with Client(scheduler_file=str(sched_file), timeout=60) as client:
            client.wait_for_workers(len(worker_args), timeout=120)
            yield client
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One worker started with ``--resources GPU=1`` and one without."""
    tmp = tmp_path_factory.mktemp("gpu-cluster")
    with _loopback_cluster(
        tmp, [["--resources", "GPU=1", "--name", "gpu"], ["--name", "cpu"]]
    ) as c:
        yield c


@pytest.fixture(scope="module")
def cpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Two workers, neither with a GPU resource."""
    tmp = tmp_path_factory.mktemp("cpu-cluster")
    with _loopback_cluster(tmp, [["--name", "cpu0"], ["--name", "cpu1"]]) as c:
        yield c


def _by_name(client: Client) -> dict[str, str]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {str(w["name"]): addr for addr, w in workers.items()}


def _direct(store: RunStore) -> np.ndarray:
    """The embeddings computed in this process, without Dask."""
    pointer = store.read_json("models/encoder.json")
    ref = CheckpointRef(store.path("models", pointer["checkpoint"]), pointer["digest"])
    ckpt = load_checkpoint(ref)
    encoder = encoder_from_checkpoint(ckpt).eval()
    images = store.open_array("cutouts", mode="r")[:]
    with torch.inference_mode():
        return encoder(prepare_batch(images, ckpt.config)).numpy()


PARAMS = EmbedParams(batch_size=4, task_rows=8)  # 5 tasks of 8 rows, 2 forward passes each


def test_every_task_runs_on_the_gpu_worker_which_loads_the_model_once(
    gpu_cluster: Client, cutout_store: RunStore
) -> None:
    names = _by_name(gpu_cluster)
    counts = run_embed(RunContext(cutout_store, gpu_cluster), PARAMS)
    record = cutout_store.read_json(EMBED_RECORD)
    assert set(record["workers"]) == {names["gpu"]}  # nothing ran on the worker without GPU
    gpu = record["workers"][names["gpu"]]
    assert gpu["tasks"] == counts["tasks"] == 5
    assert gpu["loads"] == 1  # one load for 5 tasks and 10 batches
    assert gpu["rows"] == 36
    # The plugin is gone once the stage ends: the worker holds no model between stages.
    plugins = gpu_cluster.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert not any(p.startswith("pipeline-encoder") for ps in plugins.values() for p in ps)
    # The stage's embeddings equal a direct computation in this process.
    got = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    np.testing.assert_allclose(got, _direct(cutout_store), rtol=1e-5, atol=1e-5)


def test_embeddings_are_identical_between_runs_and_between_clusters(
    gpu_cluster: Client, cpu_cluster: Client, cutout_store: RunStore
) -> None:
    run_embed(RunContext(cutout_store, gpu_cluster), PARAMS)
    first = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    run_embed(RunContext(cutout_store, gpu_cluster), PARAMS)
    again = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    run_embed(RunContext(cutout_store, cpu_cluster), PARAMS)
    on_cpu = cutout_store.open_array(EMBEDDINGS, mode="r")[:]
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, on_cpu)


def test_without_a_gpu_worker_every_worker_embeds_on_cpu(
    cpu_cluster: Client, cutout_store: RunStore
) -> None:
    names = _by_name(cpu_cluster)
    counts = run_embed(RunContext(cutout_store, cpu_cluster), PARAMS)
    record = cutout_store.read_json(EMBED_RECORD)
    assert set(record["workers"]) == {names["cpu0"], names["cpu1"]}
    assert counts["gpu_tasks"] == 0
    for w in record["workers"].values():
        assert w["device"] == "cpu"
        assert w["loads"] == 1
    assert sum(w["rows"] for w in record["workers"].values()) == 36


def test_the_plugin_travels_as_its_reference_only() -> None:
    plugin = EncoderPlugin(CheckpointRef("/x/encoder-0.pt", "0" * 64), "cpu", True)
    plugin.loads = 3
    clone = pickle.loads(pickle.dumps(plugin))
    assert clone.ref == plugin.ref and clone.loads == 0 and clone.device_name == ""
