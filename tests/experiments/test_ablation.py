"""The ablation's table and training summary from hand-made runs; its parameters' checks."""

import pandas as pd
import pytest

from emit_iad.experiments.ablation import (
    COLUMNS,
    AblationConfig,
    paper_table,
    to_markdown,
    training_summary,
)


def test_paper_table_rows_columns_and_mean_std():
    runs = pd.DataFrame(
        [
            {"variant": "SFT + GRPO", "seed": 0, **dict.fromkeys(COLUMNS, 60.0)},
            {"variant": "SFT + GRPO", "seed": 1, **dict.fromkeys(COLUMNS, 64.0)},
            {"variant": "SFT + DA-GRPO", "seed": 0, **dict.fromkeys(COLUMNS, 70.0)},
        ]
    )
    fixed = {
        "Base": pd.Series(dict.fromkeys(COLUMNS, 0.0)),
        "SFT": pd.Series(dict.fromkeys(COLUMNS, 55.25)),
    }
    table = paper_table(fixed, runs)
    assert table.index.tolist() == ["Base", "SFT", "SFT + GRPO", "SFT + DA-GRPO"]
    assert table.columns.tolist() == [*COLUMNS, "seeds"]
    assert table.loc["SFT", "Average"] == "55.2"  # one decimal, as in the paper
    assert table.loc["SFT + GRPO", "Anomaly Detection"] == "62.0 ± 2.8"  # std of 60, 64
    assert table.loc["SFT + DA-GRPO", "Average"] == "70.0 ± 0.0"  # one seed
    assert table.loc["SFT + GRPO", "seeds"] == "0, 1" and table.loc["Base", "seeds"] == "–"
    md = to_markdown(table).splitlines()
    assert md[0].startswith("| model | Anomaly Detection |") and len(md) == 2 + 4


def test_training_summary_first_and_last_windows():
    history = pd.DataFrame(
        {
            "step": [1, 2, 3, 4, 4],
            "rollout_accuracy": [0.2, 0.4, 0.6, 0.8, None],
            "nonzero_advantage_share": [0.5, 0.5, 1.0, 1.0, None],
            "accuracy_signal_share": [0.25, 0.5, 0.5, 0.75, None],
            "difficult_before": [0.5] * 4 + [None],
            "difficult_after": [0.0] * 4 + [None],
            "resample_rounds": [2, 0, 1, 1, None],
            "step_s": [1.0] * 4 + [None],
            "val/accuracy": [None] * 4 + [71.5],
        }
    ).assign(variant="SFT + DA-GRPO", seed=0)
    [row] = training_summary(history, window=2).to_dict("records")
    assert row["steps"] == 4
    assert row["rollout_accuracy_first"] == pytest.approx(0.3)
    assert row["rollout_accuracy_last"] == pytest.approx(0.7)
    assert row["nonzero_advantage_share"] == pytest.approx(0.75)
    assert row["accuracy_signal_share"] == pytest.approx(0.5)
    default = training_summary(history).iloc[0]  # a third of the run: 1 step of 4
    assert default.rollout_accuracy_first == pytest.approx(0.2)
    assert default.rollout_accuracy_last == pytest.approx(0.8)
    assert row["resample_rounds_per_step"] == 1.0 and row["val_accuracy"] == 71.5


def test_parameters_are_checked():
    assert AblationConfig.from_params({"seeds": [3]}).seeds == (3,)
    with pytest.raises(ValueError, match="unknown"):
        AblationConfig.from_params({"variants": ["SFT + PPO"]})
    with pytest.raises(ValueError, match="seeds is empty"):
        AblationConfig.from_params({"seeds": []})
    with pytest.raises(ValueError, match=r"parameters_ablation\.yml"):
        AblationConfig.from_params({"seed": 0})



def test_any_loss_and_estimator_can_be_a_row():
    """Issue #26: a user comparing EMIT with Dr. GRPO or GSPO adds a row."""
    rows = {"SFT + Dr. GRPO": {"loss": "dr_grpo", "advantages": "group_mean",
                               "difficulty_aware": False},
            "SFT + GSPO": {"loss": "gspo", "eps_low": 3e-4, "eps_high": 4e-4}}  # fmt: skip
    config = AblationConfig.from_params({"rows": rows,
                                         "variants": ["SFT + GRPO", *rows]})  # fmt: skip
    assert config.all_rows()["SFT + GSPO"]["loss"] == "gspo"
    assert list(config.variants) == ["SFT + GRPO", "SFT + Dr. GRPO", "SFT + GSPO"]
    with pytest.raises(ValueError, match=r"grpo\.loss must be one of"):
        AblationConfig.from_params({"rows": {"SFT + PPO": {"loss": "ppo"}}})
    with pytest.raises(ValueError, match=r"define it under ablation\.rows"):
        AblationConfig.from_params({"variants": ["SFT + GSPO"]})


