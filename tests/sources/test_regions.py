import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emit_iad.sources.regions import (
    REGION_NAMES,
    bounding_box,
    defect_area,
    defect_region,
    grid_edges,
    region_counts,
)


def test_grid_edges_split_as_evenly_as_integers_allow():
    assert grid_edges(9).tolist() == [0, 3, 6, 9]
    assert grid_edges(10).tolist() == [0, 3, 7, 10]
    assert grid_edges(128).tolist() == [0, 43, 85, 128]


@pytest.mark.parametrize(
    ("y", "x", "name"),
    [(0, 0, "top left"), (0, 4, "top"), (1, 8, "top right"), (4, 0, "left"), (4, 4, "center"),
     (5, 7, "right"), (8, 1, "bottom left"), (7, 5, "bottom"), (8, 8, "bottom right")],
)  # fmt: skip
def test_single_pixel_names_its_cell(y, x, name):
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[y, x] = 255
    assert defect_region(mask) == name


def test_cell_with_most_pixels_wins_not_the_bbox_centre():
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[0:3, 0:3] = 1  # 9 pixels top left
    mask[8, 0:9] = 1  # 9 pixels spread over the bottom row: 3 per bottom cell
    assert region_counts(mask).tolist() == [[9, 0, 0], [0, 0, 0], [3, 3, 3]]
    assert defect_region(mask) == "top left"


def test_ties_go_to_the_first_cell_in_reading_order():
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[5, 5] = 1
    mask[0, 5] = 1
    assert defect_region(mask) == "top right"


def test_empty_mask_has_no_region_box_or_area():
    mask = np.zeros((4, 4))
    assert defect_region(mask) is None
    assert bounding_box(mask) is None
    assert defect_area(mask) == 0.0


def test_bbox_and_area_by_hand():
    mask = np.zeros((10, 20), dtype=np.uint8)
    mask[2:5, 3:9] = 255  # rows 2..4, cols 3..8
    assert bounding_box(mask) == [3, 2, 8, 4]
    assert defect_area(mask) == pytest.approx(18 / 200)
    # rows split 0-2|3-6|7-9, cols 0-6|7-12|13-19: top left holds 1x4, left 2x4, top 1x2, center 2x2
    assert region_counts(mask).tolist() == [[4, 2, 0], [8, 4, 0], [0, 0, 0]]
    assert defect_region(mask) == "left"


@given(
    h=st.integers(3, 60),
    w=st.integers(3, 60),
    data=st.data(),
)
def test_one_pixel_lands_in_the_cell_that_contains_it(h, w, data):
    y = data.draw(st.integers(0, h - 1))
    x = data.draw(st.integers(0, w - 1))
    mask = np.zeros((h, w), dtype=bool)
    mask[y, x] = True
    rows, cols = grid_edges(h), grid_edges(w)
    r = int(np.searchsorted(rows, y, side="right") - 1)
    c = int(np.searchsorted(cols, x, side="right") - 1)
    assert defect_region(mask) == REGION_NAMES[r * 3 + c]
    assert region_counts(mask).sum() == 1
    assert bounding_box(mask) == [x, y, x, y]


@given(st.lists(st.tuples(st.integers(0, 29), st.integers(0, 19)), min_size=1, max_size=40))
def test_counts_partition_the_mask_and_bbox_contains_it(points):
    mask = np.zeros((30, 20), dtype=bool)
    for y, x in points:
        mask[y, x] = True
    assert region_counts(mask).sum() == mask.sum()
    x0, y0, x1, y1 = bounding_box(mask)
    ys, xs = np.nonzero(mask)
    assert (xs >= x0).all() and (xs <= x1).all() and (ys >= y0).all() and (ys <= y1).all()
    assert {x0, x1} <= set(xs.tolist()) and {y0, y1} <= set(ys.tolist())
