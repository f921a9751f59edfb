"""A small run store of generated nuclei with their masks, shared by the nuclei tests."""

from __future__ import annotations

import pytest
from distributed import Client

from pipeline.core.jobs import build_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.synth.nuclei import generate_nuclei

#: Narrow enough to train in seconds on a CPU, with every part of the seed's architecture.
TINY = {"widths": [8, 16, 32, 64], "bridge": 128}


@pytest.fixture(scope="module")
def nuclei_store(client: Client, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """10 generated 64 x 64 images and their label masks, ingested (4 images per chunk)."""
    root = tmp_path_factory.mktemp("nuclei")
    generate_nuclei(root / "data", count=10, size=64, seed=3)
    job = build_job(
        {
            "name": "nuclei",
            "store": str(root / "run"),
            "input": {"sources": [str(root / "data" / "images")], "chunk_mb": 0.017},
            "stages": [{"stage": "ingest_masks"}],
        }
    )
    run_job(job, client=client)  # type: ignore[arg-type]
    return RunStore(str(root / "run"))
