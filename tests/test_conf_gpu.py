"""The real-scale environments load and validate offline: `kedro run --env gpu` (EMIT's setting)
and `--env qwen` (AnomalyR1's)."""

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
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.plan import plan_launch
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


# docs/real_scale.md's "EMIT's setting, line by line" table: (row, EMIT's value, what conf/gpu resolves to)
def emit_rows(gpu: dict) -> list[tuple[str, object, object]]:
    model = ModelConfig.from_params(gpu["model"])
    fs = model.fewshot_config()
    sft = SFTConfig.from_params(strip(gpu["sft"], "checkpoint_dir"))
    grpo = GRPOConfig.from_params(strip(gpu["grpo"], "checkpoint_dir"))
    sft_acc = ClusterConfig.from_yaml_file(ROOT / "conf/gpu/accelerate_sft_zero1.yaml")
    grpo_acc = ClusterConfig.from_yaml_file(ROOT / "conf/gpu/accelerate_grpo_ddp.yaml")
    weights = {k: v for k, v in grpo.rewards.items() if v}
    plan = plan_launch(grpo, grpo_acc.num_processes, 1000)
    return [
        ("base model", "OpenGVLab/InternVL3-8B-hf", model.name_or_path),
        ("precision", ("bfloat16", "bf16", "bf16"), (model.dtype, sft.mixed_precision, grpo.mixed_precision)),
        ("processes", (8, 8), (sft_acc.num_processes, grpo_acc.num_processes)),
        ("max tiles per image", 6, model.images["prompt"]["max_patches"]),
        ("heatmap layers", (4, 8, 16, 20), fs.layers),
        ("heatmap window", 6, fs.window),
        ("tiny-model aids", (False, False), (fs.peak_token, fs.projector_mlp)),
        ("SFT tasks", ("Anomaly Detection", "Defect Localization"), sft.tasks),
        ("SFT trained", {"fewshot"}, set(sft.trainable)),
        ("SFT lr / weight decay / warm-up", (1e-5, 1e-4, 0.03), (sft.lr, sft.weight_decay, sft.warmup_ratio)),
        ("SFT AdamW beta2 / clipping", (0.95, 1.0), (sft.adam_beta2, sft.max_grad_norm)),
        ("SFT epochs", 2, sft.epochs),
        ("SFT per device / accumulation", (8, 1), (sft.batch_size, sft.grad_accum)),
        ("SFT max length", 10240, sft.max_length),
        ("SFT checkpoints every / kept", (2000, 1), (sft.checkpoint_every, sft.keep_checkpoints)),
        ("SFT engine", ("DEEPSPEED", 1), (sft_acc.distributed_type.value, sft_acc.deepspeed_config["zero_stage"])),
        ("gradient checkpointing", (True, True), (sft.gradient_checkpointing, grpo.gradient_checkpointing)),
        ("GRPO tasks", 4, len(grpo.tasks)),
        ("GRPO trained", {"lora", "aligner", "fewshot"}, set(grpo.trainable)),
        ("GRPO LoRA r / alpha / dropout", (8, 32, 0.05), (grpo.lora["r"], grpo.lora["alpha"], grpo.lora["dropout"])),
        ("GRPO LoRA targets", ("all-linear", True, "all-linear"), (grpo.lora["targets"], grpo.lora["vision"], grpo.lora["vision_targets"])),
        ("GRPO rewards", {"accuracy": 3.0, "cosine": 1.0, "format": 1.0, "repetition": 1.0}, weights),
        ("cosine reward", {"max_len": 512, "soft_cache_length": 256, "invalid": -1.0, "min_wrong": -0.5, "max_wrong": 0.0}, grpo.reward_options["cosine"]),
        ("repetition n-gram", 4, grpo.reward_options["repetition"]["n"]),
        ("G / temperature / completion tokens", (8, 1.0, 512), (grpo.group_size, grpo.temperature, grpo.max_new_tokens)),
        ("top-k / top-p", (50, 0.9), (grpo.top_k, grpo.top_p)),
        ("dynamic sampling, rounds", (True, True, 3), (grpo.do_resample, grpo.do_reweight, grpo.max_resample_rounds)),
        ("resampling", "emit", grpo.resampling),
        ("beta / iterations", (0.005, 1), (grpo.beta, grpo.mu)),
        ("GRPO lr / warm-up / schedule", (1e-5, 0.01, "cosine"), (grpo.lr, grpo.warmup_ratio, grpo.lr_schedule)),
        ("GRPO weight decay / AdamW beta2 / clipping", (0.1, 0.95, 1.0), (grpo.weight_decay, grpo.adam_beta2, grpo.max_grad_norm)),
        ("GRPO completions per device / accumulation", (4, 2), (grpo.per_device_completions, grpo.grad_accum)),
        ("GRPO prompts x completions per step", (8, 64), (plan.prompts_per_step, plan.completions_per_step)),
        ("GRPO epochs", 2, grpo.epochs),
        ("GRPO checkpoints every / kept", (500, 10), (grpo.checkpoint_every, grpo.keep_checkpoints)),
        ("GRPO engine (ZeRO-0)", "MULTI_GPU", grpo_acc.distributed_type.value),
    ]


