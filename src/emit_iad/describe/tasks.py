"""What to describe, planned from the image index (pure, seeded)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emit_iad.sources.regions import REGION_NAMES

DESCRIPTION_COLUMNS = [
    "kind", "dataset", "object", "defect", "region", "image_path", "text", "effect",
    "backend", "model", "request_hash",
]  # fmt: skip
REPORT_COLUMNS = ["kind", "dataset", "object", "defect", "image_path", "reason"]
KINDS = ("normal", "defect", "instance")


@dataclass(frozen=True)
class DescriptionTask:
    """One text to write.

    - ``normal``: the object's normal characteristics, from ``reference_path`` (a normal image).
    - ``defect``: the visual traits and effect of one defect type, from a normal image
      (``reference_path``), a defective image (``image_path``) and its mask.
    - ``instance``: one image described as an object instance (EMIT's text-as-query samples).

    ``imagined``: for a source whose defective images are not trained on (``defect_images:
    false``), a defect is described from its name and a normal image alone, and a defective
    instance is a normal training image described as if it had the defect. No pixel or mask
    statistic of a test image reaches the text.
    """

    kind: str
    dataset: str
    object: str
    defect: str | None = None
    image_path: str | None = None
    mask_path: str | None = None
    reference_path: str | None = None
    region: str | None = None
    area: float = 0.0
    imagined: bool = False

    def ident(self) -> dict:
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "object": self.object,
            "defect": self.defect,
            "image_path": self.image_path if self.kind == "instance" else None,
        }


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(parts).encode())])


def plan_tasks(
    index: pd.DataFrame, instances_per_object: int = 6, defect_share: float = 0.5, seed: int = 0,
    imagined_per_normal: float = 0.5,
) -> list[DescriptionTask]:
    """Normal + per-defect-type + sampled instance tasks for every (dataset, object).

    The normal reference is the first normal image (training split first); the defect example
    is the one with the largest defect area, so the model sees the defect clearly. Instances
    are drawn without replacement, ``defect_share`` of them defective when possible.
    """
    tasks: list[DescriptionTask] = []
    split_order = {"train": 0, "validation": 1, "test": 2}
    for (dataset, obj), rows in index.groupby(["dataset", "object"], sort=True):
        rows = rows.assign(_order=rows.split.map(split_order).fillna(3)).sort_values(
            ["_order", "image_path"]
        )
        if "defect_images" in rows and not bool(rows.defect_images.iloc[0]):
            tasks += _imagined_tasks(rows, instances_per_object, defect_share, seed,
                                     imagined_per_normal)
            continue
        normal = rows[~rows.is_anomalous]
        defective = rows[rows.is_anomalous]
        reference = normal.image_path.iloc[0] if len(normal) else None
        tasks.append(DescriptionTask("normal", dataset, obj, reference_path=reference))
        for _defect, group in defective.groupby("label", sort=True):
            best = group.sort_values(["defect_area", "image_path"], ascending=[False, True]).iloc[0]
            tasks.append(_from_row("defect", best, reference))
        rng = _rng(seed, str(dataset), str(obj))
        n_def = min(len(defective), round(instances_per_object * defect_share))
        n_norm = min(len(normal), instances_per_object - n_def)
        picks = []
        for pool, n in ((defective, n_def), (normal, n_norm)):
            if n:
                picks += [pool.iloc[i] for i in sorted(rng.choice(len(pool), n, replace=False))]
        tasks += [_from_row("instance", row, reference) for row in picks]
    return tasks


def _imagined_tasks(rows: pd.DataFrame, n: int, defect_share: float, seed: int,
                    per_normal: float) -> list[DescriptionTask]:  # fmt: skip
    """Tasks of a normal-only source: only its own training folders' normal images are shown.
    ``per_normal`` defective instance texts per such image, each on a normal image of its own
    where there are enough, and ``n * (1 - defect_share)`` normal instance texts."""
    dataset, obj = rows.dataset.iloc[0], rows.object.iloc[0]
    normal = rows[~rows.is_anomalous & rows.split.isin(("train", "validation"))]
    reference = normal.image_path.iloc[0] if len(normal) else None
    defects = sorted(rows[rows.is_anomalous].label.unique())  # names only, from the folders
    tasks = [DescriptionTask("normal", dataset, obj, reference_path=reference)]
    tasks += [DescriptionTask("defect", dataset, obj, defect=d, reference_path=reference,
                              imagined=True) for d in defects]  # fmt: skip
    if normal.empty:
        return tasks
    rng = _rng(seed, str(dataset), str(obj), "imagined")
    n_def = round(per_normal * len(normal)) if defects else 0
    n_norm = min(len(normal), n - round(n * defect_share))
    order = rng.permutation(len(normal))
    for j in range(n_def):
        row = normal.iloc[order[j % len(normal)]]
        region = REGION_NAMES[int(rng.integers(len(REGION_NAMES)))]
        tasks.append(DescriptionTask("instance", dataset, obj, defect=defects[j % len(defects)],
                                     image_path=row.image_path, reference_path=reference,
                                     region=region, imagined=True))  # fmt: skip
    tasks += [_from_row("instance", normal.iloc[i], reference) for i in sorted(order[:n_norm])]
    return tasks


def _from_row(kind: str, row: pd.Series, reference: str | None) -> DescriptionTask:
    anomalous = bool(row.is_anomalous)
    return DescriptionTask(
        kind=kind,
        dataset=row.dataset,
        object=row.object,
        defect=row.label if anomalous else None,
        image_path=row.image_path,
        mask_path=row.mask_path if anomalous else None,
        reference_path=reference,
        region=row.defect_region if anomalous else None,
        area=float(row.defect_area or 0.0),
    )
