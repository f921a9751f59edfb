"""Hostile names in the report: markup is shown as text, never run, and ``$`` is no mathtext.

Every user-controlled name the report shows is given markup and mathtext: image ids (a
manifest's ``image_id`` column), a manifest's metadata column, a quarantined file's name, the
job's name and description, step names (written into the manifest's job directly: the job
validator allows identifiers only, and the report must escape whatever it is given),
parameter values, a failed stage's error message and counts, the names, values and reasons the
feature and embedding tables hold, and a clinical table's file name, column names, category
levels, units and selection values (a real survival job). The page is then parsed: no element
or attribute but the report's own, every ``src`` a figure file the report wrote, and every
name shown as the text it is.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import Client
from lifelines.datasets import load_gbsg2

from pipeline.core.jobs import parse_job
from pipeline.core.manifest import QuarantineEntry, StageRecord, load_manifest, save_manifest
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import write_table
from pipeline.report.figures import figure_file
from pipeline.report.format import escape
from pipeline.report.page import write_report
from tests.conftest import make_folder

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"onerror="x'
IMG = "'><img src=x>"
MATH = r"$\alpha$ $x^2$"
ENTITY = "&amp;"
#: Unbalanced mathtext: matplotlib's parser raises on it.
DOLLAR = "$x^{$"
SCHEME = "javascript:alert(1)"
HOSTILE = (SCRIPT, ATTRIBUTE, IMG, MATH, ENTITY, DOLLAR, SCHEME)
#: A manifest column name (neither ``/`` nor a space: xarray would not keep it a coordinate).
COLUMN = "'><b>x\"&amp;"
JOB_NAME = f"{SCRIPT} {DOLLAR}"
DESCRIPTION = f"{IMG} {ATTRIBUTE} {MATH}"

#: Everything the report writes itself: its tags, and the attributes it gives them.
REPORT_TAGS = {"html", "head", "meta", "title", "style", "body", "section", "h1", "h2", "h3"}
REPORT_TAGS |= {"h4", "p", "code", "b", "em", "table", "tr", "th", "td", "img"}
REPORT_ATTRIBUTES = {"charset", "id", "class", "src", "alt", "style"}


class _Page(HTMLParser):
    """Start tags (with their attributes) and text of a page, as a browser reads them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.chunks: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def values(self, attribute: str) -> list[str]:
        return [str(a[attribute]) for _, a in self.tags if attribute in a]


def _assert_only_report_markup(page: str, store: RunStore) -> _Page:
    parsed = _Page(page)
    tags = {t for t, _ in parsed.tags}
    assert "script" not in tags and tags <= REPORT_TAGS, tags - REPORT_TAGS
    names = {a for _, attrs in parsed.tags for a in attrs}
    assert "onerror" not in names and names <= REPORT_ATTRIBUTES, names - REPORT_ATTRIBUTES
    assert set(parsed.values("style")) <= {"max-width:100%"}
    assert all(re.fullmatch(r"[a-z_]*", v) for v in parsed.values("class") + parsed.values("id"))
    sources = parsed.values("src")
    assert sources and all(t == "img" for t, a in parsed.tags if "src" in a)
    for src in sources:
        # A relative file name without a scheme: one of the figures the report wrote.
        assert re.fullmatch(r"[A-Za-z0-9_.%-]+\.png", src), src
        png = Path(store.path("report", urllib.parse.unquote(src)))
        assert png.read_bytes().startswith(b"\x89PNG"), src
    return parsed


# -- a run with an image collection, feature and embedding tables ------------------------------


def _steps(stage: str, prefix: str = "") -> list[dict[str, str]]:
    return [{"stage": stage, "name": prefix + h} for h in HOSTILE]


