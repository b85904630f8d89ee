"""One object for a loaded model: the HF model (maybe with a LoRA adapter), its processor and
EMIT's few-shot module, saved and loaded as one directory.

Directory layout (``data/06_models/<stage>/``)::

    emit_iad.json          stage, base model reference, few-shot config, trainable parts
    config.json, model.safetensors      full weights (tiny/base or full fine-tuning), or
    adapter_config.json, adapter_model.safetensors   a LoRA adapter on ``base_model``
    fewshot.safetensors    projector + soft prompt
    processor files        tokenizer, image processor, chat template
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emit_iad.atomic import atomic_directory
from emit_iad.vlm.chat import Batch
from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule, fewshot_heatmap, inject_tokens
from emit_iad.vlm.tiny import FEWSHOT_TOKEN

log = logging.getLogger(__name__)
META_FILE = "emit_iad.json"
FEWSHOT_FILE = "fewshot.safetensors"


class ModelLoadError(RuntimeError):
    pass


def vision_tower(model: nn.Module) -> nn.Module:
    for name, module in model.named_modules():
        if name.endswith("vision_tower"):
            return module
    raise ModelLoadError(
        "EMIT's few-shot heatmap needs an InternVL-style `vision_tower`; this model has none "
        "(set model.fewshot.enabled: false for it)"
    )


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
        grid = base_model_of(self.model).config.vision_config.image_size
        patch = base_model_of(self.model).config.vision_config.patch_size
        size = grid[0] if isinstance(grid, list | tuple) else grid
        step = patch[0] if isinstance(patch, list | tuple) else patch
        return FEWSHOT_TOKEN * self.fewshot.n_tokens(size // step)

    def fewshot_types(self) -> Sequence[str]:
        return self.fewshot.config.question_types if self.fewshot is not None else ()

    def heat_tokens(self, batch: Batch) -> torch.Tensor | None:
        if self.fewshot is None or batch.fewshot_query is None:
            return None
        tower = vision_tower(self.model)
        dtype = next(tower.parameters()).dtype
        with torch.no_grad():  # the vision tower is a fixed feature extractor here
            heat = fewshot_heatmap(
                tower,
                batch.fewshot_query.to(tower.device, dtype),
                batch.fewshot_template.to(tower.device, dtype),
                self.fewshot.config,
            )
        return self.fewshot.tokens(heat.float().to(self.fewshot.soft_prompt.device))

    @contextlib.contextmanager
    def injecting(self, batch: Batch) -> Iterator[None]:
        """Model calls inside see the soft prompt + heatmap tokens at the placeholders."""
        values = self.heat_tokens(batch)
        if values is None:
            yield
            return
        with inject_tokens(self.model.get_input_embeddings(), self.fewshot_token_id, values):
            yield

    # ---- running --------------------------------------------------------------------------
    def forward(self, batch: Batch, **kwargs):
        inputs = {k: v.to(self.device) for k, v in batch.inputs.items()}
        with self.injecting(batch):
            return self.model(**inputs, **kwargs)

    def structural_token_ids(self) -> list[int]:
        """Image and few-shot placeholder tokens: a reply must never contain them."""
        tok = self.processor.tokenizer
        names = ["<img>", "</img>", "<IMG_CONTEXT>", "<video>", FEWSHOT_TOKEN]
        vocab = tok.get_vocab()
        return [vocab[n] for n in names if n in vocab]

    @torch.no_grad()
    def generate(self, batch: Batch, **kwargs) -> list[str]:
        """Completions (prompt removed), decoded with the reasoning tags kept."""
        inputs = {k: v.to(self.device) for k, v in batch.inputs.items()}
        kwargs.setdefault("suppress_tokens", self.structural_token_ids())
        with self.injecting(batch):
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- persistence ----------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write the directory atomically (temporary sibling, then rename)."""
        with atomic_directory(folder) as tmp:
            self.model.save_pretrained(tmp)
            self.processor.save_pretrained(tmp)
            meta = dict(self.meta)
            if self.fewshot is not None:
                save_file({k: v.contiguous() for k, v in self.fewshot.state_dict().items()},
                          str(tmp / FEWSHOT_FILE))  # fmt: skip
                meta["fewshot"] = self.fewshot.config.to_dict()
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(
        cls, folder: str | Path, dtype: str | torch.dtype = "auto", device: str = "cpu"
    ) -> VLM:
        from emit_iad.vlm.loading import load_pretrained  # loading imports this module

        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ModelLoadError(f"{folder}: no {META_FILE}; not a model directory of emit-iad")
        meta = json.loads(meta_path.read_text())
        if (folder / "adapter_config.json").is_file():
            from peft import PeftModel

            base = meta.get("base_model")
            if not base:
                raise ModelLoadError(f"{meta_path}: an adapter without `base_model`")
            base_vlm = load_pretrained(base, dtype=dtype, device=device, with_fewshot=False)
            model = PeftModel.from_pretrained(base_vlm.model, folder, is_trainable=False)
            processor = base_vlm.processor
        else:
            loaded = load_pretrained(str(folder), dtype=dtype, device=device, with_fewshot=False)
            model, processor = loaded.model, loaded.processor
        fewshot = None
        if "fewshot" in meta and (folder / FEWSHOT_FILE).is_file():
            hidden = base_model_of(model).config.text_config.hidden_size
            fewshot = FewShotModule(hidden, FewShotConfig.from_dict(meta["fewshot"]))
            fewshot.load_state_dict(load_file(str(folder / FEWSHOT_FILE)))
            fewshot.to(device)
        return cls(model, processor, fewshot, meta)


class EMITModule(nn.Module):
    """The model and its few-shot module as one trainable module (one DDP wrapper, one
    optimizer); ``forward`` takes a collated batch as keyword tensors."""

    def __init__(self, vlm: VLM):
        super().__init__()
        self.model = vlm.model
        self.fewshot = vlm.fewshot
        self._vlm = [vlm]  # not a submodule

    def forward(self, fewshot_query=None, fewshot_template=None, **inputs):
        vlm = self._vlm[0]
        batch = Batch(inputs, [], fewshot_query, fewshot_template)
        with vlm.injecting(batch):
            return self.model(**inputs)
