"""Kedro lineage follows the data: a `kedro run` naming no pipeline runs every stage after the
ones whose outputs it reads (evaluation after SFT and GRPO), because the models are catalog
datasets passed between nodes (``<stage>_model@vlm`` / ``@folder``)."""

from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project


def test_default_pipeline_orders_evaluation_after_the_models_it_scores(project):
    bootstrap_project(project)
    order = [n.name for n in pipelines["__default__"].nodes]  # Kedro's topological order
    for earlier, later in [("build_model", "train_sft"), ("train_sft", "train_grpo"),
                           ("train_grpo", "evaluate"), ("train_sft", "evaluate"),
                           ("build_model", "evaluate"), ("evaluate", "ablation_report")]:  # fmt: skip
        assert order.index(earlier) < order.index(later), (earlier, later, order)
    evaluate = next(n for n in pipelines["__default__"].nodes if n.name == "evaluate")
    assert {"base_model@folder", "sft_model@folder", "grpo_model@folder"} <= set(evaluate.inputs)


def test_the_registry_moves_only_after_the_scores_are_saved(project):
    """Champion aliases are set by their own node, from the saved metrics.json: a run that
    fails before or while saving its outputs changes no tag or alias."""
    bootstrap_project(project)
    nodes = {n.name: n for n in pipelines["evaluation"].nodes}
    assert "mmad_metrics" in nodes["evaluate"].outputs
    assert "mmad_metrics" in nodes["promote_champions"].inputs
    order = [n.name for n in pipelines["__default__"].nodes]
    assert order.index("evaluate") < order.index("promote_champions")
