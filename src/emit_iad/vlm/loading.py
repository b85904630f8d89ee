"""Load any Hugging Face VLM by name or path, add LoRA and EMIT's few-shot parts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from emit_iad.atomic import recover
from emit_iad.vlm.bundle import (
    FEWSHOT_FILE,
    META_FILE,
    TRAINED_FILE,
    VLM,
    ModelLoadError,
    base_model_of,
    check_complete,
    vision_tower,
)
from emit_iad.vlm.families import ALIGNERS, TOWERS, VISION_LORA_TARGETS
from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule
from emit_iad.vlm.tiny import FEWSHOT_TOKEN

log = logging.getLogger(__name__)
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}  # fmt: skip


def resolve_device(device: str | None) -> str:
    """``cuda`` under a multi-process launcher means this process's GPU (``LOCAL_RANK``), not
    GPU 0 for every rank; ``auto`` is the GPU where there is one, else the CPU."""
    device = str(device or "cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def _dtype(dtype):
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"dtype {dtype!r}: use one of {sorted(DTYPES)}") from None


def load_pretrained(
    name_or_path: str,
    dtype: str | torch.dtype = "auto",
    device: str = "cpu",
    with_fewshot: bool = False,
    fewshot_config: FewShotConfig | None = None,
) -> VLM:
    """Model and processor from a hub name or a local folder.

    Adds EMIT's ``<FS_PROMPT>`` token to the tokenizer (resizing the embeddings) when missing,
    and a fresh few-shot module when ``with_fewshot``. Offline, a hub name fails with a message
    that says how to use the tiny model or a local copy instead.
    """
    local = Path(name_or_path).is_dir()
    device = resolve_device(device)
    if local:
        refuse_pickles(Path(name_or_path))
    try:
        # a model folder never runs code: no `auto_map` classes, weights from safetensors only
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=False)
        # weights go straight to their device, shard by shard (no full copy in host memory)
        with whole_load():
            model = AutoModelForImageTextToText.from_pretrained(
                name_or_path, dtype=_dtype(dtype), device_map=device, use_safetensors=True,
                trust_remote_code=False,
            )
    except OSError as exc:
        where = "the folder" if local else "the Hugging Face hub"
        raise ModelLoadError(
            f"cannot load {name_or_path!r} from {where} ({type(exc).__name__}: {exc}).\n"
            "  How to fix: offline, use the tiny model built by `kedro run --pipelines=model` "
            "(model.source: tiny, it writes data/06_models/base), or download the model on a "
            "machine with internet (`hf download <name>`) and set model.name_or_path to that "
            "local folder."
        ) from None
    return from_model(model, processor, name_or_path, with_fewshot, fewshot_config)


PICKLES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


def refuse_pickles(folder: Path) -> None:
    """A folder whose weights are pickles (``pytorch_model.bin``: loading one can run any code
    it holds) and not safetensors is refused, naming the files."""
    if any(folder.glob("model*.safetensors")):  # (fewshot.safetensors is not the model's)
        return
    pickles = sorted(p.name for pattern in PICKLES for p in folder.glob(pattern))
    if pickles:
        raise ModelLoadError(
            f"{folder}: weights only as pickles ({', '.join(pickles[:3])}), which can run code "
            "when loaded; emit-iad loads safetensors only. Convert them once on a machine you "
            "trust (load the model, then save_pretrained(folder, safe_serialization=True))"
        )


@contextlib.contextmanager
def whole_load():
    """Load whole weights on each process, also under a ZeRO-3 launch (where transformers
    would partition them while loading, with ``zero.Init``): the engine shards what trains when
    it is prepared, and what stays outside it (the KL reference's copy, the few-shot module)
    keeps whole tensors. Private API: transformers keeps the launch's config in
    ``integrations.deepspeed._hf_deepspeed_config_weak_ref``, set aside here for the load."""
    from transformers.integrations import deepspeed as hf_ds

    saved = getattr(hf_ds, "_hf_deepspeed_config_weak_ref", None)
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def from_model(model, processor, name: str, with_fewshot: bool = False,
               fewshot_config: FewShotConfig | None = None) -> VLM:  # fmt: skip
    """A loaded (or built) model and processor as this project's VLM: EMIT's ``<FS_PROMPT>``
    added where missing, and a fresh few-shot module when ``with_fewshot``."""
    tokenizer = processor.tokenizer
    if FEWSHOT_TOKEN not in tokenizer.get_vocab():
        first = len(tokenizer)
        tokenizer.add_special_tokens({"additional_special_tokens": [FEWSHOT_TOKEN]},
                                     replace_extra_special_tokens=False)  # fmt: skip
        add_token_rows(model, first, len(tokenizer))
        log.info("Added %s to the tokenizer of %s", FEWSHOT_TOKEN, name)
    fewshot = None
    if with_fewshot:
        hidden = base_model_of(model).config.text_config.hidden_size
        device = model.get_input_embeddings().weight.device
        fewshot = FewShotModule(hidden, fewshot_config or FewShotConfig()).to(device)
    return VLM(model, processor, fewshot, {"base_model": name})


@torch.no_grad()
def add_token_rows(model, first: int, size: int) -> None:
    """Rows for the token ids ``first`` … ``size - 1``: the embeddings (and an untied head)
    grow to ``size`` rows where they have fewer (a checkpoint whose rows are padded past its
    tokenizer, as Qwen's 151,936, keeps them), and the new ids' rows become the mean of the rows
    before ``first``: deterministic, so a model folder that saved only what trained (no
    embeddings) gets the very same rows back over the same base. (transformers' mean resizing
    samples.)"""
    if model.get_input_embeddings().weight.shape[0] < size:
        model.resize_token_embeddings(size, mean_resizing=False)
    for layer in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())
                  if m is not None}.values():  # fmt: skip
        mean = layer.weight[:first].float().mean(dim=0).to(layer.weight.dtype)
        layer.weight[first:size] = mean


def add_lora(
    vlm: VLM,
    targets: Sequence[str] | str = ("q_proj", "k_proj", "v_proj", "o_proj"),
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    vision: bool = False,
    vision_targets: Sequence[str] | str | None = None,
) -> VLM:
    """Wrap the language model's ``targets`` in LoRA adapters (peft); only they train.

    ``vision``: the vision tower's ``vision_targets`` get adapters too (EMIT's stage 2,
    ``freeze_vit false``); the few-shot heatmap then reads the tower with the adapter off, so it
    stays the fixed feature extractor it was computed with. ``"all-linear"`` (ms-swift's
    default ``target_modules``, which EMIT's Stage2.sh leaves in force) means every linear layer
    of the language model (not its head) and, with ``vision``, of the vision tower; the aligner
    is not among them (EMIT trains it fully, ``modules_to_save``).
    """
    from peft import LoraConfig, get_peft_model

    if targets == "all-linear" or vision_targets == "all-linear":
        pattern: str | list[str] = all_linear(vlm.model, targets, vision, vision_targets)
    else:
        text = rf".*language_model.*\.({'|'.join(targets)})"
        pattern = text
        if vision:
            names = vision_targets or VISION_LORA_TARGETS
            pattern = rf"({text})|(.*({'|'.join(TOWERS)})\..*\.({'|'.join(names)}))"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern)
    vlm.model = get_peft_model(vlm.model, config)
    return vlm


def all_linear(model: torch.nn.Module, targets, vision: bool, vision_targets) -> list[str]:
    """Module names for ``"all-linear"``; the other part may be a list of name suffixes."""
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        if any(a in name for a in ALIGNERS):
            continue
        tower = any(f".{t}." in f".{name}." for t in TOWERS)
        if (tower and not vision) or (not tower and "language_model" not in name):
            continue
        wanted = (vision_targets or VISION_LORA_TARGETS) if tower else targets
        if wanted == "all-linear" or name.rsplit(".", 1)[-1] in wanted:
            out.append(name)
    if not out:
        raise ValueError("LoRA all-linear: no linear layer found in the language model")
    return out


def enable_checkpointing(vlm: VLM) -> None:
    """Non-reentrant gradient checkpointing: each layer's activations are recomputed in
    backward instead of kept. Inputs require grad so that a frozen base with LoRA (or with only
    the few-shot module training) still has a graph through the checkpointed layers."""
    vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    vlm.model.enable_input_require_grads()


def set_trainable(vlm: VLM, parts: Sequence[str]) -> list[str]:
    """Freeze everything, then unfreeze ``parts``: ``lora``, ``fewshot`` (projector + soft
    prompt), ``aligner`` (vision-to-language projector: InternVL's ``mlp1``, Qwen's merger),
    ``full`` (the whole model), ``text`` (all but the vision tower, which then stays
    the fixed feature extractor the few-shot heatmap was computed with). Returns the names of
    trainable tensors."""
    known = {"lora", "fewshot", "full", "text", "aligner"}
    if unknown := set(parts) - known:
        raise ValueError(f"unknown trainable part(s) {sorted(unknown)}; use {sorted(known)}")
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    if "full" in parts or "text" in parts:
        for p in vlm.model.parameters():
            p.requires_grad_(True)
    if "text" in parts and "full" not in parts:
        for p in vision_tower(vlm.model).parameters():
            p.requires_grad_(False)
    if "aligner" in parts:  # EMIT trains `mlp1` fully in both stages
        found = [m for n, m in vlm.model.named_modules() if n.endswith(ALIGNERS)]
        if not found:
            raise ValueError(f"trainable part 'aligner': no module named like {ALIGNERS}")
        for module in found:
            for p in module.parameters():
                p.requires_grad_(True)
    if "lora" in parts:
        if not hasattr(vlm.model, "peft_config"):
            raise ValueError("trainable part 'lora' needs add_lora() first")
        for name, p in vlm.model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    if vlm.fewshot is not None:
        for p in vlm.fewshot.parameters():
            p.requires_grad_("fewshot" in parts)
    elif "fewshot" in parts:
        raise ValueError("trainable part 'fewshot' needs a model with the few-shot module")
    names = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    if vlm.fewshot is not None:
        names += [f"fewshot.{n}" for n, p in vlm.fewshot.named_parameters() if p.requires_grad]
    return names


def load_vlm(folder: str | Path, dtype: str | torch.dtype = "auto", device: str = "cpu") -> VLM:
    """A model directory written by :meth:`VLM.save`: a whole model, or a delta (adapter,
    trained tensors) over the base its ``emit_iad.json`` names; with its few-shot module."""
    folder = Path(folder)
    if not folder.exists():
        recover(folder)  # a save killed mid-swap: finish or undo it
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ModelLoadError(f"{folder}: no {META_FILE}; not a model directory of emit-iad")
    meta = json.loads(meta_path.read_text())
    check_complete(folder, meta)
    if dtype == "auto" and meta.get("dtype"):
        dtype = meta["dtype"]  # the dtype it was trained and saved in
    full = (folder / "config.json").is_file()
    if not full:  # a delta over a named base: adapter and/or trained tensors
        from peft import PeftModel

        base = meta.get("base_model")
        if not base:
            raise ModelLoadError(f"{meta_path}: no weights here and no `base_model` named")
        base_vlm = load_pretrained(base, dtype=dtype, device=device, with_fewshot=False)
        model = base_vlm.model
        if (folder / "adapter_config.json").is_file():
            if not (folder / "adapter_model.safetensors").is_file():  # never a pickle
                raise ModelLoadError(f"{folder}: the adapter is not in "
                                     "adapter_model.safetensors; emit-iad loads "
                                     "safetensors only (a pickle can run code)")  # fmt: skip
            model = PeftModel.from_pretrained(model, folder, is_trainable=False)
        if (folder / TRAINED_FILE).is_file():
            tensors = load_file(str(folder / TRAINED_FILE))
            result = base_model_of(model).load_state_dict(tensors, strict=False)
            if result.unexpected_keys:
                raise ModelLoadError(
                    f"{folder / TRAINED_FILE}: tensors {result.unexpected_keys[:3]} are not "
                    f"in the base {base!r}; was it trained from another model?"
                )
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=False)
    else:
        loaded = load_pretrained(str(folder), dtype=dtype, device=device, with_fewshot=False)
        model, processor = loaded.model, loaded.processor
    fewshot = None
    if "fewshot" in meta and (folder / FEWSHOT_FILE).is_file():
        hidden = base_model_of(model).config.text_config.hidden_size
        fewshot = FewShotModule(hidden, FewShotConfig.from_dict(meta["fewshot"]))
        fewshot.load_state_dict(load_file(str(folder / FEWSHOT_FILE)))
        fewshot.to(resolve_device(device))
    return VLM(model, processor, fewshot, meta)
