from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.guard import guard_node_inputs, guard_questions
from emit_iad.pipelines.sft.nodes import register, train


def create_pipeline(**kwargs) -> Pipeline:
    """The sft stage (`kedro run --pipelines=sft`)."""
    return Pipeline(
        [
            Node(
                func=guard_questions,
                inputs=guard_node_inputs(("train_questions", "val_questions")),
                outputs=["sft_train_set", "sft_val_set"],
                name="guard_sft_questions",
            ),
            Node(
                func=train,
                inputs=["base_model@vlm", "sft_train_set", "sft_val_set", "params:sft"],
                outputs=["sft_model@vlm", "sft_history", "sft_curves"],
                name="train_sft",
            ),
            Node(
                func=register,
                inputs=["sft_model@vlm", "sft_history"],
                outputs="sft_registry_metrics",
                name="register_sft",
            ),
        ]
    )