@pytest.mark.parametrize("row", range(36))
def test_gpu_environment_is_emit_line_by_line(row, no_network):
    name, emit, ours = emit_rows(params("gpu"))[row]
    assert ours == emit, f"{name}: EMIT {emit!r}, conf/gpu {ours!r}"


# docs/real_scale.md's "AnomalyR1's setting" table: (row, AnomalyR1's value, what conf/qwen resolves to)
def anomalyr1_rows(qwen: dict) -> list[tuple[str, object, object]]:
    model = ModelConfig.from_params(qwen["model"])
    grpo = GRPOConfig.from_params(strip(qwen["grpo"], "checkpoint_dir"))
    acc = ClusterConfig.from_yaml_file(ROOT / "conf/qwen/accelerate_grpo_zero3.yaml")
    weights = {k: v for k, v in grpo.rewards.items() if v}
    pixels = model.images["prompt"]["size"]["longest_edge"]
    return [
        ("Qwen base model", "Qwen/Qwen2.5-VL-3B-Instruct", model.name_or_path),
        ("Qwen precision", ("bfloat16", "bf16"), (model.dtype, grpo.mixed_precision)),
        ("Qwen processes / engine", (4, "DEEPSPEED", 3), (acc.num_processes, acc.distributed_type.value, acc.deepspeed_config["zero_stage"])),
        ("Qwen images per prompt / max pixels", (1, 12845056), (1 + grpo.prompt_config().k_shot, pixels)),
        ("Qwen heatmap module", False, model.fewshot_config() is not None),
        ("Qwen GRPO trained", {"full"}, set(grpo.trainable)),
        ("Qwen rewards", {"choice": 1.0, "roam": 1.0}, weights),
        ("Qwen G / beta", (8, 0.04), (grpo.group_size, grpo.beta)),
        ("Qwen per device / accumulation / epochs", (1, 2, 10), (grpo.batch_size, grpo.grad_accum, grpo.epochs)),
        ("Qwen lr / temperature / completion tokens", (5e-7, 1.0, 256), (grpo.lr, grpo.temperature, grpo.max_new_tokens)),
        ("Qwen schedule / warm-up / weight decay / beta2 / clipping", ("linear", 0.0, 0.0, 0.999, 1.0), (grpo.lr_schedule, grpo.warmup_ratio, grpo.weight_decay, grpo.adam_beta2, grpo.max_grad_norm)),
        ("Qwen difficulty-aware sampling", (False, False), (grpo.do_resample, grpo.do_reweight)),
        ("Qwen gradient checkpointing", True, grpo.gradient_checkpointing),
    ]


@pytest.mark.parametrize("row", range(13))
def test_qwen_environment_is_anomalyr1_line_by_line(row, no_network):
    name, theirs, ours = anomalyr1_rows(params("qwen"))[row]
    assert ours == theirs, f"{name}: AnomalyR1 {theirs!r}, conf/qwen {ours!r}"


def test_qwen_environment_evaluates_with_domain_knowledge(no_network):
    evaluation = params("qwen")["evaluation"]
    assert PromptConfig(**evaluation["prompt"]).domain_knowledge
    assert evaluation["domain_knowledge_json"].endswith("domain_knowledge.json")
    assert [ModelSpec.parse(m).label for m in evaluation["models"]] == ["base", "grpo"]


def test_the_real_scale_tables_list_every_row():
    """Every value this test pins has its row, with its source, in docs/real_scale.md."""
    doc = (ROOT / "docs/real_scale.md").read_text()
    for name, _, _ in emit_rows(params("gpu")) + anomalyr1_rows(params("qwen")):
        assert f"| {name} |" in doc, name


def test_gpu_environment_reads_real_data_and_gpt(no_network):
    gpu = params("gpu")
    describe = DescribeConfig.from_params(gpu["descriptions"])
    assert describe.backend == "openai"
    for entry in gpu["ingestion"]["sources"]:
        SourceConfig.from_params(entry)
    evaluation = gpu["evaluation"]
    assert evaluation["mmad_json"].endswith("mmad.json")
    assert [ModelSpec.parse(m).kind for m in evaluation["models"]] == ["stage", "stage"]
    PromptConfig(**evaluation["prompt"])


