from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.model.nodes import build_model, check_heatmap


def create_pipeline(**kwargs) -> Pipeline:
    """The model stage (`kedro run --pipelines=model`)."""
    return Pipeline(
        [
            Node(
                func=build_model,
                inputs=["train_questions", "val_questions", "descriptions", "params:model"],
                outputs=["base_model@vlm", "base_history"],
                name="build_model",
            ),
            Node(
                func=check_heatmap,
                inputs=["base_model@vlm", "test_questions", "params:model"],
                outputs=["model_metrics", "heatmap_dvc_metrics", "heatmap_overlays"],
                name="check_heatmap",
            ),
        ]
    )
