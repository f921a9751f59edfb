"""The tiled sky mesh (box statistics per tile, then the mesh filter) against SEP itself.

``box_statistics`` runs on mesh-aligned tiles, ``filter_mesh`` on the assembled mesh, and
``SkyMesh.region`` must give background and RMS maps bit-equal to ``sep.Background``'s on the
whole image, for any part of the image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import sep
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.imaging.background import SkyMesh, box_statistics, filter_mesh, mesh_shape


def _sky_image(h: int, w: int, seed: int, n_sources: int = 4) -> np.ndarray:
    """Noise on a sloping sky, with a few bright sources (so the median filter matters)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 50.0 + 0.03 * xx - 0.02 * yy + rng.normal(0.0, 2.0, (h, w))
    for _ in range(n_sources):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s, amp = rng.uniform(1.5, 6.0), rng.uniform(50, 2000)
        img += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return img.astype(np.float32)


def _tiled_mesh(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    bw: int,
    bh: int,
    fw: int,
    fh: int,
    fthresh: float = 0.0,
    tile_boxes: tuple[int, int] = (1, 1),
) -> SkyMesh:
    """Pass 1 on tiles of ``tile_boxes`` boxes (rows, columns), assembled, then the filter."""
    h, w = image.shape
    ny, nx = mesh_shape(h, w, bw, bh)
    boxes = np.full((3, ny, nx), np.nan, dtype=np.float32)
    th, tw = tile_boxes[0] * bh, tile_boxes[1] * bw
    for r in range(0, h, th):
        for c in range(0, w, tw):
            m = None if mask is None else mask[r : r + th, c : c + tw]
            stats = box_statistics(image[r : r + th, c : c + tw], m, bw, bh)
            j, i = r // bh, c // bw
            assert stats.shape == (3, min(tile_boxes[0], ny - j), min(tile_boxes[1], nx - i))
            boxes[:, j : j + stats.shape[1], i : i + stats.shape[2]] = stats
    assert not np.isnan(boxes).any(), "the tiles did not cover the mesh"
    return filter_mesh(boxes, fw=fw, fh=fh, fthresh=fthresh, bw=bw, bh=bh, shape=(h, w))


def _sep(
    image: np.ndarray,
    blank: np.ndarray | None,
    *,
    bw: int,
    bh: int,
    fw: int,
    fh: int,
    fthresh: float = 0.0,
) -> sep.Background:
    """SEP on the whole image; ``blank`` pixels masked and zeroed (SEP cannot read NaN)."""
    data = image if blank is None else np.where(blank, np.float32(0), image)
    return sep.Background(
        np.ascontiguousarray(data, dtype=np.float32),
        mask=None if blank is None else np.ascontiguousarray(blank),
        bw=bw,
        bh=bh,
        fw=fw,
        fh=fh,
        fthresh=fthresh,
    )


def _assert_maps_equal(mesh: SkyMesh, bkg: sep.Background) -> None:
    back, rms = mesh.region(0, mesh.height, 0, mesh.width)
    assert back.dtype == np.float32 and rms.dtype == np.float32
    assert back.shape == (mesh.height, mesh.width) == rms.shape
    assert np.array_equal(back, bkg.back()), np.abs(back - bkg.back()).max()
    assert np.array_equal(rms, bkg.rms()), np.abs(rms - bkg.rms()).max()
    assert mesh.global_back == bkg.globalback
    # SkyMesh documents SEP's globalrms "where positive": where the mesh's median RMS is 0
    # (boxes of constant pixels) SEP substitutes another value and the mesh keeps 0.
    if mesh.global_rms > 0:
        assert mesh.global_rms == bkg.globalrms
    else:
        assert mesh.global_rms == 0.0 and float(np.median(mesh.sigma)) == 0.0


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 200),
    w=st.integers(1, 200),
    bw=st.integers(3, 64),
    bh=st.integers(3, 64),
    fw=st.integers(1, 5),
    fh=st.integers(1, 5),
    fthresh=st.sampled_from([0.0, 0.0, 0.3, 5.0]),
    tile_boxes=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
    window=st.tuples(*[st.floats(0, 1)] * 4),
)
def test_tiled_mesh_equals_sep_background(
    h: int,
    w: int,
    bw: int,
    bh: int,
    fw: int,
    fh: int,
    fthresh: float,
    tile_boxes: tuple[int, int],
    seed: int,
    window: tuple[float, float, float, float],
) -> None:
    image = _sky_image(h, w, seed)
    kw: dict[str, Any] = {"bw": bw, "bh": bh, "fw": fw, "fh": fh, "fthresh": fthresh}
    mesh = _tiled_mesh(image, None, tile_boxes=tile_boxes, **kw)
    bkg = _sep(image, None, **kw)
    _assert_maps_equal(mesh, bkg)
    assert mesh.n_filled == 0
    # Any sub-window is the same slice of the whole map.
    r0, r1 = sorted(round(f * h) for f in window[:2])
    c0, c1 = sorted(round(f * w) for f in window[2:])
    r1, c1 = max(r1, r0 + 1), max(c1, c0 + 1)
    r0, c0 = min(r0, h - 1), min(c0, w - 1)
    r1, c1 = min(r1, h), min(c1, w)
    back, rms = mesh.region(r0, r1, c0, c1)
    assert np.array_equal(back, bkg.back()[r0:r1, c0:c1])
    assert np.array_equal(rms, bkg.rms()[r0:r1, c0:c1])


