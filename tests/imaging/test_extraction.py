"""Source extraction tile by tile (``extract_tile``) against SEP on the whole image
(``extract_whole``), and the catalog's flags, magnitudes and parameters."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sep
from pydantic import ValidationError

from pipeline.imaging.background import SkyMesh, box_statistics, filter_mesh, mesh_shape
from pipeline.imaging.extraction import (
    FLAG_BLENDED,
    FLAG_NEIGHBOURS,
    FLAG_SATURATED,
    FLAG_TRUNCATED,
    aperture_columns,
    extract_tile,
    extract_whole,
    magnitudes,
)
from pipeline.imaging.spec import ExtractParams

H, W = 300, 400
SKY, NOISE = 100.0, 2.0
# Small background boxes (bw != bh), a small halo so that tiles must grow it and re-measure,
# two fixed apertures (their names and reach are part of the catalog).
PARAMS = ExtractParams(bw=32, bh=48, halo=8, phot_apertures=(4.0, 12.5))
SATURATION = 2500.0
Box = tuple[int, int, int, int]

# Stars of peak 3000 on tile corners and edges (saturated at SATURATION).
BRIGHT = [(100.3, 100.6), (199.6, 300.2), (150.2, 200.4), (40.5, 99.8)]
# Close pairs straddling tile boundaries: SEP deblends them.
PAIRS = [(98.0, 297.0), (200.0, 200.0), (250.0, 100.0), (60.0, 195.0)]
# Sources on the image's edges: top row and right column.
EDGE = [(0.5, 250.0), (150.0, 398.5)]


def _render(seed: int = 0) -> np.ndarray:
    """Noise on a flat sky with bright, extended, close-pair, edge and faint sources."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)

    def gauss(cy: float, cx: float, amp: float, s: float) -> np.ndarray:
        return amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))

    def sersic(
        cy: float, cx: float, amp: float, re: float, q: float, th: float, n: float
    ) -> np.ndarray:
        u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
        v = (-(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)) / q
        return amp * np.exp(-(2 * n - 1 / 3) * ((np.hypot(u, v) / re) ** (1 / n) - 1))

    img = SKY + rng.normal(0.0, NOISE, (H, W))
    for cy, cx in BRIGHT:
        img += gauss(cy, cx, 3000.0, 1.8)
    img += sersic(100.0, 205.0, 40.0, 14.0, 0.6, 0.5, 1.0)  # extended, across a tile corner
    img += sersic(205.0, 95.0, 30.0, 18.0, 0.5, -0.8, 1.5)
    for cy, cx in PAIRS:
        img += gauss(cy, cx - 3.5, 400.0, 1.6) + gauss(cy + 1.0, cx + 3.5, 250.0, 1.6)
    for cy, cx in EDGE:
        img += gauss(cy, cx, 500.0, 2.0)
    for _ in range(40):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        img += gauss(cy, cx, rng.uniform(30, 300), rng.uniform(1.2, 3.0))
    return img.astype(np.float32)


def _sky(image: np.ndarray, params: ExtractParams, blocks: tuple[int, int] = (2, 3)) -> SkyMesh:
    """Pass 1 on blocks of whole boxes (``blocks`` boxes a side), then the mesh filter."""
    h, w = image.shape
    bh, bw = params.bh, params.bw
    boxes = np.zeros((3, *mesh_shape(h, w, bw, bh)), dtype=np.float32)
    by, bx = blocks[0] * bh, blocks[1] * bw
    for r in range(0, h, by):
        for c in range(0, w, bx):
            stats = box_statistics(image[r : r + by, c : c + bx], None, bw, bh)
            boxes[:, r // bh : r // bh + stats.shape[1], c // bw : c // bw + stats.shape[2]] = stats
    return filter_mesh(
        boxes, fw=params.fw, fh=params.fh, fthresh=params.fthresh, bw=bw, bh=bh, shape=(h, w)
    )


def _cores(h: int, w: int, ty: int, tx: int) -> list[Box]:
    return [
        (r, min(h, r + ty), c, min(w, c + tx)) for r in range(0, h, ty) for c in range(0, w, tx)
    ]


def _tiled(
    image: np.ndarray,
    params: ExtractParams,
    cores: list[Box],
    saturation: float | None = None,
) -> tuple[list[pd.DataFrame], list[dict[str, int]]]:
    sky = _sky(image, params)

    def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return image[r0:r1, c0:c1]

    tables, infos = [], []
    for core in cores:
        table, info = extract_tile(read, sky, core, params, saturation=saturation)
        tables.append(table)
        infos.append(info)
    return tables, infos


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["y", "x"], ignore_index=True)


