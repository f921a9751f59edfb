"""Accuracy of the efficacy ranking (issue 16) against the generator's truth.

Generates ``--plates`` plates (3 combinations x 4 concentrations, as the demo), runs the plate
screen's stages (``jobs/plate_screen.yaml`` up to ``efficacy``: crops, SimCLR encoder,
embeddings, ranking) as a job on a local cluster, then compares with ``truth.csv``:

* Spearman correlation of the learned ranking (treatment median scores) with the true
  efficacy: target >= 0.9 and >= the morphology baseline's;
* every untreated well's score below every treatment whose true efficacy is >= 0.3;
* method 2: exploded / intact precision and recall >= 0.95 (treated wells), Spearman of
  the predicted deterioration with the true viability on the wells without a read-out
  (held out of its training) >= 0.85 (as deterioration vs 1 - viability);
* the ``efficacy`` stage rerun on a 1-worker cluster gives identical tables (seeded);
* for comparison, the ranking with ``timeseries.forecast: observed`` (day 10 predicted from
  the imaged days 7-9) instead of the default rollout from day 7.

    .venv/bin/python benchmarks/efficacy.py [--plates 2] [--size 256] [--epochs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import spearmanr

from pipeline import RunStore
from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.tables import read_table
from pipeline.synth import PlateSynthParams, generate_plates, load_plate_truth

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Results, open_workdir, version

MODULES = (
    "pipeline/workflows/plates/efficacy.py",
    "pipeline/workflows/plates/timeseries.py",
    "pipeline/workflows/plates/crops.py",
    "pipeline/workflows/embed/train.py",
)
UPTO = "efficacy"


def _job(
    data: Path, store: Path, epochs: int | None, workers: int, forecast: str = "rollout"
) -> str:
    spec = yaml.safe_load((ROOT / "jobs" / "plate_screen.yaml").read_text())
    steps = []
    for step in spec["stages"]:
        steps.append(step)
        if step["stage"] == UPTO:
            break
    for step in steps:
        params = step.setdefault("params", {})
        if step["stage"] == "ingest_plates":
            params.update(
                index=str(data / "image_index.csv"), plate_map=str(data / "plate_map.csv")
            )
        if step["stage"] == "train_encoder" and epochs is not None:
            params["epochs"] = epochs
        if step["stage"] == "efficacy":
            params["readout"] = str(data / "viability.csv")
            params.setdefault("timeseries", {})["forecast"] = forecast
    spec.update(
        stages=steps,
        store=str(store),
        cluster={"kind": "local", "workers": workers, "dashboard_address": ":0"},
    )
    return yaml.safe_dump(spec, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plates", type=int, default=2)
    ap.add_argument("--size", type=int, default=256, help="image side (default 256)")
    ap.add_argument("--epochs", type=int, default=None, help="SimCLR epochs (default: the job's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)
    workdir, own = open_workdir(args.workdir, "bench-efficacy-")
    out = Results()
    out.report(f"library measured: {version(MODULES)}")
    try:
        data, store_path = workdir / "plates", workdir / "run"
        base = PlateSynthParams()
        params = dataclasses.replace(
            base,
            screening_drugs=base.screening_drugs[:3],
            screening_concentrations=(0.03, 0.1, 0.3, 1.0),
        )
        if not (data / "viability.csv").exists():
            generate_plates(
                data,
                plates=args.plates,
                seed=args.seed,
                size=args.size,
                fields=(1, 2),
                params=params,
            )
        run_job(parse_job(_job(data, store_path, args.epochs, 2)))
        store = RunStore(str(store_path))
        truth = load_plate_truth(data)
        efficacy = truth.groupby(["treatment", "concentration"])["efficacy"].first()

        def rho(table: pd.DataFrame, column: str = "score") -> float:
            keys = list(zip(table["treatment"], table["concentration"], strict=True))
            return float(spearmanr(table[column], efficacy.loc[keys].to_numpy()).statistic)

        ranking = read_table(store, "efficacy")
        morph = read_table(store, "efficacy_morphology")
        learned, baseline = rho(ranking), rho(morph)
        out.report(
            f"Spearman with the true efficacy over {len(ranking)} treatments: learned "
            f"{learned:.3f} (L2 {rho(ranking, 'score_l2'):.3f}, cosine "
            f"{rho(ranking, 'score_cosine'):.3f}), morphology baseline {baseline:.3f} "
            f"(target >= 0.9: {out.target('Spearman >= 0.9', learned >= 0.9)}; >= "
            f"morphology: {out.target('learned >= morphology', learned >= baseline)})"
        )
        wells = read_table(store, "efficacy_wells")
        # Replicate scatter: each well's realised efficacy (truth's well_efficacy) scatters
        # around its treatment's. The treatments' median realised efficacy bounds what any
        # score can reach; per well, the score against the realised efficacy is the less
        # noisy comparison of the two representations.
        real = wells.merge(truth, on=["plate", "well"], suffixes=("", "_truth"))
        real = real[~real["control"]]
        realised = real.groupby(["treatment", "concentration"])["well_efficacy"].median()
        ceiling = float(
            spearmanr(realised, efficacy.loc[list(realised.index)].to_numpy()).statistic
        )
        per_well = {
            name: float(spearmanr(real[column], real["well_efficacy"]).statistic)
            for name, column in (("learned", "score"), ("morphology", "morphology_score"))
        }
        out.report(
            f"ceiling (treatments' median realised well efficacy vs the true): {ceiling:.3f}; "
            f"per treated well, Spearman with its realised efficacy: learned "
            f"{per_well['learned']:.3f}, morphology {per_well['morphology']:.3f}"
        )
        keys = list(zip(ranking["treatment"], ranking["concentration"], strict=True))
        strong = ranking[efficacy.loc[keys].to_numpy() >= 0.3]
        top_null = float(wells.loc[wells["control"], "score"].max())
        out.report(
            f"untreated wells' highest score {top_null:.3f}, lowest treatment with efficacy >= "
            f"0.3 {strong['score'].min():.3f} (target below: "
            f"{out.target('untreated below e >= 0.3', top_null < strong['score'].min())})"
        )
        merged = wells.merge(truth, on=["plate", "well"], suffixes=("", "_truth"))
        treated = merged[~merged["control"]]
        called = treated["exploded"].astype(bool)
        true = treated["exploded_truth"].astype(bool)
        tp = int((called & true).sum())
        precision, recall = tp / max(int(called.sum()), 1), tp / max(int(true.sum()), 1)
        out.report(
            f"method 2 exploded: precision {precision:.3f}, recall {recall:.3f} "
            f"({int(true.sum())} exploded wells; target >= 0.95: "
            f"{out.target('explosion P/R >= 0.95', min(precision, recall) >= 0.95)})"
        )
        held = merged[merged["viability"].isna() & merged["deterioration_pct"].notna()]
        det = float(spearmanr(held["deterioration_pct"], 1 - held["viability_truth"]).statistic)
        out.report(
            f"deterioration vs true viability on {len(held)} wells without a read-out: "
            f"Spearman {det:.3f} (target >= 0.85: "
            f"{out.target('deterioration >= 0.85', det >= 0.85)})"
        )
        first = {n: read_table(store, n) for n in ("efficacy", "efficacy_wells", "dose_response")}
        # The same representations with the model fed the imaged days 7-9 (forecast:
        # observed): the comparison behind the default, rollout.
        run_job(parse_job(_job(data, store_path, args.epochs, 2, "observed")), force=[UPTO])
        observed = read_table(store, "efficacy")
        out.report(
            f"forecast observed (days 7-9 as imaged): Spearman {rho(observed):.3f} (L2 "
            f"{rho(observed, 'score_l2'):.3f}, cosine {rho(observed, 'score_cosine'):.3f}) "
            f"vs rollout {learned:.3f}"
        )
        # Back to the default on 1 worker: the same tables as the 2-worker run, and the store
        # is left as the job writes it.
        run_job(parse_job(_job(data, store_path, args.epochs, 1)), force=[UPTO])
        same = all(first[n].equals(read_table(store, n)) for n in first)
        out.report(
            "efficacy rerun on 1 worker: tables "
            f"{'identical' if same else 'DIFFERENT'} ({out.target('seeded, 1 vs 2 workers', same)})"
        )

    finally:
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out.summary()
    return out.exit_code()


if __name__ == "__main__":
    sys.exit(main())
