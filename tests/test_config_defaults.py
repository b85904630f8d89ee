"""One source of defaults: each typed config field has a help text, conf/base lists only what
the offline default changes, and an environment repeats a default only to undo conf/base."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from emit_iad.config_help import defaults, render, restated, rows
from emit_iad.params import help_texts
from emit_iad.stage_params import CONFIG_CLASSES, config_class

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("section", sorted(CONFIG_CLASSES))
def test_every_setting_has_a_default_and_a_one_line_help(section):
    cls = config_class(section)
    texts = help_texts(cls)
    assert [f.name for f in dataclasses.fields(cls)] == list(defaults(cls))  # all defaulted
    missing = [name for name, text in texts.items() if not text.strip()]
    assert not missing, f"{cls.__name__}: no help for {missing}"
    assert all("\n" not in text for text in texts.values())


@pytest.mark.parametrize("env", ["base", "gpu", "qwen"])
def test_no_yaml_key_restates_its_default(env):
    assert restated(ROOT / "conf", env) == []


def test_the_check_finds_a_planted_restatement_and_allows_undoing_base(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    grpo = conf / "base" / "parameters_grpo.yml"
    grpo.write_text(grpo.read_text().replace("grpo:\n", "grpo:\n  group_size: 8\n", 1))
    assert restated(conf, "base") == [
        "conf/base: grpo.group_size: 8 is the default; leave it out"]  # fmt: skip
    # conf/gpu sets lr 1e-5, the default, because conf/base's offline lr is 5e-5: allowed
    assert any(r["setting"] == "lr" and r["set"] == 1e-5 for r in rows("grpo", conf, "gpu"))
    assert restated(conf, "gpu") == []
    (conf / "gpu" / "parameters_sft.yml").write_text(
        (conf / "gpu" / "parameters_sft.yml").read_text() + "  seed: 0\n")  # base leaves it
    assert restated(conf, "gpu") == ["conf/gpu: sft.seed: 0 is the default; leave it out"]


def test_config_help_shows_the_default_and_what_the_environment_sets():
    text = render("grpo", ROOT / "conf", "base")
    assert "  max_new_tokens = 64  * base: 80\n      longest completion in tokens" in text
    assert "  group_size = 8\n" in text  # not set by conf/base: no mark
    assert "* gpu: 512" in render("grpo", ROOT / "conf", "gpu")
