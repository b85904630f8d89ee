from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.ingestion.nodes import (
    generate_synthetic_data,
    index_images,
    summarize_index,
)


def create_pipeline(**kwargs) -> Pipeline:
    """The ingestion stage (`kedro run --pipelines=ingestion`)."""
    return Pipeline(
        [
            Node(
                func=generate_synthetic_data,
                inputs="params:ingestion",
                outputs="synthetic_manifest",
                name="generate_synthetic_data",
            ),
            Node(
                func=index_images,
                inputs=["params:ingestion", "synthetic_manifest"],
                outputs=["image_index", "ingestion_report"],
                name="index_images",
            ),
            Node(
                func=summarize_index,
                inputs=["image_index", "ingestion_report"],
                outputs=["ingestion_metrics", "ingestion_overview"],
                name="summarize_index",
            ),
        ]
    )
