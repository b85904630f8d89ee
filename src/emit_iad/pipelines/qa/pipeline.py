from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.qa.nodes import build_questions, summarize_questions


def create_pipeline(**kwargs) -> Pipeline:
    """The qa stage (`kedro run --pipelines=qa`)."""
    return Pipeline(
        [
            Node(
                func=build_questions,
                inputs=[
                    "image_index",
                    "descriptions",
                    "params:qa",
                    "params:evaluation",
                ],
                outputs=[
                    "train_questions",
                    "val_questions",
                    "test_questions",
                    "test_benchmark",
                    "qa_report",
                ],
                name="build_questions",
            ),
            Node(
                func=summarize_questions,
                inputs=["train_questions", "val_questions", "test_questions"],
                outputs=["qa_summary", "qa_chart", "qa_metrics"],
                name="summarize_questions",
            ),
        ]
    )
