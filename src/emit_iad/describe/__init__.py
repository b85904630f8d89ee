"""Description backends (openai, template, MMAD import) for normal, defect and instance texts."""

from emit_iad.describe.synthesize import DescribeConfig, Outcome, synthesize_descriptions
from emit_iad.describe.tasks import DescriptionTask, plan_tasks

__all__ = ["DescribeConfig", "DescriptionTask", "Outcome", "plan_tasks", "synthesize_descriptions"]
