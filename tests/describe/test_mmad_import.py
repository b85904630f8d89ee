import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from emit_iad.describe import DescribeConfig, synthesize_descriptions
from emit_iad.describe.mmad import MMADKnowledgeError, load_domain_knowledge, split_entry
from emit_iad.describe.synthesize import DescriptionsFailed

FIXTURE = Path(__file__).resolve().parents[3] / "shared/fixtures/mmad/domain_knowledge.json"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"{FIXTURE} not beside the repo")


@needs_fixture
def test_the_real_domain_knowledge_file_loads():
    knowledge = load_domain_knowledge(FIXTURE)
    assert set(knowledge) == {"MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}
    title, traits, effect = split_entry(knowledge["MVTec"]["bottle"]["broken_large"])
    assert title == "Large Breakage" and traits.startswith("The defect is characterized")
    assert "compromise" in effect


@needs_fixture
def test_mmad_backend_maps_dataset_names_and_reports_what_is_missing():
    index = pd.DataFrame(
        {"dataset": "DS-MVTec", "object": "bottle", "split": "test",
         "label": ["good", "broken_large", "contamination", "not_in_mmad"],
         "is_anomalous": [False, True, True, True],
         "image_path": ["g.png", "b.png", "c.png", "n.png"], "mask_path": [None, "m", "m", "m"],
         "defect_area": [0, 0.1, 0.1, 0.1], "defect_region": [None, "top", "center", "left"]}
    )  # fmt: skip
    config = DescribeConfig(backend="mmad", mmad={"domain_knowledge": str(FIXTURE)},
                            instances_per_object=2)  # fmt: skip
    # 1 of 6 missing is above the default 10 %: the stage stops, naming it ...
    with pytest.raises(DescriptionsFailed, match=r"1 of 6 descriptions failed.*not_in_mmad"):
        synthesize_descriptions(index, config)
    # ... and with a looser threshold it reports it
    config = dataclasses.replace(config, max_failed_share=0.5)
    out = synthesize_descriptions(index, config)
    mmad_rows = out.table[out.table.backend == "mmad"]
    assert sorted(mmad_rows.kind + ":" + mmad_rows.defect.fillna("-")) == [
        "defect:broken_large", "defect:contamination", "normal:-"]  # fmt: skip
    assert mmad_rows.text.str.len().gt(100).all()
    assert (out.table[out.table.kind == "instance"].backend == "template").all()
    assert out.report.defect.tolist() == ["not_in_mmad"]
    assert "no entry DS-MVTec/bottle/not_in_mmad" in out.report.reason.iloc[0]


def test_split_entry_by_hand():
    assert split_entry(" <Hole>\n Description: A round gap. It affects sealing.") == (
        "Hole", "A round gap. It affects sealing.", "It affects sealing.")  # fmt: skip
    assert split_entry("no title here.") == ("", "no title here.", "")


def test_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(MMADKnowledgeError, match="domain_knowledge"):
        load_domain_knowledge(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(MMADKnowledgeError, match="not valid JSON"):
        load_domain_knowledge(bad)
