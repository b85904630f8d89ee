"""A contact sheet of the image index: per object a normal image and defects with their masks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emit_iad.sources.images import load_mask, load_rgb


def _load(path: str) -> np.ndarray:
    return np.asarray(load_rgb(path))


def _mask(paths: str) -> np.ndarray:
    masks = [load_mask(p) for p in paths.split(";")]
    return np.logical_or.reduce(masks)


def contact_sheet(index: pd.DataFrame, per_object: int = 5, max_objects: int = 12) -> plt.Figure:
    """Rows = objects (dataset/object), columns = one normal image then defective ones.

    Defect masks are drawn as red contours, titled with label and EMIT's 3×3 region.
    """
    groups = list(index.groupby(["dataset", "object"], sort=True))[:max_objects]
    cols = per_object
    fig, axes = plt.subplots(
        max(1, len(groups)), cols, figsize=(2.2 * cols, 2.4 * max(1, len(groups))), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for r, ((dataset, obj), rows) in enumerate(groups):
        normal = rows[~rows.is_anomalous].head(1)
        # one example of as many different defect types as fit
        defects = rows[rows.is_anomalous].drop_duplicates("label").head(cols - len(normal))
        for c, (_, rec) in enumerate(pd.concat([normal, defects]).iterrows()):
            ax = axes[r, c]
            ax.imshow(_load(rec.image_path))
            if rec.is_anomalous and isinstance(rec.mask_path, str):
                ax.contour(_mask(rec.mask_path), levels=[0.5], colors="red", linewidths=0.8)
                ax.set_title(f"{rec.label}\n{rec.defect_region}", fontsize=8)
            else:
                ax.set_title(f"{dataset}/{obj}\ngood", fontsize=8)
    counts = f"{len(index)} images, {int(index.is_anomalous.sum())} defective"
    fig.suptitle(f"Image index overview ({counts})", fontsize=10)
    fig.tight_layout()
    return fig