def _assert_same_catalog(tiled: pd.DataFrame, whole: pd.DataFrame) -> None:
    """Same objects; integer columns equal, positions to 1e-9 px, the rest to rtol 1e-6."""
    assert len(tiled) == len(whole)
    # (Column order: see test_empty_table_has_the_columns_in_the_same_order.)
    assert set(tiled.columns) == set(whole.columns)
    tiled, whole = _sorted(tiled), _sorted(whole)
    for col in whole.columns:
        a, b = tiled[col].to_numpy(), whole[col].to_numpy()
        if a.dtype.kind in "iub":
            assert np.array_equal(a, b), col
        elif col in ("x", "y"):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=col)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=0, equal_nan=True, err_msg=col)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return _render()


@pytest.fixture(scope="module")
def whole(image: np.ndarray) -> pd.DataFrame:
    return extract_whole(image, PARAMS, saturation=SATURATION)


def _crosses(table: pd.DataFrame, ty: int, tx: int) -> np.ndarray:
    """Objects whose footprint's bounding box crosses a core boundary."""
    return np.asarray(
        (table["ymin"] // ty != table["ymax"] // ty) | (table["xmin"] // tx != table["xmax"] // tx)
    )


@pytest.mark.parametrize(("ty", "tx"), [(100, 100), (64, 77)])
def test_tiled_catalog_equals_whole_image(
    image: np.ndarray, whole: pd.DataFrame, ty: int, tx: int
) -> None:
    tables, infos = _tiled(image, PARAMS, _cores(H, W, ty, tx), saturation=SATURATION)
    tiled = pd.concat(tables, ignore_index=True)
    _assert_same_catalog(tiled, whole)
    # The field exercises what the rules are for: deblended parents, objects cut by core
    # boundaries, tiles that grew their halo and objects measured in a window of their own.
    merged = (whole["sep_flags"] & sep.OBJ_MERGED) > 0
    assert merged.sum() >= 8
    assert _crosses(whole, ty, tx).sum() >= 8
    assert _crosses(whole[merged], ty, tx).sum() >= 2
    assert max(i["halo"] for i in infos) > PARAMS.halo
    assert sum(i["remeasured"] for i in infos) >= 1
    assert all(PARAMS.halo <= i["halo"] <= PARAMS.max_halo for i in infos)
    # Every bright star, pair member and edge source is in the catalog.
    for cy, cx in BRIGHT:
        assert (np.hypot(whole["y"] - cy, whole["x"] - cx) < 1.0).sum() == 1
    for cy, cx in EDGE:  # half off the image: the centroid moves inwards
        assert (np.hypot(whole["y"] - cy, whole["x"] - cx) < 2.0).sum() == 1
    for cy, cx in PAIRS:
        near = np.hypot(whole["y"] - cy, whole["x"] - cx) < 7.0
        assert near.sum() == 2 and merged[near].all()
    # Source Extractor's BLENDED flag is SEP's OBJ_MERGED.
    assert np.array_equal((whole["flags"] & FLAG_BLENDED) > 0, merged)


@pytest.mark.parametrize(("ty", "tx"), [(100, 100), (64, 77)])
def test_each_object_belongs_to_the_core_holding_its_centroid(
    image: np.ndarray, ty: int, tx: int
) -> None:
    cores = _cores(H, W, ty, tx)
    tables, _ = _tiled(image, PARAMS, cores)
    for (r0, r1, c0, c1), table in zip(cores, tables, strict=True):
        row = np.floor(table["y"] + 0.5)
        col = np.floor(table["x"] + 0.5)
        assert ((row >= r0) & (row < r1) & (col >= c0) & (col < c1)).all()
    tiled = pd.concat(tables, ignore_index=True)
    assert len(tiled) > 40
    assert not tiled.duplicated(["x", "y"]).any()
    # The same object from two tiles would share its footprint's box too.
    assert not tiled.duplicated(["xmin", "xmax", "ymin", "ymax", "npix"]).any()


def test_catalog_columns(whole: pd.DataFrame) -> None:
    expected = {
        "x",
        "y",
        "xmin",
        "xmax",
        "ymin",
        "ymax",
        "npix",
        "a",
        "b",
        "theta",
        "flux",
        "peak",
        "thresh",
        "background",
        "background_rms",
        "flags",
        "sep_flags",
        "kron_radius",
        "flux_auto",
        "fluxerr_auto",
        "flux_radius",
        *aperture_columns(4.0),
        *aperture_columns(12.5),
    }
    assert set(whole.columns) == expected
    assert aperture_columns(12.5) == ("flux_aper_12p5", "fluxerr_aper_12p5")
    assert aperture_columns(4.0) == ("flux_aper_4", "fluxerr_aper_4")
    for col in ("xmin", "npix", "flags", "sep_flags"):
        assert whole[col].dtype == np.int64
    # Background columns: the sky level and noise of the field.
    assert abs(np.median(whole["background"]) - SKY) < 0.5
    assert abs(np.median(whole["background_rms"]) - NOISE) < 0.1 * NOISE
    assert np.isfinite(whole.to_numpy(dtype=float)).all()
    assert (np.abs(whole["theta"]) <= math.pi / 2).all()


def test_saturated_sources_are_flagged(image: np.ndarray, whole: pd.DataFrame) -> None:
    saturated = (whole["flags"] & FLAG_SATURATED) > 0
    bright = np.zeros(len(whole), dtype=bool)
    for cy, cx in BRIGHT:
        bright |= np.hypot(whole["y"] - cy, whole["x"] - cx) < 1.0
    assert bright.sum() == len(BRIGHT)
    assert np.array_equal(saturated, bright)
    # Without a saturation level, nothing is flagged saturated.
    plain = extract_whole(image, PARAMS)
    assert not (plain["flags"] & FLAG_SATURATED).any()
    # The level is inclusive: a source whose brightest raw pixel equals it is flagged.
    star = image[90:111, 90:111]
    level = float(star.max())
    above = float(np.nextafter(np.float32(level), np.float32(np.inf)))

    def star_flags(saturation: float) -> pd.Series:
        table = extract_whole(image, PARAMS, saturation=saturation)
        flags = table.loc[np.hypot(table["y"] - 100.3, table["x"] - 100.6) < 1.0, "flags"]
        assert len(flags) == 1
        return flags & FLAG_SATURATED

    assert star_flags(level).all()
    assert not star_flags(above).any()


def test_sources_on_the_image_edge_are_truncated(whole: pd.DataFrame) -> None:
    truncated = (whole["flags"] & FLAG_TRUNCATED) > 0
    touches = np.any(
        [whole["xmin"] == 0, whole["ymin"] == 0, whole["xmax"] == W - 1, whole["ymax"] == H - 1],
        axis=0,
    )
    assert np.array_equal(truncated, touches)
    for cy, cx in EDGE:
        on_edge = np.hypot(whole["y"] - cy, whole["x"] - cx) < 2.0
        assert on_edge.sum() == 1
        assert truncated[on_edge].all()
    for cy, cx in BRIGHT:
        assert not truncated[np.hypot(whole["y"] - cy, whole["x"] - cx) < 1.0].any()


def _blank_field() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A 240 x 240 field with a blank (NaN) square, a star hidden under it, stars beside it
    and stars far from it."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:240, 0:240].astype(np.float64)
    img = SKY + rng.normal(0.0, NOISE, yy.shape)
    stars = [(120.0, 120.0), (120.0, 166.0), (75.0, 120.5), (40.0, 40.0), (200.0, 200.0)]
    for cy, cx in stars:
        img += 800.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2))
    img[80:160, 80:160] = np.nan
    return img.astype(np.float32), stars


