from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.ablation.nodes import report, train_and_score
from emit_iad.pipelines.guard import guard_node


def create_pipeline(**kwargs) -> Pipeline:
    """The ablation stage (`kedro run --pipelines=ablation`)."""
    return Pipeline(
        [
            guard_node("ablation"),
            Node(
                func=train_and_score,
                inputs=[
                    "sft_model@vlm",
                    "ablation_train_set",
                    "ablation_val_set",
                    "test_benchmark",
                    "params:grpo",
                    "params:evaluation",
                    "params:ablation",
                ],
                outputs=["ablation_runs", "ablation_history", "ablation_answers"],
                name="train_and_score_variants",
            ),
            Node(
                func=report,
                inputs=[
                    "mmad_accuracy",
                    "ablation_runs",
                    "ablation_history",
                    "mmad_per_question",
                    "ablation_answers",
                    "params:qa",
                ],
                outputs=[
                    "ablation_table",
                    "ablation_markdown",
                    "ablation_training",
                    "ablation_radar",
                    "ablation_curves",
                    "ablation_dvc_metrics",
                    "ablation_metrics",
                    "ablation_intervals",
                ],
                name="ablation_report",
            ),
        ]
    )
