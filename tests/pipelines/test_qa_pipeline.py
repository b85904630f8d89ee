"""ingestion → descriptions → qa → model → evaluation in real Kedro sessions, synthetic default."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from emit_iad.mmad import protocol as p
from emit_iad.mmad.format import from_mmad, read_mmad
from emit_iad.vlm.loading import load_vlm
from tests.conftest import edit_params
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow


def test_qa_writes_questions_and_an_mmad_benchmark(project):
    for stage in ("ingestion", "descriptions", "qa"):
        run_pipeline(project, stage)
    train = pd.read_parquet(project / "data/05_model_input/train_questions.parquet")
    val = pd.read_parquet(project / "data/05_model_input/val_questions.parquet")
    assert set(train.type) == set(p.QUESTION_TYPES) and len(val) > 0
    assert train.query_text.notna().any()  # text-as-query samples

    root = project / "data/05_model_input/test_benchmark"
    bench = from_mmad(read_mmad(root / "mmad.json"), root)
    assert set(bench.type) == set(p.QUESTION_TYPES)
    for r in bench.itertuples():
        assert Path(r.query_image).is_file()
        assert all(Path(t).is_file() for t in r.similar_templates + r.random_templates)
        if isinstance(r.mask_path, str):
            assert Path(r.mask_path).is_file()
    assert not set(bench.query_key) & set(train.query_key)
    assert not [f for f in os.listdir(root.parent) if f.startswith(".")]  # no temp folders

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("emit-iad")
    [run] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "qa"]
    assert run.data.metrics["qa.test.questions"] == len(bench)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"qa_questions.png", "qa_summary.csv", "qa_report.csv"} <= artifacts

    run_pipeline(project, "model")
    base = load_vlm(project / "data/06_models/base")
    assert type(base.model).__name__ == "InternVLForConditionalGeneration"
    assert base.fewshot is not None and base.meta["source"] == "tiny"
    [model_run] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "model"]
    # the raw heatmap finds the defects (pixel AUROC on the small project's test queries)
    assert model_run.data.metrics["model.heatmap.pixel_auroc"] > 0.8
    assert (project / "data/08_reporting/heatmap_overlays.png").stat().st_size > 5000

    edit_params(project, "sft", epochs=1, batch_size=8, val_max_questions=8, checkpoint_every=2)
    run_pipeline(project, "sft")
    sft = load_vlm(project / "data/06_models/sft")
    assert sft.meta["stage"] == "sft" and sft.fewshot is not None
    [sft_run] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "sft"]
    assert len(client.get_metric_history(sft_run.info.run_id, "sft/loss")) >= 2
    assert client.get_registered_model("emit-iad-sft").latest_versions
    assert not (project / "data/06_models/.sft_checkpoints").exists()

    run_pipeline(project, "grpo")
    grpo = load_vlm(project / "data/06_models/grpo")
    assert grpo.meta["stage"] == "grpo" and grpo.meta["difficulty_aware"] is True
    [grpo_run] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "grpo"]
    history = client.get_metric_history(grpo_run.info.run_id, "grpo/difficult_before")
    assert [m.step for m in history] == [1, 2]
    assert client.get_registered_model("emit-iad-grpo").latest_versions
    assert not (project / "data/06_models/.grpo_checkpoints").exists()

    edit_params(project, "evaluation", max_new_tokens=4)
    run_pipeline(project, "evaluation")
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics) == {"base", "sft", "grpo"}
    assert set(metrics["grpo"]) >= {"average", "anomaly_detection"}
    answers = json.loads((project / "data/07_model_output/answers/base.json").read_text())
    assert len(answers) == len(bench)
    [ev] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "evaluation"]
    assert ev.data.metrics["mmad/average"] == pytest.approx(metrics["grpo"]["average"], abs=0.01)
    assert ev.data.metrics["speed.base/questions_per_s"] > 0
    for stage in ("sft", "grpo"):  # the evaluation stage scores the registered versions
        champion = client.get_model_version_by_alias(f"emit-iad-{stage}", "champion")
        average = float(champion.tags["mmad_average"])
        assert average == pytest.approx(metrics[stage]["average"], abs=0.01)
        assert f"MMAD average {average:.1f} on test_benchmark" in champion.description
        trained_in = client.get_run(champion.run_id)  # the training run shows the score too
        assert trained_in.info.run_name == stage
        assert trained_in.data.metrics["mmad/average"] == pytest.approx(average, abs=0.01)
        assert (
            "trained on" in champion.description
            and "questions of synthetic" in champion.description
        )
    artifacts = {a.path for a in client.list_artifacts(ev.info.run_id)}
    assert {
        "mmad_radar.png",
        "mmad_heat_table.png",
        "mmad_accuracy.csv",
        "mmad_per_question.csv",
    } <= artifacts

    # the ablation: four variants x two seeds from the SFT model, beside base and SFT
    edit_params(project, "ablation", seeds=[0, 1], grpo={"steps": 2})
    run_pipeline(project, "ablation")
    table = pd.read_csv(project / "data/08_reporting/ablation_table.csv")
    assert table.model.tolist() == ["Base", "SFT", "SFT + GRPO", "SFT + GRPO + resampling",
                                    "SFT + GRPO + reweighting", "SFT + DA-GRPO"]  # fmt: skip
    assert table.set_index("model").loc["SFT + DA-GRPO", "seeds"] == "0, 1"
    sft_average = table.set_index("model").loc["SFT", "Average"]
    assert float(sft_average) == pytest.approx(metrics["sft"]["average"], abs=0.06)
    training = pd.read_csv(project / "data/08_reporting/ablation_training.csv")
    assert len(training) == 8 and (training.steps == 2).all()
    # each step's gain with its interval, on seen and on held-out (fabric) objects
    steps = pd.read_csv(project / "data/08_reporting/ablation_intervals.csv")
    assert set(steps.questions) == {"seen objects", "held-out objects"}
    assert ((steps.low <= steps.difference + 0.01) & (steps.difference <= steps.high + 0.01)).all()
    base_to_sft = steps[(steps["from"] == "Base") & (steps.questions == "seen objects")]
    assert len(base_to_sft) == 1 and base_to_sft.runs.iloc[0] == 1
    assert "| SFT + DA-GRPO |" in (project / "data/08_reporting/ablation.md").read_text()
    [ab] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "ablation"]
    assert "ablation.da-grpo/average" in ab.data.metrics
    assert "ablation.grpo/nonzero_advantage_share" in ab.data.metrics
    assert {"ablation_radar.png", "ablation_curves.png", "ablation.md"} <= {
        a.path for a in client.list_artifacts(ab.info.run_id)
    }
