"""The openai backend end to end on the real client against a local faulty server."""

import base64
import io

import pytest
from PIL import Image

from emit_iad.describe import DescribeConfig, plan_tasks, synthesize_descriptions
from emit_iad.describe.openai_prompts import messages, parse_reply
from emit_iad.llm_api import BudgetExceeded, InvalidReply
from tests.fake_openai import FakeOpenAI


def config(server, tmp_path, **llm) -> DescribeConfig:
    settings = {"model": "gpt-4o", "base_url": server.url, "timeout_s": 0.5,
                "max_retries": 8, "cache_dir": str(tmp_path / "cache"), **llm}  # fmt: skip
    return DescribeConfig(backend="openai", instances_per_object=4, llm=settings)


def test_thirty_percent_faults_still_give_every_description_and_a_rerun_costs_nothing(
    small_index, tmp_path
):
    template = synthesize_descriptions(small_index, DescribeConfig(instances_per_object=4)).table
    with FakeOpenAI(fault_rate=0.3, seed=7, slow_s=0.8) as server:
        out = synthesize_descriptions(small_index, config(server, tmp_path), {"api_key": "sk-x"})
        assert out.report.empty, out.report
        assert len(out.table) == len(template) == 17
        assert (out.table.backend == "openai").all() and (out.table.model == "gpt-4o").all()
        faults = sum(server.fault_counts.values())
        assert faults >= 3 and server.completions >= 17
        first_requests = len(server.requests)

        again = synthesize_descriptions(small_index, config(server, tmp_path), {"api_key": "sk-x"})
        assert len(server.requests) == first_requests  # zero new requests
        assert again.usage.cache_hits == 17 and again.usage.requests == 0
        assert again.table.equals(out.table)
    faults = dict(server.fault_counts)
    print(f"\n30% faults: {first_requests} requests for 17 descriptions, faults {faults}")


def test_defect_prompt_shows_normal_defective_and_mask_images(small_index):
    task = next(t for t in plan_tasks(small_index) if t.kind == "defect")
    content = messages(task)[1]["content"]
    images = [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    assert len(images) == 3 and all(u.startswith("data:image/png;base64,") for u in images)
    mask = Image.open(io.BytesIO(base64.b64decode(images[2].split(",", 1)[1])))
    assert mask.mode == "L"
    assert (
        "'crack' defect" in content[0]["text"]
        or f"'{task.defect.replace('_', ' ')}'" in content[0]["text"]
    )


@pytest.mark.parametrize(
    ("kind", "text", "match"),
    [("normal", '{"characteristics": "short"}', "at least 20"),
     ("defect", '{"visual_traits": "A thin dark line across the part."}', "effect"),
     ("instance", '{"description": "I\'m sorry, I cannot describe this image."}', "refusal")],
)  # fmt: skip
def test_replies_are_validated_against_the_schema(kind, text, match):
    with pytest.raises(InvalidReply, match=match):
        parse_reply(kind, text)


def test_budget_stops_the_stage_with_a_clear_message(small_index, tmp_path):
    with FakeOpenAI() as server:
        with pytest.raises(BudgetExceeded, match="Raise the limit"):
            synthesize_descriptions(
                small_index,
                config(server, tmp_path, max_requests=5, concurrency=1),
                {"api_key": "k"},
            )
        assert len(server.requests) == 5
        assert len(list((tmp_path / "cache").rglob("*.json"))) == 5
