"""A general visual-language warm-up of the tiny base model, before any anomaly training.

A real base (InternVL3, Qwen2.5-VL) already answers multiple-choice questions about what a
product is and looks like; the tiny model built from a config does not, so the base row of the
ablation would be 0 on every task. This stage gives it that ability on *normal* images only:
the object's name and its normal characteristics (MMAD's object questions), in the answer format
of the later stages. No defective image and no defect label reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from emit_iad.mmad import protocol as p
from emit_iad.params import reject_unknown
from emit_iad.train.sft import SFTConfig, train_sft
from emit_iad.vlm.bundle import VLM

PARAMS_FILE = "conf/base/parameters_model.yml"
GENERAL_TASKS = (p.OBJECT_CLASSIFICATION, p.OBJECT_STRUCTURE, p.OBJECT_DETAILS)


@dataclass(frozen=True)
class PretrainConfig:
    """Mirrors ``model.pretrain`` (epochs 0: none, as for a pretrained VLM)."""

    epochs: int = 0
    tasks: tuple[str, ...] = GENERAL_TASKS
    lr: float = 1e-3
    batch_size: int = 16
    answer_format: str = "think"
    rationale: str = "options"
    seed: int = 0
    val_max_questions: int = 100
    val_every: int = 1  # epochs between validations (the last always); training is unchanged
    prompt: dict = field(default_factory=lambda: {"k_shot": 1, "template_source": "similar"})

    @classmethod
    def from_params(cls, params: dict | None) -> PretrainConfig:
        params = dict(params or {})
        reject_unknown(cls, params, f"{PARAMS_FILE} (`model.pretrain`)")
        if "tasks" in params:
            params["tasks"] = tuple(params["tasks"])
        config = cls(**params)
        if leaks := sorted(set(config.tasks) - set(GENERAL_TASKS)):
            raise ValueError(f"model.pretrain.tasks: {leaks} are about defects; the base sees only "
                             f"{list(GENERAL_TASKS)} ({PARAMS_FILE})")  # fmt: skip
        return config


def general_questions(questions: pd.DataFrame, tasks=GENERAL_TASKS) -> pd.DataFrame:
    """The object questions of normal images (not text-as-query samples): nothing about
    defects, and no image that shows one."""
    normal = questions.defect.isna() & questions.query_text.isna()
    return questions[normal & questions.type.isin(tasks)].reset_index(drop=True)


def pretrain_base(vlm: VLM, train: pd.DataFrame, val: pd.DataFrame, config: PretrainConfig,
                  checkpoint_dir: str, progress=None) -> tuple[VLM, pd.DataFrame]:  # fmt: skip
    """Train everything but the vision tower (which stays the heatmap's fixed feature extractor)
    on :func:`general_questions`; returns the model and its history."""
    if config.epochs <= 0:
        return vlm, pd.DataFrame()
    sft = SFTConfig(tasks=config.tasks, trainable=("text",), answer_format=config.answer_format,
                    rationale=config.rationale,
                    lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                    seed=config.seed, checkpoint_every=0,
                    val_max_questions=config.val_max_questions, val_max_new_tokens=96,
                    val_every=config.val_every,
                    prompt=dict(config.prompt))  # fmt: skip
    seen = general_questions(train, config.tasks)
    out, history = train_sft(vlm, seen, general_questions(val, config.tasks), sft,
                             checkpoint_dir, progress)  # fmt: skip
    out.meta["pretrained_on"] = f"{len(seen)} object questions of normal images"
    return out, history
