from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.evaluation.nodes import evaluate, promote


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate,
                ["test_benchmark", "params:evaluation", "openai_credentials",
                 "base_model@folder", "sft_model@folder", "grpo_model@folder"],
                ["mmad_answers", "mmad_accuracy", "mmad_metrics", "evaluation_metrics",
                 "mmad_radar", "mmad_heat_table", "mmad_per_question", "evaluation_report"],
                name="evaluate",
            ),
            # the registry moves only after metrics.json is saved (it reads the saved file)
            Node(
                promote,
                ["mmad_metrics", "test_benchmark", "params:evaluation",
                 "base_model@folder", "sft_model@folder", "grpo_model@folder"],
                "registry_champions",
                name="promote_champions",
            ),
        ]
    )  # fmt: skip