@pytest.mark.parametrize("env", ["gpu", "qwen"])
def test_real_scale_trains_on_emits_seven_sources_with_their_roles(env, no_network):
    """EMIT's README: MMAD's own sources give normal images only, MPDD, Real-IAD and VISION
    their defective images; no image of the scored benchmark can be trained on."""
    conf = params(env)
    roles = {s.layout: s.defect_images
             for s in map(SourceConfig.from_params, conf["ingestion"]["sources"])}  # fmt: skip
    assert roles == {"mvtec_ad": False, "visa": False, "goodsad": False, "mvtec_loco": False,
                     "mpdd": True, "real_iad": True, "vision": True}  # fmt: skip
    assert conf["evaluation"]["mmad_json"] == "/data/MMAD/mmad.json"  # what the qa stage excludes
    assert conf["qa"]["holdout_objects"] == [] and conf["qa"]["split"]["test"] == 0.0


def test_gpu_environment_uses_emits_prompt_everywhere(no_network):
    gpu = params("gpu")
    sft = SFTConfig.from_params(strip(gpu["sft"], "checkpoint_dir")).prompt_config()
    grpo = GRPOConfig.from_params(strip(gpu["grpo"], "checkpoint_dir")).prompt_config()
    evaluation = PromptConfig(**gpu["evaluation"]["prompt"])
    for prompt in (sft, grpo, evaluation):
        assert prompt.protocol == "emit" and prompt.domain_knowledge and prompt.k_shot == 1
    assert (sft.answer_format, grpo.answer_format, evaluation.answer_format) == (
        "plain", "think", "think")
    assert gpu["evaluation"]["max_new_tokens"] >= max(gpu["grpo"]["max_new_tokens"], 1024)


def test_qwen_trains_with_mmads_domain_knowledge(no_network):
    qwen = params("qwen")
    assert DescribeConfig.from_params(qwen["descriptions"]).backend == "mmad"
    grpo = GRPOConfig.from_params(strip(qwen["grpo"], "checkpoint_dir")).prompt_config()
    assert grpo.domain_knowledge and grpo.protocol == "mmad"


def test_anomalyr1_roam_is_not_swapped_into_emit():
    assert params("gpu")["grpo"]["rewards"]["roam"] == 0.0


def test_gpu_accelerate_configs_are_valid():
    for name in ("accelerate_sft_zero1.yaml", "accelerate_grpo_ddp.yaml"):
        path = ROOT / "conf/gpu" / name
        config = ClusterConfig.from_yaml_file(path)
        assert config.mixed_precision == "bf16" and config.num_processes == 8
        assert not yaml.safe_load(path.read_text())["use_cpu"]


def test_base_environment_is_unchanged_by_the_soft_merge():
    from emit_iad.vlm.build import ModelConfig

    base = params(None)
    assert ModelConfig.from_params(base["model"]).source == "tiny"  # the typed default
    assert base["sft"]["trainable"] == ["text", "fewshot"]


def test_kedro_session_with_env_gpu_resolves_parameters_and_catalog(project, no_network):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="gpu") as session:
        context = session.load_context()
        assert context.params["model"]["name_or_path"] == "OpenGVLab/InternVL3-8B-hf"
        assert context.params["grpo"]["trainable"] == ["lora", "aligner", "fewshot"]
        assert context.params["sft"]["val_max_questions"] == 8  # conf/base of the small copy
        assert "grpo_model@vlm" in context.catalog


def test_kedro_session_with_env_qwen_resolves_parameters(project, no_network):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="qwen") as session:
        context = session.load_context()
        assert context.params["model"]["name_or_path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
        assert context.params["grpo"]["rewards"]["roam"] == 1.0
        assert context.params["grpo"]["rewards"]["choice"] == 1.0
        assert context.params["sft"]["epochs"] == 0
        assert "grpo_model@vlm" in context.catalog


def test_accelerate_configs_leave_accumulation_to_the_stage(monkeypatch):
    """A launcher config's gradient_accumulation_steps would silently replace grad_accum:
    none sets it, and a run launched with one that differs refuses to start."""
    from emit_iad.train.harness import make_accelerator

    for path in [*(ROOT / "conf/gpu").glob("accelerate_*.yaml"),
                 *(ROOT / "conf/qwen").glob("accelerate_*.yaml")]:  # fmt: skip
        config = yaml.safe_load(path.read_text())
        assert "gradient_accumulation_steps" not in (config.get("deepspeed_config") or {}), path
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1")
    with pytest.raises(ValueError, match="remove gradient_accumulation_steps"):
        make_accelerator(grad_accum=2)
