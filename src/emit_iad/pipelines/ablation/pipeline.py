from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.ablation.nodes import report, train_and_score


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(train_and_score,
                 ["sft_model@vlm", "train_questions", "val_questions", "test_benchmark",
                  "params:grpo", "params:evaluation", "params:ablation"],
                 ["ablation_runs", "ablation_history", "ablation_answers"],
                 name="train_and_score_variants"),
            Node(report, ["mmad_accuracy", "ablation_runs", "ablation_history",
                          "mmad_per_question", "ablation_answers", "params:qa"],
                 ["ablation_table", "ablation_markdown", "ablation_training", "ablation_radar",
                  "ablation_curves", "ablation_dvc_metrics", "ablation_metrics",
                  "ablation_intervals"],
                 name="ablation_report"),
        ]
    )  # fmt: skip
