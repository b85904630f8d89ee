from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.ingestion.nodes import (
    generate_synthetic_data,
    index_images,
    summarize_index,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(generate_synthetic_data, "params:ingestion", "synthetic_manifest",
                 name="generate_synthetic_data"),
            Node(index_images, ["params:ingestion", "synthetic_manifest"],
                 ["image_index", "ingestion_report"], name="index_images"),
            Node(summarize_index, ["image_index", "ingestion_report"],
                 ["ingestion_metrics", "ingestion_overview"], name="summarize_index"),
        ]
    )  # fmt: skip
