"""One place per model family (vlm/families.py): each family's entry names what its published
layout really has: the tower, the aligner, the structural tokens and the LoRA targets."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from emit_iad.vlm.families import DEFAULT, FAMILIES, family_of
from emit_iad.vlm.layouts import LAYOUTS, save_layout
from emit_iad.vlm.vision import default_heatmap_images

from ..conftest import TEXTS

FAMILY_OF_LAYOUT = {"InternVL3": "InternVL", "Qwen2.5-VL": "Qwen2.5-VL"}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_family_entry_matches_its_published_layout(layout, tmp_path):
    save_layout(layout, tmp_path, "tiny", TEXTS)
    config = AutoConfig.from_pretrained(tmp_path)
    family = family_of(config)
    assert family.name == FAMILY_OF_LAYOUT[layout]
    model = AutoModelForImageTextToText.from_pretrained(tmp_path)
    names = [n for n, _ in model.named_modules()]
    assert any(n.endswith(family.tower) for n in names)
    assert any(n.endswith(family.aligner) for n in names)
    tower = next(m for n, m in model.named_modules() if n.endswith(family.tower))
    linears = {n.rsplit(".", 1)[-1] for n, m in tower.named_modules()
               if isinstance(m, torch.nn.Linear)}  # fmt: skip
    assert set(family.vision_lora_targets) <= linears
    vocab = AutoProcessor.from_pretrained(tmp_path).tokenizer.get_vocab()
    image_markup = [t for t in family.structural_tokens if t in vocab]
    assert image_markup, f"{family.name}: none of its structural tokens is in the tokenizer"
    assert default_heatmap_images(config) == family.heatmap_images


def test_an_unknown_model_type_reads_as_the_default_family():
    assert family_of(type("Config", (), {"model_type": "llava"})()) is DEFAULT
    assert DEFAULT is FAMILIES["InternVL"]
    assert len({f.tower for f in FAMILIES.values()}) == len(FAMILIES)
