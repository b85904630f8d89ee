"""Kept encodings (vlm/encoding.py): a batch assembled from per-question encodings equals the
processor's own batch, element for element, for the tiny InternVL and for InternVL3's and
Qwen2.5-VL's published layouts (shrunk), with and without SFT targets, few-shot rows included."""

from __future__ import annotations

import pytest
import torch

from emit_iad.vlm import chat, encoding
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.fewshot import FewShotConfig
from emit_iad.vlm.loading import load_pretrained

from ..layouts import LAYOUTS


def mixed_records(sets, n: int = 6) -> list[dict]:
    """Questions of several types (few-shot rows and plain ones), of unequal lengths."""
    _, _, qa = sets
    train = qa.split("train")
    kinds = ["Anomaly Detection", "Object Classification", "Defect Localization", "Object Details"]
    picked = [train[train.type == t].head(2) for t in kinds]
    return [r for part in picked for r in part.to_dict("records")][:n]


def assert_same(kept_batch, batch) -> None:
    assert set(kept_batch.inputs) == set(batch.inputs)
    for key, value in batch.inputs.items():
        assert torch.equal(kept_batch.inputs[key], value), key
    assert kept_batch.fewshot_rows == batch.fewshot_rows
    assert (kept_batch.fewshot_query is None) == (batch.fewshot_query is None)
    if batch.fewshot_query is not None:
        assert torch.equal(kept_batch.fewshot_query, batch.fewshot_query)
        assert torch.equal(kept_batch.fewshot_template, batch.fewshot_template)


def check(vlm, records) -> None:
    prompt = PromptConfig(k_shot=1, answer_format="think")
    targets = [f"<think>{'a' * i}</think><answer>A</answer>" for i in range(len(records))]
    for with_targets in (None, targets):
        batch = vlm.collate(records, prompt, targets=with_targets)
        assert batch.fewshot_rows  # the few-shot path is part of the comparison
        with encoding.kept():
            first = vlm.collate(records, prompt, targets=with_targets)
            again = vlm.collate(
                records[::-1], prompt, targets=with_targets[::-1] if with_targets else None
            )
            back = vlm.collate(records, prompt, targets=with_targets)
        assert_same(first, batch)
        assert_same(back, batch)  # from the kept encodings, after another batch order
        flipped = vlm.collate(
            records[::-1], prompt, targets=with_targets[::-1] if with_targets else None
        )
        assert_same(again, flipped)


def test_kept_encodings_equal_the_processors_batch_tiny(tiny_vlm, sets, monkeypatch):
    check(tiny_vlm, mixed_records(sets))
    calls = []
    real = chat.encode_one
    monkeypatch.setattr(chat, "encode_one", lambda *a: calls.append(1) or real(*a))
    with encoding.kept():  # encoded once above: nothing is encoded again
        tiny_vlm.collate(mixed_records(sets), PromptConfig(k_shot=1, answer_format="think"))
    assert calls == []


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_kept_encodings_equal_the_processors_batch_real_layouts(layout, sets, tmp_path):
    hub = tmp_path / layout
    LAYOUTS[layout](hub)
    vlm = load_pretrained(str(hub), "float32", "cpu", True, FewShotConfig(layers=(1, 2), window=6))
    qwen = layout.startswith("Qwen")
    prompt_images = ({"size": {"shortest_edge": 3136, "longest_edge": 112 * 112}} if qwen
                     else {"crop_to_patches": True, "max_patches": 2})  # fmt: skip
    vlm.meta.update(stage="base", images={"prompt": prompt_images})
    check(vlm, mixed_records(sets))


def test_a_processor_padding_on_the_right_is_never_kept(tiny_vlm, sets, monkeypatch):
    monkeypatch.setattr(tiny_vlm.processor.tokenizer, "padding_side", "right")
    with encoding.kept():
        assert not encoding.keeps(tiny_vlm.processor)
    monkeypatch.undo()
    assert not encoding.keeps(tiny_vlm.processor)  # outside kept(): batch-wise
    with encoding.kept():
        assert encoding.keeps(tiny_vlm.processor)
