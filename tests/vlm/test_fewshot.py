"""EMIT's heatmap (vectorised vs loop, identical, planted, rotated) and the injection."""

import numpy as np
import pytest
import torch
from PIL import Image

from emit_iad.vlm.bundle import vision_tower
from emit_iad.vlm.chat import PromptConfig, collate
from emit_iad.vlm.fewshot import (
    FewShotConfig,
    FewShotModule,
    fewshot_heatmap,
    heatmap_from_features,
    heatmap_reference,
    inject_tokens,
    neighbourhood_mask,
)


def test_neighbourhood_mask_by_hand():
    m = neighbourhood_mask(3, 3, 1)
    assert m[0].reshape(3, 3).tolist() == [[True, True, False], [True, True, False],
                                          [False, False, False]]  # fmt: skip
    assert m[4].all()  # the centre sees everything within one step


@pytest.mark.parametrize("window", [0, 1, 3])
def test_vectorised_heatmap_equals_the_loop(window):
    g = torch.Generator().manual_seed(window)
    query = [torch.randn(2, 4, 5, 6, generator=g) for _ in range(2)]
    templates = [torch.randn(2, 3, 4, 5, 6, generator=g) for _ in range(2)]
    fast = heatmap_from_features(query, templates, window)
    slow = heatmap_reference(query, templates, window)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_window_limits_where_a_patch_may_match():
    # the only matching template patch is 3 cells away: found with window 3, not with 2
    q = torch.zeros(1, 4, 4, 2)
    q[..., 0] = 1.0
    t = torch.zeros(1, 1, 4, 4, 2)
    t[..., 1] = 1.0
    t[0, 0, 3, 3] = torch.tensor([1.0, 0.0])
    assert heatmap_from_features([q], [t], 3)[0, 0, 0] == pytest.approx(0.0)
    assert heatmap_from_features([q], [t], 2)[0, 0, 0] == pytest.approx(1.0)


def _pixels(vlm, images):
    return vlm.processor.image_processor(images=images, crop_to_patches=False,
                                         return_tensors="pt")["pixel_values"]  # fmt: skip


def _image(seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(60, 200, (64, 64, 3), dtype=np.uint8))


CFG = FewShotConfig(layers=(0, 1), window=1)


def test_identical_images_give_a_near_zero_map(tiny_vlm):
    pix = _pixels(tiny_vlm, [_image()])
    heat = fewshot_heatmap(vision_tower(tiny_vlm.model), pix, pix, CFG)
    assert heat.shape == (1, 8, 8)
    assert heat.abs().max() < 1e-4


def test_a_planted_difference_peaks_in_its_cell(tiny_vlm):
    template = _image()
    query = np.asarray(template).copy()
    query[40:48, 8:16] = [255, 0, 0]  # patch row 5, column 1
    pix = _pixels(tiny_vlm, [Image.fromarray(query), template])
    heat = fewshot_heatmap(
        vision_tower(tiny_vlm.model), pix[:1], pix[1:], FewShotConfig(layers=(0,), window=1)
    )
    peak = divmod(int(heat[0].argmax()), 8)
    assert peak == (5, 1)
    assert heat[0, 5, 1] > 5 * heat[0].median()


def test_rotated_templates_still_match(tiny_vlm):
    query = _image(3)
    template = query.rotate(90)  # a quarter turn of the same product
    pix = _pixels(tiny_vlm, [query, template])
    tower = vision_tower(tiny_vlm.model)
    with_rot = fewshot_heatmap(tower, pix[:1], pix[1:], FewShotConfig(layers=(0,), window=8))
    without = fewshot_heatmap(tower, pix[:1], pix[1:],
                              FewShotConfig(layers=(0,), window=8, rotations=(0,)))  # fmt: skip
    assert with_rot.max() < 1e-4 < without.mean()


def test_injection_touches_only_placeholders_and_trains_soft_prompt_and_projector(
    tiny_vlm, records
):
    vlm = tiny_vlm
    batch = collate(records[:4], vlm.processor, PromptConfig(k_shot=1),
                    vlm.fewshot_placeholders(), vlm.fewshot_types())  # fmt: skip
    ids = batch.inputs["input_ids"]
    placeholder = ids == vlm.fewshot_token_id
    rows_with = placeholder.any(1).nonzero().flatten().tolist()
    assert rows_with == batch.fewshot_rows and rows_with  # only AD / localization questions
    emb = vlm.model.get_input_embeddings()
    plain = emb(ids).detach()
    values = vlm.heat_tokens(batch)
    with inject_tokens(emb, vlm.fewshot_token_id, values):
        injected = emb(ids)
    changed = (injected.detach() - plain).abs().sum(-1) > 0
    assert torch.equal(changed, placeholder)
    vlm.fewshot.zero_grad()
    injected.sum().backward()
    assert vlm.fewshot.soft_prompt.grad.abs().sum() > 0
    assert vlm.fewshot.projector[1].weight.grad.abs().sum() > 0
    assert emb(ids).equal(plain)  # the hook is gone after the block


def test_tiny_model_aids_peak_token_and_positioned_projector():
    emit = FewShotModule(16, FewShotConfig(n_soft=3))
    aided = FewShotModule(16, FewShotConfig(n_soft=3, peak_token=True, projector_mlp=True))
    assert emit.n_tokens(8) == 3 + 16 and aided.n_tokens(8) == 3 + 16 + 1
    aided.eval()
    heat = torch.rand(2, 8, 8)
    tokens = aided.tokens(heat)
    assert tokens.shape == (2, 3 + 16 + 1, 16)
    heat_tokens = tokens[:, 3:-1]
    assert torch.equal(tokens[:, -1], heat_tokens.amax(dim=1))  # the peak: max over the map
    # on a uniform map EMIT's projector gives two inner patches the same token; the aided one
    # tells them apart, so a token knows where it lies
    emit.eval()
    uniform = torch.full((1, 8, 8), 0.5)
    plain, placed = emit.tokens(uniform)[0, 3:], aided.tokens(uniform)[0, 3:-1]
    assert torch.allclose(plain[5], plain[6])
    assert not torch.allclose(placed[5], placed[6], atol=1e-4)
