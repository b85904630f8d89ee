from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.descriptions.nodes import describe_objects, preview_descriptions


def create_pipeline(**kwargs) -> Pipeline:
    """The descriptions stage (`kedro run --pipelines=descriptions`)."""
    return Pipeline(
        [
            Node(
                func=describe_objects,
                inputs=["image_index", "params:descriptions", "openai_credentials"],
                outputs=["descriptions", "descriptions_report", "descriptions_metrics"],
                name="describe_objects",
            ),
            Node(
                func=preview_descriptions,
                inputs="descriptions",
                outputs="descriptions_preview",
                name="preview_descriptions",
            ),
        ]
    )
