"""Job specs: every malformed spec names the field and its line, and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.jobs import parse_job
from pipeline.errors import JobSpecError
from tests.conftest import JOBS

GOOD = """\
name: demo
store: runs/demo
seed: 3
cluster:
  kind: local
  workers: 2
input:
  sources: [data/in]
  mode: keep
stages:
  - stage: report
    params:
      montage_images: 4
"""


def test_a_good_spec_validates_into_steps() -> None:
    job = parse_job(GOOD, "good.yaml")
    assert [s.name for s in job.steps] == ["ingest", "report"]
    assert job.step("report").params.montage_images == 4  # type: ignore[attr-defined]
    assert job.spec.cluster.workers == 2


# (replace this text in GOOD, with this, expected fragments, expected line)
CASES = [
    (
        "  - stage: report",
        "  - stage: reprot",
        ["unknown stage 'reprot'", "did you mean 'report'"],
        11,
    ),
    (
        "      montage_images: 4",
        "      montage_imgs: 4",
        ["stages[0].params.montage_imgs", "did you mean 'montage_images'"],
        13,
    ),
    (
        "      montage_images: 4",
        "      montage_images: lots",
        ["stages[0].params.montage_images", "valid integer"],
        13,
    ),
    ("seed: 3", "seed: three", ["seed", "valid integer"], 3),
    ("store: runs/demo\n", "", ["store", "Field required"], 1),
    (
        "stages:",
        "stagse:",
        ["stagse", "Extra inputs are not permitted", "did you mean 'stages'"],
        10,
    ),
    ("  mode: keep", "  mode: grey", ["input.mode", "'keep', 'gray' or 'rgb'"], 9),
    ("  workers: 2", "  workers: 0", ["cluster.workers", "greater than or equal to 1"], 6),
    ("  workers: 2", "  worker: 2", ["cluster.worker", "did you mean 'workers'"], 6),
    ("  kind: local", "  kind: kubernetes", ["cluster.image", "Field required"], 4),
    ("  sources: [data/in]", "  sources: []", ["input.sources", "at least 1 item"], 8),
    ("  - stage: report", "  - stage: ingest", ["configured by the `input` section"], 11),
    (
        "    params:\n      montage_images: 4\n",
        "    params: {}\n  - stage: report\n",
        ["name 'report' is used twice", "distinct `name:`"],
        13,
    ),
    ("cluster:", "cluster: [", ["not valid YAML"], None),
]


@pytest.mark.parametrize(("old", "new", "fragments", "line"), CASES)
def test_malformed_specs_exit_2_naming_field_and_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    fragments: list[str],
    line: int | None,
) -> None:
    assert old in GOOD
    spec = tmp_path / "job.yaml"
    spec.write_text(GOOD.replace(old, new, 1))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    if line is not None:
        assert f"{spec}:{line}:" in err, err


def test_every_problem_is_reported_at_once() -> None:
    bad = GOOD.replace("montage_images: 4", "montage_imgs: 4").replace("mode: keep", "mode: x")
    with pytest.raises(JobSpecError) as exc:
        parse_job(bad, "j.yaml")
    assert len(exc.value.problems) == 2


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("report.montage_images=9", lambda j: j.step("report").params.montage_images == 9),
        ("input.mode=gray", lambda j: j.step("ingest").params.mode == "gray"),
        ("cluster.workers=1", lambda j: j.spec.cluster.workers == 1),
        ("seed=11", lambda j: j.spec.seed == 11),
    ],
)
def test_set_overrides_a_parameter(override: str, check: object) -> None:
    job = parse_job(GOOD, "j.yaml", [override])
    assert check(job)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("reprot.montage_images=9", "no stage named 'reprot'"),
        ("report.montage_images", "expected STAGE.PARAM=VALUE"),
        ("report.montage_images=-1", "stages[0].params.montage_images"),
    ],
)
def test_bad_overrides_are_spec_errors(override: str, fragment: str) -> None:
    with pytest.raises(JobSpecError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_job(GOOD, "j.yaml", [override])


def test_config_hash_chains_through_the_steps() -> None:
    base = parse_job(GOOD, "j.yaml")
    report_changed = parse_job(GOOD, "j.yaml", ["report.montage_images=5"])
    input_changed = parse_job(GOOD, "j.yaml", ["input.mode=gray"])
    assert report_changed.step("ingest").config_hash == base.step("ingest").config_hash
    assert report_changed.step("report").config_hash != base.step("report").config_hash
    # Changing an upstream stage changes the hash of everything after it.
    assert input_changed.step("report").config_hash != base.step("report").config_hash
    # Each step knows the hash of the steps before it (what made its inputs).
    assert base.steps[0].upstream == ""
    for before, step in zip(base.steps, base.steps[1:], strict=False):
        assert step.upstream == before.config_hash
    assert report_changed.steps[-1].upstream == base.steps[-1].upstream


def test_missing_spec_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "no such job spec file" in capsys.readouterr().err


def test_shipped_job_specs_validate() -> None:
    jobs = sorted(JOBS.glob("*.yaml"))
    assert jobs
    for path in jobs:
        parse_job(path.read_text(), str(path))


def test_set_creates_a_missing_section_and_validates_it() -> None:
    no_input = GOOD[: GOOD.index("input:")] + GOOD[GOOD.index("stages:") :]
    with pytest.raises(JobSpecError, match=r"input\.sources: Field required"):
        parse_job(no_input, "j.yaml", ["input.mode=gray"])
