from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.model.nodes import build_model, check_heatmap


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(build_model, ["train_questions", "val_questions", "descriptions", "params:model"],
                 ["base_model@vlm", "base_history"], name="build_model"),
            Node(check_heatmap, ["base_model@vlm", "test_questions", "params:model"],
                 ["model_metrics", "heatmap_overlays"], name="check_heatmap"),
        ]
    )  # fmt: skip
