"""The tiny InternVL: builds, learns, generates, saves and reloads; LoRA + extras round trip."""

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from emit_iad.vlm.bundle import ModelLoadError
from emit_iad.vlm.chat import PromptConfig, collate
from emit_iad.vlm.loading import add_lora, load_pretrained, load_vlm, set_trainable
from emit_iad.vlm.tiny import FEWSHOT_TOKEN, REASONING_TAGS


def test_tokenizer_round_trips_special_tokens_and_tags(tiny_vlm):
    tok = tiny_vlm.processor.tokenizer
    text = "<|im_start|>user\n<img></img><IMG_CONTEXT><FS_PROMPT><think>a</think><answer>B</answer>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    for t in ["<|im_start|>", "<IMG_CONTEXT>", FEWSHOT_TOKEN, *REASONING_TAGS]:
        assert len(tok(t)["input_ids"]) == 1, t
    kept = tok.decode(tok("<think>x</think><answer>C</answer><|im_end|>")["input_ids"],
                      skip_special_tokens=True)  # fmt: skip
    assert kept == "<think>x</think><answer>C</answer>"  # reasoning tags survive decoding
    assert tok.start_image_token == "<img>" and tok.context_image_token == "<IMG_CONTEXT>"


def test_forward_backward_generate_and_reload_with_identical_logits(tiny_vlm, records, tmp_path):
    batch = collate(records[:4], tiny_vlm.processor, PromptConfig(k_shot=1),
                    tiny_vlm.fewshot_placeholders(), tiny_vlm.fewshot_types())  # fmt: skip
    assert batch.inputs["pixel_values"].shape[0] == 8  # template + query per question
    out = tiny_vlm.forward(batch)
    out.logits.float().pow(2).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_vlm.model.parameters())
    texts = tiny_vlm.generate(batch, max_new_tokens=6, do_sample=False)
    # greedy decoding is the argmax of the logits: the first new token of each row, by hand
    with torch.no_grad():
        first = tiny_vlm.forward(batch).logits[:, -1].argmax(-1)
    tok = tiny_vlm.processor.tokenizer
    for text, token in zip(texts, first.tolist(), strict=True):
        assert text.startswith(tok.decode([token], skip_special_tokens=True).strip()), (text, token)

    tiny_vlm.save(tmp_path / "base")
    again = load_vlm(tmp_path / "base")
    for m in (tiny_vlm.model, again.model, tiny_vlm.fewshot, again.fewshot):
        m.eval()
    with torch.no_grad():
        assert torch.equal(tiny_vlm.forward(batch).logits, again.forward(batch).logits)
    # and plain transformers loads it like any InternVL checkpoint
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "base")
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    assert type(AutoProcessor.from_pretrained(tmp_path / "base")).__name__ == "InternVLProcessor"


def test_lora_and_extras_train_save_reload_and_answer(tiny_vlm, records, tmp_path):
    tiny_vlm.save(tmp_path / "base")
    vlm = load_vlm(tmp_path / "base")
    vlm.meta["base_model"] = str(tmp_path / "base")
    add_lora(vlm, r=4, alpha=8)
    names = set_trainable(vlm, ["lora", "fewshot"])
    assert names and all("lora_" in n or n.startswith("fewshot.") for n in names)
    params = [p for p in vlm.model.parameters() if p.requires_grad] + list(vlm.fewshot.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    batch = collate(records[:4], vlm.processor, PromptConfig(k_shot=1),
                    vlm.fewshot_placeholders(), vlm.fewshot_types())  # fmt: skip
    for _ in range(3):
        loss = vlm.forward(batch, labels=batch.inputs["input_ids"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    vlm.model.eval()
    vlm.fewshot.eval()
    vlm.meta["trainable"] = ["lora", "fewshot"]
    vlm.save(tmp_path / "sft")
    assert (tmp_path / "sft/adapter_config.json").is_file()
    assert not (tmp_path / "sft/model.safetensors").exists()  # the adapter only, not a copy
    back = load_vlm(tmp_path / "sft")
    back.fewshot.eval()
    with torch.no_grad():
        assert torch.allclose(vlm.forward(batch).logits, back.forward(batch).logits, atol=1e-5)
    assert len(back.generate(batch, max_new_tokens=4, do_sample=False)) == 4


@pytest.mark.parametrize("part", ["fewshot.safetensors", "adapter_model.safetensors"])
def test_a_folder_missing_a_part_its_meta_names_is_refused(tiny_vlm, tmp_path, part):
    tiny_vlm.save(tmp_path / "base")
    vlm = load_vlm(tmp_path / "base")
    vlm.meta.update(base_model=str(tmp_path / "base"), trainable=["lora", "fewshot"])
    add_lora(vlm, r=4, alpha=8)
    vlm.save(tmp_path / "sft")
    load_vlm(tmp_path / "sft")  # complete: loads
    (tmp_path / "sft" / part).unlink()
    with pytest.raises(ModelLoadError, match=f"{part} missing.*incomplete"):
        load_vlm(tmp_path / "sft")


def test_a_hub_name_offline_says_how_to_go_on():
    try:  # HF_HUB_OFFLINE=1 is set for the whole test session (tests/conftest.py)
        load_pretrained("OpenGVLab/InternVL3-8B-hf")
    except ModelLoadError as err:
        text = str(err)
        assert "OpenGVLab/InternVL3-8B-hf" in text and "kedro run --pipelines=model" in text
        assert "local folder" in text
    else:  # pragma: no cover - only on a machine that has the model cached
        raise AssertionError("expected a ModelLoadError offline")
