"""Behaviour of the synthetic fluorescence-nuclei generator that segmentation training,
evaluation and tiled-inference tests rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from skimage.measure import regionprops_table

from pipeline.cli import main
from pipeline.synth import (
    NUCLEI_TRUTH_COLUMNS,
    NucleiSynthParams,
    generate_nuclei,
    load_nuclei_truth,
    render_nuclei,
)

SIZE = 128  # small images keep the tests fast; about 25 nuclei each


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nuclei")
    generate_nuclei(out, count=4, size=SIZE, seed=3)
    return out


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        hit = (a != b) & (a > 0) & (b > 0)
        pairs.update((int(min(u, v)), int(max(u, v))) for u, v in zip(a[hit], b[hit], strict=True))
    return pairs


# --------------------------------------------------------------------- files and truth


def test_images_and_masks_are_flat_pairs_matched_by_name(dataset: Path) -> None:
    images = sorted(p.name for p in (dataset / "images").iterdir())
    masks = sorted(p.name for p in (dataset / "masks").iterdir())
    assert images == masks == [f"nuclei_{i:04d}.png" for i in range(4)]
    image, mask = _read(dataset / "images" / images[0]), _read(dataset / "masks" / masks[0])
    assert image.shape == mask.shape == (SIZE, SIZE)
    assert image.dtype == np.uint8 and mask.dtype == np.uint16
    truth = load_nuclei_truth(dataset)
    assert tuple(truth.columns) == NUCLEI_TRUTH_COLUMNS
    assert sorted(truth["image_id"].unique()) == [n.removesuffix(".png") for n in images]


def test_masks_hold_every_truth_label_with_its_measured_shape(dataset: Path) -> None:
    truth = load_nuclei_truth(dataset)
    for image_id, rows in truth.groupby("image_id"):
        labels = _read(dataset / "masks" / f"{image_id}.png").astype(np.int64)
        image = _read(dataset / "images" / f"{image_id}.png")
        # Labels 1..n, every one present, one truth row each.
        assert list(rows["label"]) == list(range(1, len(rows) + 1))
        assert set(np.unique(labels)) == {0, *rows["label"]}
        assert list(np.bincount(labels.ravel())[1:]) == list(rows["area"])
        props = pd.DataFrame(
            regionprops_table(
                labels,
                intensity_image=image,
                properties=(
                    "label",
                    "centroid",
                    "axis_major_length",
                    "axis_minor_length",
                    "orientation",
                    "intensity_mean",
                ),
            )
        )
        pairs = {
            "centroid-0": "y",
            "centroid-1": "x",
            "axis_major_length": "major_axis",
            "axis_minor_length": "minor_axis",
            "orientation": "orientation",
            "intensity_mean": "mean_intensity",
        }
        for theirs, ours in pairs.items():
            np.testing.assert_allclose(rows[ours], props[theirs], atol=1e-6, err_msg=ours)
        np.testing.assert_allclose(rows["equivalent_radius"], np.sqrt(rows["area"] / np.pi))
    # Sizes follow params.radius_px (4-12 px), allowing for the boundary harmonics and for
    # nuclei cut by the image border.
    assert truth["equivalent_radius"].median() == pytest.approx(7.0, abs=2.0)
    assert truth["equivalent_radius"].max() < 14.0


def test_clusters_touch_and_isolated_nuclei_do_not(dataset: Path) -> None:
    truth = load_nuclei_truth(dataset)
    n_pairs = 0
    for image_id, rows in truth.groupby("image_id"):
        labels = _read(dataset / "masks" / f"{image_id}.png")
        cluster = dict(zip(rows["label"], rows["cluster_id"], strict=True))
        pairs = _touching_pairs(labels)
        n_pairs += len(pairs)
        # Only nuclei of one cluster touch, and the truth says so.
        assert all(cluster[a] == cluster[b] >= 0 for a, b in pairs)
        touching = {label for pair in pairs for label in pair}
        assert set(rows.loc[rows["touching"], "label"]) == touching
    assert n_pairs >= 5
    isolated = truth["cluster_id"] == -1
    assert not truth.loc[isolated, "touching"].any()
    # About params.cluster_fraction of the nuclei are clustered; most members touch.
    assert 0.1 < (~isolated).mean() < 0.6
    assert truth.loc[~isolated, "touching"].mean() > 0.8


def test_nuclei_are_brighter_than_background(dataset: Path) -> None:
    for path in sorted((dataset / "images").iterdir()):
        image = _read(path).astype(np.float64)
        labels = _read(dataset / "masks" / path.name)
        inside, outside = image[labels > 0], image[labels == 0]
        assert inside.mean() > outside.mean() + 40
        # A dark, not black, background: an offset plus noise, nothing clipped at 0.
        assert 3 < np.median(outside) < 40


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    kwargs: dict[str, object] = {"count": 2, "size": 64, "seed": 5, "large": 256, "tile": 128}
    generate_nuclei(tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    generate_nuclei(tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    generate_nuclei(tmp_path / "c", **{**kwargs, "seed": 6})  # type: ignore[arg-type]
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert set(a) == {
        "images/nuclei_0000.png",
        "images/nuclei_0001.png",
        "masks/nuclei_0000.png",
        "masks/nuclei_0001.png",
        "truth.csv",
        "large/field.tif",
        "large/field_labels.tif",
        "large/truth.csv",
    }
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_an_image_depends_on_its_index_not_the_count(tmp_path: Path, dataset: Path) -> None:
    generate_nuclei(tmp_path, count=2, size=SIZE, seed=3)
    for name in ("images/nuclei_0001.png", "masks/nuclei_0001.png"):
        assert (tmp_path / name).read_bytes() == (dataset / name).read_bytes()
    rendered = render_nuclei(3, index=1, size=SIZE)
    assert np.array_equal(rendered.image, _read(dataset / "images" / "nuclei_0001.png"))
    assert np.array_equal(rendered.labels, _read(dataset / "masks" / "nuclei_0001.png"))
    expected = load_nuclei_truth(dataset).query("image_id == 'nuclei_0001'")
    pd.testing.assert_frame_equal(
        rendered.truth.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-12
    )


def test_binary_masks_and_rgb_images_keep_the_same_nuclei(tmp_path: Path, dataset: Path) -> None:
    generate_nuclei(tmp_path, count=1, size=SIZE, seed=3, channels=3, mask_format="binary")
    labels = _read(dataset / "masks" / "nuclei_0000.png")
    binary = _read(tmp_path / "masks" / "nuclei_0000.png")
    assert binary.dtype == np.uint8 and set(np.unique(binary)) == {0, 255}
    assert np.array_equal(binary > 0, labels > 0)
    grey = _read(dataset / "images" / "nuclei_0000.png").astype(np.float64)
    rgb = _read(tmp_path / "images" / "nuclei_0000.png").astype(np.float64)
    assert rgb.shape == (SIZE, SIZE, 3)
    # Each channel is the grey image times a gain in [1 - tint, 1] (a mild tint).
    gains = [(rgb[..., c] * grey).sum() / (grey * grey).sum() for c in range(3)]
    assert all(0.84 < g < 1.01 for g in gains) and max(gains) - min(gains) > 0.005
    truth = load_nuclei_truth(tmp_path)
    first = load_nuclei_truth(dataset).query("image_id == 'nuclei_0000'")
    assert list(truth["area"]) == list(first["area"])


def test_progress_counts_images_and_field_tiles(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_nuclei(
        tmp_path,
        count=2,
        size=64,
        large=320,
        tile=128,
        progress=lambda d, t: calls.append((d, t)),
    )
    # 2 images and 3 x 3 tiles (the last row and column of tiles cut by the border).
    assert calls == [(i, 11) for i in range(1, 12)]


# --------------------------------------------------------------------- large field


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fields")
    for tile in (256, 512):
        generate_nuclei(root / str(tile), count=1, size=64, seed=9, large=512, tile=tile)
    return root / "256", root / "512"


def test_large_field_is_a_tiled_tiff_with_labels_and_truth(fields: tuple[Path, Path]) -> None:
    tiled, _ = fields
    with tifffile.TiffFile(tiled / "large" / "field.tif") as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        image = page.asarray()
    labels = tifffile.imread(tiled / "large" / "field_labels.tif")
    assert image.shape == labels.shape == (512, 512)
    assert image.dtype == np.uint16 and labels.dtype == np.uint32
    truth = load_nuclei_truth(tiled / "large")
    assert (truth["image_id"] == "field").all()
    # The density's midpoint, 12 per 10,000 px^2, less the few that found no spot.
    assert 0.9 * 12 * 512 * 512 / 1e4 < len(truth) <= round(12 * 512 * 512 / 1e4)
    assert list(np.bincount(labels.ravel().astype(np.int64))[1:]) == list(truth["area"])
    props = pd.DataFrame(regionprops_table(labels, properties=("label", "centroid")))
    np.testing.assert_allclose(truth["y"], props["centroid-0"], atol=1e-6)
    np.testing.assert_allclose(truth["x"], props["centroid-1"], atol=1e-6)
    assert image[labels > 0].mean() > 2 * image[labels == 0].mean()


def test_large_field_tiles_are_seamless(fields: tuple[Path, Path]) -> None:
    tiled, whole = fields
    for name in ("field.tif", "field_labels.tif"):
        assert np.array_equal(
            tifffile.imread(tiled / "large" / name), tifffile.imread(whole / "large" / name)
        ), name
    assert (tiled / "large" / "truth.csv").read_bytes() == (
        whole / "large" / "truth.csv"
    ).read_bytes()
    # Nuclei cut by the tile faces keep one label, touching flags included.
    labels = tifffile.imread(tiled / "large" / "field_labels.tif")
    across = set(labels[255][labels[255] > 0]) & set(labels[256][labels[256] > 0])
    across |= set(labels[:, 255][labels[:, 255] > 0]) & set(labels[:, 256][labels[:, 256] > 0])
    assert len(across) >= 3
    truth = load_nuclei_truth(tiled / "large").set_index("label")
    pairs = _touching_pairs(labels)
    assert {label for pair in pairs for label in pair} == set(truth.index[truth["touching"]])


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count": 0}, "count must be an integer >= 1, got 0"),
        ({"size": 32}, "size must be an integer >= 64, got 32"),
        ({"size": 100.0}, "size must be an integer"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"channels": 2}, "channels must be 1 .* or 3 .*, got 2"),
        ({"mask_format": "rle"}, "mask_format must be one of .*, got 'rle'"),
        ({"large": 100}, "large must be an integer >= 256, got 100"),
        ({"large": 512, "tile": 100}, "tile must be a multiple of 16 .*, got 100"),
        ({"tile": 32}, "tile must be an integer >= 64, got 32"),
        ({"size": 6500}, "more than a 16-bit PNG label mask holds"),
    ],
)
def test_generate_nuclei_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        generate_nuclei(tmp_path, **{"count": 1, "size": 64, **kwargs})  # type: ignore[arg-type]
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("radius_px", (1.0, 5.0), r"radius_px must be a \(low, high\) pair with 2 <= low"),
        ("radius_px", (8.0, 4.0), "radius_px .* got \\(8.0, 4.0\\)"),
        ("density", (0.0, 10.0), "density"),
        ("cluster_size", (2.5, 4.0), "cluster_size must be a pair of integers"),
        ("irregularity", 0.5, "irregularity must be >= 0 and <= 0.15, got 0.5"),
        ("cluster_fraction", -0.1, "cluster_fraction must be >= 0"),
        ("psf_sigma_px", 0.0, "psf_sigma_px must be > 0"),
        ("read_noise", float("nan"), "read_noise must be a finite number"),
        ("placement_tries", 0, "placement_tries must be an integer in"),
    ],
)
def test_params_reject_out_of_range_values(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=f"NucleiSynthParams.{match}"):
        NucleiSynthParams(**{field: value})  # type: ignore[arg-type]


def test_params_change_the_images(tmp_path: Path) -> None:
    small = render_nuclei(1, size=SIZE, params=NucleiSynthParams(radius_px=(3.0, 4.0)))
    large = render_nuclei(1, size=SIZE, params=NucleiSynthParams(radius_px=(10.0, 12.0)))
    assert small.truth["area"].median() < 0.25 * large.truth["area"].median()
    with pytest.raises(TypeError, match="params must be a NucleiSynthParams"):
        render_nuclei(1, params={"radius_px": (3.0, 4.0)})  # type: ignore[arg-type]


def test_load_nuclei_truth_explains_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no nuclei truth table here"):
        load_nuclei_truth(tmp_path)
    (tmp_path / "truth.csv").write_text("image_id,label\nnuclei_0000,1\n")
    with pytest.raises(ValueError, match=r"lacks the column.*area"):
        load_nuclei_truth(tmp_path)


def test_load_nuclei_truth_types(dataset: Path) -> None:
    truth = load_nuclei_truth(dataset / "truth.csv")
    assert truth["touching"].dtype == bool and truth["label"].dtype == np.int64
    assert truth["cluster_id"].dtype == np.int64 and truth["image_id"].dtype == object
    assert truth["y"].dtype == np.float64


# --------------------------------------------------------------------- command line


def test_cli_writes_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nuclei"
    argv = ["synth", "nuclei", str(out), "--count", "2", "--size", "64", "--seed", "1"]
    argv += ["--channels", "3", "--mask-format", "binary", "--large", "256", "--tile", "128"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("Wrote 2 images with ") and "large/ (256 x 256 field)" in summary
    assert _read(out / "images" / "nuclei_0001.png").shape == (64, 64, 3)
    assert set(np.unique(_read(out / "masks" / "nuclei_0001.png"))) <= {0, 255}
    assert (out / "large" / "field.tif").is_file() and (out / "large" / "truth.csv").is_file()


def test_cli_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "nuclei", str(tmp_path / "n"), "--large", "100"]) == 2
    assert "large must be an integer >= 256, got 100" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
