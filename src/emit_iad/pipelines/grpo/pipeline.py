from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.grpo.nodes import register, train
from emit_iad.pipelines.guard import guard_node_inputs, guard_questions


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(guard_questions, guard_node_inputs(("train_questions", "val_questions")),
                 ["grpo_train_set", "grpo_val_set"], name="guard_grpo_questions"),
            Node(train, ["sft_model@vlm", "grpo_train_set", "grpo_val_set", "params:grpo"],
                 ["grpo_model@vlm", "grpo_history", "grpo_samples", "grpo_curves"],
                 name="train_grpo"),
            Node(register, ["grpo_model@vlm", "grpo_history"], "grpo_registry_metrics",
                 name="register_grpo"),
        ]
    )  # fmt: skip
