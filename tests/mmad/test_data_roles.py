"""EMIT's data roles and the held-out product's own templates, on a small synthetic dataset:
a normal-only source trains on its own training folders' normal images and on texts; a
held-out object is answered 1-shot from normal images no training question shows."""

import pandas as pd
import pytest

from emit_iad.describe import DescribeConfig, synthesize_descriptions
from emit_iad.mmad.build import QAConfig, build_question_sets
from emit_iad.mmad.leakage import question_images
from emit_iad.mmad.splits import assign_splits
from emit_iad.sources import SourceConfig, SyntheticConfig, build_image_index
from emit_iad.sources import write_synthetic_dataset as write


@pytest.fixture(scope="module")
def roles(tmp_path_factory):
    root = tmp_path_factory.mktemp("roles") / "synthetic"
    write(root, SyntheticConfig(image_size=48, n_train_good=9, n_test_good=3, n_test_per_defect=3,
                                objects=("wood", "tablet", "screw", "fabric")))
    sources = [SourceConfig("synthetic", "synthetic", str(root), ("wood", "screw", "fabric")),
               SourceConfig("text-only", "synthetic", str(root), ("tablet",),
                            defect_images=False)]  # fmt: skip
    index, _ = build_image_index(sources)
    desc = synthesize_descriptions(index, DescribeConfig(instances_per_object=4)).table
    sets = build_question_sets(index, desc, QAConfig(holdout_objects=("fabric",)))
    return index, desc, sets


def test_a_normal_only_source_trains_on_its_own_training_normals_and_texts(roles):
    index, desc, sets = roles
    tablet = index[index.object == "tablet"]
    own_training = set(tablet[(tablet.split == "train") & ~tablet.is_anomalous].image_path)
    q = sets.questions[sets.questions.object == "tablet"]
    trained = q[q.split.isin(["train", "val"])]
    assert set(question_images(trained).image) <= own_training  # queries and templates
    assert set(q[q.split == "test"].query_image) == set(tablet[tablet.split == "test"].image_path)
    # its defects enter as text: descriptions of normal training images as if defective
    texts = trained[trained.query_text.notna() & trained.defect.notna()]
    assert len(set(texts.defect)) >= 2 and set(texts.defect) <= set(tablet[tablet.is_anomalous].label)
    imagined = desc[(desc.object == "tablet") & (desc.kind == "instance") & desc.defect.notna()]
    assert set(imagined.image_path) <= own_training
    assert not imagined.text.str.contains("% of the image").any()  # no test mask statistic
    assert (texts.type.isin(["Anomaly Detection", "Defect Classification",
                             "Defect Localization"])).all()  # fmt: skip


def test_a_source_with_defect_images_keeps_the_fractional_split(roles):
    _, _, sets = roles
    wood = sets.questions[(sets.questions.object == "wood") & sets.questions.query_text.isna()]
    assert wood[wood.split == "train"].defect.notna().any()
    assert wood[wood.split == "test"].defect.notna().any()


def test_the_held_out_object_is_answered_one_shot_from_templates_no_question_shows(roles):
    index, _, sets = roles
    q = sets.questions
    fabric = q[q.object == "fabric"]
    assert set(fabric.split) == {"test"}
    assert (fabric.similar_templates.map(len) == 3).all()
    templates = set(question_images(fabric[fabric.query_text.isna()]).query("role == 'template'")
                    .image)  # fmt: skip
    normal_fabric = set(index[(index.object == "fabric") & ~index.is_anomalous].image_path)
    assert templates <= normal_fabric
    assert not templates & set(q.query_image)  # never a query of any split
    training = q[q.split.isin(["train", "val"])]
    assert not templates & set(question_images(training).image)
    assert not training.options.map(lambda o: any("fabric" in x.lower() for x in o)).any()
    assert not (sets.report.type == "no template").any()


def test_without_kept_templates_the_report_counts_zero_shot_entries(roles):
    index, desc, _ = roles
    sets = build_question_sets(index, desc, QAConfig(holdout_objects=("fabric",),
                                                     test_templates=0))  # fmt: skip
    report = sets.report[sets.report.type == "no template"].set_index("object")
    fabric_entries = sets.questions[(sets.questions.object == "fabric")].query_key.nunique()
    assert report.loc["fabric", "questions"] == fabric_entries
    assert "wood" not in report.index  # seen objects' test entries use training normals then


def test_splits_of_roles_by_hand():
    """9 normal images of a normal-only source's train folder, 3 of its test folder, 3 defects."""
    rows = ([("train", "good", False)] * 9 + [("test", "good", False)] * 3
            + [("test", "crack", True)] * 3)  # fmt: skip
    index = pd.DataFrame([{"dataset": "d", "object": "o", "split": s, "label": lab,
                           "is_anomalous": a, "image_path": f"{i:02d}.png", "defect_images": False}
                          for i, (s, lab, a) in enumerate(rows)])  # fmt: skip
    out = assign_splits(index, {"train": 0.6, "val": 0.15, "test": 0.25}, test_templates=3)
    assert (out[:9] != "test").all() and (out[9:] == "test").all()
    # 3 of the 9 kept as templates; the other 6 split 0.8 / 0.2 (train : val renormalised)
    assert out[:9].value_counts().to_dict() == {"template": 3, "train": 5, "val": 1}


def test_another_sources_role_leaves_this_sources_questions_as_they_were(roles):
    index, desc, sets = roles
    flipped = index.assign(defect_images=index.defect_images | (index.dataset == "text-only"))
    again = build_question_sets(flipped, desc, QAConfig(holdout_objects=("fabric",))).questions
    cols = ["id", "split", "question", "options", "answer", "similar_templates",
            "random_templates", "query_text"]  # fmt: skip

    def own(q):
        q = q[q.dataset == "synthetic"].sort_values(["id", "type"])[cols]
        return q.map(lambda v: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str)
                     else v).reset_index(drop=True)  # fmt: skip

    tablet = again[again.object == "tablet"]
    assert tablet[tablet.split == "train"].defect.notna().any()  # the flip took effect
    pd.testing.assert_frame_equal(own(sets.questions), own(again))
