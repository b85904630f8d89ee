"""GRPO's typed config: every field's default and one-line help live here and only here.

``conf/base/parameters_grpo.yml`` lists what the offline default changes; conf/gpu and
conf/qwen what real scale changes (``docs/real_scale.md`` gives each value's source).
"""

from __future__ import annotations

from dataclasses import dataclass

from emit_iad.mmad import protocol as p
from emit_iad.params import ParamError, reject_unknown, setting
from emit_iad.train.grpo.advantages import ADVANTAGE_ESTIMATORS
from emit_iad.train.grpo.loss import loss_named
from emit_iad.train.grpo.resampling import VARIANTS
from emit_iad.train.grpo.rewards import build_rewards
from emit_iad.train.harness import SCHEDULES
from emit_iad.vlm.chat import PromptConfig

PARAMS_FILE = "conf/base/parameters_grpo.yml"
EMIT_TASKS = (
    p.ANOMALY_DETECTION,
    p.DEFECT_CLASSIFICATION,
    p.DEFECT_LOCALIZATION,
    p.OBJECT_CLASSIFICATION,
)


def _rewards() -> dict:
    return {"accuracy": 3.0, "format": 1.0, "cosine": 1.0, "repetition": 1.0}


@dataclass(frozen=True)
class GRPOConfig:
    """Difficulty-aware GRPO (EMIT stage 2). EMIT's recipe: G 8, temperature 1.0, β 0.005,
    ε 0.2, lr 1e-5, 2 epochs, LoRA + projector + soft prompt (conf/gpu)."""

    tasks: tuple[str, ...] = setting(EMIT_TASKS, "question types trained on (EMIT's four)")
    group_size: int = setting(8, "completions sampled per prompt, G (EMIT: 8)")
    temperature: float = setting(1.0, "sampling temperature of the rollouts (EMIT: 1.0)")
    max_new_tokens: int = setting(64, "longest completion in tokens (EMIT: 512)")
    batch_size: int = setting(4, "prompts per rollout round, per process (plan.py)")
    per_device_completions: int | None = setting(
        None, "EMIT's unit instead (ms-swift's per_device_train_batch_size): completions per "
        "process per accumulation step; set, it replaces batch_size and one fill covers a step")
    generate_batch: int | None = setting(
        None, "prompts per generate() call (null: a round's share at once)")
    collective_timeout_s: float = setting(
        1800.0, "seconds a process waits on the others before it stops the run")
    grad_accum: int = setting(
        1, "rollout rounds per optimizer step: the gradient covers grad_accum x batch_size "
        "prompts (EMIT: 2)")
    epochs: float | None = setting(
        None, "set: steps from epochs over the training prompts, replacing steps (EMIT: 2)")
    weight_decay: float = setting(0.01, "AdamW weight decay (torch's default)")
    adam_beta2: float = setting(0.999, "AdamW beta2 (torch's default; ms-swift's, EMIT's: 0.95)")
    warmup_ratio: float = setting(
        0.0, "share of the steps with a linear warm-up; 0: constant lr (EMIT: 0.01)")
    lr_schedule: str | None = setting(
        None, "cosine | linear (HF Trainer's default: AnomalyR1) | constant; null: cosine "
        "with a warm-up, constant without one")
    max_grad_norm: float | None = setting(None, "gradient clipping norm (null: none)")
    micro_batch_size: int | None = setting(
        None, "responses per forward/backward (null: a whole group); same gradient, peak "
        "memory scales with it instead of with G")
    gradient_checkpointing: bool = setting(
        False, "recompute each layer in backward (real scale: true)")
    steps: int = setting(50, "optimizer steps (when epochs is null)")
    lr: float = setting(1e-5, "learning rate (EMIT: 1e-5)")
    mu: int = setting(1, "policy-update passes per batch (μ)")
    beta: float = setting(0.005, "weight of the k3 KL to the starting model (EMIT: 0.005)")
    eps_low: float = setting(0.2, "clip range below 1 of the importance ratio (EMIT: 0.2)")
    eps_high: float | None = setting(None, "clip range above 1 (null: eps_low; DAPO: 0.28)")
    loss: str = setting(
        "grpo", "policy loss: grpo (EMIT) | dapo | bnpo | dr_grpo | gspo | cispo (loss.py)")
    advantages: str = setting(
        "group", "advantage estimator: group (EMIT) | group_mean (Dr. GRPO) | batch; EMIT's "
        "reweighting composes with each (advantages.py)")
    rewards: dict = setting(factory=_rewards, help="reward name -> weight (rewards.py)")
    reward_options: dict = setting(
        factory=dict, help="reward name -> its options, e.g. cosine: {max_len: 80}")
    difficulty_aware: bool = setting(
        True, "EMIT's resampling and reweighting both, unless set one by one")
    resample: bool | None = setting(
        None, "resample prompts with no correct response (null: difficulty_aware)")
    reweight: bool | None = setting(
        None, "multiply advantages by 1 + #incorrect / G (null: difficulty_aware)")
    max_resample_rounds: int = setting(3, "resampling rounds per fill before a step gives up")
    resampling: str = setting(
        "splice", "splice | emit (EMIT's official code: the whole group; resampling.py)")
    top_k: int = setting(0, "sampling top-k; 0 keeps the whole distribution (ms-swift 3.4: 50)")
    top_p: float = setting(1.0, "sampling top-p; 1.0 keeps it whole (ms-swift 3.4: 0.9)")
    trainable: tuple[str, ...] = setting(
        ("lora", "fewshot"), "what trains: lora | fewshot | text | full (vlm/loading.py)")
    lora: dict = setting(
        factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0}, help="LoRA's r, alpha, dropout")
    seed: int = setting(0, "seed of the prompt order, sampling and initialisation")
    checkpoint_every: int = setting(10, "steps between resumable checkpoints")
    keep_checkpoints: int = setting(2, "checkpoints kept on disk")
    sample_table_every: int = setting(10, "steps between rows of the completions table")
    probe_prompts: int = setting(
        32, "val prompts sampled G times before and after training: on-policy accuracy")
    val_max_questions: int = setting(200, "val questions answered greedily after training")
    val_max_new_tokens: int = setting(48, "token cap of those answers")
    mixed_precision: str | bool = setting(
        "no", "no | bf16 | fp16 (YAML reads an unquoted no as false: the same)")
    prompt: dict = setting(
        factory=lambda: {"answer_format": "think"}, help="PromptConfig fields (vlm/chat.py)")

    @classmethod
    def from_params(cls, params: dict) -> GRPOConfig:
        if "loss_aggregation" in params:
            raise ParamError(
                "grpo.loss_aggregation was replaced by grpo.loss: `sequence` is `loss: grpo`, "
                f"`token` is `loss: dapo` ({PARAMS_FILE})", ["loss_aggregation"],
                "replaced by grpo.loss (sequence: grpo, token: dapo)")  # fmt: skip
        reject_unknown(cls, params, f"{PARAMS_FILE} (`grpo`)")
        d = {k: tuple(v) if k in ("tasks", "trainable") else v for k, v in params.items()}
        config = cls(**d)
        build_rewards(config.rewards, config.reward_options)  # unknown reward names fail here
        loss_named(config.loss)
        if config.advantages not in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"grpo.advantages must be one of {sorted(ADVANTAGE_ESTIMATORS)} "
                             f"({PARAMS_FILE})")  # fmt: skip
        if config.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 ({PARAMS_FILE})")
        if config.grad_accum < 1 or config.batch_size < 1:
            raise ValueError(f"grpo.batch_size and grpo.grad_accum must be >= 1 ({PARAMS_FILE})")
        if config.resampling not in VARIANTS:
            raise ValueError(f"grpo.resampling: {config.resampling!r}, use one of {VARIANTS} "
                             f"({PARAMS_FILE})")  # fmt: skip
        if config.lr_schedule not in (None, *SCHEDULES):
            raise ValueError(f"grpo.lr_schedule: {config.lr_schedule!r}, use one of "
                             f"{SCHEDULES} ({PARAMS_FILE})")  # fmt: skip
        return config

    @property
    def do_resample(self) -> bool:
        return self.difficulty_aware if self.resample is None else self.resample

    @property
    def do_reweight(self) -> bool:
        return self.difficulty_aware if self.reweight is None else self.reweight

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**{"answer_format": "think", **self.prompt})
