"""The survival report section on real lifelines fits of the GBSG2 breast-cancer trial.

The fixture fits Kaplan-Meier curves, Cox models and a small clustering on
``lifelines.datasets.load_gbsg2()`` (first 500 patients: development; the other 186:
external cohort), writes the documented tables into a run store and renders the section once.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_gbsg2
from lifelines.statistics import (
    multivariate_logrank_test,
    pairwise_logrank_test,
    proportional_hazard_test,
)
from lifelines.utils import concordance_index, median_survival_times
from PIL import Image
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import silhouette_score
from sklearn.model_selection import cross_val_predict

from pipeline.core.manifest import load_manifest
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table, write_table
from pipeline.report.context import ReportContext
from pipeline.report.format import format_p
from pipeline.report.spec import ReportParams
from pipeline.workflows.survival.report import survival_section
from pipeline.workflows.survival.report_format import format_hr, format_time
from pipeline.workflows.survival.spec import CohortParams, CohortRecord, Condition, Covariate

COVARIATES = [
    Covariate(name="age", kind="numeric", unit="years"),
    Covariate(name="tsize", kind="numeric", unit="mm"),
    Covariate(name="pnodes", kind="numeric", unit="nodes"),
    Covariate(name="horTh", kind="categorical", levels={"no": "no", "yes": "yes"}, reference="no"),
    Covariate(
        name="tgrade",
        kind="categorical",
        levels={"I": "I", "II": "II", "III": "III"},
        reference="I",
    ),
]
NUMERIC = ["age", "tsize", "pnodes"]
CATEGORICAL = {"horTh": ["no", "yes"], "tgrade": ["I", "II", "III"]}
TERMS = ["age", "tsize", "pnodes", "horTh[yes]", "tgrade[II]", "tgrade[III]"]
TIMES = (1.0, 3.0, 5.0)
N_DEV = 500


# -- building the store ---------------------------------------------------------------------------


def _section(store: RunStore) -> str | None:
    """The survival section of ``store``'s report, as the report writes it."""
    return survival_section(ReportContext(store, load_manifest(store), ReportParams()))


