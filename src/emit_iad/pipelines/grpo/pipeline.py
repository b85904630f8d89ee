from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.grpo.nodes import register, train


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(train, ["sft_model@vlm", "train_questions", "val_questions", "params:grpo"],
                 ["grpo_model@vlm", "grpo_history", "grpo_samples", "grpo_curves"],
                 name="train_grpo"),
            Node(register, ["grpo_model@vlm", "grpo_history"], "grpo_registry_metrics",
                 name="register_grpo"),
        ]
    )  # fmt: skip
