"""One object for a loaded model: the HF model (maybe with a LoRA adapter), its processor and
EMIT's few-shot module, saved and loaded as one directory.

Directory layout (``data/06_models/<stage>/``)::

    emit_iad.json          stage, base model reference, few-shot config, trainable parts
    config.json, model.safetensors      full weights (the tiny model, or text/full training), or
    adapter_config.json, adapter_model.safetensors   a LoRA adapter on ``base_model``, and
    trained.safetensors    base tensors trained outside LoRA (the aligner …), over ``base_model``
    fewshot.safetensors    projector + soft prompt
    processor files        tokenizer, image processor, chat template

When the pretrained base stayed frozen (only LoRA, the aligner and the few-shot module
trained), no copy of its weights is written: at 8 B that saves 16 GB per stage.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from emit_iad.atomic import atomic_directory
from emit_iad.vlm.chat import Batch, PromptConfig, collate
from emit_iad.vlm.families import STRUCTURAL_TOKENS, TOWERS
from emit_iad.vlm.fewshot import FewShotModule, fewshot_heatmap, inject_tokens
from emit_iad.vlm.tiny import FEWSHOT_TOKEN
from emit_iad.vlm.vision import default_heatmap_images, find_tower

log = logging.getLogger(__name__)
META_FILE = "emit_iad.json"
FEWSHOT_FILE = "fewshot.safetensors"
TRAINED_FILE = "trained.safetensors"
FULL_PARTS = {"full", "text"}  # trainable parts after which only a full copy is faithful


class ModelLoadError(RuntimeError):
    pass


def vision_tower(model: nn.Module) -> nn.Module:
    tower = find_tower(model)
    if tower is None:
        raise ModelLoadError(
            f"EMIT's few-shot heatmap reads a vision tower named like {TOWERS} (InternVL, "
            "Qwen2.5-VL); this model has none (set model.fewshot.enabled: false for it)"
        )
    return tower


def base_model_of(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass
class VLM:
    model: nn.Module
    processor: object
    fewshot: FewShotModule | None = None
    meta: dict = field(default_factory=dict)

    # ---- few-shot ------------------------------------------------------------------------
    @property
    def fewshot_token_id(self) -> int:
        token_id = self.processor.tokenizer.convert_tokens_to_ids(FEWSHOT_TOKEN)
        if token_id is None or token_id == self.processor.tokenizer.unk_token_id:
            raise ModelLoadError(
                f"the tokenizer has no {FEWSHOT_TOKEN} token; load the model with "
                "emit_iad.vlm.loading.load_pretrained, which adds it"
            )
        return token_id

    def fewshot_placeholders(self) -> str:
        """The placeholder string a prompt needs (empty when few-shot is off)."""
        if self.fewshot is None:
            return ""
        vision = base_model_of(self.model).config.vision_config
        side = self.heatmap_settings().get("square") or getattr(vision, "image_size", None)
        if side is None:
            raise ModelLoadError("model.images.heatmap needs `square: <pixels>` for this model")
        size = side[0] if isinstance(side, list | tuple) else side
        patch = vision.patch_size
        step = patch[0] if isinstance(patch, list | tuple) else patch
        return FEWSHOT_TOKEN * self.fewshot.n_tokens(int(size) // step)

    def fewshot_types(self) -> Sequence[str]:
        return self.fewshot.config.question_types if self.fewshot is not None else ()

    def image_kwargs(self, part: str) -> dict | None:
        """Image-processor settings of the model's ``images`` block: ``prompt`` (the tiling of
        the prompt's images) or ``heatmap`` (the few-shot heatmap's query and template)."""
        value = (self.meta.get("images") or {}).get(part)
        return dict(value) if value is not None else None

    def heatmap_settings(self) -> dict:
        """The heatmap's image settings: the model's ``images.heatmap``, else its family's."""
        own = self.image_kwargs("heatmap")
        return own if own is not None else default_heatmap_images(base_model_of(self.model).config)

    def collate(self, records, prompt: PromptConfig, knowledge: dict | None = None,
                targets=None) -> Batch:  # fmt: skip
        """:func:`~emit_iad.vlm.chat.collate` with this model's placeholders and image settings;
        checks that each few-shot row holds as many placeholders as there are tokens to inject."""
        placeholders = self.fewshot_placeholders()
        batch = collate(records, self.processor, prompt, placeholders, self.fewshot_types(),
                        knowledge, targets, self.image_kwargs("prompt"),
                        self.heatmap_settings())  # fmt: skip
        if placeholders:
            found = (batch.inputs["input_ids"] == self.fewshot_token_id).sum(dim=1).tolist()
            rows = set(batch.fewshot_rows or ())
            per_row = placeholders.count(FEWSHOT_TOKEN)
            want = [per_row if i in rows else 0 for i in range(len(found))]
            if found != want:
                ids = [str(r.get("id", "?")) if hasattr(r, "get") else "?" for r in records]
                raise ValueError(
                    f"questions {ids}: few-shot placeholders per row {found}, expected {want}: "
                    f"the tokenizer does not keep {FEWSHOT_TOKEN} as one token, or a prompt "
                    "text contains it"
                )
        return batch

    @torch.no_grad()  # the vision tower is a fixed feature extractor here
    def heatmap(self, batch: Batch) -> torch.Tensor | None:
        """The raw anomaly maps (B', h, w) of the batch's few-shot rows, in fp32 on the model's
        device; computed once per batch and kept on it (a GRPO group reuses its prompt's)."""
        if self.fewshot is None:
            return None
        if batch.heatmap is None and batch.fewshot_query is not None:
            tower = vision_tower(self.model)
            dtype = next(tower.parameters()).dtype
            batch.heatmap = fewshot_heatmap(
                tower,
                batch.fewshot_query.to(tower.device, dtype),
                batch.fewshot_template.to(tower.device, dtype),
                self.fewshot.config,
            ).float()
        return batch.heatmap

    def heat_tokens(self, batch: Batch) -> torch.Tensor | None:
        heat = self.heatmap(batch)
        if heat is None:
            return None
        return self.fewshot.tokens(heat.to(self.fewshot.soft_prompt.device))

    @contextlib.contextmanager
    def injecting(self, batch: Batch) -> Iterator[None]:
        """Model calls inside see the soft prompt + heatmap tokens at the placeholders."""
        values = self.heat_tokens(batch)
        if values is None:
            yield
            return
        rows = batch.inputs["input_ids"].shape[0]
        embeddings = self.model.get_input_embeddings()
        with inject_tokens(embeddings, self.fewshot_token_id, values, rows):
            yield

    # ---- running --------------------------------------------------------------------------
    def forward(self, batch: Batch, **kwargs):
        inputs = batch.on(self.device)
        with self.injecting(batch):
            return self.model(**inputs, **kwargs)

    def structural_token_ids(self) -> list[int]:
        """Image and few-shot placeholder tokens: a reply must never contain them."""
        tok = self.processor.tokenizer
        names = [*STRUCTURAL_TOKENS, FEWSHOT_TOKEN]  # of every family (vlm/families.py)
        vocab = tok.get_vocab()
        return [vocab[n] for n in names if n in vocab]

    @torch.no_grad()
    def generate(self, batch: Batch, **kwargs) -> list[str]:
        """Completions (prompt removed), decoded with the reasoning tags kept."""
        inputs = batch.on(self.device)
        kwargs.setdefault("suppress_tokens", self.structural_token_ids())
        with self.injecting(batch):
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- persistence ----------------------------------------------------------------------
    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """Base tensors trained outside LoRA, by this stage or an earlier one."""
        base = base_model_of(self.model)
        earlier = set(self.meta.get("trained_params") or [])
        training = bool(self.meta.get("trainable"))  # set by a training stage; a base: none
        return {
            n: p.detach().contiguous().cpu()
            for n, p in base.named_parameters()
            if "lora_" not in n and ((training and p.requires_grad) or n in earlier)
        }

    def save(self, folder: str | Path) -> None:
        """Write the directory atomically (temporary sibling, then rename). Only what trained
        is written when the base is a pretrained model that can be named and no stage so far
        trained its weights wholesale.

        Under several processes only rank 0 writes; on the others this does nothing (no
        collective: under Kedro the other processes' datasets are in memory and never call it).
        transformers writes weights on rank 0 only, so a folder written by another rank would
        lack them and, renamed last, replace the whole one. A caller that saves on every rank
        and then loads waits for rank 0 itself."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        self._write(folder)

    def _write(self, folder: str | Path) -> None:
        meta = dict(self.meta)
        if set(meta.get("trainable") or ()) & FULL_PARTS:
            meta["full_trained"] = True
        delta = bool(meta.get("base_model")) and not meta.get("full_trained")
        # a delta's base loads in this dtype again (its own files may hold another)
        meta["dtype"] = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        with atomic_directory(folder) as tmp:
            if delta:
                trained = self.trained_tensors()
                if hasattr(self.model, "peft_config"):
                    self.model.save_pretrained(tmp)  # the adapter only
                if trained:
                    save_file(trained, str(tmp / TRAINED_FILE))
                meta["trained_params"] = sorted(trained)
            else:
                self.model.save_pretrained(tmp)
            self.processor.save_pretrained(tmp)
            if self.fewshot is not None:
                save_file({k: v.contiguous() for k, v in self.fewshot.state_dict().items()},
                          str(tmp / FEWSHOT_FILE))  # fmt: skip
                meta["fewshot"] = self.fewshot.config.to_dict()
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))


def check_complete(folder: Path, meta: dict) -> None:
    """Refuse a folder that lacks a part its ``emit_iad.json`` names (a copy cut short, a file
    deleted): loading it would silently give another model (no few-shot module, no adapter)."""
    needed = []
    if "fewshot" in meta:
        needed.append(FEWSHOT_FILE)
    if meta.get("trained_params") and not (folder / "config.json").is_file():
        needed.append(TRAINED_FILE)
    if "lora" in (meta.get("trainable") or ()) and not (folder / "config.json").is_file():
        needed.append("adapter_model.safetensors")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"{folder}: {', '.join(missing)} missing, though {META_FILE} names what it holds: "
            "the folder is incomplete (an interrupted copy or save?); copy or save it again"
        )


class EMITModule(nn.Module):
    """The model and its few-shot module as one trainable module (one DDP wrapper, one
    optimizer); ``forward`` takes a collated batch as keyword tensors."""

    def __init__(self, vlm: VLM):
        super().__init__()
        self.model = vlm.model
        self.fewshot = vlm.fewshot
        self._vlm = [vlm]  # not a submodule

    def forward(self, fewshot_query=None, fewshot_template=None, fewshot_heatmap=None,
                image_features=None, **inputs):  # fmt: skip
        """``fewshot_heatmap`` (precomputed maps) stands in for the query/template pixels, and
        ``image_features`` (from :meth:`image_features`, repeated per row) for ``pixel_values``."""
        vlm = self._vlm[0]
        if image_features is not None:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            features = image_features if torch.is_tensor(image_features) else tuple(image_features)
            inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(
                pooler_output=features)}  # fmt: skip
        model_inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        batch = Batch(model_inputs, [], fewshot_query, fewshot_template, heatmap=fewshot_heatmap)
        with vlm.injecting(batch):
            out = self.model(**inputs)
        unused = fewshot_query is None and fewshot_heatmap is None
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if unused and distributed and self.fewshot is not None and torch.is_grad_enabled():
            # a batch with no few-shot question (object questions only) still touches every
            # trainable few-shot weight, with zero gradient: under DDP every process must
            # reduce the same parameters at each step, or the step hangs (found by the
            # two-process test when SFT mixed in object questions). One process: untouched,
            # so AdamW does not move weights that had no gradient.
            touch = sum(p.sum() for p in self.fewshot.parameters() if p.requires_grad)
            if torch.is_tensor(touch):
                out.logits = out.logits + 0.0 * touch
        return out

    def image_features(self, pixel_values, image_grid_thw=None, **_):
        """The language model's image tokens (vision tower + aligner) for these images: InternVL
        gives one tensor (tiles, tokens, hidden), Qwen2.5-VL a tuple of (tokens, hidden) per
        image, which :meth:`forward` takes back as ``image_features``."""
        model = base_model_of(self.model)
        if image_grid_thw is not None:
            out = model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        else:
            out = model.get_image_features(pixel_values=pixel_values, return_dict=True)
        return out.pooler_output
