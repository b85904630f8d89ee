"""The tiny base's general warm-up: object questions of normal images only, no defect label."""

import pytest

from emit_iad.mmad import protocol as p
from emit_iad.train.pretrain import PretrainConfig, general_questions, pretrain_base
from emit_iad.vlm.loading import load_vlm


def test_the_warm_up_set_holds_no_defect_and_no_defect_question(sets):
    _, _, qa = sets
    train = qa.split("train")
    seen = general_questions(train)
    assert len(seen) > 0 and set(seen.type) == set(p.OBJECT_TYPES)
    assert seen.defect.isna().all() and seen.region.isna().all()  # only normal images
    assert seen.query_text.isna().all()
    # images that show a defect (a text-as-query sample names a defect over a normal image)
    defective = set(train[train.defect.notna() & train.query_text.isna()].query_key)
    assert defective
    assert not defective & set(seen.query_key)  # no image that shows a defect
    # everything that qualifies is taken: the object questions of every normal image
    normal = train[train.defect.isna() & train.query_text.isna() & train.type.isin(p.OBJECT_TYPES)]
    assert len(seen) == len(normal)


def test_defect_tasks_are_refused_in_the_warm_up():
    with pytest.raises(ValueError, match=r"\['Defect Localization'\] are about defects"):
        PretrainConfig.from_params({"tasks": ["Object Classification", "Defect Localization"]})
    with pytest.raises(ValueError, match="unknown setting"):
        PretrainConfig.from_params({"epoch": 3})


def test_a_warm_up_trains_and_records_what_it_saw(tiny_vlm, sets, tmp_path):
    _, _, qa = sets
    tiny_vlm.save(tmp_path / "base")
    vlm = load_vlm(tmp_path / "base")
    train = general_questions(qa.split("train")).head(16)
    out, history = pretrain_base(vlm, train, train.iloc[:0],
                                 PretrainConfig(epochs=1, batch_size=8), str(tmp_path / "c"))  # fmt: skip
    assert history.loss.notna().sum() == 2  # 16 questions, batches of 8
    assert out.meta["pretrained_on"] == "16 object questions of normal images"
    same, empty = pretrain_base(vlm, train, train, PretrainConfig(epochs=0), str(tmp_path / "d"))
    assert same is vlm and empty.empty
