"""The radar names the benchmark it plots and never passes published real-MMAD results off as
scores on the synthetic benchmark."""

import numpy as np
import pandas as pd

from emit_iad.evaluate.report import published_results, radar_chart
from emit_iad.mmad import protocol as p


def test_the_radar_names_its_benchmark_and_labels_published_results():
    ours = {"sft": pd.Series(dict.fromkeys(p.TASKS, 50.0))}
    fig = radar_chart(ours, ["gpt-4o"], "test_benchmark-1a2b3c4d")
    ax = fig.axes[0]
    title = ax.get_title()
    assert "on benchmark test_benchmark-1a2b3c4d" in title
    assert "published results on real MMAD, other questions" in title
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["sft", "gpt-4o (published, real MMAD)"]
    gpt = ax.get_lines()[1].get_ydata()[: len(p.TASKS)]
    expected = published_results().set_index("model").loc["gpt-4o", list(p.TASKS)]
    assert np.allclose(gpt, expected.astype(float))
    real = radar_chart(ours, ["gpt-4o"], "MMAD-9f8e7d6c").axes[0].get_title()
    assert "other questions" not in real and "MMAD-9f8e7d6c" in real
