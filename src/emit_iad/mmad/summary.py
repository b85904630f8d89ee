"""Counts of a question set: per split × dataset × type, the answer-letter distribution, a chart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from emit_iad.mmad import protocol as p


def question_summary(questions: pd.DataFrame) -> pd.DataFrame:
    """Rows (split, dataset, type), columns: questions, text_queries, and one per answer letter."""
    q = questions.assign(text_query=questions.query_text.notna())
    counts = q.groupby(["split", "dataset", "type"]).agg(
        questions=("id", "size"), text_queries=("text_query", "sum")
    )
    letters = pd.crosstab([q.split, q.dataset, q.type], q.answer)
    return counts.join(letters).fillna(0).astype(int).reset_index()


def question_chart(summary: pd.DataFrame) -> plt.Figure:
    """Grouped bars: questions per type, one bar per split."""
    table = summary.pivot_table(index="type", columns="split", values="questions", aggfunc="sum")
    table = table.reindex([t for t in p.QUESTION_TYPES if t in table.index])
    table = table[[s for s in ("train", "val", "test") if s in table.columns]]
    fig, ax = plt.subplots(figsize=(9, 4))
    table.plot.bar(ax=ax, rot=25)
    ax.set_ylabel("questions")
    ax.set_title(f"QA questions per task and split ({int(summary.questions.sum())} in all)")
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig
