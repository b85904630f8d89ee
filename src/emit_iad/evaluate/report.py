"""Evaluation figures: a radar chart of the 7 MMAD tasks (with published baselines) and an
accuracy heat-table."""

from __future__ import annotations

from importlib.resources import files

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emit_iad.mmad import protocol as p


def published_results() -> pd.DataFrame:
    """MMAD's published averages (22 models; 1-shot unless ``shots`` says 0)."""
    return pd.read_csv(files("emit_iad.evaluate") / "published_mmad.csv")


PUBLISHED = "(published, real MMAD)"


def radar_chart(models: dict[str, pd.Series], baselines: list[str] = ("gpt-4o",),
                benchmark: str = "") -> plt.Figure:  # fmt: skip
    """One polygon per model over the 7 tasks, titled with the ``benchmark`` they were scored
    on; published baselines dashed and labelled as results on real MMAD (other questions than
    a synthetic benchmark's: a reference, not a comparison)."""
    published = published_results().set_index("model")
    series = dict(models)
    for name in baselines:
        if name in published.index:
            series[f"{name} {PUBLISHED}"] = published.loc[name]
    angles = np.linspace(0, 2 * np.pi, len(p.TASKS), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(6.5, 6.5), subplot_kw={"polar": True})
    for label, row in series.items():
        values = [float(row.get(t, np.nan)) for t in p.TASKS]
        style = "--" if PUBLISHED in label else "-"
        ax.plot([*angles, angles[0]], [*values, values[0]], style, label=label, linewidth=1.5)
    ax.set_xticks(angles)
    ax.set_xticklabels([t.replace(" ", "\n") for t in p.TASKS], fontsize=8)
    ax.set_ylim(0, 100)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    title = "MMAD accuracy per task (%)" + (f"\non benchmark {benchmark}" if benchmark else "")
    if len(series) > len(models) and not benchmark.lower().startswith("mmad"):
        title += "\ndashed: published results on real MMAD, other questions"
    ax.set_title(title, pad=28, fontsize=10)
    fig.tight_layout()
    return fig


def heat_table(table: pd.DataFrame) -> plt.Figure:
    """Rows = model / dataset, columns = tasks + Average, coloured by accuracy."""
    cols = [*p.TASKS, "Average"]
    data = table[cols].astype(float)
    fig, ax = plt.subplots(figsize=(1.3 * len(cols), 0.45 * len(data) + 1.6))
    ax.imshow(data.values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([c.replace(" ", "\n") for c in cols], fontsize=8)
    ax.set_yticks(range(len(data)))
    ax.set_yticklabels([" / ".join(map(str, i)) if isinstance(i, tuple) else str(i)
                        for i in data.index], fontsize=8)  # fmt: skip
    for (i, j), v in np.ndenumerate(data.values):
        ax.text(j, i, "–" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title("MMAD accuracy (%)")
    fig.tight_layout()
    return fig