def test_blank_region_yields_no_sources_and_flags_its_neighbours() -> None:
    image, stars = _blank_field()
    params = ExtractParams(bw=32, bh=32, halo=8)
    whole = extract_whole(image, params)
    # Nothing is detected in the blank square (the star under it is lost with its pixels).
    row, col = np.floor(whole["y"] + 0.5), np.floor(whole["x"] + 0.5)
    assert not ((row >= 80) & (row < 160) & (col >= 80) & (col < 160)).any()
    assert not (np.hypot(whole["y"] - 120, whole["x"] - 120) < 10).any()
    for cy, cx in stars[1:]:
        assert (np.hypot(whole["y"] - cy, whole["x"] - cx) < 1.0).sum() == 1, (cy, cx)
    assert np.isfinite(whole[["x", "y", "flux", "flux_auto", "background"]].to_numpy()).all()
    # Stars 5-6 px from the square (Kron apertures of ~7 px) have blank pixels in their
    # aperture: FLAG_NEIGHBOURS; those far from it do not.
    neighbours = (whole["flags"] & FLAG_NEIGHBOURS) > 0
    for (cy, cx), flagged in zip(stars[1:], [True, True, False, False], strict=True):
        here = np.hypot(whole["y"] - cy, whole["x"] - cx) < 1.0
        assert neighbours[here].all() == flagged, (cy, cx)
    # Tiles cutting through the square give the same catalog.
    tables, _ = _tiled(image, params, _cores(240, 240, 70, 90))
    _assert_same_catalog(pd.concat(tables, ignore_index=True), whole)


