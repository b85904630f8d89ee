from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.sft.nodes import register, train


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(train, ["base_model@vlm", "train_questions", "val_questions", "params:sft"],
                 ["sft_model@vlm", "sft_history", "sft_curves"], name="train_sft"),
            Node(register, ["sft_model@vlm", "sft_history"], "sft_registry_metrics",
                 name="register_sft"),
        ]
    )  # fmt: skip
