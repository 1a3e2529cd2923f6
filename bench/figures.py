"""Figures drawn from the parquet results alone (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def adaptation_curves(curves: pd.DataFrame, title: str, path: Path) -> Path:
    """Average accuracy (%) against adaptation step, one line per method row (`curves`: label x step)."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, row in curves.iterrows():
        axes.plot(row.index, row.values, marker="o", markersize=3, label=label)
    axes.set_xlabel("adaptation step")
    axes.set_ylabel("multi-task average accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120, metadata={"Software": None})  # no version stamp: rebuilds are byte-identical
    plt.close(figure)
    return path
