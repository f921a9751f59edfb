"""Hostile job specs: each is refused at validation with every problem listed, the field, its
line and the fix, and none writes anything, runs code or exhausts memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.jobs import MAX_SPEC_NODES, parse_job
from pipeline.errors import JobSpecError
from tests.conftest import REPO

HEAD = "name: t\nstore: {store}\n"


def _problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(JobSpecError) as info:
        parse_job(HEAD.format(store=tmp_path / "run") + textwrap.dedent(text), "t.yaml")
    return info.value.problems


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs": ``width ** levels`` values from a few hundred bytes of aliases."""
    lines = ['a0: &a0 ["' + '","'.join(["lol"] * width) + '"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nseed: *a{levels - 1}\n"


# (case id, spec text after name/store, substrings every one of which one problem must hold)
REFUSED = [
    (
        "step name climbing out of the store",
        """\
        stages:
          - stage: reduce
            name: "../../../../tmp/x"
        """,
        [["t.yaml:5", "stages[0].name", "not an identifier"]],
    ),
    (
        "absolute step name",
        """\
        stages:
          - {stage: kmeans, name: /tmp/x}
        """,
        [["stages[0].name", "not an identifier"]],
    ),
    (
        "array name climbing out of the store",
        """\
        stages:
          - stage: kmeans
            params: {input: "../../x"}
        """,
        [["stages[0].params.input", "'../../x'", "letters, digits and _"]],
    ),
    (
        "table name that is a path",
        """\
        stages:
          - stage: reduce
            params: {rows: {table: /etc/passwd, where: x}}
        """,
        [["stages[0].params.rows.table", "'/etc/passwd'"]],
    ),
    (
        "label column whose table is a path",
        """\
        stages:
          - stage: kmeans
            params: {label_column: "../t.class"}
        """,
        [["stages[0].params.label_column", "'../t'"]],
    ),
    (
        "string numbers and booleans for numbers",
        """\
        seed: "3"
        stages:
          - stage: preprocess
            params: {cutout_size: "128"}
          - stage: reduce
            params: {n_components: true}
        """,
        [
            ["t.yaml:3", "seed", "valid integer", "'3'"],
            ["stages[0].params.cutout_size", "valid integer", "'128'"],
            ["stages[1].params.n_components", "valid integer", "True"],
        ],
    ),
    (
        "reversed ranges",
        """\
        stages:
          - stage: dbscan
            params: {eps_range: [10, 0.5]}
          - stage: kmeans
            params: {k_range: [10, 2]}
        """,
        [
            ["stages[0].params.eps_range", "[10.0, 0.5]", "start < stop"],
            ["stages[1].params.k_range", "[10, 2]", "low < high"],
        ],
    ),
    (
        "nested typo lists the nested model's fields",
        """\
        cluster: {kind: local, wrkers: 2}
        stages:
          - stage: train_encoder
            params: {augment: {crop_scal: [0.5, 1]}}
          - stage: reduce
            params: {rows: {table: catalog, wher: "status == kept"}}
        """,
        [
            ["cluster.wrkers", "did you mean 'workers'", "threads_per_worker"],
            ["stages[0].params.augment.crop_scal", "did you mean 'crop_scale'", "blur_sigma"],
            ["stages[1].params.rows.wher", "did you mean 'where'", "optional, table, where"],
            ["stages[1].params.rows.where", "Field required"],
        ],
    ),
    (
        "stage errors are not hidden by top-level ones",
        """\
        seed: -x
        bogus: 1
        stages:
          - stage: reduce
            params: {n_componnets: 5}
          - stage: nosuchstage
        """,
        [
            ["seed", "valid integer"],
            ["bogus", "Extra inputs"],
            ["stages[0].params.n_componnets", "did you mean 'n_components'"],
            ["stages[1].stage", "unknown stage 'nosuchstage'"],
        ],
    ),
    (
        "python tags are not honoured",
        """\
        seed: !!python/object/apply:os.system ["touch /tmp/pipeline-pwned"]
        """,
        [["not valid YAML", "python/object/apply"]],
    ),
    (
        "recursive alias",
        """\
        description: &a [*a]
        """,
        [["not plain YAML data"]],
    ),
    (
        "alias bomb",
        _alias_bomb(),
        [["t.yaml", f"more than {MAX_SPEC_NODES} values", "aliases"]],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_a_hostile_spec_is_refused_with_every_problem(
    text: str, expected: list[list[str]], tmp_path: Path
) -> None:
    problems = _problems(text, tmp_path)
    for parts in expected:
        assert any(all(p in line for p in parts) for line in problems), (parts, problems)
    assert len(problems) == len(expected), problems
    # Nothing is written by a spec that does not validate.
    assert not (tmp_path / "run").exists()
    assert not Path("/tmp/pipeline-pwned").exists()


def test_errors_echo_a_bounded_part_of_a_huge_value(tmp_path: Path) -> None:
    huge = "x" * 200_000
    problems = _problems(f"seed: {huge}\n", tmp_path)
    assert len(problems) == 1 and len(problems[0]) < 400, problems[0][:500]


def test_the_alias_bomb_is_refused_within_little_memory(tmp_path: Path) -> None:
    """`pipeline validate` on a 500-byte alias bomb (9**9 values expanded) stays small."""
    spec = tmp_path / "bomb.yaml"
    spec.write_text(HEAD.format(store=tmp_path / "run") + _alias_bomb())
    assert spec.stat().st_size < 600
    code = textwrap.dedent(
        f"""
        import resource, sys
        # 1 GiB of address space: the unbounded expansion needed several.
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from pipeline.cli import main
        sys.exit(main(["validate", {str(spec)!r}]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "aliases" in out.stderr and "Traceback" not in out.stderr


def test_validate_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(
        HEAD.format(store=tmp_path / "run")
        + "seed: '1'\nstages:\n  - {stage: reduce, name: '../x'}\n  - {stage: kmeans, params: "
        "{k_range: [3, 1]}}\n"
    )
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "seed" in err and "../x" in err and "k_range" in err and "Traceback" not in err
