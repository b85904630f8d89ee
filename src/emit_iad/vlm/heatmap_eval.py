"""Sanity figures of the raw few-shot heatmap: image- and pixel-level AUROC, overlay plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F
from tqdm.auto import tqdm

from emit_iad.sources.images import load_mask
from emit_iad.vlm.bundle import VLM, vision_tower
from emit_iad.vlm.chat import load_image
from emit_iad.vlm.fewshot import FewShotConfig, fewshot_heatmap
from emit_iad.vlm.vision import heatmap_pixels


def _mask(paths, size: int) -> np.ndarray:
    if not isinstance(paths, str) or not paths:
        return np.zeros((size, size), bool)
    masks = [np.asarray(Image.fromarray(load_mask(p)).resize((size, size), Image.NEAREST))
             for p in paths.split(";")]  # fmt: skip
    return np.logical_or.reduce(masks)


@torch.no_grad()
def heatmaps(vlm: VLM, queries: list[str], templates: list[str], config: FewShotConfig,
             batch_size: int = 16) -> torch.Tensor:  # fmt: skip
    """(N, h, w) raw anomaly maps (fp32, on the CPU) of queries against their templates, the
    images prepared as the model's ``images.heatmap`` settings say, on the tower's device and
    in its dtype."""
    tower = vision_tower(vlm.model)
    param = next(tower.parameters())
    processor = vlm.processor.image_processor
    settings = vlm.heatmap_settings()
    out = []
    for i in tqdm(range(0, len(queries), batch_size), desc="heatmap check", unit="batch",
                  leave=False):  # fmt: skip
        q = [load_image(p) for p in queries[i : i + batch_size]]
        t = [load_image(p) for p in templates[i : i + batch_size]]
        pix = heatmap_pixels(processor, q + t, settings)
        pix = pix.to(param.device, param.dtype)
        out.append(fewshot_heatmap(tower, pix[: len(q)], pix[len(q) :], config).float().cpu())
    return torch.cat(out)


def heatmap_sanity(vlm: VLM, questions: pd.DataFrame, config: FewShotConfig,
                   max_images: int = 200, overlays: int = 6, image_size: int = 128):  # fmt: skip
    """AUROC of the raw map (image: max of the map; pixel: upsampled map vs mask) on query
    images that have a template, and a figure of a few defective ones."""
    rows = questions[questions.similar_templates.map(len) > 0].drop_duplicates("query_key")
    rows = rows[rows.query_text.isna()].head(max_images)
    if rows.empty or rows.defect.isna().all() or rows.defect.notna().all():
        return {"images": float(len(rows))}, plt.figure()
    maps = heatmaps(vlm, rows.query_image.tolist(), [t[0] for t in rows.similar_templates], config)
    up = F.interpolate(maps[:, None], size=(image_size, image_size), mode="bilinear",
                       align_corners=False)[:, 0].numpy()  # fmt: skip
    labels = rows.defect.notna().to_numpy()
    masks = np.stack([_mask(m, image_size) for m in rows.mask_path])
    metrics = {
        "images": float(len(rows)),
        "image_auroc": float(roc_auc_score(labels, maps.flatten(1).amax(1).numpy())),
        "pixel_auroc": float(roc_auc_score(masks.ravel(), up.ravel())),
    }
    for obj in sorted(rows.object.unique()):  # README's per-object figures
        mine = (rows.object == obj).to_numpy()
        if masks[mine].any() and not masks[mine].all():
            metrics[f"pixel_auroc.{obj}"] = float(roc_auc_score(masks[mine].ravel(),
                                                                up[mine].ravel()))  # fmt: skip
    bad = np.flatnonzero(labels)
    per_object = rows.iloc[bad].reset_index(drop=True).groupby("object").head(2).index[:overlays]
    pick = bad[per_object]  # a couple of defects of every object
    return metrics, overlay_figure(rows.iloc[pick], up[pick], masks[pick])


def overlay_figure(rows: pd.DataFrame, maps: np.ndarray, masks: np.ndarray) -> plt.Figure:
    fig, axes = plt.subplots(len(rows), 3, figsize=(6, 2 * max(1, len(rows))), squeeze=False)
    for i, (_, r) in enumerate(rows.iterrows()):
        size = maps[i].shape[0]
        query = load_image(r.query_image).resize((size, size))
        axes[i, 0].imshow(load_image(r.similar_templates[0]).resize((size, size)))
        axes[i, 1].imshow(query)
        axes[i, 1].contour(masks[i], levels=[0.5], colors="red", linewidths=0.7)
        axes[i, 2].imshow(query)
        axes[i, 2].imshow(maps[i], cmap="jet", alpha=0.5)
        axes[i, 0].set_ylabel(f"{r.object}\n{r.defect}", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ("template", "query + mask", "anomaly map"), strict=True):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig
