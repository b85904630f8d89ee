"""SFT on the tiny model: loss falls, labels cover only the answer, resume, MLflow + registry."""

import copy
from pathlib import Path

import mlflow
import pytest
import torch

from emit_iad.evaluate.answerers import ModelSpec, load_model
from emit_iad.train.sft import SFTConfig, label_batch, train_sft
from emit_iad.train.targets import rationale, target
from emit_iad.vlm.chat import PromptConfig, collate
from emit_iad.vlm.loading import load_vlm
from emit_iad.vlm.registry import register_vlm
from tests.helpers import StopAt


@pytest.fixture
def fresh_vlm(tiny_vlm, tmp_path):
    tiny_vlm.save(tmp_path / "base")
    return load_vlm(tmp_path / "base")


@pytest.fixture(scope="module")
def questions(sets):
    _, _, qa = sets
    train = qa.split("train")
    return train[train.type.isin(["Anomaly Detection", "Defect Localization"])]


def small(**kw):
    base = dict(
        trainable=("full", "fewshot"),
        lr=3e-3,
        epochs=1,
        batch_size=4,
        checkpoint_every=0,
        val_max_questions=0,
        warmup_ratio=0.0,
    )
    return SFTConfig(**{**base, **kw})


def test_targets_and_labels_cover_exactly_the_answer(fresh_vlm, questions):
    rec = questions.iloc[0]
    t = target(rec, "think")
    assert t.startswith("<think>") and t.endswith(f"<answer>{rec.answer}</answer>")
    assert target(rec, "plain") == rec.answer
    assert (
        rationale(
            {"type": "Anomaly Detection", "defect": None, "object": "wood", "query_text": None}
        )
        == "The query matches a normal wood, so there is no defect."
    )
    records = [r for _, r in questions.head(3).iterrows()]
    targets = [target(r, "think") for r in records]
    tok = fresh_vlm.processor.tokenizer
    batch = collate(records, fresh_vlm.processor, PromptConfig(), targets=targets)
    labels = label_batch(batch, targets, tok)
    for i, t in enumerate(targets):
        kept = labels[i][labels[i] != -100]
        assert tok.decode(kept) == t + tok.eos_token


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(fresh_vlm, questions, tmp_path):
    fixed = questions.head(8)
    _, history = train_sft(
        fresh_vlm, fixed, fixed.iloc[:0], small(epochs=12, batch_size=8), str(tmp_path / "c")
    )
    losses = history.loss.dropna().tolist()
    assert len(losses) == 12
    assert losses[-1] < 0.6 * losses[0]


def test_the_trained_model_reloads_and_answers(fresh_vlm, questions, tmp_path):
    model, _ = train_sft(
        fresh_vlm, questions.head(8), questions.iloc[:0], small(), str(tmp_path / "c")
    )
    model.save(tmp_path / "sft")
    back = load_vlm(tmp_path / "sft")
    batch = collate(
        [questions.iloc[0]],
        back.processor,
        PromptConfig(answer_format="think"),
        back.fewshot_placeholders(),
        back.fewshot_types(),
    )
    # the reloaded model answers exactly as the trained one in memory
    assert back.generate(batch, max_new_tokens=8, do_sample=False) == model.generate(
        batch, max_new_tokens=8, do_sample=False)
    assert not (tmp_path / "c").exists()  # checkpoints are removed once the model is saved