@pytest.mark.parametrize(
    ("shape", "bw", "bh", "fw", "fh", "fthresh", "tile_boxes"),
    [
        ((301, 413), 32, 48, 3, 3, 0.0, (2, 3)),  # partial last row and column, bw != bh
        ((256, 256), 32, 32, 1, 1, 0.0, (4, 4)),  # no filtering, exact multiples
        ((250, 333), 24, 20, 5, 3, 0.0, (3, 2)),  # fw != fh
        ((250, 333), 24, 20, 3, 5, 0.5, (1, 5)),  # fthresh > 0
        ((129, 97), 64, 16, 3, 3, 0.0, (1, 1)),  # 1-row last box row, 33-px last column
    ],
)
def test_tiled_mesh_equals_sep_in_chosen_layouts(
    shape: tuple[int, int],
    bw: int,
    bh: int,
    fw: int,
    fh: int,
    fthresh: float,
    tile_boxes: tuple[int, int],
) -> None:
    image = _sky_image(*shape, seed=7, n_sources=12)
    kw: dict[str, Any] = {"bw": bw, "bh": bh, "fw": fw, "fh": fh, "fthresh": fthresh}
    mesh = _tiled_mesh(image, None, tile_boxes=tile_boxes, **kw)
    _assert_maps_equal(mesh, _sep(image, None, **kw))
    # The region of a window cutting through boxes and tiles is that slice of the map.
    back, rms = mesh.region(17, shape[0] - 5, 3, shape[1] - 11)
    full_back, full_rms = mesh.region(0, shape[0], 0, shape[1])
    assert np.array_equal(back, full_back[17:-5, 3:-11])
    assert np.array_equal(rms, full_rms[17:-5, 3:-11])


def test_fthresh_keeps_boxes_near_their_median() -> None:
    """A positive filter threshold changes the map (the boxes kept are SEP's)."""
    image = _sky_image(250, 333, seed=3, n_sources=12)
    kw: dict[str, Any] = {"bw": 24, "bh": 20, "fw": 3, "fh": 3}
    every = _tiled_mesh(image, None, **kw, fthresh=0.0)
    some = _tiled_mesh(image, None, **kw, fthresh=1.0)
    assert not np.array_equal(every.back, some.back)
    _assert_maps_equal(some, _sep(image, None, **kw, fthresh=1.0))


def _expected_filled(blank: np.ndarray, bw: int, bh: int) -> int:
    """Boxes with fewer than half of their pixels valid (SEP's BACK_MINGOODFRAC)."""
    h, w = blank.shape
    ny, nx = mesh_shape(h, w, bw, bh)
    n = 0
    for j in range(ny):
        for i in range(nx):
            box = blank[j * bh : (j + 1) * bh, i * bw : (i + 1) * bw]
            n += int(np.count_nonzero(~box) < box.size / 2)
    return n


@pytest.mark.parametrize("tile_boxes", [(1, 1), (2, 3)])
def test_masked_and_blank_regions_are_filled_as_sep_fills_them(
    tile_boxes: tuple[int, int],
) -> None:
    h, w, bw, bh = 230, 290, 32, 24
    image = _sky_image(h, w, seed=11, n_sources=8)
    mask = np.zeros((h, w), dtype=bool)
    mask[40:130, 30:140] = True  # a masked region: several whole boxes, some partial ones
    nan = np.zeros((h, w), dtype=bool)
    nan[150:230, 200:290] = True  # a blank (NaN) survey corner
    nan[0:10, 0:290] = True  # a blank strip: below half of the first row of boxes
    image[nan] = np.nan
    kw: dict[str, Any] = {"bw": bw, "bh": bh, "fw": 3, "fh": 3}
    mesh = _tiled_mesh(image, mask, tile_boxes=tile_boxes, **kw)
    blank = mask | nan
    expected = _expected_filled(blank, bw, bh)
    assert expected >= 10
    assert mesh.n_filled == expected
    _assert_maps_equal(mesh, _sep(image, blank, **kw))
    # Filled boxes hold finite values: NaN never reaches the maps.
    back, rms = mesh.region(0, h, 0, w)
    assert np.isfinite(back).all() and np.isfinite(rms).all()


