"""Instances that any window of a plane agrees on: small components split by the watershed,
big ones kept whole, and a window's ids equal to the whole plane's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.draw import disk

from pipeline.errors import ParameterError
from pipeline.imaging.instances import (
    face_pairs,
    halo,
    instance_labels,
    join_ids,
    rank_ids,
    window_instances,
)
from pipeline.imaging.nuclei import split_touching
from pipeline.synth.nuclei import render_nuclei


def _clusters() -> np.ndarray:
    """Separate single discs and pairs of touching discs of unequal radii (no ties)."""
    mask = np.zeros((90, 120), dtype=bool)
    discs: list[tuple[tuple[int, int], float]] = [
        ((15, 15), 7),
        ((15, 26), 5),
        ((50, 20), 6),
        ((20, 70), 8),
        ((20, 82), 5.5),
        ((65, 80), 9),
        ((70, 95), 6),
        ((75, 45), 4),
    ]
    for centre, r in discs:
        mask[disk(centre, r, shape=mask.shape)] = True
    return mask


def _per_component(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """The definition, spelled out: split_touching of each component alone, in raster order."""
    comp, _ = ndi.label(mask, structure=ndi.generate_binary_structure(2, connectivity))
    ids = np.zeros(mask.shape, dtype=np.int64)
    for k, box in enumerate(ndi.find_objects(comp), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        alone = comp[grown] == k
        split = split_touching(alone, connectivity=connectivity).astype(np.int64)
        split[split > 0] += ids.max()
        ids[grown][alone] = split[alone]
    values, first = np.unique(ids.ravel(), return_index=True)
    order = values[values > 0][np.argsort(first[values > 0])]
    lut = np.zeros(ids.max() + 1, dtype=np.uint32)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[ids]


@pytest.mark.parametrize("connectivity", [1, 2])
def test_equals_split_touching_when_every_component_is_small(connectivity: int) -> None:
    mask = _clusters()
    labels = instance_labels(mask, max_extent=40, connectivity=connectivity)
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, split_touching(mask, connectivity=connectivity))
    assert labels.max() > ndi.label(mask)[1]  # touching pairs were cut


@pytest.mark.parametrize("connectivity", [1, 2])
def test_splits_each_component_on_its_own(connectivity: int) -> None:
    mask = render_nuclei(1, size=128).labels > 0
    labels = instance_labels(mask, max_extent=500, connectivity=connectivity)
    np.testing.assert_array_equal(labels, _per_component(mask, connectivity))


def test_big_components_come_out_whole_and_after_the_nuclei() -> None:
    mask = np.zeros((60, 80), dtype=bool)
    mask[disk((30, 20), 12)] = True
    mask[disk((30, 42), 12)] = True  # two touching discs: 46 px wide
    mask[disk((5, 70), 4)] = True
    small = instance_labels(mask, max_extent=50)
    left = mask.copy()
    left[:, 60:] = False
    assert small.max() == 3 and len(np.unique(small[left])) == 2
    labels = instance_labels(mask, max_extent=30)
    assert labels.max() == 2
    assert labels[5, 70] == 1  # the nucleus first, though the big one starts higher up
    assert set(np.unique(labels[left]).tolist()) == {2}


def test_small_components_under_min_size_are_dropped_but_big_ones_are_kept() -> None:
    mask = np.zeros((20, 40), dtype=bool)
    mask[2, 2:4] = True  # 2 px: noise
    mask[10, 1:39] = True  # a 1-px line, 38 px long: big
    labels = instance_labels(mask, max_extent=10, min_size=8)
    assert labels[2, 2] == 0 and labels.max() == 1 and (labels[10, 1:39] == 1).all()


@pytest.mark.parametrize("connectivity", [1, 2])
def test_a_window_gives_the_whole_planes_ids_in_its_core(connectivity: int) -> None:
    mask = render_nuclei(3, size=128).labels > 0
    mask[60:64, 5:120] = True  # a big bar through everything
    extent = 24
    whole = window_instances(
        mask,
        origin=(0, 0),
        plane_shape=mask.shape,
        core=(slice(None), slice(None)),
        max_extent=extent,
        connectivity=connectivity,
    ).ids
    grow = halo(extent)
    big_from = mask.size
    for y0, x0 in [(0, 0), (30, 40), (50, 90), (96, 96)]:
        y1, x1 = min(y0 + 32, 128), min(x0 + 32, 128)
        wy0, wx0 = max(y0 - grow, 0), max(x0 - grow, 0)
        wy1, wx1 = min(y1 + grow, 128), min(x1 + grow, 128)
        got = window_instances(
            mask[wy0:wy1, wx0:wx1],
            origin=(wy0, wx0),
            plane_shape=mask.shape,
            core=(slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)),
            max_extent=extent,
            connectivity=connectivity,
        ).ids
        want = whole[y0:y1, x0:x1]
        small = want <= big_from
        np.testing.assert_array_equal(got[small], want[small])
        # Big ids are provisional (first pixel in the core), but big stays big.
        assert (got[~small] > big_from).all()


def test_face_pairs_join_across_faces_and_diagonals() -> None:
    a, b = np.array([0, 5, 5, 0, 7]), np.array([9, 0, 8, 0, 0])
    assert face_pairs(a, b, 1).tolist() == [[5, 8]]
    assert face_pairs(a, b, 2).tolist() == [[5, 8], [5, 9]]


def test_join_ids_gives_each_group_its_smallest_id() -> None:
    ids = np.array([30, 10, 20, 40, 50])
    got = join_ids(ids, [[30, 20], [40, 30]])
    assert got.tolist() == [20, 10, 20, 20, 50]
    assert rank_ids(np.array([[0, 70], [5, 70]])).tolist() == [[0, 2], [1, 2]]


def test_bad_parameters_say_what_is_allowed() -> None:
    with pytest.raises(ParameterError, match="max_extent"):
        instance_labels(np.ones((4, 4)), max_extent=0)
    with pytest.raises(ParameterError, match="connectivity"):
        instance_labels(np.ones((4, 4)), max_extent=4, connectivity=3)
