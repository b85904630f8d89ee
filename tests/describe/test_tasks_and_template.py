import pandas as pd
import pytest

from emit_iad.describe import DescribeConfig, plan_tasks, synthesize_descriptions
from emit_iad.describe.template import defect_traits


def test_plan_covers_every_object_and_defect_type(small_index):
    tasks = plan_tasks(small_index, instances_per_object=4, defect_share=0.5, seed=0)
    kinds = pd.Series([t.kind for t in tasks]).value_counts().to_dict()
    # wood: 4 defect types, screw: 3
    assert kinds == {"normal": 2, "defect": 7, "instance": 8}
    for t in tasks:
        if t.kind == "defect":
            group = small_index[(small_index.object == t.object) & (small_index.label == t.defect)]
            assert t.area == group.defect_area.max()  # the clearest example is shown
            assert t.reference_path.endswith("train/good/000.png")
            assert t.mask_path.endswith("_mask.png")
    instances = [t for t in tasks if t.kind == "instance"]
    assert sum(t.defect is not None for t in instances) == 4
    assert all(t.region for t in instances if t.defect)


def test_plan_is_seeded():
    index = pd.DataFrame(
        {"dataset": "d", "object": "o", "split": "test", "label": ["good"] * 10 + ["crack"] * 10,
         "is_anomalous": [False] * 10 + [True] * 10,
         "image_path": [f"img{i:02d}.png" for i in range(20)], "mask_path": None,
         "defect_area": [0.0] * 10 + [0.01 * i for i in range(10)],
         "defect_region": [None] * 10 + ["center"] * 10}
    )  # fmt: skip

    def pick(seed):
        return [t.image_path for t in plan_tasks(index, 6, 0.5, seed) if t.kind == "instance"]

    assert pick(0) == pick(0)
    assert pick(0) != pick(1)
    assert len(set(pick(0))) == 6


def test_template_backend_is_deterministic_and_marked(small_index):
    config = DescribeConfig(backend="template", instances_per_object=4)
    a = synthesize_descriptions(small_index, config)
    b = synthesize_descriptions(small_index.sample(frac=1, random_state=3), config)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert (a.table.backend == "template").all() and (a.table.model == "template-v1").all()
    assert a.table.request_hash.str.len().eq(64).all() and a.table.request_hash.is_unique
    assert a.report.empty and a.usage.requests == 0


def test_template_texts_use_the_metadata(small_index):
    table = synthesize_descriptions(small_index, DescribeConfig(instances_per_object=4)).table
    crack = table[(table.kind == "defect") & (table.defect == "crack")].iloc[0]
    rows = small_index[small_index.label == "crack"]
    assert crack.text.startswith("A dark, jagged line")
    assert f"{100 * rows.defect_area.median():.1f}% of the image" in crack.text
    assert crack.effect.endswith(".")
    inst = table[(table.kind == "instance") & table.defect.notna()].iloc[0]
    assert f"at the {inst.region}:" in inst.text
    normal = table[(table.kind == "normal") & (table.object == "screw")].iloc[0]
    assert "threaded shaft" in normal.text and pd.isna(normal.defect)


@pytest.mark.parametrize(
    ("name", "word"),
    [("thread_damage", "ridges"), ("thread", "stray"), ("broken_large", "broken"),
     ("color", "colour"), ("faulty_imprint", "labelled faulty imprint")],
)  # fmt: skip
def test_defect_words_map_to_traits(name, word):
    assert word in defect_traits(name)[0]


def test_bad_settings_name_the_file():
    with pytest.raises(ValueError, match=r"parameters_descriptions\.yml"):
        DescribeConfig.from_params({"backend": "gpt"})
    with pytest.raises(ValueError, match=r"unknown setting.*parameters_descriptions\.yml"):
        DescribeConfig.from_params({"bakend": "openai"})
