"""Qwen2.5-VL's patch layout, undone for EMIT's heatmap, against the real processor and tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2VLImageProcessor

from emit_iad.vlm.fewshot import FewShotConfig, fewshot_heatmap
from emit_iad.vlm.vision import (
    find_tower,
    heatmap_pixels,
    patch_features,
    patchify,
    unpatchify,
    window_order_to_grid,
)

from ..layouts import qwen2_5_vl_3b

PROCESSOR = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)


def noise(h, w, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


@settings(max_examples=15, deadline=None)
@given(h=st.integers(2, 8), w=st.integers(2, 8), n=st.integers(1, 3))
def test_patch_rows_round_trip_the_processors_layout(h, w, n):
    """Images of whole merge units: the processor's rows → pixels → rows is the identity."""
    images = [noise(28 * h, 28 * w, seed) for seed in range(n)]
    out = PROCESSOR(images=images, return_tensors="pt")
    pixels = unpatchify(out["pixel_values"], out["image_grid_thw"], 14, 2, 2)
    assert pixels.shape == (n, 3, 28 * h, 28 * w)
    rows, grid = patchify(pixels, 14, 2, 2)
    assert torch.equal(rows, out["pixel_values"]) and torch.equal(grid, out["image_grid_thw"])


def test_heatmap_pixels_are_the_processors_own_normalised_image():
    """A square side resizes first; the pixels match the processor's mean/std normalisation."""
    pix = heatmap_pixels(PROCESSOR, [noise(100, 60), noise(70, 70, 1)], {"square": 448})
    assert pix.shape == (2, 3, 448, 448)
    grey = heatmap_pixels(PROCESSOR, [Image.new("RGB", (56, 56), (255, 255, 255))], {})
    expected = (1.0 - torch.tensor(PROCESSOR.image_mean)) / torch.tensor(PROCESSOR.image_std)
    assert torch.allclose(grey[0, :, 10, 10], expected, atol=1e-3)
    with pytest.raises(ValueError, match="one size"):
        unpatchify(torch.zeros(8, 1176), torch.tensor([[1, 2, 2], [1, 2, 2], [1, 0, 0]]), 14, 2, 2)
    with pytest.raises(ValueError, match="merge units"):
        patchify(torch.zeros(1, 3, 42, 56), 14, 2, 2)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen")
    qwen2_5_vl_3b(folder)
    return AutoModelForImageTextToText.from_pretrained(folder), AutoProcessor.from_pretrained(folder)


def test_window_order_is_undone_to_raster(qwen):
    """The tower's first hidden state, put back in raster order, is each patch's embedding at
    its place in the image (the tower permutes merge units into 112 px windows)."""
    model, _ = qwen
    tower = find_tower(model)
    pixels = torch.randn(2, 3, 448, 224)  # 32 x 16 patches: 4 x 2 windows of 4 x 4 units
    rows, grid = patchify(pixels, 14, 2, 2)
    with torch.no_grad():
        hidden = tower(rows, grid_thw=grid, output_hidden_states=True).hidden_states[0]
        from transformers.vision_utils import get_vision_window_index

        index, _ = get_vision_window_index(grid, 2, 112, 14)
        raster = window_order_to_grid(hidden, index, 2, 32, 16, 2)
        for b, y, x in [(0, 0, 0), (0, 5, 7), (1, 31, 15), (1, 17, 2)]:
            patch = pixels[b, :, 14 * y : 14 * y + 14, 14 * x : 14 * x + 14]
            row = patch.unsqueeze(1).expand(3, 2, 14, 14).reshape(1, -1)
            assert torch.allclose(raster[b, y, x], tower.patch_embed(row)[0], atol=1e-5)
        # without undoing the windows the same check fails: the order matters
        wrong = hidden.reshape(2, 32, 16, -1)
        assert not torch.allclose(wrong[0, 5, 7], raster[0, 5, 7])


def test_qwen_heatmap_is_hot_where_the_query_differs(qwen):
    model, processor = qwen
    tower = find_tower(model)
    template = heatmap_pixels(processor.image_processor, [noise(448, 448)], {"square": 448})
    query = template.clone()
    query[:, :, 14 * 20 : 14 * 24, 14 * 4 : 14 * 8] = 0.0  # patches y 20-23, x 4-7 changed
    config = FewShotConfig(layers=(0, 2), window=6, rotations=(0, 1, 2, 3))
    with torch.no_grad():
        heat = fewshot_heatmap(tower, query, template, config)[0]
        same = fewshot_heatmap(tower, template, template, config)[0]
        feats = patch_features(tower, query, (0, 2, 4))
    assert [f.shape for f in feats] == [(1, 32, 32, 32)] * 3
    assert same.abs().max() < 1e-4  # identical images: similarity 1 everywhere
    inside = heat[20:24, 4:8]
    assert inside.min() > heat[:16].max()  # far from the change: as cold as the template
    with pytest.raises(ValueError, match="layer 5 does not exist; the vision tower has 4"):
        patch_features(tower, query, (5,))
