from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.evaluation.nodes import evaluate, promote


def create_pipeline(**kwargs) -> Pipeline:
    """The evaluation stage (`kedro run --pipelines=evaluation`)."""
    return Pipeline(
        [
            Node(
                func=evaluate,
                inputs=[
                    "test_benchmark",
                    "params:evaluation",
                    "openai_credentials",
                    "base_model@folder",
                    "sft_model@folder",
                    "grpo_model@folder",
                ],
                outputs=[
                    "mmad_answers",
                    "mmad_accuracy",
                    "mmad_metrics",
                    "evaluation_metrics",
                    "mmad_radar",
                    "mmad_heat_table",
                    "mmad_per_question",
                    "evaluation_report",
                ],
                name="evaluate",
            ),
            # the registry moves only after metrics.json is saved (it reads the saved file)
            Node(
                func=promote,
                inputs=[
                    "mmad_metrics",
                    "test_benchmark",
                    "params:evaluation",
                    "base_model@folder",
                    "sft_model@folder",
                    "grpo_model@folder",
                ],
                outputs="registry_champions",
                name="promote_champions",
            ),
        ]
    )