def test_box_validity_threshold_is_half_the_box() -> None:
    """A box with exactly half of its pixels valid counts; one pixel fewer is filled."""
    image = _sky_image(16, 32, seed=5, n_sources=0)
    blank = np.zeros(image.shape, dtype=bool)
    blank[:, :8] = True  # box 0: 128 of its 256 pixels valid
    blank[:, 16:24] = True  # box 1: 128 valid, then one more blank: 127
    blank[0, 24] = True
    stats = box_statistics(np.where(blank, np.nan, image), None, 16, 16)
    assert stats.shape == (3, 1, 2)
    assert stats[2].tolist() == [[1.0, 0.0]]
    assert stats[0, 0, 1] == 0.0 and stats[1, 0, 1] == 0.0
    # The same through the mask argument, and SEP agrees on what it fills.
    masked = box_statistics(image, blank, 16, 16)
    assert np.array_equal(masked, stats)
    mesh = filter_mesh(stats, fw=1, fh=1, fthresh=0.0, bw=16, bh=16, shape=image.shape)
    assert mesh.n_filled == 1
    _assert_maps_equal(mesh, _sep(image, blank, bw=16, bh=16, fw=1, fh=1))


def test_nan_pixels_count_as_masked() -> None:
    """NaN pixels in the data give the same statistics as masking (and zeroing) them."""
    image = _sky_image(96, 96, seed=2)
    blank = np.zeros(image.shape, dtype=bool)
    blank[10:50, 20:70] = True
    with_nan = np.where(blank, np.nan, image).astype(np.float32)
    stats = box_statistics(with_nan, None, 32, 32)
    assert np.isfinite(stats).all()
    assert np.array_equal(stats, box_statistics(image, blank, 32, 32))
    assert np.array_equal(stats, box_statistics(np.where(blank, 0, image), blank, 32, 32))


def test_fully_blank_image_matches_sep() -> None:
    """No valid box at all: SEP's background 0 and RMS 1 everywhere."""
    image = np.full((70, 90), np.nan, dtype=np.float32)
    mesh = _tiled_mesh(image, None, bw=32, bh=32, fw=3, fh=3)
    assert mesh.n_filled == 9
    _assert_maps_equal(mesh, _sep(image, np.ones(image.shape, bool), bw=32, bh=32, fw=3, fh=3))
    back, rms = mesh.region(0, 70, 0, 90)
    assert (back == 0).all() and (rms == 1).all()


@pytest.mark.parametrize(
    ("shape", "bw", "bh"),
    [
        ((40, 50), 64, 64),  # one box, larger than the image
        ((64, 64), 64, 64),  # one box, exactly the image
        ((30, 300), 32, 32),  # a single row of boxes (nby == 1)
        ((300, 30), 32, 32),  # a single column of boxes (nbx == 1)
        ((60, 300), 32, 32),  # two rows: the spline along y is linear
        ((300, 60), 32, 32),  # two columns: the spline along x is linear
        ((1, 77), 8, 8),  # a one-pixel-high image
        ((77, 1), 8, 8),  # a one-pixel-wide image
    ],
)
def test_degenerate_meshes_match_sep(shape: tuple[int, int], bw: int, bh: int) -> None:
    image = _sky_image(*shape, seed=1)
    for fw, fh in [(1, 1), (3, 3), (5, 5)]:
        kw: dict[str, Any] = {"bw": bw, "bh": bh, "fw": fw, "fh": fh}
        mesh = _tiled_mesh(image, None, tile_boxes=(2, 2), **kw)
        assert mesh.back.shape == mesh_shape(*shape, bw, bh)
        bkg = _sep(image, None, **kw)
        _assert_maps_equal(mesh, bkg)
        back, rms = mesh.region(0, 1, shape[1] - 1, shape[1])
        assert back.shape == (1, 1) == rms.shape
        assert back[0, 0] == bkg.back()[0, -1] and rms[0, 0] == bkg.rms()[0, -1]


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 5000), w=st.integers(1, 5000), bw=st.integers(1, 600), bh=st.integers(1, 600)
)
def test_mesh_shape_counts_boxes_as_sep(h: int, w: int, bw: int, bh: int) -> None:
    """Boxes of the mesh: every pixel in one box, the last row and column possibly partial."""
    ny, nx = mesh_shape(h, w, bw, bh)
    assert (ny, nx) == (math.ceil(h / bh), math.ceil(w / bw))
    assert (ny - 1) * bh < h <= ny * bh
    assert (nx - 1) * bw < w <= nx * bw


@pytest.mark.parametrize(("shape", "bw", "bh"), [((100, 130), 32, 24), ((48, 64), 16, 16)])
def test_mesh_shape_is_the_mesh_sep_builds(shape: tuple[int, int], bw: int, bh: int) -> None:
    """One distinct level per box (fw = fh = 1): the mesh holds them in ``mesh_shape``'s
    layout, partial boxes included, and its maps are SEP's."""
    ny, nx = mesh_shape(*shape, bw, bh)
    assert box_statistics(np.zeros(shape, np.float32), None, bw, bh).shape == (3, ny, nx)
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 0.01, shape).astype(np.float32)
    for j in range(ny):
        for i in range(nx):
            image[j * bh : (j + 1) * bh, i * bw : (i + 1) * bw] += 10.0 * (j * nx + i)
    mesh = _tiled_mesh(image, None, bw=bw, bh=bh, fw=1, fh=1)
    bkg = _sep(image, None, bw=bw, bh=bh, fw=1, fh=1)
    _assert_maps_equal(mesh, bkg)
    levels = np.round(mesh.back / 10.0)
    assert np.array_equal(levels, np.arange(ny * nx).reshape(ny, nx))
