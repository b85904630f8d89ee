"""The parameter rules checked for every section before a run (issue #27, item 4), on the
values the issue found accepted or refused late, and on the shipped environments."""

import pytest

from emit_iad.dvc_params import resolve
from emit_iad.param_rules import problems

NO_GPU, EIGHT_GPUS = (lambda: 0), (lambda: 8)


@pytest.mark.parametrize(("params", "key", "says"), [
    ({"grpo": {"steps": -5}}, "grpo.steps", "-5 must be >= 1"),
    ({"grpo": {"lr": -1}}, "grpo.lr", "-1 must be > 0"),
    ({"grpo": {"group_size": 1}}, "grpo.group_size", "1 must be >= 2"),
    ({"sft": {"batch_size": 0}}, "sft.batch_size", "0 must be >= 1"),
    ({"sft": {"batch_size": 4, "micro_batch_size": 8}}, "sft.micro_batch_size",
     "8 is more than sft.batch_size 4"),
    ({"evaluation": {"batch_size": 0}}, "evaluation.batch_size", "0 must be >= 1"),
    ({"evaluation": {"max_new_tokens": 0}}, "evaluation.max_new_tokens", "0 must be >= 1"),
    ({"evaluation": {"llm": {"concurrency": 0}}}, "evaluation.llm.concurrency", "must be >= 1"),
    ({"evaluation": {"device": "cuda"}}, "evaluation.device", "this machine has no GPU"),
    ({"model": {"device": "gpu0"}}, "model.device", "'gpu0' is not a device"),
    ({"model": {"dtype": "float8"}}, "model.dtype", "'float8' is not one of"),
    ({"grpo": {"mixed_precision": "fp8"}}, "grpo.mixed_precision", "'fp8' is not one of"),
    ({"qa": {"split": {"train": 0.6, "val": 0.3, "test": 0.25}}}, "qa.split", "sum to 1"),
    ({"descriptions": {"max_failed_share": 1.5}}, "descriptions.max_failed_share", "[0, 1]"),
    ({"ablation": {"grpo": {"steps": 0}}}, "ablation.grpo.steps", "0 must be >= 1"),
    ({"grpo": {"lr": "fast"}}, "grpo.lr", "'fast' is not a number"),
    ({"ingestoin": {}}, "ingestoin", "did you mean 'ingestion'"),
])  # fmt: skip
def test_each_bad_value_is_named_with_its_fix(params, key, says):
    found = dict(problems(params, NO_GPU))
    assert key in found and says in found[key], found


def test_unset_optional_values_and_a_gpu_that_exists_pass():
    params = {"grpo": {"micro_batch_size": None, "epochs": None, "generate_batch": None},
              "evaluation": {"device": "cuda:7"}, "sft": {"epochs": 0}}  # fmt: skip
    assert list(problems(params, EIGHT_GPUS)) == []
    assert dict(problems({"evaluation": {"device": "cuda:8"}}, EIGHT_GPUS))


@pytest.mark.parametrize("env", ["local", "gpu", "qwen"])
def test_the_shipped_environments_pass_on_the_machines_they_are_for(env):
    gpus = NO_GPU if env == "local" else EIGHT_GPUS
    assert list(problems(resolve("conf", env), gpus)) == []


def test_dotted_runtime_overrides_are_checked_in_their_section():
    """`session.run(runtime_params={"evaluation.mmad_json": ...})` keeps the key dotted: it is
    a setting of `evaluation`, not an unknown section, and its value is checked too."""
    found = dict(problems({"evaluation.mmad_json": "/data/MMAD/mmad.json", "grpo.steps": 0},
                          NO_GPU))  # fmt: skip
    assert found == {"grpo.steps": "0 must be >= 1"}