def _frame(raw: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """A cohort table: distinctive identifiers, durations in years, covariates."""
    return pd.DataFrame(
        {
            "patient": [f"{prefix}-{i + 1:04d}" for i in range(len(raw))],
            "row": np.arange(1, len(raw) + 1),
            "duration": raw["time"].to_numpy(dtype=np.float64) / 365.25,
            "event": raw["cens"].to_numpy(dtype=np.int64),
            **{c: raw[c].to_numpy(dtype=np.float64) for c in NUMERIC},
            **{c: raw[c].astype(str).to_numpy() for c in CATEGORICAL},
        }
    )


def _record(frame: pd.DataFrame, source_rows: int, filtered: int) -> CohortRecord:
    params = CohortParams(
        source="lifelines:gbsg2",
        duration="time",
        event="cens",
        id="pid",
        duration_unit="days",
        time_unit="years",
        covariates=COVARIATES,
        # A rule naming a patient: the report must not print its value.
        where=[Condition(column="pid", op="not in", value=["PATIENT-0777"])],
    )
    return CohortRecord(
        params=params,
        source_rows=source_rows,
        filtered_out=filtered,
        dropped_missing=3,
        n=len(frame),
        events=int(frame["event"].sum()),
    )


def _summary(frame: pd.DataFrame, cohort: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for c in NUMERIC:
        q1, med, q3 = np.percentile(frame[c], [25, 50, 75])
        unit = next(v.unit for v in COVARIATES if v.name == c)
        rows.append(
            dict(cohort=cohort, covariate=c, kind="numeric", level="", n=len(frame), value=med)
            | dict(q1=q1, q3=q3, missing=3 if c == "tsize" else 0, imputed=0, unit=unit)
        )
    for c, levels in CATEGORICAL.items():
        for level in levels:
            k = int((frame[c] == level).sum())
            rows.append(
                dict(cohort=cohort, covariate=c, kind="categorical", level=level, n=k)
                | dict(value=k / len(frame), q1=np.nan, q3=np.nan, missing=0, imputed=0, unit="")
            )
    return pd.DataFrame(rows)


def _km(frame: pd.DataFrame, column: str) -> tuple[pd.DataFrame, ...]:
    """km_summary, km_times, km_curves and logrank rows of one grouping, from lifelines."""
    labels = pd.Series("all", index=frame.index) if column == "all" else frame[column].astype(str)
    groups = ["all"] if column == "all" else sorted(labels.unique(), key=str)
    summary, times, curves = [], [], []
    for g in groups:
        sub = frame[labels == g]
        kmf = KaplanMeierFitter().fit(sub["duration"], sub["event"])
        ci = kmf.confidence_interval_survival_function_
        med = median_survival_times(kmf.confidence_interval_)
        summary.append(
            dict(group_column=column, group=g, n=len(sub), events=int(sub["event"].sum()))
            | dict(
                median=float(kmf.median_survival_time_),
                median_lower=float(med.iloc[0, 0]),
                median_upper=float(med.iloc[0, 1]),
            )
        )
        for t in TIMES:
            past = t > sub["duration"].max()
            times.append(
                dict(
                    group_column=column, group=g, time=t, at_risk=int((sub["duration"] >= t).sum())
                )
                | dict(
                    survival=np.nan if past else float(kmf.survival_function_.iloc[:, 0].asof(t)),
                    survival_lower=np.nan if past else float(ci.iloc[:, 0].asof(t)),
                    survival_upper=np.nan if past else float(ci.iloc[:, 1].asof(t)),
                )
            )
        et = kmf.event_table
        curves.append(
            pd.DataFrame(
                {
                    "group_column": column,
                    "group": g,
                    "time": et.index.to_numpy(dtype=np.float64),
                    "survival": kmf.survival_function_.iloc[:, 0].reindex(et.index).to_numpy(),
                    "survival_lower": ci.iloc[:, 0].reindex(et.index).to_numpy(),
                    "survival_upper": ci.iloc[:, 1].reindex(et.index).to_numpy(),
                    "at_risk": et["at_risk"].to_numpy(dtype=np.int64),
                    "events": et["observed"].to_numpy(dtype=np.int64),
                    "censored": et["censored"].to_numpy(dtype=np.int64),
                }
            )
        )
    logrank = []
    if len(groups) > 1:
        m = multivariate_logrank_test(frame["duration"], labels, frame["event"])
        logrank.append(
            dict(group_column=column, test="multivariate", group_a="", group_b="")
            | dict(statistic=m.test_statistic, df=m.degrees_of_freedom, p=m.p_value)
        )
    if len(groups) > 2:
        pw = pairwise_logrank_test(frame["duration"], labels, frame["event"]).summary
        for (a, b), r in pw.iterrows():
            logrank.append(
                dict(group_column=column, test="pairwise", group_a=a, group_b=b)
                | dict(statistic=r["test_statistic"], df=1, p=r["p"])
            )
    return (
        pd.DataFrame(summary),
        pd.DataFrame(times),
        pd.concat(curves, ignore_index=True),
        pd.DataFrame(logrank),
    )


def _write_km(store: RunStore, prefix: str, frame: pd.DataFrame, columns: list[str]) -> None:
    parts = [_km(frame, c) for c in columns]
    for i, name in enumerate(("km_summary", "km_times", "km_curves", "logrank")):
        write_table(store, prefix + name, pd.concat([p[i] for p in parts], ignore_index=True))


def _design(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": frame["age"],
            "tsize": frame["tsize"],
            "pnodes": frame["pnodes"],
            "horTh[yes]": (frame["horTh"] == "yes").astype(float),
            "tgrade[II]": (frame["tgrade"] == "II").astype(float),
            "tgrade[III]": (frame["tgrade"] == "III").astype(float),
        }
    )


def _terms(cph: CoxPHFitter) -> pd.DataFrame:
    s = cph.summary
    return pd.DataFrame(
        {
            "covariate": list(s.index),
            "variable": [t.split("[")[0] for t in s.index],
            "coef": s["coef"].to_numpy(),
            "hr": s["exp(coef)"].to_numpy(),
            "hr_lower": s["exp(coef) lower 95%"].to_numpy(),
            "hr_upper": s["exp(coef) upper 95%"].to_numpy(),
            "se": s["se(coef)"].to_numpy(),
            "p": s["p"].to_numpy(),
        }
    )


def _bootstrap_c(frame: pd.DataFrame, risk: np.ndarray) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    values = []
    for _ in range(20):
        i = rng.integers(0, len(frame), len(frame))
        d, e = frame["duration"].to_numpy()[i], frame["event"].to_numpy()[i]
        values.append(concordance_index(d, -risk[i], e))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _write_cox(store: RunStore, dev: pd.DataFrame, ext: pd.DataFrame) -> None:
    design = _design(dev).assign(duration=dev["duration"], event=dev["event"])
    uni = []
    for cov in COVARIATES:
        cols = [t for t in TERMS if t.split("[")[0] == cov.name]
        cph = CoxPHFitter().fit(design[[*cols, "duration", "event"]], "duration", "event")
        p = cph.log_likelihood_ratio_test().p_value
        uni.append(_terms(cph).assign(variable_p=p, selected=p < 0.05, n=len(dev)))
    write_table(store, "cox_univariate", pd.concat(uni).assign(events=int(dev["event"].sum())))
    cph = CoxPHFitter().fit(design, "duration", "event")
    ph = proportional_hazard_test(cph, design, time_transform="rank").summary
    multi = _terms(cph).assign(
        ph_statistic=ph["test_statistic"].reindex(TERMS).to_numpy(),
        ph_p=ph["p"].reindex(TERMS).to_numpy(),
    )
    write_table(store, "cox_multivariate", multi)
    store.write_json(
        "models/cox.json",
        {"threshold": 0.05, "alpha": 0.05, "selected": [c.name for c in COVARIATES]}
        | {"terms": TERMS, "coef": cph.params_.tolist()},
    )
    rows = []
    for cohort, frame in (("development", dev), ("validation", ext)):
        risk = cph.predict_log_partial_hazard(_design(frame)).to_numpy()
        c = concordance_index(frame["duration"], -risk, frame["event"])
        lo, hi = _bootstrap_c(frame, risk)
        rows.append(
            dict(analysis="cox_multivariate", cohort=cohort, metric="concordance", value=c)
            | dict(lower=lo, upper=hi, replicates=20)
        )
    rows += [
        dict(analysis="cox_multivariate", cohort="development", metric="log_likelihood_ratio_p")
        | dict(value=cph.log_likelihood_ratio_test().p_value, lower=np.nan, upper=np.nan),
    ]
    write_table(store, "survival_metrics", pd.DataFrame(rows).fillna({"replicates": 0}))


def _features(frame: pd.DataFrame, centre: pd.Series, scale: pd.Series) -> np.ndarray:
    return ((_design(frame) - centre) / scale).to_numpy()


def _write_phenotypes(store: RunStore, dev: pd.DataFrame, ext: pd.DataFrame) -> np.ndarray:
    """Ward clustering of the standardised design: selection, profiles, KM by phenotype.

    Returns the phenotype of each development patient (1 = best survival at 3 years).
    """
    centre, scale = _design(dev).mean(), _design(dev).std()
    x = _features(dev, centre, scale)
    tree = linkage(x, method="ward")
    sel = []
    for k in range(2, 6):
        lab = fcluster(tree, k, criterion="maxclust")
        sizes = np.bincount(lab)[1:]
        sel.append(dict(k=k, silhouette=silhouette_score(x, lab), smallest=int(sizes.min())))
    table = pd.DataFrame(sel).assign(eligible=lambda d: d["smallest"] >= 0.05 * len(dev))
    best = int(table.loc[table["silhouette"].where(table["eligible"]).idxmax(), "k"])
    share = np.where(table["k"] == best, 0.55, 0.15)
    table = table.assign(chosen=table["k"] == best, bootstrap_share=share)
    write_table(store, "phenotype_selection", table)
    metric = dict(analysis="phenotypes", cohort="development", metric="n_phenotypes")
    metric |= dict(value=float(best), lower=2.0, upper=5.0, replicates=20)
    metrics = pd.concat([read_table(store, "survival_metrics"), pd.DataFrame([metric])])
    write_table(store, "survival_metrics", metrics)
    raw = fcluster(tree, best, criterion="maxclust")
    ks = range(1, best + 1)
    # Number the phenotypes by survival at 3 years, best first, as the stage does.
    surv = {
        c: KaplanMeierFitter()
        .fit(dev["duration"][raw == c], dev["event"][raw == c])
        .survival_function_at_times(3.0)
        .iloc[0]
        for c in ks
    }
    rank = {c: i + 1 for i, c in enumerate(sorted(surv, key=lambda c: -surv[c]))}
    pheno = np.array([rank[c] for c in raw])
    store.write_json(
        "models/phenotypes.json",
        {"k": best, "distance": "euclidean", "linkage": "ward", "criterion": "silhouette"}
        | {"min_size": 0.05, "horizon": 3.0, "time_unit": "years", "replicates": 20},
    )
    write_table(
        store,
        "patient_phenotypes",
        pd.DataFrame({"patient": dev["patient"]}).assign(phenotype=pheno),
    )
    prof = []
    for p in ks:
        sub = dev[pheno == p]
        for c in NUMERIC:
            prof.append(
                dict(phenotype=p, covariate=c, level="", n=len(sub), value=sub[c].mean())
                | dict(sd=sub[c].std(), overall=dev[c].mean())
            )
        for c, levels in CATEGORICAL.items():
            for level in levels:
                prof.append(
                    dict(phenotype=p, covariate=c, level=level, n=len(sub))
                    | dict(value=(sub[c] == level).mean(), sd=np.nan)
                    | dict(overall=(dev[c] == level).mean())
                )
    write_table(store, "phenotypes", pd.DataFrame(prof))
    _write_km(store, "phenotype_", dev.assign(phenotype=pheno.astype(str)), ["phenotype"])
    # External patients: the phenotype of the nearest development centroid.
    cents = np.stack([x[pheno == p].mean(axis=0) for p in ks])
    xe = _features(ext, centre, scale)
    predicted = np.argmin(((xe[:, None, :] - cents[None]) ** 2).sum(axis=2), axis=1) + 1
    write_table(
        store,
        "validation_phenotypes",
        pd.DataFrame({"patient": ext["patient"], "phenotype": predicted}),
    )
    _write_km(store, "validation_", ext.assign(phenotype=predicted.astype(str)), ["phenotype"])
    return pheno


CLASSIFIER_METRICS = [
    # model, target, metric, mean, sd
    ("decision_tree", "phenotype", "accuracy", 0.81, 0.03),
    ("random_forest", "phenotype", "accuracy", 0.88, 0.02),
    ("decision_tree", "survival_3y", "accuracy", 0.655, 0.03),
    ("random_forest", "survival_3y", "accuracy", 0.700, 0.02),
    ("random_forest", "survival_3y", "roc_auc", 0.731, 0.03),
    ("phenotype_decision_tree", "survival_3y", "accuracy", 0.640, 0.04),
    ("phenotype_random_forest", "survival_3y", "accuracy", 0.652, 0.025),
    ("phenotype_random_forest", "survival_3y", "roc_auc", 0.689, 0.03),
]


def _write_classifiers(store: RunStore, dev: pd.DataFrame, pheno: np.ndarray) -> None:
    metrics = pd.DataFrame(CLASSIFIER_METRICS, columns=["model", "target", "metric", "mean", "sd"])
    write_table(store, "classifier_metrics", metrics.assign(folds=5, n=len(dev)))
    x = _design(dev)
    rf = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=0)
    predicted = cross_val_predict(rf, x, pheno, cv=5)
    conf = pd.crosstab(pheno, predicted).stack().reset_index()
    conf.columns = ["true", "predicted", "count"]
    conf = conf.assign(model="random_forest", target="phenotype")
    conf[["true", "predicted"]] = conf[["true", "predicted"]].astype(str)
    write_table(store, "classifier_confusion", conf)
    rf.fit(x, pheno)
    spread = np.std([t.feature_importances_ for t in rf.estimators_], axis=0)
    imp = pd.DataFrame(
        {"feature": x.columns, "importance": rf.feature_importances_, "sd": spread}
    ).assign(model="random_forest", target="phenotype")
    write_table(store, "classifier_importance", imp)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store holding every survival table, and the rendered section."""
    raw = load_gbsg2()
    dev, ext = _frame(raw.iloc[:N_DEV], "PATIENT"), _frame(raw.iloc[N_DEV:], "EXTERNAL")
    store = RunStore(str(tmp_path_factory.mktemp("survival") / "run"))
    store.write_json("models/cohort.json", _record(dev, len(raw), len(ext)).model_dump(mode="json"))
    store.write_json(
        "models/validation_cohort.json", _record(ext, len(ext), 0).model_dump(mode="json")
    )
    write_table(store, "cohort", dev)
    write_table(store, "validation_cohort", ext)
    summary = pd.concat([_summary(dev, "development"), _summary(ext, "validation")])
    write_table(store, "cohort_summary", summary)
    _write_km(store, "", dev, ["all", "horTh", "tgrade"])
    _write_cox(store, dev, ext)
    pheno = _write_phenotypes(store, dev, ext)
    _write_classifiers(store, dev, pheno)
    page = _section(store)
    return {"store": store, "dev": dev, "ext": ext, "pheno": pheno, "html": page}


def _rows(page: str) -> list[list[str]]:
    """Every table row of ``page`` as the text of its cells."""
    out = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S):
        cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr, flags=re.S)]
        if cells:
            out.append(cells)
    return out


# -- tests ----------------------------------------------------------------------------------------


def test_km_tables_name_the_groups_with_their_medians(built: dict[str, Any]) -> None:
    page, dev = built["html"], built["dev"]
    rows = _rows(page)
    for g in ("I", "II", "III"):
        sub = dev[dev["tgrade"] == g]
        kmf = KaplanMeierFitter().fit(sub["duration"], sub["event"])
        row = next(r for r in rows if r[:2] == [g, str(len(sub))])
        assert row[2] == str(int(sub["event"].sum()))
        median, shown = float(kmf.median_survival_time_), row[3].split(" (")[0]
        assert shown == "not reached" if np.isinf(median) else abs(float(shown) - median) < 0.01
    overall = KaplanMeierFitter().fit(dev["duration"], dev["event"]).median_survival_time_
    assert 1 < overall < 10  # GBSG2: a finite median, printed with two decimals
    all_row = next(r for r in rows if r[0] == "all")
    assert all_row[3].startswith(f"{overall:.2f} (")
    assert "Survival by tgrade (log-rank p" in html.unescape(page)
    assert "pairwise (unadjusted)" in page
    assert "survival at 3 years (CI)" in page


def test_hazard_ratios_are_formatted_from_the_tables(built: dict[str, Any]) -> None:
    page, store = built["html"], built["store"]

    rows = _rows(page)
    for name in ("cox_univariate", "cox_multivariate"):
        r = read_table(store, name).set_index("covariate").loc["pnodes"]
        expected = f"{r['hr']:.2f} ({r['hr_lower']:.2f}-{r['hr_upper']:.2f})"
        assert any(row[:3] == ["pnodes", "per node", expected] for row in rows), expected
    assert any(row[1] == "III vs I" for row in rows)
    assert "Reference categories: horTh = no; tgrade = I." in page
    multi = read_table(store, "cox_multivariate")
    flagged = multi[multi["ph_p"] < 0.05]
    assert page.count("HR changes over time") == len(flagged)
    if len(flagged):
        assert "changes over follow-up" in page
    assert "Concordance (Harrell&#x27;s C)" in page or "Concordance (Harrell's C)" in page


def test_at_risk_numbers_count_patients_still_followed(built: dict[str, Any]) -> None:
    page, dev = built["html"], built["dev"]
    alt = html.unescape(re.search(r"<img src='survival_km_2_tgrade.png' alt='([^']*)'", page)[1])
    m = re.search(r"Number at risk at ([\d., ]+) years: (.*)$", alt)
    assert m is not None, alt
    ticks = [float(t) for t in m[1].split(", ")]
    assert ticks[0] == 0 and len(ticks) >= 4
    counts = dict(part.split(": ") for part in m[2].split("; "))
    for g in ("I", "II", "III"):
        printed = [int(k) for k in counts[g].split(", ")]
        sub = dev[dev["tgrade"] == g]
        assert printed == [int((sub["duration"] >= t).sum()) for t in ticks]


def test_figures_are_png_files(built: dict[str, Any]) -> None:
    store, page = built["store"], built["html"]
    names = re.findall(r"<img src='([^']+)'", page)
    expected = {
        "survival_km_0_all.png",
        "survival_km_1_horth.png",
        "survival_km_2_tgrade.png",
        "survival_forest.png",
        "survival_phenotype_selection.png",
        "survival_phenotype_profiles.png",
        "survival_phenotype_km_0_phenotype.png",
        "survival_confusion.png",
        "survival_importance.png",
        "survival_validation_km_0_phenotype.png",
    }
    assert set(names) == expected
    for name in names:
        path = Path(store.path("report", name))
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] >= 200
            img.verify()


def test_no_patient_identifier_reaches_the_page(built: dict[str, Any]) -> None:
    page = built["html"]
    assert "PATIENT-" not in page and "EXTERNAL-" not in page
    assert "pid not in (values not shown)" in page


def test_phenotypes_classifiers_and_validation(built: dict[str, Any]) -> None:
    page = html.unescape(built["html"])
    k = int(built["pheno"].max())
    assert f"{k} phenotypes" in page and "between 2 and 5 phenotypes" in page
    assert "phenotype 1 (n = " in page and "all patients" in page
    assert (
        "accuracy 0.700 directly vs 0.652 through the phenotype: the direct classifier is "
        "higher by 0.048" in page
    )
    assert "AUC (ROC) 0.731 directly vs 0.689" in page
    assert "0.880 ± 0.020" in page
    ext = built["ext"]
    assert f"{len(ext)} external patients, {int(ext['event'].sum())} events" in page
    row = next(r for r in _rows(built["html"]) if r[:2] == ["cox multivariate", "concordance"])
    assert all("20 bootstrap replicates" in cell for cell in row[2:])
    # table 1 side by side, with the missing column where values were missing
    assert f"development (n = {N_DEV})" in page and f"validation (n = {len(ext)})" in page
    assert "missing (development)" in page


def test_a_store_with_only_the_cohort_record(tmp_path: Path) -> None:
    store = RunStore(str(tmp_path / "run"))
    assert _section(store) is None
    dev = _frame(load_gbsg2().iloc[:50], "PATIENT")
    store.write_json("models/cohort.json", _record(dev, 50, 0).model_dump(mode="json"))
    page = _section(store)
    assert "<h3>Cohort</h3>" in page and "50 patients analysed" in page
    for absent in ("Kaplan-Meier", "Cox", "Phenotypes", "External validation", "<img", "<table"):
        assert absent not in page


def test_a_store_with_scattered_tables(tmp_path: Path) -> None:
    """Curves without summaries, a Cox table alone, profiles without a selection."""
    store = RunStore(str(tmp_path / "run"))
    dev = _frame(load_gbsg2().iloc[:120], "PATIENT")
    store.write_json("models/cohort.json", _record(dev, 120, 0).model_dump(mode="json"))
    write_table(store, "km_curves", _km(dev, "horTh")[2])
    write_table(store, "phenotype_logrank", _km(dev, "tgrade")[3])
    cph = CoxPHFitter().fit(_design(dev).assign(d=dev["duration"], e=dev["event"]), "d", "e")
    write_table(store, "cox_multivariate", _terms(cph).assign(ph_statistic=1.0, ph_p=0.5))
    page = _section(store)
    assert "survival_km_0_horth.png" in page and "no term fails" in page
    assert "Phenotypes" in page and "Univariate" not in page


def test_formatters_on_edge_cases() -> None:
    assert format_p(0.0004) == "<0.001"
    assert format_p(0.001) == "0.001"
    assert format_p(0.04567) == "0.046"
    assert format_p(float("nan")) == "-"
    assert format_hr(0.62, 0.45, 0.85) == "0.62 (0.45-0.85)"
    assert format_hr(1.5, 0.9, float("inf")) == "1.50 (0.90-inf)"
    assert format_hr(0.004, 0.001, 0.02) == "0.004 (0.001-0.02)"
    assert format_hr(float("nan"), float("nan"), float("nan")) == "-"
    assert format_hr(2.0, float("nan"), float("nan")) == "2.00"
    assert format_time(float("inf"), "years") == "not reached"
    assert format_time(4.95123, "years") == "4.95 years"
    assert format_time(1234.4, "days") == "1234 days"
    assert format_time(float("nan")) == "-"
