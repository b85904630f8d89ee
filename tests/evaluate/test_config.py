"""The evaluation's settings are one typed config: its defaults are the only ones, and every
stage that scores (evaluation, ablation, the registry's pyfunc) reads them from it."""

from __future__ import annotations

import inspect

import pytest
import yaml

from emit_iad.evaluate.config import EvaluationConfig, evaluation_config
from emit_iad.params import ParamError
from emit_iad.vlm.answering import LocalAnswerer

from ..conftest import PROJECT_ROOT


def test_a_raw_section_becomes_the_typed_config_with_its_defaults():
    config = evaluation_config({"batch_size": 8})
    assert config.batch_size == 8 and config.max_new_tokens == 128 and config.scoring == "strict"
    assert evaluation_config(None) == EvaluationConfig()
    assert evaluation_config(config) is config


def test_an_unknown_key_or_choice_is_refused_with_the_file():
    with pytest.raises(ValueError, match=r"parameters_evaluation\.yml"):
        evaluation_config({"batch_sise": 8})
    with pytest.raises(ParamError, match="scoring: 'loose' is not one of"):
        evaluation_config({"scoring": "loose"})


def test_the_offline_yaml_is_a_valid_config_and_batches_as_the_answerer_defaults():
    section = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())
    config = evaluation_config(section["evaluation"])
    assert config.batch_size == 64
    # the pyfunc's answerer batches by LocalAnswerer's own default, as the config's default does
    default = inspect.signature(LocalAnswerer).parameters["batch_size"].default
    assert default == EvaluationConfig().batch_size