def test_resume_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(
    tiny_vlm, questions, tmp_path
):
    data = questions.head(16)
    config = small(epochs=2, checkpoint_every=2, lr=1e-3)
    tiny_vlm.save(tmp_path / "base")
    whole, whole_history = train_sft(
        load_vlm(tmp_path / "base"), data, data.iloc[:0], config, str(tmp_path / "w")
    )
    with pytest.raises(KeyboardInterrupt):
        train_sft(
            load_vlm(tmp_path / "base"), data, data.iloc[:0], config, str(tmp_path / "r"), StopAt(5)
        )
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("sft-resume")  # not an experiment id left by an earlier test's store
    try:
        with mlflow.start_run() as run:  # the resumed run is a new MLflow run
            resumed, history = train_sft(
                load_vlm(tmp_path / "base"), data, data.iloc[:0], config, str(tmp_path / "r")
            )
        curve = mlflow.MlflowClient().get_metric_history(run.info.run_id, "sft/loss")
    finally:
        mlflow.set_tracking_uri(None)
    # the curves are whole: the steps before the checkpoint come with it, as they were
    assert history.step.tolist() == whole_history.step.tolist() == list(range(1, 9))
    assert history.loss.tolist() == pytest.approx(whole_history.loss.tolist(), abs=1e-5)
    assert sorted(m.step for m in curve) == list(range(1, 9))
    for (name, a), (_, b) in zip(
        whole.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    assert torch.allclose(whole.fewshot.soft_prompt, resumed.fewshot.soft_prompt, atol=1e-6)


def test_checkpoints_of_other_settings_are_set_aside_not_resumed(tiny_vlm, questions, tmp_path):
    data = questions.head(16)
    tiny_vlm.save(tmp_path / "base")
    with pytest.raises(KeyboardInterrupt):
        train_sft(load_vlm(tmp_path / "base"), data, data.iloc[:0],
                  small(epochs=2, checkpoint_every=2), str(tmp_path / "r"), StopAt(3))  # fmt: skip
    assert (tmp_path / "r/checkpoint-2").is_dir()
    # another learning rate: resuming those optimizer states would silently mix two runs
    _, history = train_sft(load_vlm(tmp_path / "base"), data, data.iloc[:0],
                           small(epochs=2, checkpoint_every=2, lr=1e-4), str(tmp_path / "r"))  # fmt: skip
    assert history.step.tolist() == list(range(1, 9))  # started at step 1, not 3


def test_mlflow_gets_the_loss_curve_and_a_registered_version(
    fresh_vlm, questions, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # artifacts go to ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("emit-iad-test")
    try:
        with mlflow.start_run() as run:
            model, _history = train_sft(
                copy.deepcopy(fresh_vlm),
                questions.head(8),
                questions.head(4),
                small(epochs=2, val_max_questions=4),
                str(tmp_path / "c"),
            )
            version = register_vlm(model, "emit-iad-sft", "test model", alias="champion")
        client = mlflow.MlflowClient()
        curve = client.get_metric_history(run.info.run_id, "sft/loss")
        assert [m.step for m in curve] == [1, 2, 3, 4]
        assert "sft/val/accuracy" in client.get_run(run.info.run_id).data.metrics
        mv = client.get_model_version_by_alias("emit-iad-sft", "champion")
        assert str(mv.version) == version == "1" and mv.description == "test model"
        loaded = load_model(ModelSpec.parse("models:/emit-iad-sft@champion"))
        assert type(loaded.model).__name__ == "InternVLForConditionalGeneration"
        answers = mlflow.pyfunc.load_model("models:/emit-iad-sft@champion").predict(
            questions.head(2)
        )
        assert len(answers) == 2
        # the serving requirements name what loading imports (inference left torch out)
        reqs = Path(mlflow.artifacts.download_artifacts("models:/emit-iad-sft@champion")) / (
            "requirements.txt")
        names = {line.split("==")[0] for line in reqs.read_text().split()}
        assert {"torch", "transformers", "mlflow", "emit-iad"} <= names
    finally:
        mlflow.set_tracking_uri(None)


def test_learning_rate_schedule_by_hand():
    from emit_iad.train.harness import lr_schedule as _lr_lambda

    f = _lr_lambda(total=10, warmup=2)
    # linear warm-up over 2 steps, then cosine from 1 to 0 over the remaining 8
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.5)
    assert f(10) == pytest.approx(0.0) and f(20) == pytest.approx(0.0)


def test_repeats_add_the_tasks_questions_to_every_epoch(fresh_vlm, questions, tmp_path):
    fixed = questions.groupby("type").head(4)  # 4 AD + 4 DL
    config = small(batch_size=4, tasks=("Anomaly Detection", "Defect Localization"))
    _, once = train_sft(copy.deepcopy(fresh_vlm), fixed, fixed.iloc[:0], config,
                        str(tmp_path / "a"))  # fmt: skip
    _, thrice = train_sft(fresh_vlm, fixed, fixed.iloc[:0],
                          small(batch_size=4, tasks=config.tasks,
                                repeats={"Defect Localization": 3}), str(tmp_path / "b"))  # fmt: skip
    assert once.loss.count() == 2  # 8 questions
    assert thrice.loss.count() == 4  # 4 AD + 3 x 4 DL = 16


@pytest.mark.parametrize("repeats", [{"Object Details": 2}, {"Defect Localization": 0},
                                     {"Defect Localization": 1.5}])  # fmt: skip
def test_repeats_of_a_task_not_trained_or_not_a_count_are_refused(repeats):
    with pytest.raises(ValueError, match=r"sft\.repeats"):
        SFTConfig.from_params({"tasks": ["Anomaly Detection", "Defect Localization"],
                               "repeats": repeats})  # fmt: skip


def test_validating_less_often_leaves_training_unchanged(tiny_vlm, questions, tmp_path):
    """``val_every`` only thins the validation rows: validation is greedy and consumes no random
    state, so the trained weights are bit-identical; the last epoch is always validated."""
    data, val = questions.head(8), questions.tail(4)
    tiny_vlm.save(tmp_path / "base")
    runs = {}
    for every in (1, 2):
        config = small(epochs=3, val_max_questions=4, val_every=every)
        runs[every] = train_sft(
            load_vlm(tmp_path / "base"), data, val, config, str(tmp_path / f"c{every}")
        )
    (each, each_history), (thin, thin_history) = runs[1], runs[2]
    assert each_history["val/accuracy"].notna().sum() == 3
    assert thin_history.loc[thin_history["val/accuracy"].notna(), "epoch"].tolist() == [2, 3]
    assert each_history.loss.dropna().tolist() == thin_history.loss.dropna().tolist()
    for (name, a), (_, b) in zip(
        each.model.named_parameters(), thin.model.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
