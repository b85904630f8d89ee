"""EMIT's prompt (`prompt.protocol: emit`) against the structure of EMIT's published samples
(its README's stage-1 and stage-2 JSONL lines, and evaluate_batch_mmad_choice.py): the order
of the images, the sections, the answer format."""

import re

import pytest

from emit_iad.train.targets import target
from emit_iad.vlm.chat import PromptConfig, build_messages

KNOWLEDGE = (" <Normal Characteristics>\n Description: A flat bracket.\n"
             " <Scratches Defect>\n Description: Thin bright lines.")  # fmt: skip
RECORD = {"type": "Anomaly Detection", "question": "Is there any defect in the object?",
          "options": ["No.", "Yes."], "answer": "B", "query_image": "MPDD/b/test/s/000.png",
          "similar_templates": ["MPDD/b/train/good/185.png"], "random_templates": [],
          "dataset": "MPDD", "object": "bracket_black", "knowledge": KNOWLEDGE,
          "defect": "scratches", "region": "center", "query_text": None}  # fmt: skip


def rendered(record, **prompt) -> tuple[str, str, list[str]]:
    messages, paths = build_messages(record, PromptConfig(protocol="emit", **prompt))
    user = "".join(p["text"] if p["type"] == "text" else "<image>"
                   for p in messages[1]["content"])  # fmt: skip
    return messages[0]["content"], user, paths


def test_sft_sample_has_emits_structure_and_targets_the_bare_letter():
    system, user, paths = rendered(RECORD, domain_knowledge=True, answer_format="plain")
    assert system == "You are an industrial inspector who checks products by images."
    assert user.startswith("Image-1: <image>\nImage-2: <image>\n")
    assert paths == ["MPDD/b/train/good/185.png", "MPDD/b/test/s/000.png"]  # template first
    sections = [user.index(s) for s in ("<Normal Characteristics>", "<Scratches Defect>",
                                        "Do not include any text in your response.",
                                        "\n\nQuestion: ")]  # fmt: skip
    assert sections == sorted(sections)
    assert user.endswith("\n\nQuestion: Is there any defect in the object? \nA. No.\nB. Yes.\n")
    assert user.count("<image>") == 2
    assert target(RECORD, "plain") == "B"  # the assistant's whole reply, as in EMIT's sample


def test_grpo_sample_asks_for_think_and_answer_tags():
    _, user, _ = rendered(RECORD, domain_knowledge=True, answer_format="think")
    instruction = user[user.index("Scratches"):user.index("\n\nQuestion: ")]
    assert re.search(r"<think>.*</think>.*<answer>.*</answer>", instruction)
    assert "Do not include any text" not in user


@pytest.mark.parametrize("qtype", ["Object Classification", "Object Structure"])
def test_object_questions_show_the_query_alone_without_knowledge(qtype):
    record = {**RECORD, "type": qtype, "question": "What kind of product is in the image?",
              "options": ["Bracket black.", "Screw."], "answer": "A"}  # fmt: skip
    _, user, paths = rendered(record, domain_knowledge=True)
    assert user.startswith("Query image: <image>\n") and paths == [RECORD["query_image"]]
    assert "Normal Characteristics" not in user


def test_defect_questions_compare_with_the_template_and_read_the_knowledge():
    record = {**RECORD, "type": "Defect Localization", "question": "Where is the defect?",
              "options": ["Center.", "Top left."], "answer": "A"}  # fmt: skip
    _, user, paths = rendered(record, domain_knowledge=True)
    assert len(paths) == 2 and "<Scratches Defect>" in user
    _, without, _ = rendered(record, domain_knowledge=False)
    assert "Scratches" not in without


def test_fewshot_placeholders_follow_the_query_image():
    messages, _ = build_messages(RECORD, PromptConfig(protocol="emit"), fewshot_tokens="<FS><FS>")
    parts = messages[1]["content"]
    images = [i for i, p in enumerate(parts) if p["type"] == "image"]
    assert parts[images[-1] + 1]["text"].strip() == "<FS><FS>"


def test_emit_prompts_tokenise_with_one_image_each_where_shown(tiny_vlm, records):
    prompt = PromptConfig(protocol="emit", domain_knowledge=True, answer_format="think")
    batch = tiny_vlm.collate(records, prompt)
    per_image = {"Anomaly Detection": 2, "Defect Classification": 2, "Defect Localization": 2,
                 "Object Details": 1}  # fmt: skip
    expected = sum(per_image[r["type"]] for r in records)
    assert batch.inputs["pixel_values"].shape[0] == expected
    assert all("Question: " in p for p in batch.prompts)
