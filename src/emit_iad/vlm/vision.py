"""What differs between the vision towers EMIT's heatmap reads.

- InternVL (``vision_tower``): square tiles as (B, 3, H, W) pixels, a CLS token before the
  patches, hidden states in raster order.
- Qwen2.5-VL (``visual``): dynamic resolution; the processor writes each image as rows of
  flattened patches (C × temporal × P × P) grouped in 2×2 merge units, with ``image_grid_thw``;
  the tower reorders the merge units into attention windows before its first block, so its
  hidden states are in window order, and there is no CLS token.

The heatmap always works on (B, 3, S, S) pixels (rotating a template needs a square image):
:func:`heatmap_pixels` turns a processor's output into them, and :func:`patch_features` turns
them into (B, h, w, C) features per layer for either tower. Written by hand: transformers has
the forward direction of Qwen's layout (processor, window index) but not the way back to a grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn

from emit_iad.vlm.families import TOWERS, family_of


def default_heatmap_images(config) -> dict:
    """The heatmap's image settings of the model's family (vlm/families.py)."""
    return dict(family_of(config).heatmap_images)


def find_tower(model: nn.Module) -> nn.Module | None:
    for name, module in model.named_modules():
        if name.endswith(TOWERS):
            return module
    return None


def patch_rows_tower(tower: nn.Module) -> bool:
    """Qwen-style tower: takes patch rows and a grid, merges 2×2 units."""
    return hasattr(tower, "spatial_merge_size") and hasattr(tower, "patch_embed")


def patchify(pixels: torch.Tensor, patch: int, merge: int, temporal: int):
    """(B, 3, H, W) images → (B·gh·gw, 3·temporal·P·P) patch rows in Qwen's processor order and
    the (B, 3) grid; a still image is repeated over the temporal patch, as the processor does."""
    b, c, h, w = pixels.shape
    gh, gw = h // patch, w // patch
    if gh * patch != h or gw * patch != w or gh % merge or gw % merge:
        raise ValueError(
            f"image {h}x{w} px is not a whole number of {patch * merge} px merge units"
        )
    x = pixels.unsqueeze(1).expand(b, temporal, c, h, w)
    x = x.reshape(b, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [B, gh/m, gw/m, m, m, C, T, P, P]
    grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long)
    return x.reshape(b * gh * gw, c * temporal * patch * patch), grid


def unpatchify(rows: torch.Tensor, grid: torch.Tensor, patch: int, merge: int, temporal: int):
    """Inverse of :func:`patchify` for images of one size (the first temporal slice)."""
    sizes = {tuple(g) for g in grid.tolist()}
    if len(sizes) != 1 or next(iter(sizes))[0] != 1:
        raise ValueError(f"heatmap images must be still images of one size; grids {sorted(sizes)}")
    _, gh, gw = next(iter(sizes))
    b, c = grid.shape[0], rows.shape[1] // (temporal * patch * patch)
    x = rows.reshape(b, gh // merge, gw // merge, merge, merge, c, temporal, patch, patch)[
        :, :, :, :, :, :, 0
    ]
    x = x.permute(0, 5, 1, 3, 6, 2, 4, 7)  # [B, C, gh/m, m, P, gw/m, m, P]
    return x.reshape(b, c, gh * patch, gw * patch)


def window_order_to_grid(hidden: torch.Tensor, window_index: torch.Tensor, b: int, gh: int,
                         gw: int, merge: int) -> torch.Tensor:  # fmt: skip
    """(N, C) hidden states of a Qwen tower (window order) → (B, gh, gw, C) in raster order."""
    unit = merge * merge
    x = hidden.reshape(-1, unit, hidden.shape[-1])[torch.argsort(window_index)]  # merge order
    x = x.reshape(b, gh // merge, gw // merge, merge, merge, hidden.shape[-1])
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, gh, gw, hidden.shape[-1])


def heatmap_pixels(image_processor, images: Sequence[Image.Image], settings: dict) -> torch.Tensor:
    """(B, 3, S, S) pixels of ``images`` as the heatmap sees them: ``settings`` go to the image
    processor, except ``square``, a side in pixels the images are first resized to."""
    settings = dict(settings)
    side = settings.pop("square", None)
    if side:
        images = [im.resize((int(side), int(side)), Image.BICUBIC) for im in images]
    out = image_processor(images=list(images), return_tensors="pt", **settings)
    pixels = out["pixel_values"]
    if "image_grid_thw" in out:
        ip = image_processor
        pixels = unpatchify(pixels, out["image_grid_thw"], ip.patch_size, ip.merge_size,
                            ip.temporal_patch_size)  # fmt: skip
    return pixels


def _check(layer: int, n_states: int) -> None:
    if not -n_states <= layer < n_states:
        raise ValueError(
            f"model.fewshot.layers: layer {layer} does not exist; the vision tower has "
            f"{n_states - 1} layers (hidden states 0..{n_states - 1})"
        )


def patch_features(
    tower: nn.Module, pixels: torch.Tensor, layers: Sequence[int]
) -> list[torch.Tensor]:
    """Per requested layer: (B, h, w, C) patch features (no CLS token), raster order.

    ``layers`` index the tower's hidden states (0 = the input of its first block).
    """
    if patch_rows_tower(tower):
        from transformers.vision_utils import get_vision_window_index

        config = tower.config
        patch, merge = config.patch_size, config.spatial_merge_size
        rows, grid = patchify(pixels, patch, merge, config.temporal_patch_size)
        hidden = tower(
            rows, grid_thw=grid.to(pixels.device), output_hidden_states=True
        ).hidden_states
        window_index, _ = get_vision_window_index(grid, merge, config.window_size, patch)
        b, _, h, w = pixels.shape
        feats = []
        for layer in layers:
            _check(layer, len(hidden))
            feats.append(window_order_to_grid(hidden[layer], window_index.to(pixels.device), b,
                                              h // patch, w // patch, merge))  # fmt: skip
        return feats
    hidden = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
    feats = []
    for layer in layers:
        _check(layer, len(hidden))
        h = hidden[layer]
        n = h.shape[1]
        side = round((n - 1) ** 0.5)
        if side * side == n - 1:
            h = h[:, 1:]  # drop the CLS token
        else:
            side = round(n**0.5)
        feats.append(h.reshape(h.shape[0], side, side, h.shape[-1]))
    return feats