def _features(store: RunStore, n: int) -> None:
    """Tables of PCA, cluster, elbow and probe steps named by hostile names."""
    rng = np.random.default_rng(0)
    ratio = np.array([0.5, 0.3, 0.2])
    for h in HOSTILE:
        ev = pd.DataFrame(
            {
                "component": np.arange(3),
                "explained_variance": ratio * 4,
                "explained_variance_ratio": ratio,
                "cumulative_ratio": np.cumsum(ratio),
            }
        )
        write_table(store, f"{h}_explained_variance", ev, schema="explained_variance")
    labels = {h: np.resize([0, 1, -1], n) for h in HOSTILE}
    write_table(store, "clusters", pd.DataFrame({"image": np.arange(n), "image_id": "x"} | labels))
    metrics = [
        {
            "method": h,
            "space": f"e{h} (8 features)" if i == 0 else h,
            "n_points": n,
            "fit_size": n,
            "sampled": False,
            "n_clusters": 2,
            "n_noise": 1,
            "silhouette": 0.5,
            "silhouette_n": n,
            "davies_bouldin": 0.7,
            "calinski_harabasz": 12.0,
            "label_column": h,
            "ari": 0.4,
            "nmi": 0.5,
            "params": json.dumps({"k": 2, "note": h}),
        }
        for i, h in enumerate(HOSTILE)
    ]
    write_table(store, "cluster_metrics", pd.DataFrame(metrics))
    elbow = [
        {"method": h, "k": k, "inertia": 10.0 / k, "n_iter": 3, "chosen": k == 2, "rule": h}
        for h in HOSTILE
        for k in (1, 2, 3)
    ]
    write_table(store, "elbow", pd.DataFrame(elbow))
    probe = [
        {"features": h, "shots": 0, "seed": seed, "n_train": 8, "n_test": 4}
        | {"accuracy": rng.uniform(), "macro_f1": rng.uniform()}
        for h in HOSTILE
        for seed in (0, 1)
    ]
    write_table(store, "probe", pd.DataFrame(probe))


def _embeddings(store: RunStore) -> None:
    """Training loss and inference records of encoder and embed steps with hostile names."""
    for h in HOSTILE:
        loss = pd.DataFrame(
            {"epoch": [1, 2], "loss": [2.0, 1.5], "lr": 1e-3, "images": 5, "seconds": 0.5}
            | {"device": h, "checkpoint": h}
        )
        write_table(store, f"{h}_training_loss", loss, schema="training_loss")
        config = {"arch": h, "input_size": h}
        store.write_json(f"models/{h}.json", {"config": config, "checkpoint": h})
        worker = {"device": h, "tasks": 1, "rows": 5, "loads": 1}
        record = {"workers": {h: worker}, "seconds": 1.0, "config": config, "checkpoint": h}
        store.write_json(f"models/e{h}.json", record)


@pytest.fixture(scope="module")
def frame(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ingest (ids, a column and a file name from the manifest) and the tables around it."""
    root = tmp_path_factory.mktemp("hostile")
    make_folder(root / "in", 5)
    files = sorted(p.name for p in (root / "in").glob("img*.png"))
    broken = f"{IMG}{ATTRIBUTE}.png"
    (root / "in" / broken).write_text("not an image")
    ids = [SCRIPT, ATTRIBUTE, IMG, MATH, DOLLAR, ENTITY]
    pd.DataFrame({"path": [*files, broken], "image_id": ids, COLUMN: "a"}).to_csv(
        root / "in" / "manifest.csv", index=False
    )
    spec = {
        "name": JOB_NAME,
        "description": DESCRIPTION,
        "store": str(root / "run"),
        "input": {"sources": [str(root / "in" / "manifest.csv")]},
        "stages": [{"stage": "report", "params": {"montage_images": 16}}],
    }
    run_job(parse_job(yaml.safe_dump(spec), "hostile.yaml"), client=client)
    store = RunStore(str(root / "run"))
    ingested = (store.path("report", "index.html"), store.path("report", "montage.png"))
    first = {"page": Path(ingested[0]).read_text(), "montage": Path(ingested[1]).read_bytes()}

    # Step names the validator would refuse, written into the manifest's job as they are.
    manifest = load_manifest(store)
    assert manifest.job is not None
    manifest.job["stages"] += [*_steps("reduce"), *_steps("train_encoder"), *_steps("embed", "e")]
    for h in HOSTILE:
        manifest.stages[h] = StageRecord(
            stage="reduce",
            config_hash=h,
            params={"note": h},
            status="failed",
            counts={h: 1},
            error=f"ValueError: {h}",
        )
        manifest.quarantine.append(QuarantineEntry(path=f"/in/x{h}", reason=h, stage=h))
    save_manifest(store, manifest)
    _features(store, len(files))
    _embeddings(store)
    write_report(store)
    page = Path(store.path("report", "index.html")).read_text()
    return {"store": store, "page": page, "ingested": first}


def test_the_frame_report_holds_only_its_own_markup(frame: dict[str, Any]) -> None:
    _assert_only_report_markup(frame["page"], frame["store"])
    # The report as the job's own report stage wrote it (before the tables were added).
    _assert_only_report_markup(frame["ingested"]["page"], frame["store"])


def test_job_name_column_and_quarantined_file_are_shown_as_text(frame: dict[str, Any]) -> None:
    page = frame["page"]
    text = _Page(page).text
    assert f"<title>{escape(JOB_NAME)}</title>" in page
    assert f"<h1>Run report: {escape(JOB_NAME)}</h1>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"<code>{escape(COLUMN)}</code>" in page and COLUMN in text
    assert f"<td>{escape(IMG + ATTRIBUTE)}.png</td>" in page
    # The description is not on the page; it is in the manifest, where it was put.
    assert DESCRIPTION not in text


@pytest.mark.parametrize("name", HOSTILE)
def test_each_hostile_name_is_shown_as_the_text_it_is(frame: dict[str, Any], name: str) -> None:
    page, e = frame["page"], escape(name)
    parsed = _Page(page)
    fragments = {
        "stage row": f'<tr class="failed"><td>{e}</td><td>failed</td>',
        "error": f"<td>ValueError: {e}</td>",
        "counts": f"<td>{e}=1</td>",
        "quarantine reason": f"</td><td>{e}</td></tr>",
        "reduce step": f"<h3>{e}</h3>",
        "cluster method": f"<h4>{e}</h4>",
        "cluster parameters": f"<p><code>{e}</code>: k=2, note={e}</p>",
        "elbow rule": f"{e}: k = 2, chosen by {e}",
        "encoder step": f"<h3>Encoder training (SimCLR): {e}</h3>",
        "encoder config": f"<p>{e} encoder, {e} px input",
        "embed step": f"<h3>Embeddings: e{e}</h3>",
        "probe features": f"<td>{e}</td><td>all</td>",
    }
    missing = [slot for slot, fragment in fragments.items() if fragment not in page]
    assert not missing, missing
    # Escaped once, not twice: the browser shows the name itself, in text and in alt texts.
    assert parsed.text.count(name) >= len(fragments)
    alts = parsed.values("alt")
    for alt in (f"explained variance of {name}", f"{name} montage", f"training loss: {name}"):
        assert alt in alts, alt


def test_hostile_step_names_get_plain_figure_files(frame: dict[str, Any]) -> None:
    store, parsed = frame["store"], _Page(frame["page"])
    sources = parsed.values("src")
    for h in HOSTILE:
        for name in (f"{h}_explained_variance.png", f"montage_{h}.png", f"{h}_training_loss.png"):
            assert figure_file(name) in sources, name
    assert len(sources) == len(set(sources))  # seven steps, seven files each time
    report = Path(store.path("report"))
    # Every figure is in report/ itself: no name made a folder or a path out of it.
    assert {p.name for p in report.rglob("*.png")} == set(sources)
    assert all(p.parent == report for p in report.rglob("*"))


def test_dollar_signs_in_image_ids_are_drawn_as_they_are(frame: dict[str, Any]) -> None:
    # Ids with unbalanced mathtext ($x^{$): the job's report stage made the montage of all
    # five images instead of failing in matplotlib's mathtext parser.
    first = frame["ingested"]
    assert first["montage"].startswith(b"\x89PNG")
    assert "<img src='montage.png' alt='sample montage'" in first["page"]
    assert "5 valid images chosen at random" in first["page"]


# -- a survival job on a clinical table with hostile names ---------------------------------------


@pytest.fixture(scope="module")
def survival(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The survival stages on GBSG2 with hostile file, column and level names and units."""
    root = tmp_path_factory.mktemp("hostile_survival")
    df = load_gbsg2().iloc[:300]
    df.insert(0, "pid", [f"PATIENT-{i:04d}" for i in range(len(df))])
    df = df.rename(columns={"tgrade": SCRIPT, "horTh": IMG, "tsize": ATTRIBUTE, "pnodes": MATH})
    df[IMG] = df[IMG].map({"no": MATH, "yes": ENTITY})
    source = root / f"{ATTRIBUTE}{IMG} {DOLLAR}.csv"
    df.to_csv(source, index=False)
    cohort = {
        "source": str(source),
        "id": "pid",
        "duration": "time",
        "event": "cens",
        "where": [
            {"column": ATTRIBUTE, "op": ">=", "value": 0},
            {"column": IMG, "op": "!=", "value": SCRIPT},
            {"column": "pid", "op": "not in", "value": ["PATIENT-9999"]},
        ],
        "covariates": [
            {"name": "age", "kind": "numeric", "unit": "years"},
            {"name": ATTRIBUTE, "kind": "numeric", "unit": DOLLAR},
            {"name": MATH, "kind": "numeric"},
            {
                "name": SCRIPT,
                "kind": "categorical",
                "levels": {"I": IMG, "II": DOLLAR, "III": SCRIPT},
            },
            {"name": IMG, "kind": "categorical"},
        ],
    }
    phenotypes = {"covariates": [ATTRIBUTE, SCRIPT, MATH], "k_range": [2, 3], "bootstrap": 3}
    spec = {
        "name": "survival",
        "store": str(root / "run"),
        "seed": 0,
        "stages": [
            {"stage": "cohort", "params": cohort},
            {"stage": "kaplan_meier", "params": {"group_by": [SCRIPT, IMG]}},
            {"stage": "cox", "params": {"bootstrap": 5}},
            {"stage": "phenotypes", "params": phenotypes | {"weights": {SCRIPT: 0.5}}},
            {"stage": "classify_phenotypes", "params": {"folds": 3, "forest_trees": 10}},
            {"stage": "report"},
        ],
    }
    run_job(parse_job(yaml.safe_dump(spec), "survival.yaml"), client=client)
    store = RunStore(str(root / "run"))
    page = Path(store.path("report", "index.html")).read_text()
    return {"store": store, "page": page, "source": source}


def test_the_survival_report_holds_only_its_own_markup(survival: dict[str, Any]) -> None:
    parsed = _assert_only_report_markup(survival["page"], survival["store"])
    assert len(parsed.values("src")) >= 8  # curves, forest plot, phenotypes, classifiers


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        ("source file", "<code>{source}</code>"),
        ("selection on a column", "{a} &gt;= 0"),
        ("selection value", "{i} != {s}"),
        ("identifier selection", "pid not in (values not shown)"),
        ("numeric covariate and unit", "<td>{a}, median [IQR] ({d})</td>"),
        ("categorical covariate", "<td>{s}, n (%)</td>"),
        ("category level", "<td>\u2003{i}</td>"),
        ("level from the table", "<td>\u2003{e}</td>"),
        ("KM grouping", "<h4>Survival by {s} (log-rank p"),
        ("KM group", "<td>{d}</td>"),
        ("Cox term", "<td>{e} vs {m}</td>"),
        ("phenotype weights", "{s} 0.5"),
    ],
)
def test_clinical_names_are_shown_as_text(
    survival: dict[str, Any], part: str, fragment: str
) -> None:
    names = {"a": ATTRIBUTE, "i": IMG, "s": SCRIPT, "d": DOLLAR, "e": ENTITY, "m": MATH}
    expected = fragment.format(
        source=escape(survival["source"]), **{k: escape(v) for k, v in names.items()}
    )
    assert expected in survival["page"], part


def test_no_patient_identifier_reaches_the_survival_report(survival: dict[str, Any]) -> None:
    assert "PATIENT-" not in survival["page"]
