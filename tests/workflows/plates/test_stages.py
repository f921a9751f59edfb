"""The plate stages on a small ingested plate, against a plain loop over the images with the
same per-image functions: chunk boundaries cut through the plate (3 images per chunk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from distributed import Client

from pipeline.core.jobs import parse_job
from pipeline.core.runner import run_job
from pipeline.core.store import RunStore
from pipeline.core.tables import read_table
from pipeline.workflows.plates.measure import FEATURE_COLUMNS, measure_spheroid
from pipeline.workflows.plates.profiles import build_profiles, normalize_profiles
from pipeline.workflows.plates.segment import flag_out_of_focus, segment_spheroid
from pipeline.workflows.plates.segment_spec import SegmentParams
from pipeline.workflows.plates.spec import ProfileParams
from pipeline.workflows.plates.tables import FEATURE_DOCS

SIZE = 96
JOB = """\
name: plate
store: {store}
input:
  sources: [{manifest}]
  chunk_mb: 0.06
stages:
  - stage: segment_spheroids
  - stage: spheroid_features
    params: {{pixel_size_um: 2.5}}
  - stage: spheroid_profiles
  - stage: report
    params: {{montage_images: 4}}
"""


def _well_image(rng: np.random.Generator, radius: float, empty: bool) -> np.ndarray:
    """A light background with uneven illumination and, unless empty, a dark textured disc."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    light = 40000 * (1 - 0.15 * ((xx - SIZE / 3) ** 2 + (yy - SIZE / 2) ** 2) / SIZE**2)
    img = light + rng.normal(0, 400, (SIZE, SIZE))
    if not empty:
        cy, cx = SIZE / 2 + rng.uniform(-4, 4, 2)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        img[inside] *= 0.35 + 0.05 * rng.standard_normal(int(inside.sum()))
    return np.clip(img, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two plates x 3 wells x days 7 and 10 x 1-2 fields; one empty well."""
    root = tmp_path_factory.mktemp("plate")
    rng = np.random.default_rng(0)
    rows = []
    for plate in ("P01", "P02"):
        for w, (well, group) in enumerate((("B02", "untreated"), ("B03", "untreated"),
                                            ("C02", "screening"))):  # fmt: skip
            for day in (7, 10):
                for field in range(1, 3 if w == 0 else 2):
                    empty = plate == "P02" and well == "C02"
                    grow = 1.3 if group == "untreated" and day == 10 else 1.0
                    img = _well_image(rng, 18 * grow, empty)
                    name = f"{plate}_{well}_f{field}_d{day:02d}.tif"
                    tifffile.imwrite(root / name, img)
                    rows.append(
                        {
                            "path": name,
                            "image_id": name[:-4],
                            "plate": plate,
                            "well": well,
                            "row": well[0],
                            "column": int(well[1:]),
                            "field": field,
                            "day": day,
                            "treatment": "" if group == "untreated" else "drugA",
                            "concentration": 0.0 if group == "untreated" else 1.0,
                            "unit": "" if group == "untreated" else "uM",
                            "group": group,
                        }
                    )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def store(plate: Path, client: Client, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    out = tmp_path_factory.mktemp("run") / "run"
    summary = run_job(
        parse_job(JOB.format(store=out, manifest=plate / "manifest.csv")), client=client
    )
    assert summary.ran == [
        "ingest",
        "segment_spheroids",
        "spheroid_features",
        "spheroid_profiles",
        "report",
    ]
    return RunStore(str(out))


def _plain(store: RunStore) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The same per-image functions in a plain loop over the stored images."""
    with store.open_dataset() as ds:
        images = ds["images"].values
        plates = ds["plate"].values
    params = SegmentParams()
    results = [segment_spheroid(img, params) for img in images]
    masks = np.stack([r.labels for r in results])
    qc = pd.DataFrame(
        {
            "focus_score": [r.focus_score for r in results],
            "empty_well": [r.empty_well for r in results],
            "touches_edge": [r.touches_edge for r in results],
            "multiple_bodies": [r.multiple_bodies for r in results],
        }
    )
    out_of_focus = np.zeros(len(qc), dtype=bool)
    for p in np.unique(plates):
        sel = (plates == p) & ~qc["empty_well"].to_numpy()
        out_of_focus[sel] = flag_out_of_focus(qc.loc[sel, "focus_score"].to_numpy(), params)
    qc["out_of_focus"] = out_of_focus
    features = pd.DataFrame(
        [measure_spheroid(img, m, 2.5) for img, m in zip(images, masks, strict=True)]
    )
    return masks, qc, features


def test_masks_qc_and_features_equal_a_plain_loop(store: RunStore) -> None:
    masks, qc, features = _plain(store)
    with store.open_dataset() as ds:
        assert ds["spheroid_masks"].dims == ("image", "y", "x")
        assert ds["spheroid_masks"].dtype == np.uint8
        assert ds["images"].encoding["chunks"][0] == 3  # chunks cut through wells and plates
        np.testing.assert_array_equal(ds["spheroid_masks"].values, masks)
    stored = read_table(store, "spheroid_qc")
    assert len(stored) == len(masks)
    pd.testing.assert_frame_equal(stored[list(qc.columns)], qc, check_dtype=False)
    assert stored["valid"].all()
    table = read_table(store, "spheroid_features")
    pd.testing.assert_frame_equal(table[list(FEATURE_COLUMNS)], features, check_dtype=False)
    assert tuple(FEATURE_DOCS) == tuple(FEATURE_COLUMNS)  # every feature is documented


def test_the_empty_well_is_flagged_and_has_no_features(store: RunStore) -> None:
    qc = read_table(store, "spheroid_qc")
    empty = (qc["plate"] == "P02") & (qc["well"] == "C02")
    assert qc.loc[empty, "empty_well"].all() and not qc.loc[empty, "ok"].any()
    assert qc.loc[~empty, "ok"].all(), qc[~empty]
    features = read_table(store, "spheroid_features")
    rows = features[features["Metadata_ImageID"].str.startswith("P02_C02")]
    assert rows["AreaShape_Area"].isna().all()
    assert set(rows["Metadata_QCFlags"]) == {"empty_well"}


def test_profiles_are_the_features_aggregated_and_normalised(store: RunStore) -> None:
    features = read_table(store, "spheroid_features")
    assert features["Metadata_Plate"].tolist()[:1] == ["P01"]
    expected = build_profiles(features, list(FEATURE_COLUMNS), ProfileParams())
    profiles = read_table(store, "spheroid_profiles")
    pd.testing.assert_frame_equal(profiles, expected)
    assert len(profiles) == 2 * 3 * 2
    normalized = read_table(store, "spheroid_profiles_normalized")
    pd.testing.assert_frame_equal(normalized, normalize_profiles(expected, "untreated"))
    # Untreated spheroids grew from day 7 to day 10 (the images were drawn that way).
    untreated = profiles[(profiles.Metadata_Group == "untreated") & (profiles.Metadata_Day == 10)]
    assert (untreated["AreaShape_Area_ChangeRatio"] > 1.3).all()
    # Physical units: areas in um^2 at 2.5 um per pixel.
    assert profiles["AreaShape_Area"].min() > 2.5**2 * np.pi * 14**2


def test_a_rerun_skips_and_a_changed_parameter_redoes_only_what_follows(
    store: RunStore, plate: Path, client: Client
) -> None:
    spec = JOB.format(store=store.url, manifest=plate / "manifest.csv")
    again = run_job(parse_job(spec), client=client)
    assert again.ran == []
    changed = run_job(
        parse_job(spec, overrides=["spheroid_features.pixel_size_um=1"]), client=client
    )
    assert changed.ran == ["spheroid_features", "spheroid_profiles", "report"]
    features = read_table(store, "spheroid_features")
    _, _, plain = _plain(store)
    area = plain["AreaShape_Area"] / 2.5**2  # the plain loop measured at 2.5 um per pixel
    np.testing.assert_allclose(features["AreaShape_Area"], area)


def test_the_report_shows_qc_heatmaps_trajectories_and_a_time_lapse(store: RunStore) -> None:
    html = (Path(store.url) / "report" / "index.html").read_text()
    for heading in ("<h2>Plates</h2>", "Quality control", "Plate heatmaps", "Time-lapse"):
        assert heading in html
    for png in ("plate_heatmaps_P01.png", "plate_heatmaps_P02.png", "plate_trajectories.png",
                "plate_time_lapse.png", "plate_qc_examples.png"):  # fmt: skip
        assert (Path(store.url) / "report" / png).read_bytes().startswith(b"\x89PNG")
    assert "Z&#x27;-factor" not in html and "Z'-factor" not in html  # no positive control here


def test_z_prime_is_zhangs_factor() -> None:
    from pipeline.workflows.plates.report import z_prime

    pos = np.array([10.0, 11.0, 9.0, 10.0])
    neg = np.array([100.0, 104.0, 96.0, 100.0])
    expected = 1 - 3 * (pos.std(ddof=1) + neg.std(ddof=1)) / 90.0
    assert z_prime(pos, neg) == pytest.approx(expected)
    assert np.isnan(z_prime(pos[:1], neg))


def test_a_well_whose_image_cannot_be_read_is_named_in_the_report(
    client: Client, tmp_path: Path
) -> None:
    from pipeline.synth import generate_plates

    data = tmp_path / "plates"
    generate_plates(data, plates=1, seed=0, size=64, fields=(1, 1), days=(7,), fault_rate=0)
    broken = data / "images" / "P01_C05_f1_d07.tif"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated: quarantined at ingest
    spec = f"""\
name: lost
store: {tmp_path / "run"}
stages:
  - stage: ingest_plates
    params: {{index: {data / "image_index.csv"}, plate_map: {data / "plate_map.csv"}}}
  - stage: segment_spheroids
  - stage: report
    params: {{montage_images: 0}}
"""
    run_job(parse_job(spec), client=client)
    html = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "could not be read" in html and "<td>C05</td>" in html
    quarantine = read_table(RunStore(str(tmp_path / "run")), "quarantine")
    assert [Path(p).name for p in quarantine["path"]] == [broken.name]


def test_a_bad_plate_map_exits_2_listing_every_problem_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main
    from pipeline.synth import generate_plates

    data = tmp_path / "plates"
    generate_plates(data, plates=1, seed=0, size=64, fields=(1, 1), days=(7,), fault_rate=0)
    plate_map = pd.read_csv(data / "plate_map.csv")
    plate_map.loc[plate_map.well == "B02", "group"] = "vehicle"
    plate_map.loc[plate_map.well == "C03", "well"] = "Q30"
    plate_map.to_csv(data / "plate_map.csv", index=False)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: bad\nstore: {tmp_path / 'run'}\nstages:\n  - stage: ingest_plates\n"
        f"    params: {{index: {data / 'image_index.csv'}, plate_map: {data / 'plate_map.csv'}}}\n"
    )
    assert main(["run", str(spec), "-q"]) == 2
    err = capsys.readouterr().err
    assert "'vehicle'" in err and "'Q30'" in err and "C03" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was written


