"""What the training nodes share: a section's settings and its checkpoint folder."""

from __future__ import annotations

# the YAML's checkpoint_dir, when it names none: one default per stage
CHECKPOINT_DIRS = {"sft": "data/06_models/.sft_checkpoints",
                   "grpo": "data/06_models/.grpo_checkpoints"}  # fmt: skip


def loop_settings(section: dict, stage: str) -> tuple[dict, str]:
    """A training section without ``checkpoint_dir`` (the node's setting, not the loop's: the
    typed config never sees it) and that folder.

    >>> loop_settings({"lr": 1e-3, "checkpoint_dir": "c"}, "sft")
    ({'lr': 0.001}, 'c')
    >>> loop_settings({"lr": 1e-3}, "grpo")[1]
    'data/06_models/.grpo_checkpoints'
    """
    settings = {k: v for k, v in section.items() if k != "checkpoint_dir"}
    return settings, section.get("checkpoint_dir") or CHECKPOINT_DIRS[stage]
