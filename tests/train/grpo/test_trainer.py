"""A few real GRPO steps on the tiny model: LoRA changes, kill-and-resume equality, bad input."""

from pathlib import Path

import pytest
import torch

from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.rewards import REWARDS
from emit_iad.train.grpo.trainer import train_grpo
from emit_iad.vlm.loading import load_vlm
from tests.helpers import StopAt


@pytest.fixture(scope="module")
def questions(sets):
    _, _, qa = sets
    train = qa.split("train")
    return train[train.type.isin(["Anomaly Detection", "Defect Localization"])].head(24)


def small(**kw):
    base = dict(tasks=("Anomaly Detection", "Defect Localization"), group_size=4, max_new_tokens=12,
                batch_size=2, steps=2, lr=1e-3, checkpoint_every=0, val_max_questions=0,
                trainable=("full", "fewshot"), sample_table_every=1,
                # the untrained tiny model never answers right: with resampling every prompt
                # would be dropped, so these tests run standard GRPO
                difficulty_aware=False)  # fmt: skip
    return GRPOConfig(**{**base, **kw})


# The untrained tiny model never writes a valid <answer>, and at 12 new tokens every reply is
# cut at the same length: every built-in reward is then equal within a group. A reward of the
# registry's own kind that varies with the reply's text gives the update something to learn.
REWARDS.setdefault("test_letters", lambda: lambda completions, **_: [
    sum(ch.isalpha() for ch in c) / 50 for c in completions])  # fmt: skip


def test_a_few_steps_change_the_lora_adapter_and_log_every_metric(tiny_vlm, questions, tmp_path):
    tiny_vlm.save(tmp_path / "base")
    vlm = load_vlm(tmp_path / "base")
    vlm.meta["base_model"] = str(tmp_path / "base")
    config = small(trainable=("lora", "fewshot"), beta=0.05,
                   rewards={"accuracy": 3.0, "format": 1.0, "test_letters": 1.0})  # fmt: skip
    out, history, samples = train_grpo(
        vlm, questions, questions.iloc[:0], config, str(tmp_path / "c")
    )
    lora_b = [p for n, p in out.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it moved
    for key in [
        "accuracy",
        "reward/accuracy",
        "reward/format",
        "difficult_before",
        "difficult_after",
        "resample_rounds",
        "kl",
        "clip_fraction",
        "completion_length",
        "tokens_per_s",
        "nonzero_advantage_share",
        "accuracy_signal_share",
        "rollout_accuracy",
        "step_s",
    ]:
        assert key in history.columns, key
    assert len(history) == 2 and len(samples) > 0
    assert history.nonzero_advantage_share.gt(0).all()
    assert (history.accuracy_signal_share == 0).all()  # no reply is ever right: no accuracy signal
    out.save(tmp_path / "grpo")
    assert (tmp_path / "grpo/adapter_config.json").is_file()


def test_killed_and_resumed_run_ends_with_the_same_parameters(tiny_vlm, questions, tmp_path):
    tiny_vlm.save(tmp_path / "base")
    config = small(steps=4, checkpoint_every=2)
    whole, whole_history, _ = train_grpo(
        load_vlm(tmp_path / "base"), questions, questions.iloc[:0], config, str(tmp_path / "w")
    )
    with pytest.raises(KeyboardInterrupt):
        train_grpo(
            load_vlm(tmp_path / "base"),
            questions,
            questions.iloc[:0],
            config,
            str(tmp_path / "r"),
            StopAt(3),
        )
    assert (tmp_path / "r/checkpoint-2").is_dir()
    resumed, history, _ = train_grpo(
        load_vlm(tmp_path / "base"), questions, questions.iloc[:0], config, str(tmp_path / "r")
    )
    # the curves are whole: steps 1-2 come with the checkpoint, as the first run logged them
    assert history.step.tolist() == whole_history.step.tolist() == [1, 2, 3, 4]
    assert history.kl.tolist() == pytest.approx(whole_history.kl.tolist(), abs=1e-6)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(
            whole.model.parameters(), load_vlm(tmp_path / "base").model.parameters(), strict=True
        )
    ]
    assert any(moved)
    for (name, a), (_, b) in zip(
        whole.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_bad_input_fails_before_any_step(tiny_vlm, questions, tmp_path):
    with pytest.raises(ValueError, match="no training questions"):
        train_grpo(tiny_vlm, questions.iloc[:0], questions.iloc[:0], small(), str(tmp_path / "c"))
    with pytest.raises(ValueError, match="unknown reward function"):
        GRPOConfig.from_params({"rewards": {"accuracy": 3, "vibes": 1}})
    with pytest.raises(ValueError, match=r"unknown setting.*parameters_grpo\.yml"):
        GRPOConfig.from_params({"beta_": 0.1})


def test_a_model_that_never_answers_right_drops_every_prompt_with_resampling(
    tiny_vlm, questions, tmp_path
):
    config = small(difficulty_aware=True, steps=1, max_resample_rounds=1, batch_size=1)
    _, history, _ = train_grpo(
        tiny_vlm, questions.head(4), questions.iloc[:0], config, str(tmp_path / "c")
    )
    row = history.iloc[0]
    assert row.difficult_before == 1.0 and row.dropped_prompts == row.prompts_drawn == 4


def test_probe_measures_the_same_val_prompts_before_and_after_without_changing_training(
    tiny_vlm, questions, tmp_path
):
    tiny_vlm.save(tmp_path / "base")
    val = questions.head(3)
    runs = {}
    for probes in (0, 3):
        config = small(probe_prompts=probes, val_max_questions=0)
        out, history, _ = train_grpo(load_vlm(tmp_path / "base"), questions, val, config,
                                     str(tmp_path / f"c{probes}"))  # fmt: skip
        runs[probes] = (out, history)
    history = runs[3][1]
    probe = history.dropna(subset=["probe_accuracy"])
    # the untrained tiny model never writes a valid answer in 12 tokens: 0, known in advance
    assert probe.step.tolist() == [0, 2] and (probe.probe_accuracy == 0).all()
    assert "probe_accuracy" not in runs[0][1]
    for (name, a), (_, b) in zip(runs[0][0].model.named_parameters(),
                                 runs[3][0].model.named_parameters(), strict=True):  # fmt: skip
        assert torch.equal(a, b), name  # the probe has its own RNG stream


def test_every_step_logs_its_completions_with_their_rewards(tiny_vlm, questions, tmp_path,
                                                            monkeypatch):  # fmt: skip
    import json

    import mlflow

    from tests.conftest import _reset_mlflow_globals

    monkeypatch.chdir(tmp_path)
    _reset_mlflow_globals()  # an experiment another test left selected is not in this store
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("completions")
    try:
        with mlflow.start_run() as run:
            train_grpo(load_vlm(_saved(tiny_vlm, tmp_path)), questions,
                       questions.iloc[:0], small(probe_prompts=0), str(tmp_path / "c"))  # fmt: skip
        folder = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                     artifact_path="completions")  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)
        _reset_mlflow_globals()
    files = sorted(p.name for p in Path(folder).iterdir())
    assert files == ["step_000001.jsonl", "step_000002.jsonl"]
    rows = [json.loads(x) for x in (Path(folder) / files[0]).read_text().splitlines()]
    assert len(rows) == 2 * 4  # batch 2 prompts x G 4, every completion
    assert {"step", "question", "completion", "reward", "correct", "reward/accuracy"} <= set(rows[0])
    assert all(r["step"] == 1 for r in rows)


def _saved(vlm, tmp_path):
    vlm.save(tmp_path / "base")
    return tmp_path / "base"
