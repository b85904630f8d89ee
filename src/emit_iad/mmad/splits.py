"""Split images into train / val / test / template: by image, stratified by label, by each
source's data role, optionally holding out whole objects.

- ``template``: a few normal images per object (``test_templates``) shown only as the test
  split's templates, never as a training query, template or option. So the benchmark the qa
  stage writes shares no image with training, and a held-out object is answered 1-shot.
- A source with ``defect_images: false`` (the index column) trains on the normal images of its
  own training folders only (the layout's ``train``/``validation`` splits); everything else of
  it, its defective images included, is test material.
- ``excluded``: images of a benchmark to be scored elsewhere (:mod:`emit_iad.mmad.leakage`):
  in no split at all.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
TEMPLATE, EXCLUDED = "template", "excluded"
OWN_TRAINING = ("train", "validation")  # layout folders a normal-only source trains on


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


def _rng(seed: int, key) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, key)).encode())])


def _fill(out: pd.Series, rows: pd.DataFrame, fractions: dict, seed: int) -> None:
    """Split ``rows`` by ``fractions``, stratified by (dataset, object, label)."""
    for key, group in rows.groupby(["dataset", "object", "label"], sort=True):
        order = group.sort_values("image_path").index.to_numpy()
        order = order[_rng(seed, key).permutation(len(order))]
        counts = split_counts(len(order), fractions)
        start = 0
        for s in SPLITS:
            out.loc[order[start : start + counts[s]]] = s
            start += counts[s]


def reserved_templates(n_normal: int, wanted: int) -> int:
    """Normal images an object keeps for the test split's templates: ``wanted``, but at most a
    third of its normal images, so that training keeps most of them.

    >>> reserved_templates(120, 3), reserved_templates(6, 3), reserved_templates(2, 3)
    (3, 2, 0)
    """
    return min(wanted, n_normal // 3)


def assign_splits(
    index: pd.DataFrame,
    fractions: dict[str, float],
    seed: int = 0,
    holdout_objects: list[str] | None = None,
    test_templates: int = 0,
    excluded: pd.Series | None = None,
) -> pd.Series:
    """A split name per image (same index as ``index``); no image is in two splits.

    ``excluded`` (bool, same index) marks images that go nowhere (split ``excluded``).
    """
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    if abs(total - 1.0) > 1e-6 or any(fractions.get(s, 0) < 0 for s in SPLITS):
        raise ValueError(f"qa.split fractions must be >= 0 and sum to 1, got {fractions}")
    holdout = set(holdout_objects or [])
    unknown = holdout - set(index.object)
    if unknown:
        raise ValueError(f"qa.holdout_objects {sorted(unknown)} are not in the image index")
    out = pd.Series("test", index=index.index, dtype=object)
    role = index["defect_images"].astype(bool) if "defect_images" in index else True
    own = ~pd.Series(role, index=index.index)  # normal-only sources
    free = pd.Series(True, index=index.index) if excluded is None else ~excluded.astype(bool)
    out[~free] = EXCLUDED
    trainable = free & (~own | (~index.is_anomalous & index.split.isin(OWN_TRAINING)))
    for key, rows in index[free].groupby(["dataset", "object"], sort=True):
        pool = rows[~rows.is_anomalous & trainable.loc[rows.index]]
        n = reserved_templates(len(pool), test_templates)
        if n:
            order = pool.sort_values("image_path").index.to_numpy()
            out.loc[order[_rng(seed, (*key, TEMPLATE)).permutation(len(order))[:n]]] = TEMPLATE
    rest = free & (out != TEMPLATE) & ~index.object.isin(holdout)
    _fill(out, index[rest & ~own], fractions, seed)
    train_val = fractions.get("train", 0.0) + fractions.get("val", 0.0)
    if train_val > 0:
        own_fractions = {"train": fractions.get("train", 0.0) / train_val,
                         "val": fractions.get("val", 0.0) / train_val, "test": 0.0}  # fmt: skip
        _fill(out, index[rest & own & trainable], own_fractions, seed)
    return out
