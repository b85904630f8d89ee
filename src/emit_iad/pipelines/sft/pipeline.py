from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.guard import guard_node_inputs, guard_questions
from emit_iad.pipelines.sft.nodes import register, train


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(guard_questions, guard_node_inputs(("train_questions", "val_questions")),
                 ["sft_train_set", "sft_val_set"], name="guard_sft_questions"),
            Node(train, ["base_model@vlm", "sft_train_set", "sft_val_set", "params:sft"],
                 ["sft_model@vlm", "sft_history", "sft_curves"], name="train_sft"),
            Node(register, ["sft_model@vlm", "sft_history"], "sft_registry_metrics",
                 name="register_sft"),
        ]
    )  # fmt: skip
