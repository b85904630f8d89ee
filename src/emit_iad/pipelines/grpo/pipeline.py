from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.grpo.nodes import register, train
from emit_iad.pipelines.guard import guard_node


def create_pipeline(**kwargs) -> Pipeline:
    """The grpo stage (`kedro run --pipelines=grpo`)."""
    return Pipeline(
        [
            guard_node("grpo"),
            Node(
                func=train,
                inputs=["sft_model@vlm", "grpo_train_set", "grpo_val_set", "params:grpo"],
                outputs=["grpo_model@vlm", "grpo_history", "grpo_samples", "grpo_curves"],
                name="train_grpo",
            ),
            Node(
                func=register,
                inputs=["grpo_model@vlm", "grpo_history"],
                outputs="grpo_registry_metrics",
                name="register_grpo",
            ),
        ]
    )
