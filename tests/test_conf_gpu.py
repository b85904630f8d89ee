"""The real-scale environment (`kedro run --env gpu`) loads and validates offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from kedro.config import OmegaConfigLoader

from emit_iad.describe.synthesize import DescribeConfig
from emit_iad.evaluate.answerers import ModelSpec
from emit_iad.settings import CONFIG_LOADER_ARGS
from emit_iad.sources.index import SourceConfig
from emit_iad.train.grpo.loop import GRPOConfig
from emit_iad.train.sft import SFTConfig
from emit_iad.vlm.build import ModelConfig
from emit_iad.vlm.chat import PromptConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt (a weights download, say) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while validating the gpu config: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def params(env: str | None) -> dict:
    loader = OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def strip(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_gpu_environment_is_emit_at_real_scale(no_network):
    base, gpu = params(None), params("gpu")
    model = ModelConfig.from_params(gpu["model"])
    assert (model.source, model.name_or_path, model.dtype) == (
        "pretrained",
        "OpenGVLab/InternVL3-8B-hf",
        "bfloat16",
    )
    fewshot = model.fewshot_config()
    assert fewshot.layers == (4, 8, 16, 20) and not fewshot.peak_token
    # soft merge: what conf/gpu does not mention comes from conf/base
    assert fewshot.window == base["model"]["fewshot"]["window"]

    sft = SFTConfig.from_params(strip(gpu["sft"], "checkpoint_dir"))
    assert (sft.trainable, sft.lr, sft.epochs, sft.mixed_precision) == (
        ("fewshot",),
        1e-5,
        2,
        "bf16",
    )
    grpo = GRPOConfig.from_params(strip(gpu["grpo"], "checkpoint_dir"))
    assert (grpo.group_size, grpo.temperature, grpo.beta, grpo.eps_low, grpo.lr) == (
        8,
        1.0,
        0.005,
        0.2,
        1e-5,
    )
    assert grpo.trainable == ("lora", "fewshot") and grpo.do_resample and grpo.do_reweight
    assert len(grpo.tasks) == 4 and grpo.max_new_tokens == 512

    describe = DescribeConfig.from_params(gpu["descriptions"])
    assert describe.backend == "openai"
    sources = [SourceConfig.from_params(s) for s in gpu["ingestion"]["sources"]]
    assert {s.layout for s in sources} == {"mvtec_ad", "visa", "mvtec_loco"}

    evaluation = gpu["evaluation"]
    assert evaluation["mmad_json"].endswith("mmad.json")
    assert [ModelSpec.parse(m).kind for m in evaluation["models"]] == ["stage", "stage"]
    PromptConfig(**evaluation["prompt"])


def test_gpu_accelerate_config_is_valid_zero2():
    path = ROOT / "conf/gpu/accelerate_zero2.yaml"
    config = ClusterConfig.from_yaml_file(path)
    assert config.distributed_type == "DEEPSPEED"
    assert config.deepspeed_config["zero_stage"] == 2
    assert config.mixed_precision == "bf16" and config.num_processes > 1
    assert not yaml.safe_load(path.read_text())["use_cpu"]


def test_base_environment_is_unchanged_by_the_soft_merge():
    base = params(None)
    assert base["model"]["source"] == "tiny"
    assert base["sft"]["trainable"] == ["text", "fewshot"]


def test_kedro_session_with_env_gpu_resolves_parameters_and_catalog(project, no_network):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="gpu") as session:
        context = session.load_context()
        assert context.params["model"]["name_or_path"] == "OpenGVLab/InternVL3-8B-hf"
        assert context.params["grpo"]["trainable"] == ["lora", "fewshot"]
        assert context.params["sft"]["val_max_questions"] == 8  # conf/base of the small copy
        assert "grpo_model" in context.catalog
