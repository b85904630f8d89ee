from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.ablation.nodes import report, train_and_score
from emit_iad.pipelines.guard import guard_node_inputs, guard_questions


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(guard_questions, guard_node_inputs(("train_questions", "val_questions")),
                 ["ablation_train_set", "ablation_val_set"], name="guard_ablation_questions"),
            Node(train_and_score,
                 ["sft_model@vlm", "ablation_train_set", "ablation_val_set", "test_benchmark",
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
