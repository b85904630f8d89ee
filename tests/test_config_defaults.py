"""One source of defaults: each typed config field has a help text, conf/base lists only what
the offline default changes, and an environment repeats a default only to undo conf/base."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from emit_iad.config_help import defaults, render, restated, rows, sections
from emit_iad.params import help_texts
from emit_iad.sources.index import SourceConfig
from emit_iad.stage_params import config_class, defaulted, effective, flatten

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("section", sections())
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


def test_a_source_entry_names_its_required_fields_and_helps_each():
    texts = help_texts(SourceConfig)
    assert all(t.strip() and "\n" not in t for t in texts.values())
    assert set(texts) - set(defaults(SourceConfig)) == {"name", "layout", "root"}


def test_a_restatement_inside_a_nested_block_is_found(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    model = conf / "base" / "parameters_model.yml"
    model.write_text(model.read_text().replace("  fewshot:", "  tiny: {hidden_size: 128}\n"
                                               "  fewshot:", 1))  # fmt: skip
    sft = conf / "base" / "parameters_sft.yml"  # the block's default comes from sft's own field
    sft.write_text(sft.read_text() + "  prompt: {answer_format: think}\n")
    assert restated(conf, "base") == [
        "conf/base: model.tiny.hidden_size: 128 is the default; leave it out",
        "conf/base: sft.prompt.answer_format: 'think' is the default; leave it out",
    ]


def test_effective_settings_fill_each_block_from_its_typed_config():
    params = {
        "grpo": {"lr": 5e-5, "prompt": {"k_shot": 0}, "checkpoint_dir": "x"},
        "evaluation": {"max_new_tokens": 1024, "llm": {"concurrency": 8}},
    }
    out = effective(params)
    assert out["grpo"]["lr"] == 5e-5 and out["grpo"]["group_size"] == 8
    assert "checkpoint_dir" not in out["grpo"]  # the node's key, not the trainer's
    # grpo's prompt: think unless set (GRPOConfig.prompt_config); k_shot from the YAML
    assert out["grpo"]["prompt"] == {"k_shot": 0, "template_source": "similar",
                                     "answer_format": "think", "domain_knowledge": False,
                                     "protocol": "mmad"}  # fmt: skip
    # an API model's reply cap follows max_new_tokens, greedy (make_answerer)
    llm = out["evaluation"]["llm"]
    assert (llm["max_tokens"], llm["temperature"], llm["concurrency"]) == (1024, 0.0, 8)
    assert out["evaluation"]["prompt"]["answer_format"] == "plain"
    assert flatten({"a": {"b": 1, "c": {"d": [1]}, "e": {}}}) == {"a.b": 1, "a.c.d": [1],
                                                                  "a.e": {}}  # fmt: skip


def test_defaulted_lists_what_no_yaml_key_set_and_only_for_read_sections():
    params = {"grpo": {"lr": 5e-5, "prompt": {"k_shot": 0}}, "sft": {"lr": 1.0}}
    out = defaulted(params, {"grpo"})
    assert "grpo.lr" not in out and "grpo.prompt.k_shot" not in out  # kedro-mlflow logs those
    assert out["grpo.group_size"] == 8 and out["grpo.prompt.answer_format"] == "think"
    assert not any(k.startswith("sft.") for k in out)
    # a dotted --params key counts as set
    assert "grpo.beta" not in defaulted({"grpo": {}, "grpo.beta": 0.1}, {"grpo"})
