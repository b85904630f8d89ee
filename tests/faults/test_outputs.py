"""Fault suite, outputs (issue #17, item 7): after a run with another model list, the answers
folder holds only this run's files (no stale answers of a model no longer evaluated)."""

from __future__ import annotations

import yaml
from kedro.io import AbstractDataset

from tests.conftest import PROJECT_ROOT


def test_the_answers_folder_holds_only_the_last_runs_models(tmp_path):
    entry = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())["mmad_answers"]
    entry["path"] = str(tmp_path / "answers")
    answers = AbstractDataset.from_config("mmad_answers", entry)
    answers.save({"base": [{"id": 1}], "sft": [{"id": 1}], "old-model": [{"id": 1}]})
    answers.save({"base": [{"id": 2}], "sft": [{"id": 2}]})
    assert sorted(p.name for p in (tmp_path / "answers").iterdir()) == ["base.json", "sft.json"]
    assert answers.load()["base"]() == [{"id": 2}]