def test_magnitudes_zero_point_and_error() -> None:
    flux = np.array([100.0, 1.0, 1e4, 0.0, -5.0, np.nan])
    err = np.array([10.0, 0.1, 1.0, 1.0, 1.0, 1.0])
    mag, magerr = magnitudes(flux, err, 25.0)
    np.testing.assert_allclose(mag[:3], [20.0, 25.0, 15.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        magerr[:3], 2.5 / math.log(10) * np.array([0.1, 0.1, 1e-4]), rtol=1e-12
    )
    assert np.isnan(mag[3:]).all() and np.isnan(magerr[3:]).all()
    # The zero point only shifts the magnitudes.
    mag0, magerr0 = magnitudes(flux, err, 0.0)
    np.testing.assert_allclose(mag[:3] - mag0[:3], 25.0)
    np.testing.assert_array_equal(magerr0, magerr)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"halo": 64, "max_halo": 32}, "max_halo"),
        ({"filter_kernel": ((1.0, 2.0), (1.0,))}, "filter_kernel"),
        ({"filter_kernel": ()}, "filter_kernel"),
        ({"phot_apertures": (6.0, 0.0)}, "phot_apertures"),
        ({"phot_apertures": (-3.0,)}, "phot_apertures"),
        ({"thresh": 0.0}, "thresh"),
        ({"halo": 2}, "halo"),
        ({"deblend_cont": 1.5}, "deblend_cont"),
        ({"bw": 0}, "bw"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_extract_params_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ExtractParams(**kwargs)


def test_extract_params_accepts_valid_settings() -> None:
    p = ExtractParams(halo=16, max_halo=16, filter_kernel=None, phot_apertures=(3.0, 8.0))
    assert p.kernel_margin() == 1
    five = ExtractParams(filter_kernel=tuple((1.0,) * 5 for _ in range(5)))
    assert five.kernel_margin() == 3
    assert ExtractParams().kernel_margin() == 2


def test_empty_image_gives_an_empty_table_with_all_columns(whole: pd.DataFrame) -> None:
    noise = (SKY + np.random.default_rng(9).normal(0.0, NOISE, (150, 170))).astype(np.float32)
    params = PARAMS.model_copy(update={"thresh": 1000.0})
    empty = extract_whole(noise, params, saturation=SATURATION)
    assert len(empty) == 0
    assert set(empty.columns) == set(whole.columns)
    tables, infos = _tiled(noise, params, _cores(150, 170, 64, 64), saturation=SATURATION)
    assert all(len(t) == 0 for t in tables)
    assert all(set(t.columns) == set(whole.columns) for t in tables)
    assert all(i == {"halo": PARAMS.halo, "remeasured": 0} for i in infos)


# Cases found by testing: each failed before the rule it tests was added.


def test_empty_table_has_the_columns_in_the_same_order(whole: pd.DataFrame) -> None:
    # Tiles' tables are concatenated: an empty one must not reorder the catalog's columns.
    noise = (SKY + np.random.default_rng(9).normal(0.0, NOISE, (150, 170))).astype(np.float32)
    empty = extract_whole(noise, PARAMS.model_copy(update={"thresh": 1000.0}))
    assert list(empty.columns) == list(whole.columns)


def _galaxy_and_star(
    h: int, w: int, galaxy: tuple[float, float, float, float], star: tuple[float, ...]
) -> np.ndarray:
    """Noise (sigma 1) with an exponential galaxy (y, x, peak, scale length) and a Gaussian
    star (y, x, peak, sigma)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.random.default_rng(0).normal(0.0, 1.0, (h, w))
    gy, gx, amp, scale = galaxy
    img += amp * np.exp(-np.hypot(yy - gy, xx - gx) / scale)
    sy, sx, peak, sigma = star
    img += peak * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def test_star_on_a_large_galaxys_outskirts_is_not_lost() -> None:
    # In the lower tile's window the star merges with the galaxy's cut-off tail into one
    # object centred in the upper core: a cut parent reaching into the core grows the halo.
    image = _galaxy_and_star(512, 512, (160.0, 256.0, 100.0, 24.0), (257.0, 256.0, 150.0, 3.0))
    params = ExtractParams(bw=256, bh=256, halo=32)  # cleaning on (the default)
    whole = extract_whole(image, params)
    star = np.hypot(whole["y"] - 257, whole["x"] - 256) < 1.0
    assert star.sum() == 1
    tables, _ = _tiled(image, params, [(0, 256, 0, 512), (256, 512, 0, 512)])
    tiled = pd.concat(tables, ignore_index=True)
    assert (np.hypot(tiled["y"] - 257, tiled["x"] - 256) < 1.0).sum() == 1
    _assert_same_catalog(tiled, whole)


def test_cleaning_by_a_distant_large_galaxy_is_the_same_in_tiles() -> None:
    # SEP cleans pairs within 10 (a1 + a2): a bright galaxy cut by the window, ~90 px away,
    # grows the halo until it is whole.
    image = _galaxy_and_star(128, 256, (64.0, 190.0, 200.0, 8.0), (64.0, 100.0, 8.0, 1.5))
    params = ExtractParams(bw=64, bh=64, halo=32)  # cleaning on (the default)
    whole = extract_whole(image, params)
    unclean = extract_whole(image, params.model_copy(update={"clean": False}))
    assert len(unclean) == len(whole) + 1  # the faint source is cleaned on the whole image
    tables, _ = _tiled(image, params, [(0, 128, 0, 128), (0, 128, 128, 256)])
    _assert_same_catalog(pd.concat(tables, ignore_index=True), whole)
