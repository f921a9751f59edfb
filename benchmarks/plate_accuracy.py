"""Accuracy of the plate stages on generated plates with known truth.

Generates ``--plates`` plates (``pipeline.synth.generate_plates`` with the true masks and a
raised ``--fault-rate``), runs ``ingest_plates`` and ``segment_spheroids`` as a job on a local
cluster, and compares, image by image:

* the Jaccard index (IoU) of the stored spheroid mask (label 1) with the true one, on intact
  spheroids (no fault, not exploded): target mean >= 0.9;
* each QC flag against the generated faults: precision and recall, target >= 0.95.

    .venv/bin/python benchmarks/plate_accuracy.py [--plates 2] [--size 256] [--fault-rate 0.1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from pipeline import RunStore
from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.tables import read_table
from pipeline.synth import FAULTS, generate_plates, load_image_truth

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, open_workdir, version

MODULES = ("pipeline/workflows/plates/segment.py", "pipeline/workflows/plates/stages.py")
JOB = """\
name: accuracy
store: {store}
cluster: {{kind: local, threads_per_worker: 1, dashboard_address: ':0'}}
stages:
  - stage: ingest_plates
    params: {{index: {data}/image_index.csv, plate_map: {data}/plate_map.csv,
              exclude_edge: false}}
  - stage: segment_spheroids
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plates", type=int, default=2)
    ap.add_argument("--size", type=int, default=256, help="image side (default 256)")
    ap.add_argument("--fault-rate", type=float, default=0.1, help="share of faulty images")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)
    workdir, own = open_workdir(args.workdir, "bench-plate-accuracy-")
    out = Results()
    out.report(f"library measured: {version(MODULES)}")
    try:
        data, store_path = workdir / "plates", workdir / "run"
        generate_plates(
            data,
            plates=args.plates,
            seed=1,
            size=args.size,
            fields=(1, 2),
            fault_rate=args.fault_rate,
            write_masks=True,
        )
        run_job(parse_job(JOB.format(store=store_path, data=data)))
        store = RunStore(str(store_path))
        qc = read_table(store, "spheroid_qc")
        truth = load_image_truth(data / "image_truth.csv")
        # The store's images are named plate_well_dDD_fF; the truth by file.
        truth["image_id"] = [
            f"{p}_{w}_d{d:02d}_f{f}"
            for p, w, d, f in truth[["plate", "well", "day", "field"]].itertuples(index=False)
        ]
        merged = qc.merge(truth, on="image_id", how="inner", suffixes=("", "_truth"))
        assert len(merged) == len(qc) == len(truth), (len(merged), len(qc), len(truth))
        position = {name: i for i, name in enumerate(qc["image_id"])}
        masks = store.open_array("spheroid_masks", mode="r")
        intact = merged[(merged["fault"] == "") & ~merged["exploded"].astype(bool)]
        ious = []
        for image_id, file in intact[["image_id", "file"]].itertuples(index=False):
            got = np.asarray(masks[position[image_id]]) == 1
            want = tifffile.imread(data / "masks" / Path(file).name) == 1
            union = (got | want).sum()
            ious.append((got & want).sum() / union if union else 1.0)
        mean_iou = float(np.mean(ious))
        out.report(
            f"spheroid Jaccard on {len(ious)} intact images ({args.size} px): mean "
            f"{mean_iou:.4f}, min {np.min(ious):.4f}, 5th percentile "
            f"{np.percentile(ious, 5):.4f} (target mean >= 0.9: "
            f"{out.target('Jaccard >= 0.9', mean_iou >= 0.9)})"
        )
        for flag in FAULTS:
            actual = (merged["fault"] == flag).to_numpy()
            flagged = merged[flag].to_numpy(bool)
            tp = int((actual & flagged).sum())
            precision = tp / max(int(flagged.sum()), 1)
            recall = tp / max(int(actual.sum()), 1)
            met = precision >= 0.95 and recall >= 0.95
            out.report(
                f"{flag}: precision {precision:.3f}, recall {recall:.3f} ({int(actual.sum())} "
                f"generated, {int(flagged.sum())} flagged; target >= 0.95: "
                f"{out.target(f'{flag} P/R >= 0.95', met)})"
            )
        summary = pd.Series({f: int(merged[f].sum()) for f in FAULTS})
        out.report(f"{len(merged)} images; flags raised: {summary.to_dict()}")
    finally:
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out.summary()
    return out.exit_code()


if __name__ == "__main__":
    sys.exit(main())
