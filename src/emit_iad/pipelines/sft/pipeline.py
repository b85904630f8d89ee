from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.guard import guard_node
from emit_iad.pipelines.sft.nodes import register, train


def create_pipeline(**kwargs) -> Pipeline:
    """The sft stage (`kedro run --pipelines=sft`)."""
    return Pipeline(
        [
            guard_node("sft"),
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
