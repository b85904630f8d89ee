"""The question sets on real images: splits, templates, localisation, bad input, mmad.json."""

import json

import numpy as np
import pandas as pd
import pytest

from emit_iad.describe import DescribeConfig, synthesize_descriptions
from emit_iad.mmad import protocol as p
from emit_iad.mmad.build import QAConfig, build_question_sets
from emit_iad.mmad.format import MMADFormatError, from_mmad, to_mmad
from emit_iad.mmad.questions import GENERIC_OBJECTS, option_text
from emit_iad.sources import (
    SourceConfig,
    build_image_index,
)
from tests.sources.test_layouts import write_image, write_mask


def test_every_type_is_built_with_mmad_names(sets):
    _, _, qa = sets
    assert set(qa.questions.type) == set(p.QUESTION_TYPES)
    n_opts = qa.questions.options.map(len)
    assert (n_opts[qa.questions.type == p.ANOMALY_DETECTION] == 2).all()
    assert (n_opts[qa.questions.type != p.ANOMALY_DETECTION] == 4).all()
    assert qa.report.empty, qa.report


def test_no_image_is_in_two_splits_and_templates_are_normal_training_images(sets):
    """Training and validation queries compare with normal training images; test queries with
    normal images kept as templates only, which no question shows as its query."""
    index, _, qa = sets
    q = qa.questions[qa.questions.query_text.isna()]
    assert (q.groupby("query_key").split.nunique() == 1).all()
    normal = set(index[~index.is_anomalous].image_path)
    train_normal = normal & set(q[(q.split == "train") & q.defect.isna()].query_image)
    template_only = normal - set(q.query_image)
    assert template_only
    for r in q.itertuples():
        shown = set(r.similar_templates) | set(r.random_templates)
        assert r.query_image not in shown
        assert shown <= (template_only if r.split == "test" else train_normal), r.id
        assert len(r.similar_templates) == 3


def test_text_queries_only_describe_training_images(sets):
    index, desc, qa = sets
    text = qa.questions[qa.questions.query_text.notna()]
    assert len(text) and (text.split == "train").all()
    assert set(text.type) == {p.ANOMALY_DETECTION, p.DEFECT_CLASSIFICATION, p.DEFECT_LOCALIZATION}
    train_keys = set(qa.questions[qa.questions.split == "train"].query_key)
    described = {i.split("::")[1] for i in text.id}  # id: text::<described image>::<type>
    assert described <= train_keys
    assert set(text.query_text) <= set(desc[desc.kind == "instance"].text)
    assert (index.set_index("image_path").loc[text.query_image, "is_anomalous"] == False).all()  # noqa: E712


def test_training_images_are_balanced_by_oversampling(sets):
    _, _, qa = sets
    train = qa.split("train")
    ad = train[(train.type == p.ANOMALY_DETECTION) & train.query_text.isna()]
    per_object = ad.groupby(["object", ad.defect.notna()]).size().unstack()
    assert (per_object[True] == per_object[False]).all()
    assert ad.id.str.contains("#dup").any()


def test_letters_are_balanced(sets):
    _, _, qa = sets
    for (split, qtype), group in qa.questions.groupby(["split", "type"]):
        counts = group.answer.value_counts()
        assert counts.max() - counts.min() <= max(2, 0.2 * len(group) / len(counts)), (split, qtype)


def test_localization_answer_is_the_cell_with_most_defect_pixels(tmp_path):
    root = tmp_path / "mv"
    for i in range(4):
        write_image(root / f"plate/train/good/{i:03d}.png", size=(30, 30))
    cases = {"000": ((0, 0, 4, 4), "top left"), "001": ((25, 12, 29, 17), "right"),
             "002": ((8, 20, 22, 29), "bottom")}  # fmt: skip
    for name, (box, _) in cases.items():
        write_image(root / f"plate/test/dent/{name}.png", size=(30, 30))
        write_mask(root / f"plate/ground_truth/dent/{name}_mask.png", box, size=(30, 30))
    index, _ = build_image_index([SourceConfig("mv", "mvtec_ad", str(root))])
    desc = synthesize_descriptions(index, DescribeConfig(instances_per_object=0)).table
    qa = build_question_sets(index, desc, QAConfig(split={"train": 0.5, "val": 0.0, "test": 0.5},
                                                   text_query_share=0.0))  # fmt: skip
    loc = qa.questions[qa.questions.type == p.DEFECT_LOCALIZATION]
    assert len(loc) == 3
    for r in loc.itertuples():
        name = r.query_image.rsplit("/", 1)[-1][:3]
        assert r.options[p.LETTERS.index(r.answer)] == option_text(cases[name][1])


