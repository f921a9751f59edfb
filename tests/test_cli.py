"""The command line: what a user sees from ingest, status, report and --help."""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import Client

from pipeline.cli import main
from tests.conftest import make_folder


def test_ingest_prints_a_summary_and_status_lists_quarantine(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_folder(tmp_path / "in", 4)
    (tmp_path / "in" / "broken.png").write_text("nope")
    store = str(tmp_path / "run")
    code = main(
        [
            "ingest",
            str(tmp_path / "in"),
            "--store",
            store,
            "--scheduler",
            client.scheduler.address,
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Ingested 4 images (24x20x3 uint8)" in out and "1 quarantined" in out

    assert main(["status", store]) == 0
    out = capsys.readouterr().out
    assert "ingest" in out and "done" in out and "images 4" in out
    assert "Quarantined: 1" in out and "broken.png: not an image" in out


def test_report_command_writes_html_with_sections_and_montage(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_folder(tmp_path / "in", 6)
    store = tmp_path / "run"
    main(
        [
            "ingest",
            str(tmp_path / "in"),
            "--store",
            str(store),
            "--scheduler",
            client.scheduler.address,
            "-q",
        ]
    )
    assert main(["report", str(store), "--montage-images", "4"]) == 0
    assert "report/index.html" in capsys.readouterr().out
    html = (store / "report" / "index.html").read_text()
    for section in ("Stages", "Collection", "Quarantine", "Sample of images", "Versions"):
        assert f"<h2>{section}</h2>" in html
    assert "montage.png" in html
    png = (store / "report" / "montage.png").read_bytes()
    assert png.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["status", "{tmp}/nothing"], "not a run store"),
        (["report", "{tmp}/nothing"], "not a run store"),
        (["ingest", "{tmp}/missing", "--store", "{tmp}/run"], "does not exist"),
        (
            ["ingest", "{tmp}", "--store", "{tmp}/run", "--scheduler", "localhost:1"],
            "must start with tcp:// or tls://",
        ),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert fragment in capsys.readouterr().err


def test_train_encoder_trains_then_resumes_or_skips(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.workflows.embed.conftest import make_store, textures

    store = make_store(tmp_path / "run", textures(12, 64, seed=0))
    argv = ["train-encoder", store.url, "--arch", "resnet_small", "--input-size", "64"]
    argv += ["--epochs", "2", "--batch-size", "6", "--set", "train_encoder.augment.rot90=false"]
    argv += ["--scheduler", client.scheduler.address, "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train_encoder: done" in out and "epochs 2" in out
    assert "Encoder: " in out and "after epoch 2" in out
    assert (tmp_path / "run" / "models" / "training_loss.csv").read_text().count("\n") == 3
    assert main(argv) == 0  # the same configuration again: complete, skipped
    assert "already complete, skipped" in capsys.readouterr().out
    bad = [*argv, "--set", "train_encoder.augment.rot=false"]
    assert main(bad) == 2
    assert "augment.rot: Extra inputs are not permitted" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    ["ingest", "run", "validate", "status", "report", "synth", "train-encoder", "stages"],
)
def test_every_subcommand_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: pipeline" in capsys.readouterr().out


def test_stages_lists_every_stage_and_one_stage_s_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    for stage in ("ingest", "preprocess", "reduce", "kmeans", "train_encoder", "embed", "cox"):
        assert f"  {stage} " in out
    assert main(["stages", "kmeans"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kmeans (features): k-means")
    assert "  k_range (default (1, 10))" in out and "  input (default 'reduced')" in out
    assert main(["stages", "kmean"]) == 2
    assert "no stage 'kmean' (did you mean 'kmeans'?)" in capsys.readouterr().err


def test_synth_plate_screen_layout_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    out = tmp_path / "plate"
    argv = ["synth", "plate", str(out), "--size", "64", "--fields", "1", "1", "--days", "10"]
    argv += ["--combinations", "3", "--concentrations", "0.03", "0.1", "0.3", "1"]
    argv += ["--readout-fraction", "0.25"]
    assert main(argv) == 0
    assert "viability.csv" in capsys.readouterr().out
    layout = pd.read_csv(out / "plate_map.csv")
    screening = layout[layout["group"] == "screening"]
    conditions = set(zip(screening["treatment"], screening["concentration"], strict=True))
    drugs = sorted({d for d, _ in conditions})
    assert len(conditions) == 12 and len(drugs) == 3
    assert conditions == {(d, c) for d in drugs for c in (0.03, 0.1, 0.3, 1.0)}
    # The first three combinations of the default screen, each dose in equal replicates.
    from pipeline.synth import PlateSynthParams

    assert set(drugs) == set(PlateSynthParams().screening_drugs[:3])
    assert set(screening.groupby(["treatment", "concentration"]).size()) == {2}
    # The 6 screening wells left over are untreated: 18 untreated and 42 treated inner
    # wells, a quarter of each read out (round half to even: 4 and 10).
    readout = pd.read_csv(out / "viability.csv").merge(layout, on=["plate", "well"])
    assert (readout["group"] == "untreated").sum() == 4 and len(readout) == 14


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["--combinations", "0"], "argument --combinations: expected an integer from 1 to 5"),
        (["--combinations", "6"], "argument --combinations: expected an integer from 1 to 5"),
        (["--concentrations", "0.1", "-1"], "argument --concentrations: expected a positive"),
        (["--concentrations", "nan"], "argument --concentrations: expected a positive"),
        (["--readout-fraction", "1.5"], "argument --readout-fraction: expected a fraction in"),
    ],
)
def test_synth_plate_rejects_bad_screen_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", "plate", str(tmp_path / "plate"), *option])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "plate").exists()
