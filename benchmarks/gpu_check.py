"""The prepared GPU check: conf/gpu's phases on random-weight InternVL3-8B, and conf/qwen's GRPO
step on random-weight Qwen2.5-VL-3B, through the project's own trainers, on one GPU.

Both models are built from their published configurations (``emit_iad.vlm.layouts``, nothing
downloaded). Phases: one SFT step, one GRPO step (rollout and update), a validation batch
(16 prompts) and an evaluation batch (``evaluation.batch_size`` prompts, decoded to full length).
Each prints its peak ``torch.cuda.max_memory_allocated`` and seconds beside the estimate of
``benchmarks/memory_8b.py`` for the same shapes (the prompts' real token and tile counts). The
check exits 1 when a measurement exceeds its estimate by more than 25 %, and writes the table to
``--out`` (JSON) for the README.

    python benchmarks/gpu_check.py                 # one H100 / H200, a few minutes
    python benchmarks/gpu_check.py --tiny          # shrunk layouts on the CPU (~1 min): the path

The GRPO step runs without difficulty-aware resampling: a random model answers nothing right,
so every round would regenerate; a round's memory is the rollout's, measured here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import memory_8b as mem

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1.25


def conf(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    from emit_iad.settings import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]


def questions(folder: Path, image_size: int):
    """Training questions of a small synthetic dataset (square images of ``image_size``)."""
    from emit_iad.describe import DescribeConfig, synthesize_descriptions
    from emit_iad.mmad.build import QAConfig, build_question_sets
    from emit_iad.sources import (
        SourceConfig,
        SyntheticConfig,
        build_image_index,
        write_synthetic_dataset,
    )

    config = SyntheticConfig(image_size=image_size, objects=("wood", "screw"), n_train_good=8,
                             n_test_good=2, n_test_per_defect=2)  # fmt: skip
    write_synthetic_dataset(folder, config)
    index, _ = build_image_index([SourceConfig("synthetic", "synthetic", str(folder))])
    desc = synthesize_descriptions(index, DescribeConfig(instances_per_object=4)).table
    train = build_question_sets(index, desc, QAConfig(text_query_share=0.0)).split("train")
    return train[train.similar_templates.map(len) > 0].reset_index(drop=True)


def build(layout: str, scale: str, device: str, model_params: dict):
    """A random-weight VLM of ``layout`` in bf16 on ``device``, set up as the stage's config."""
    from emit_iad.vlm.build import ModelConfig
    from emit_iad.vlm.layouts import LAYOUTS
    from emit_iad.vlm.loading import from_model

    config = ModelConfig.from_params(model_params)
    fewshot = config.fewshot_config()
    if fewshot is not None and scale == "tiny":
        fewshot = dataclasses.replace(fewshot, layers=(1, 2))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # weights made in bf16, where they live
    try:
        with torch.device(device):
            model, processor = LAYOUTS[layout](scale)
    finally:
        torch.set_default_dtype(default)
    vlm = from_model(model, processor, f"{layout} ({scale}, random)", fewshot is not None,
                     fewshot)  # fmt: skip
    vlm.meta.update(stage="base", images=config.images_meta())
    return vlm


def dims_of(vlm) -> mem.Dims:
    cfg = vlm.model.config
    t, v = cfg.text_config, cfg.vision_config
    vision_layers = getattr(v, "num_hidden_layers", None) or v.depth
    return mem.Dims(
        hidden=t.hidden_size, intermediate=t.intermediate_size, heads=t.num_attention_heads,
        kv_heads=t.num_key_value_heads, layers=t.num_hidden_layers,
        vocab=vlm.model.get_output_embeddings().weight.shape[0],
        vision_hidden=v.hidden_size, vision_intermediate=v.intermediate_size,
        vision_layers=vision_layers, params=sum(p.numel() for p in vlm.model.parameters()),
    )  # fmt: skip