@pytest.fixture(scope="module")
def ablation_inputs(sets):
    _, _, qa = sets
    train = qa.split("train")
    train = train[train.type.isin(["Anomaly Detection"])].head(8)
    test = qa.split("test")
    return train, test[test.query_key.isin(sorted(test.query_key.unique())[:3])]


def test_each_variant_and_seed_is_a_child_run_and_a_finished_one_is_not_redone(
    tiny_vlm, ablation_inputs, tmp_path, monkeypatch
):
    import mlflow

    import emit_iad.experiments.ablation as ablation

    train, test = ablation_inputs
    grpo = {"tasks": ["Anomaly Detection"], "group_size": 2, "max_new_tokens": 6,
            "batch_size": 2, "steps": 2, "checkpoint_every": 0, "val_max_questions": 0,
            "probe_prompts": 0, "trainable": ["fewshot"]}  # fmt: skip
    evaluation = {"batch_size": 8, "max_new_tokens": 6}
    config = AblationConfig(seeds=(0,), variants=("SFT + GRPO", "SFT + DA-GRPO"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("ablation-test")
    try:
        with mlflow.start_run(run_name="ablation") as parent:
            runs, histories, answers = ablation.run_ablation(
                tiny_vlm, train, test.iloc[:0], test, grpo, evaluation, config, tmp_path / "ck")
        # every run's answers, one row per question, 0/1 as the table scored them
        assert len(answers) == 2 * len(test) and set(answers.correct) <= {0, 1}
        ad = answers[(answers.variant == "SFT + GRPO")
                     & (answers.question_type == "Anomaly Detection")]  # fmt: skip
        table_ad = runs.set_index("variant").loc["SFT + GRPO", "Anomaly Detection"]
        assert ad.correct.mean() * 100 == pytest.approx(table_ad)
        client = mlflow.MlflowClient()
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(c.info.run_name for c in children) == ["SFT + DA-GRPO seed 0",
                                                             "SFT + GRPO seed 0"]  # fmt: skip
        for child in children:
            steps = client.get_metric_history(child.info.run_id, "grpo/kl")
            assert sorted(m.step for m in steps) == [1, 2]  # each its own curve
            variant = child.data.params["variant"]
            average = runs.set_index("variant").loc[variant, "Average"]
            assert child.data.metrics["mmad/average"] == pytest.approx(average)
        assert sorted(p.name for p in (tmp_path / "ck/results").iterdir()) == [
            "sft_da-grpo-seed0.json", "sft_grpo-seed0.json"]

        # an interrupted ablation run again: the finished ones are not trained again
        def no_training(*args, **kwargs):
            raise AssertionError("a finished (variant, seed) was trained again")

        monkeypatch.setattr(ablation, "train_grpo", no_training)
        with mlflow.start_run(run_name="ablation again"):
            again, again_histories, _ = ablation.run_ablation(
                tiny_vlm, train, test.iloc[:0], test, grpo, evaluation, config, tmp_path / "ck")
        pd.testing.assert_frame_equal(again, runs)
        assert len(again_histories) == len(histories)
        # other settings: trained again
        with pytest.raises(AssertionError, match="trained again"):
            ablation.run_ablation(tiny_vlm, train, test.iloc[:0], test, {**grpo, "lr": 1e-3},
                                  evaluation, config, tmp_path / "ck")  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)


def test_runs_in_worker_processes_are_kept_and_logged_like_the_others(
    tiny_vlm, ablation_inputs, tmp_path
):
    import mlflow

    from emit_iad.experiments.ablation import run_ablation

    train, test = ablation_inputs
    grpo = {"tasks": ["Anomaly Detection"], "group_size": 2, "max_new_tokens": 6,
            "batch_size": 2, "steps": 2, "checkpoint_every": 0, "val_max_questions": 0,
            "probe_prompts": 0, "trainable": ["fewshot"]}  # fmt: skip
    config = AblationConfig(seeds=(0, 1), variants=("SFT + GRPO",), workers=2)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("ablation-workers")
    try:
        with mlflow.start_run(run_name="ablation") as parent:
            runs, histories, _ = run_ablation(tiny_vlm, train, test.iloc[:0], test, grpo,
                                              {"batch_size": 8, "max_new_tokens": 6}, config,
                                              tmp_path / "ck")  # fmt: skip
        client = mlflow.MlflowClient()
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(c.info.run_name for c in children) == ["SFT + GRPO seed 0",
                                                             "SFT + GRPO seed 1"]  # fmt: skip
        for child in children:  # trained elsewhere, their curves replayed here
            assert [m.step for m in client.get_metric_history(child.info.run_id, "grpo/kl")] \
                == [1, 2]
    finally:
        mlflow.set_tracking_uri(None)
    assert runs.seed.tolist() == [0, 1] and sorted(histories.seed.unique()) == [0, 1]
    assert len(list((tmp_path / "ck/results").glob("*.json"))) == 2
