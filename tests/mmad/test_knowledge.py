"""Domain knowledge: the descriptions as MMAD's entries, on every question and beside the test
benchmark; MMAD's (and EMIT's) files where they have an entry, GPT for the rest."""

import json
from pathlib import Path

import pandas as pd

from emit_iad.describe import DescribeConfig, synthesize_descriptions
from emit_iad.evaluate.evaluate import knowledge_from_mmad
from emit_iad.mmad.knowledge import (
    as_domain_knowledge_json,
    knowledge_entries,
    knowledge_text,
)
from tests.fake_openai import FakeOpenAI

FIXTURE = Path(__file__).resolve().parents[3] / "shared/fixtures/mmad/domain_knowledge.json"


def test_entries_put_the_normal_characteristics_first_in_mmads_shape():
    desc = pd.DataFrame([
        {"kind": "defect", "dataset": "D", "object": "plate", "defect": "scratch", "text": "Lines."},
        {"kind": "normal", "dataset": "D", "object": "plate", "defect": None, "text": "Flat. "},
        {"kind": "instance", "dataset": "D", "object": "plate", "defect": None, "text": "x"},
    ])  # fmt: skip
    entries = knowledge_entries(desc)
    assert list(entries[("D", "plate")]) == ["good", "scratch"]
    assert knowledge_text(entries[("D", "plate")]) == (
        "<Normal Characteristics>\n Description: Flat.\n<Scratch Defect>\n Description: Lines.")
    written = as_domain_knowledge_json(entries, [("D", "plate"), ("D", "plate")])
    assert written == {"D": {"plate": entries[("D", "plate")]}}


def test_every_question_carries_its_objects_knowledge(sets):
    _, desc, qa = sets
    q = qa.questions
    assert q.knowledge.notna().all()
    first = q.iloc[0]
    normal = desc[(desc.kind == "normal") & (desc.object == first.object)].text.iloc[0]
    assert normal.strip() in first.knowledge
    assert (q.groupby("object").knowledge.nunique() == 1).all()


def test_the_benchmarks_knowledge_file_reads_back_as_mmads(tmp_path, sets):
    _, desc, qa = sets
    test = qa.split("test")
    data = as_domain_knowledge_json(knowledge_entries(desc), zip(test.dataset, test.object, strict=True))
    path = tmp_path / "domain_knowledge.json"
    path.write_text(json.dumps(data))
    read = knowledge_from_mmad(str(path))
    key = (test.dataset.iloc[0], test.object.iloc[0])
    assert read[key] == test.knowledge.iloc[0]  # evaluation shows what training showed


def test_mmads_entries_where_given_and_gpt_for_the_rest(tmp_path):
    index = pd.DataFrame(
        {"dataset": ["DS-MVTec", "DS-MVTec", "MPDD", "MPDD"], "object": ["bottle", "bottle",
         "tubes", "tubes"], "split": ["train", "test", "train", "test"],
         "label": ["good", "broken_large", "good", "anomalous"],
         "is_anomalous": [False, True, False, True],
         "image_path": [str(tmp_path / f"{i}.png") for i in range(4)],
         "mask_path": [None, str(tmp_path / "m.png"), None, str(tmp_path / "m.png")],
         "defect_area": [0, 0.1, 0, 0.1], "defect_region": [None, "top", None, "left"]})  # fmt: skip
    from PIL import Image

    for p in [*index.image_path, tmp_path / "m.png"]:
        Image.new("RGB", (8, 8)).save(p)
    with FakeOpenAI() as server:
        config = DescribeConfig(backend="openai", instances_per_object=0,
                                mmad={"domain_knowledge": [str(FIXTURE)]},
                                llm={"model": "gpt-4o", "base_url": server.url,
                                     "cache_dir": str(tmp_path / "cache")})  # fmt: skip
        out = synthesize_descriptions(index, config, {"api_key": "k"})
        asked = len(server.requests)
    by = out.table.set_index(["object", "kind"]).backend.to_dict()
    assert by[("bottle", "normal")] == by[("bottle", "defect")] == "mmad"
    assert by[("tubes", "normal")] == by[("tubes", "defect")] == "openai"
    assert asked == 2 and out.report.empty