def shape(vlm, records, prompt) -> dict:
    """Prompt tokens, image tokens and vision-tower tokens per prompt, as collated."""
    batch = vlm.collate(records[:1], prompt)
    ids = batch.inputs["input_ids"]
    image_id = vlm.model.config.image_token_id
    pixels = batch.inputs["pixel_values"]
    image_tokens = int((ids == image_id).sum())
    per_row = 1025 if pixels.dim() == 4 else 1  # InternVL: tiles of 1,025 patches; Qwen: patches
    return {"prompt_tokens": int(ids.shape[1]), "image_tokens": image_tokens,
            "vision_tokens": int(pixels.shape[0]) * per_row}  # fmt: skip


def trainable(vlm) -> int:
    mods = [vlm.model] + ([vlm.fewshot] if vlm.fewshot is not None else [])
    return sum(p.numel() for m in mods for p in m.parameters() if p.requires_grad)


class Meter:
    """Peak memory and seconds of each phase, beside the estimate."""

    def __init__(self, device: str):
        self.cuda, self.rows = device.startswith("cuda"), []

    def __call__(self, name: str, fn, estimate):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = fn()
        if self.cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / mem.GIB if self.cuda else None
        est = estimate()
        ok = peak is None or peak <= TOLERANCE * est
        self.rows.append({"phase": name, "peak_gib": peak, "estimate_gib": est,
                          "seconds": seconds, "ok": ok})  # fmt: skip
        shown = "n/a (CPU)" if peak is None else f"{peak:.1f}"
        print(f"| {name} | {shown} | {est:.1f} | {seconds:.1f} | {'✅' if ok else '❌'} |",
              flush=True)  # fmt: skip
        return out


def step_of(name, s: dict, rows=0, tokens=0, logit_tokens=0, train=0, seqs=0, new=0):
    return mem.Step(name, rows, tokens, 0, logit_tokens, train, seqs, s["prompt_tokens"], new,
                    vision_tokens=s["vision_tokens"], image_tokens=s["image_tokens"])  # fmt: skip


def internvl_phases(args, meter: Meter, per_token: dict, work: Path) -> None:
    from emit_iad.train.common import validate
    from emit_iad.train.grpo.trainer import train_grpo
    from emit_iad.train.sft import SFTConfig, train_sft
    from emit_iad.vlm.answering import LocalAnswerer
    from emit_iad.vlm.chat import PromptConfig

    gpu = conf("gpu")
    train = questions(work / "data", 64 if args.tiny else 896)
    vlm = build("InternVL3", "tiny" if args.tiny else "full", args.device, gpu["model"])
    dims = dims_of(vlm)
    tokens = 16 if args.tiny else None
    sft = SFTConfig.from_params({**strip(gpu["sft"]), "epochs": 1, "val_max_questions": 0,
                                 "checkpoint_every": 0})  # fmt: skip
    rows = train[train.type.isin(sft.tasks)].head(sft.batch_size)
    s = shape(vlm, rows.to_dict("records"), sft.prompt_config())
    s_train = {**s, "prompt_tokens": s["prompt_tokens"] + 8}

    def sft_estimate():
        step = step_of("SFT", s_train, sft.micro_batch_size, s["prompt_tokens"] + 8, 8,
                       trainable(vlm))  # fmt: skip
        return sum(mem.estimate(step, per_token, True, dims).values())

    meter("InternVL3 SFT step (8 per GPU)", lambda: train_sft(
        vlm, rows, rows.head(0), sft, str(work / "sft")), sft_estimate)  # fmt: skip

    grpo = one_grpo_step(gpu["grpo"], tokens, difficulty_aware=False)
    g_rows = train[train.type.isin(grpo.tasks)].head(8)
    gs = shape(vlm, g_rows.to_dict("records"), grpo.prompt_config())
    new = grpo.max_new_tokens

    result = meter("InternVL3 GRPO step (rollout + update)", lambda: train_grpo(
        vlm, g_rows, g_rows.head(0), grpo, str(work / "grpo")),
        lambda: grpo_estimate(vlm, grpo, gs, per_token, dims))  # fmt: skip
    vlm = result[0]
    history = result[1]
    last = history.dropna(subset=["rollout_s"]).iloc[-1]
    print(f"  rollout {last.rollout_s:.1f} s, update {last.update_s:.1f} s", flush=True)

    val = train.head(16)
    meter("InternVL3 validation (16 prompts)", lambda: validate(
        vlm, val, grpo.prompt_config(), new), lambda: sum(mem.estimate(step_of(
            "val", gs, train=trainable(vlm), seqs=len(val), new=new), per_token, True,
            dims).values()))  # fmt: skip

    evaluation = gpu["evaluation"]
    answerer = LocalAnswerer(vlm, PromptConfig(**evaluation["prompt"]), evaluation["batch_size"],
                             tokens or evaluation["max_new_tokens"])  # fmt: skip
    records = train.head(evaluation["batch_size"]).to_dict("records")
    es = shape(vlm, records, answerer.prompt)
    full = tokens or evaluation["max_new_tokens"]
    meter(f"InternVL3 evaluation ({len(records)} prompts, {full} tokens)",
          lambda: vlm.generate(vlm.collate(records, answerer.prompt), max_new_tokens=full,
                               min_new_tokens=full, do_sample=False),
          lambda: sum(mem.estimate(step_of("eval", es, seqs=len(records), new=full),
                                   per_token, True, dims).values()))  # fmt: skip