def test_bad_input_skips_types_with_reasons(tmp_path):
    root = tmp_path / "mv"
    write_image(root / "plate/train/good/000.png")  # one normal image, no defects at all
    # bolt has no normal image at all: no templates
    write_image(root / "bolt/test/crack/000.png")
    write_mask(root / "bolt/ground_truth/crack/000_mask.png", (0, 0, 2, 2))
    index, _ = build_image_index([SourceConfig("mv", "mvtec_ad", str(root))])
    desc = synthesize_descriptions(index, DescribeConfig(instances_per_object=0)).table
    desc = desc[~((desc.kind == "defect") & (desc.object == "bolt"))]  # a missing description
    qa = build_question_sets(index, desc, QAConfig(split={"train": 1.0, "val": 0.0, "test": 0.0}))
    q = qa.questions
    # two objects cannot give four different object names or structures
    assert set(q[q.object == "plate"].type) == {p.ANOMALY_DETECTION, p.OBJECT_CLASSIFICATION}
    assert {p.DEFECT_CLASSIFICATION, p.DEFECT_LOCALIZATION} <= set(q[q.object == "bolt"].type)
    reasons = dict(zip(qa.report.type, qa.report.reason, strict=True))
    assert reasons[p.OBJECT_STRUCTURE] == "fewer than 4 distinct options"
    assert reasons[p.DEFECT_DESCRIPTION] == "no defect description for bolt/crack"
    assert reasons[p.DEFECT_ANALYSIS] == "no defect effect for bolt/crack"
    assert "0-shot" in reasons["templates"]


def test_mmad_json_round_trip(sets, tmp_path):
    _, _, qa = sets
    test = qa.split("test")
    path = tmp_path / "mmad.json"
    path.write_text(json.dumps(to_mmad(test, qa.template_keys)))
    back = from_mmad(json.loads(path.read_text()))
    cols = ["id", "query_key", "question", "answer", "type"]
    mine = test.sort_values("id")
    assert back.sort_values("id")[cols].values.tolist() == mine[cols].values.tolist()
    assert back.sort_values("id").options.map(list).tolist() == mine.options.map(list).tolist()
    first = json.loads(path.read_text())[mine.query_key.iloc[0]]
    assert set(first) >= {"conversation", "mask_path", "similar_templates", "random_templates"}
    assert all(t.startswith("synthetic/") and "/good/" in t for t in first["similar_templates"])


@pytest.mark.parametrize(
    ("data", "match"),
    [({"x/y/z.png": {}}, "no `conversation`"),
     ({"x/y/z.png": {"conversation": [{"Question": "q", "Answer": "A", "type": "t"}]}}, "missing"),
     ({"x/y/z.png": {"conversation": [{"Question": "q", "Answer": "A", "type": "t",
                                       "Options": {"A": 1, "C": 2}}]}}, "not A, B")],
)  # fmt: skip
def test_malformed_mmad_entries_are_named(data, match):
    with pytest.raises(MMADFormatError, match=match) as info:
        from_mmad(data)
    assert "x/y/z.png" in str(info.value)


def test_split_is_seeded_and_holdout_goes_to_test(sets):
    index, desc, _ = sets
    qa = build_question_sets(index, desc, QAConfig(holdout_objects=("screw",)))
    assert set(qa.questions[qa.questions.object == "screw"].split) == {"test"}
    a = build_question_sets(index, desc, QAConfig(seed=1)).questions
    b = build_question_sets(index, desc, QAConfig(seed=1)).questions
    pd.testing.assert_frame_equal(a, b)
    assert np.array_equal(a.columns, b.columns)


def test_a_held_out_object_is_never_named_in_training_not_even_as_a_wrong_option(sets):
    index, desc, _ = sets
    qa = build_question_sets(index, desc, QAConfig(holdout_objects=("screw",))).questions

    def answers(rows):  # the right option's text: an object, defect or characteristic
        rows = rows[~rows.type.isin([p.ANOMALY_DETECTION, p.DEFECT_LOCALIZATION])]
        return {opts[p.LETTERS.index(a)] for opts, a in zip(rows.options, rows.answer, strict=True)}

    only_screw = answers(qa[qa.object == "screw"]) - answers(qa[qa.object != "screw"])
    assert "Screw." in only_screw and len(only_screw) > 5
    seen = qa[qa.split != "test"]
    named = seen[seen.options.map(lambda opts: bool(set(opts) & only_screw))]
    assert named.empty, named[["id", "options"]].head()
    # the test questions of the other objects may still offer it, as MMAD's would
    test = qa[(qa.split == "test") & (qa.object != "screw") & (qa.type == p.OBJECT_CLASSIFICATION)]
    assert test.options.map(lambda opts: "Screw." in list(opts)).any()
    # and without a held-out object, training questions offer every object
    everything = build_question_sets(index, desc, QAConfig()).questions
    train_oc = everything[(everything.split == "train")
                          & (everything.type == p.OBJECT_CLASSIFICATION)]  # fmt: skip
    assert train_oc.options.map(lambda opts: "Screw." in list(opts)).any()


def test_training_offers_names_beyond_the_catalog_and_test_keeps_the_catalog(sets):
    index, desc, _ = sets
    fillers = {option_text(o) for o in GENERIC_OBJECTS}
    objects = {option_text(o) for o in index.object.unique()}

    def oc_names(qa, split):
        rows = qa[(qa.split == split) & (qa.type == p.OBJECT_CLASSIFICATION)]
        return set(rows.options.explode())

    mixed = build_question_sets(index, desc, QAConfig()).questions
    assert oc_names(mixed, "train") & fillers and oc_names(mixed, "val") & fillers
    # the test questions draw the other products first: five objects need no filler
    assert oc_names(mixed, "test") == objects
    plain = build_question_sets(index, desc, QAConfig(mix_fillers=False)).questions
    assert oc_names(plain, "train") <= objects and oc_names(plain, "test") == oc_names(mixed, "test")
