from kedro.pipeline import Node, Pipeline

from emit_iad.pipelines.qa.nodes import build_questions, summarize_questions


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_questions,
                ["image_index", "descriptions", "params:qa", "params:evaluation.mmad_json",
                 "params:evaluation.image_root"],
                ["train_questions", "val_questions", "test_questions", "test_benchmark",
                 "qa_report"],
                name="build_questions",
            ),
            Node(
                summarize_questions,
                ["train_questions", "val_questions", "test_questions"],
                ["qa_summary", "qa_chart", "qa_metrics"],
                name="summarize_questions",
            ),
        ]
    )  # fmt: skip
