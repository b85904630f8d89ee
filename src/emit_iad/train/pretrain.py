"""A general visual-language warm-up of the tiny base model, before any anomaly training.

A real base (InternVL3, Qwen2.5-VL) already answers multiple-choice questions about what a
product is and looks like; the tiny model built from a config does not, so the base row of the
ablation would be 0 on every task. This stage gives it that ability on *normal* images only:
the object's name and its normal characteristics (MMAD's object questions), in the answer format
of the later stages. No defective image and no defect label reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from emit_iad.mmad import protocol as p
from emit_iad.params import reject_unknown, setting
from emit_iad.train.sft import SFTConfig, train_sft
from emit_iad.vlm.bundle import VLM

PARAMS_FILE = "conf/base/parameters_model.yml"
GENERAL_TASKS = (p.OBJECT_CLASSIFICATION, p.OBJECT_STRUCTURE, p.OBJECT_DETAILS)


@dataclass(frozen=True)
class PretrainConfig:
    """``model.pretrain``: the tiny base's warm-up on normal training images and MMAD's
    object questions (no defect, no defect label)."""

    epochs: int = setting(0, "passes (0: none, as for a pretrained VLM)")
    tasks: tuple[str, ...] = setting(GENERAL_TASKS, "MMAD's object question types")
    lr: float = setting(1e-3, "learning rate")
    batch_size: int = setting(16, "questions per step")
    answer_format: str = setting("think", "think | plain")
    rationale: str = setting("options", "short | options: the think part walks the options")
    seed: int = setting(0, "seed of the batch order")
    val_max_questions: int = setting(100, "val questions per validation")
    val_every: int = setting(1, "epochs between validations (the last always)")
    prompt: dict = setting(
        factory=lambda: {"k_shot": 1, "template_source": "similar"},
        help="PromptConfig fields (vlm/chat.py)")

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
