from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.descriptions.nodes import describe_objects, preview_descriptions


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                describe_objects,
                ["image_index", "params:descriptions", "openai_credentials"],
                ["descriptions", "descriptions_report", "descriptions_metrics"],
                name="describe_objects",
            ),
            Node(preview_descriptions, "descriptions", "descriptions_preview",
                 name="preview_descriptions"),
        ]
    )  # fmt: skip
