"""Models: the tiny offline InternVL, loading real VLMs, LoRA, chat formatting, EMIT's few-shot
heatmap and soft prompt."""