def test_a_plate_added_later_is_segmented_alone_and_joins_every_table(
    store: RunStore, plate: Path, client: Client, tmp_path: Path
) -> None:
    """A screen gains a plate: the second run decodes and segments only its images, and every
    table and mask is what one run over both plates gives (the module's store)."""
    rows = pd.read_csv(plate / "manifest.csv")
    manifest = plate / "growing.csv"  # beside the images: its paths are relative to it
    rows[rows["plate"] == "P01"].to_csv(manifest, index=False)
    spec = JOB.format(store=tmp_path / "run", manifest=manifest)
    first = run_job(parse_job(spec), client=client)
    n_first = first.counts["segment_spheroids"]["images"]
    assert n_first == (rows["plate"] == "P01").sum() == 8  # chunks of 3: the last holds 2
    rows.to_csv(manifest, index=False)
    second = run_job(parse_job(spec), client=client)
    n_new = int((rows["plate"] == "P02").sum())
    assert second.ran == first.ran
    assert second.counts["ingest"]["images_added"] == n_new
    assert second.counts["ingest"]["images_written"] == n_new
    assert second.counts["segment_spheroids"]["segmented"] == n_new
    grown = RunStore(str(tmp_path / "run"))
    with grown.open_dataset() as ds, store.open_dataset() as once:
        assert [str(v) for v in ds["image_id"].values] == [str(v) for v in once["image_id"].values]
        np.testing.assert_array_equal(ds["spheroid_masks"].values, once["spheroid_masks"].values)
    pd.testing.assert_frame_equal(
        read_table(grown, "spheroid_qc"), read_table(store, "spheroid_qc")
    )
    # (The module's store may have been rerun at another pixel size: features as they are.)
    _, _, plain = _plain(grown)
    features = read_table(grown, "spheroid_features")
    pd.testing.assert_frame_equal(features[list(FEATURE_COLUMNS)], plain, check_dtype=False)
    expected = build_profiles(features, list(FEATURE_COLUMNS), ProfileParams())
    pd.testing.assert_frame_equal(read_table(grown, "spheroid_profiles"), expected)
    html = (Path(grown.url) / "report" / "index.html").read_text()
    assert (Path(grown.url) / "report" / "plate_heatmaps_P02.png").exists() and "P02" in html
