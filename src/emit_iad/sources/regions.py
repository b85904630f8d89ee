"""Where a defect is: EMIT's 3×3 localisation rule, bounding box and area of a binary mask.

Pure functions over numpy arrays, shared by ingestion (image index) and QA construction
(Defect Localization answers).
"""

from __future__ import annotations

import numpy as np

# Reading order of the 3×3 grid; index = row * 3 + col.
REGION_NAMES: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


def grid_edges(length: int) -> np.ndarray:
    """Cell boundaries of a 3-way split of ``length`` pixels, as equal as integers allow.

    >>> grid_edges(9).tolist(), grid_edges(10).tolist()
    ([0, 3, 6, 9], [0, 3, 7, 10])
    """
    return np.rint(np.arange(4) * length / 3).astype(int)


def region_counts(mask: np.ndarray) -> np.ndarray:
    """Defect pixels per 3×3 cell, shape (3, 3), for a 2-D mask (non-zero = defect)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    binary = mask > 0
    rows, cols = grid_edges(mask.shape[0]), grid_edges(mask.shape[1])
    counts = np.zeros((3, 3), dtype=np.int64)
    for r in range(3):
        for c in range(3):
            counts[r, c] = binary[rows[r] : rows[r + 1], cols[c] : cols[c + 1]].sum()
    return counts


def defect_region(mask: np.ndarray) -> str | None:
    """EMIT's answer to "where is the defect": the cell holding most defect pixels.

    Ties go to the first cell in reading order; an empty mask has no region.

    >>> m = np.zeros((9, 9), dtype=np.uint8); m[0:2, 7:9] = 255; m[8, 0] = 255
    >>> defect_region(m)
    'top right'
    """
    counts = region_counts(mask)
    if counts.sum() == 0:
        return None
    return REGION_NAMES[int(np.argmax(counts))]


def bounding_box(mask: np.ndarray) -> list[int] | None:
    """``[x_min, y_min, x_max, y_max]`` (inclusive pixel coordinates) of the defect pixels.

    >>> m = np.zeros((5, 6), dtype=np.uint8); m[1:3, 2:5] = 1
    >>> bounding_box(m)
    [2, 1, 4, 2]
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def defect_area(mask: np.ndarray) -> float:
    """Share of the image covered by the defect, in [0, 1].

    >>> defect_area(np.array([[0, 1], [0, 0]]))
    0.25
    """
    return float((mask > 0).sum()) / float(mask.size)