def qwen_phase(args, meter: Meter, per_token: dict, work: Path) -> None:
    from emit_iad.train.grpo.trainer import train_grpo

    qwen = conf("qwen")
    train = questions(work / "qdata", 64 if args.tiny else 896)
    vlm = build("Qwen2.5-VL", "tiny" if args.tiny else "full", args.device, qwen["model"])
    dims = dims_of(vlm)
    grpo = one_grpo_step(qwen["grpo"], 16 if args.tiny else None)
    rows = train[train.type.isin(grpo.tasks)].head(4)
    s = shape(vlm, rows.to_dict("records"), grpo.prompt_config())

    meter("Qwen2.5-VL-3B GRPO step (full, conf/qwen)", lambda: train_grpo(
        vlm, rows, rows.head(0), grpo, str(work / "qgrpo")),
        lambda: grpo_estimate(vlm, grpo, s, per_token, dims))  # fmt: skip


def one_grpo_step(params: dict, max_new_tokens: int | None, **overrides):
    """A stage's GRPO config for one step, with no probe, validation or checkpoint."""
    from emit_iad.train.grpo.config import GRPOConfig

    extra = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    return GRPOConfig.from_params({**strip(params), "epochs": None, "steps": 1,
                                   "probe_prompts": 0, "val_max_questions": 0,
                                   "checkpoint_every": 0, **extra, **overrides})  # fmt: skip


def grpo_estimate(vlm, grpo, s: dict, per_token: dict, dims: mem.Dims) -> float:
    """A GRPO step's peak: the larger of its update and its rollout (``generate_batch`` × G
    sequences), plus the frozen bf16 copy a fully trained model keeps as the KL reference."""
    n, new = trainable(vlm), grpo.max_new_tokens
    update = step_of("update", s, grpo.micro_batch_size, s["prompt_tokens"] + new, new + 1, n)
    rollout = step_of("rollout", s, train=n, seqs=(grpo.generate_batch or 1) * grpo.group_size,
                      new=new)  # fmt: skip
    reference = dims.params * 2 / mem.GIB if grpo.beta and "full" in grpo.trainable else 0
    return reference + max(sum(mem.estimate(x, per_token, True, dims).values())
                           for x in (update, rollout))  # fmt: skip


def strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "checkpoint_dir"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="shrunk layouts on the CPU")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    ap.add_argument("--skip-qwen", action="store_true")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args()
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or with --tiny on the CPU", file=sys.stderr)
        return 2
    print("measuring the per-token bytes of real-width layers (CPU) …", flush=True)
    per_token = mem.measure_per_token(64 if args.tiny else 512)
    meter = Meter(args.device)
    name = torch.cuda.get_device_name() if meter.cuda else "CPU"
    print(f"\n{name}\n\n| phase | peak GiB | estimate GiB | seconds | within 25 % |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        internvl_phases(args, meter, per_token, Path(tmp))
        if not args.skip_qwen:
            qwen_phase(args, meter, per_token, Path(tmp))
    out = Path(args.out)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps({"device": name, "phases": meter.rows}, indent=1))
    tmp_out.replace(out)
    bad = [r["phase"] for r in meter.rows if not r["ok"]]
    if bad:
        print(f"over the estimate by more than 25 %: {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
