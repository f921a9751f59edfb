"""The runner: stages in order, skipped when complete, rerun when changed or forced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from distributed import Client
from pydantic import BaseModel, ConfigDict

from pipeline.cli import main
from pipeline.core.jobs import build_job, load_job, parse_job
from pipeline.core.manifest import load_manifest, save_manifest
from pipeline.core.registry import Registry, StageDef, Workflow
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.errors import InputError, JobSpecError, StageError
from tests.conftest import JOBS, make_folder, smooth_image, write_image

SPEC = """\
name: t
store: {store}
input:
  sources: [{src}]
  chunk_mb: 0.002
stages:
  - stage: report
    params: {{montage_images: 4}}
"""


def _job(tmp_path: Path, *overrides: str) -> object:
    text = SPEC.format(store=tmp_path / "run", src=tmp_path / "in")
    return parse_job(text, "t.yaml", overrides)


def test_run_records_every_stage_then_skips_when_complete(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 5)
    first = run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    assert first.ran == ["ingest", "report"]
    m = load_manifest(RunStore(str(tmp_path / "run")))
    assert {n: r.status for n, r in m.stages.items()} == {"ingest": "done", "report": "done"}
    assert m.stages["ingest"].counts["images"] == 5
    assert m.stages["ingest"].seconds is not None and m.stages["ingest"].started
    assert m.job is not None and m.job["name"] == "t"
    assert "numpy" in m.versions and "zarr" in m.versions
    second = run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    assert second.ran == [] and second.skipped == ["ingest", "report"]


def test_changed_parameters_rerun_only_that_stage(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 3)
    run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    again = run_job(_job(tmp_path, "report.montage_images=2"), client=client)  # type: ignore[arg-type]
    assert again.ran == ["report"] and again.skipped == ["ingest"]


def test_a_missing_output_reruns_the_stage(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 3)
    run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    (tmp_path / "run" / "report" / "index.html").unlink()
    again = run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    assert again.ran == ["report"]


def test_force_redoes_a_complete_stage(client: Client, tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 5)
    run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    forced = run_job(_job(tmp_path), client=client, force=["ingest"])  # type: ignore[arg-type]
    # Every later step reads what ingest wrote, so it runs again too.
    assert forced.ran == ["ingest", "report"]
    assert forced.counts["ingest"]["chunks_written"] == forced.counts["ingest"]["chunks"]
    with pytest.raises(JobSpecError, match="no step 'ingset'"):
        run_job(_job(tmp_path), client=client, force=["ingset"])  # type: ignore[arg-type]


def test_a_failing_stage_is_recorded_and_earlier_work_kept(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_folder(tmp_path / "in", 3)
    run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    # A new image of another size: the ingest's shape policy 'error' stops the stage (the
    # sources extend the collection, so `overwrite` does not start over: the new file alone
    # is checked against it).
    odd = smooth_image(np.random.default_rng(0), (9, 9, 3), np.uint8)
    write_image(tmp_path / "in" / "odd.png", odd)
    spec = tmp_path / "t.yaml"
    spec.write_text(SPEC.format(store=tmp_path / "run", src=tmp_path / "in"))
    with pytest.raises(StageError, match="differ in size from the collection's 24x20"):
        run_job(_job(tmp_path, "input.overwrite=true"), client=client)  # type: ignore[arg-type]
    m = load_manifest(RunStore(str(tmp_path / "run")))
    assert m.stages["ingest"].status == "failed"
    assert "differ in size" in (m.stages["ingest"].error or "")
    code = main(
        [
            "run",
            str(spec),
            "--set",
            "input.overwrite=true",
            "--scheduler",
            client.scheduler.address,
            "-q",
        ]
    )
    assert code == 2  # bad sources (mixed sizes without a policy): the user's to fix
    err = capsys.readouterr().err
    assert "stage ingest failed" in err and "manifest.json" in err


def test_preflight_stops_before_any_work(client: Client, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        run_job(_job(tmp_path), client=client)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("spec", sorted(JOBS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_job_spec_validates(spec: Path) -> None:
    job = load_job(spec)
    assert job.steps


def test_galaxy_survey_job_runs_on_generated_data(client: Client, tmp_path: Path) -> None:
    from pipeline.synth.galaxies import generate_galaxies

    data = tmp_path / "galaxies"
    generate_galaxies(data, count=40, seed=0, size=128)
    overrides = [
        f"store={tmp_path / 'run'}",
        f"input.sources=[{data / 'manifest.csv'}]",
        "preprocess.window=20",
        "preprocess.cutout_size=32",
        "reduce.n_components=5",
        "kmeans.k_range=[1, 5]",
        "dbscan.min_clusters=2",
        "dbscan.max_noise=0.5",
        "som.side=8",
        "som.sigma=3",
        "train_encoder.epochs=2",
        "train_encoder.batch_size=8",
        "kmeans_embeddings.k_range=[1, 5]",
        "probe.shots=[2, all]",
        "probe.repeats=2",
    ]
    job = load_job(JOBS / "galaxy_survey.yaml", overrides)
    summary = run_job(job, client=client)
    steps = ["ingest", "preprocess", "reduce", "kmeans", "dbscan", "agglomerative", "som"]
    learned = ["train_encoder", "embed", "kmeans_embeddings", "agglomerative_embeddings", "probe"]
    steps += learned
    assert summary.ran == [*steps, "report"]
    store = RunStore(str(tmp_path / "run"))
    catalog = read_table(store, "catalog")
    assert len(catalog) == 40 and set(catalog.status) <= {"kept", "rejected"}
    kept = catalog.index[catalog.status == "kept"].to_numpy()
    clusters = read_table(store, "clusters")
    assert clusters["image"].tolist() == kept.tolist()
    assert {"kmeans", "dbscan", "agglomerative", "som", "som_row", "som_col"} <= set(clusters)
    metrics = read_table(store, "cluster_metrics")
    methods = ["kmeans", "dbscan", "agglomerative", "som", *learned[2:4]]
    assert metrics["method"].tolist() == methods
    assert (metrics["label_column"] == "galaxy_class").all() and metrics["ari"].notna().all()
    assert metrics["space"].tolist()[-2:] == ["embeddings (128 features)"] * 2
    # Embeddings of the kept images only; the rejected ones are NaN rows.
    emb = store.open_array("embeddings", mode="r")[:]
    assert emb.shape == (40, 128)
    assert np.isfinite(emb[kept]).all() and np.isnan(np.delete(emb, kept, axis=0)).all()
    probe = read_table(store, "probe")
    assert set(probe["features"]) == {"embeddings", "reduced"}
    pngs = ("cutouts.png", "explained_variance.png", "elbow.png", "som_umatrix.png")
    for png in (*pngs, "training_loss.png"):
        assert store.exists(f"report/{png}"), png
    page = store.read_bytes("report/index.html").decode()
    assert "Linear probe" in page and "learned embeddings" in page
    assert store.exists("report/montage_kmeans.png")
    # The same job again: every step is complete and skipped.
    assert run_job(job, client=client).skipped == [*steps, "report"]
    # A changed reduction reruns it and every step after it, which read its output.
    changed = load_job(JOBS / "galaxy_survey.yaml", [*overrides, "reduce.n_components=4"])
    again = run_job(changed, client=client)
    assert again.ran == [*steps[2:], "report"]


class _ReadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str


_READER = Workflow(
    name="reader",
    summary="a stage whose input is a file outside the store",
    stages=(
        StageDef(
            "read_file",
            _ReadParams,
            "tests.core.fake_stage_impl:read_file",
            "reads one file",
            inputs="tests.core.fake_stage_impl:file_inputs",
        ),
    ),
)


def test_a_step_whose_inputs_changed_runs_again(client: Client, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("one")
    job = build_job(
        {
            "name": "t",
            "store": str(tmp_path / "run"),
            "stages": [{"stage": "read_file", "params": {"path": str(data)}}],
        },
        registry=Registry((_READER,)),
    )
    assert run_job(job, client=client).counts["read_file"] == {"bytes": 3}
    assert run_job(job, client=client).skipped == ["read_file"]
    record = load_manifest(RunStore(str(tmp_path / "run"))).stages["read_file"]
    assert record.inputs == f"3:{data.stat().st_mtime_ns}"
    data.write_text("three")  # the same step, the same parameters: other inputs
    assert run_job(job, client=client).counts["read_file"] == {"bytes": 5}
    assert run_job(job, client=client).skipped == ["read_file"]
    # A record from before the stage had a fingerprint runs once more.
    store = RunStore(str(tmp_path / "run"))
    manifest = load_manifest(store)
    manifest.stages["read_file"].inputs = None
    save_manifest(store, manifest)
    assert run_job(job, client=client).ran == ["read_file"]
    # Inputs that cannot be read count as changed: the stage runs and says what is wrong.
    data.unlink()
    with pytest.raises(StageError, match=r"input\.txt"):
        run_job(job, client=client)


class _EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    word: str = "hi"


_GROWING = Workflow(
    name="growing",
    summary="a file that grows, a model trained on it, the model applied",
    stages=(
        *_READER.stages,
        StageDef("train", _EchoParams, "tests.core.fake_stage_impl:run", "trains", growth="keep"),
        StageDef("apply", _EchoParams, "tests.core.fake_stage_impl:run", "applies"),
    ),
)


def test_a_training_step_keeps_its_model_when_only_the_input_grew(
    client: Client, tmp_path: Path
) -> None:
    data = tmp_path / "input.txt"
    data.write_text("one")
    spec = {
        "name": "t",
        "store": str(tmp_path / "run"),
        "stages": [
            {"stage": "read_file", "params": {"path": str(data)}},
            {"stage": "train"},
            {"stage": "apply"},
        ],
    }
    job = build_job(spec, registry=Registry((_GROWING,)))
    assert run_job(job, client=client).ran == ["read_file", "train", "apply"]
    data.write_text("one two")  # new input: the model stays, the steps after it apply it
    grown = run_job(job, client=client)
    assert grown.ran == ["read_file", "apply"] and grown.skipped == ["train"]
    runs = load_manifest(RunStore(str(tmp_path / "run"))).runs
    assert [r.ran for r in runs] == [["read_file", "train", "apply"], ["read_file", "apply"]]
    assert runs[-1].growth == {"read_file": "all", "train": "keep", "apply": "all"}
    # Forced, or with other parameters upstream of it, it trains again.
    assert run_job(job, client=client, force=["read_file"]).ran == ["read_file", "train", "apply"]
    spec["stages"][0]["params"]["path"] = str(tmp_path / "other.txt")
    (tmp_path / "other.txt").write_text("x")
    changed = build_job(spec, registry=Registry((_GROWING,)))
    assert run_job(changed, client=client).ran == ["read_file", "train", "apply"]
