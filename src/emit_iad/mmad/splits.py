"""Split images into train / val / test: by image, stratified by label, optionally holding out
whole objects (they go to test only, to measure generalisation)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder rounding of ``n`` items over the splits (sums to ``n``).

    >>> split_counts(8, {"train": 0.6, "val": 0.15, "test": 0.25})
    {'train': 5, 'val': 1, 'test': 2}
    """
    raw = {s: n * fractions.get(s, 0.0) for s in SPLITS}
    counts = {s: int(np.floor(v)) for s, v in raw.items()}
    order = sorted(SPLITS, key=lambda s: (-(raw[s] - counts[s]), SPLITS.index(s)))
    for s in order[: n - sum(counts.values())]:
        counts[s] += 1
    return counts


def assign_splits(
    index: pd.DataFrame,
    fractions: dict[str, float],
    seed: int = 0,
    holdout_objects: list[str] | None = None,
) -> pd.Series:
    """A split name per image (same index as ``index``); no image is in two splits."""
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    if abs(total - 1.0) > 1e-6 or any(fractions.get(s, 0) < 0 for s in SPLITS):
        raise ValueError(f"qa.split fractions must be >= 0 and sum to 1, got {fractions}")
    holdout = set(holdout_objects or [])
    unknown = holdout - set(index.object)
    if unknown:
        raise ValueError(f"qa.holdout_objects {sorted(unknown)} are not in the image index")
    out = pd.Series("test", index=index.index, dtype=object)
    keys = ["dataset", "object", "label"]
    for key, group in index[~index.object.isin(holdout)].groupby(keys, sort=True):
        rng = np.random.default_rng([seed, zlib.crc32("/".join(map(str, key)).encode())])
        order = group.sort_values("image_path").index.to_numpy()
        order = order[rng.permutation(len(order))]
        counts = split_counts(len(order), fractions)
        start = 0
        for s in SPLITS:
            out.loc[order[start : start + counts[s]]] = s
            start += counts[s]
    return out
