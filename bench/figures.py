"""Figures drawn from the parquet results alone (matplotlib, no display needed).

Each function takes a table (see `bench.tables`) and writes one PNG without a version stamp, so rebuilding
the report from the same results gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(figure)
    return path


def line_chart(curves: pd.DataFrame, x_label: str, y_label: str, title: str, path: Path, marker_size: float) -> Path:
    """One line per row of `curves` (its columns are the x values), skipping the x values a row lacks."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, row in curves.iterrows():
        row = row.dropna()
        axes.plot(row.index, row.values, marker="o", markersize=marker_size, label=label)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def adaptation_curves(curves: pd.DataFrame, title: str, path: Path) -> Path:
    """Average accuracy (%) against adaptation step, one line per method row (`curves`: label x step)."""
    return line_chart(curves, "adaptation step", "multi-task average accuracy (%)", title, path, marker_size=3)


def average_bars(averages: pd.Series, title: str, path: Path) -> Path:
    """One horizontal bar per method row (top to bottom in table order), its value printed at the bar's end."""
    figure, axes = plt.subplots(figsize=(6.4, 0.35 * len(averages) + 1.2))
    positions = range(len(averages))[::-1]
    bars = axes.barh(list(positions), averages.values, color="tab:blue")
    axes.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    axes.set_yticks(list(positions), averages.index, fontsize=8)
    axes.set_xlim(0, 105)
    axes.set_xlabel("average accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def heat_map(table: pd.DataFrame, title: str, path: Path) -> Path:
    """Methods x columns, each cell coloured and printed with its accuracy (%)."""
    figure, axes = plt.subplots(figsize=(1.0 * len(table.columns) + 3.2, 0.38 * len(table) + 1.4))
    image = axes.imshow(table.values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(table.columns)), table.columns, fontsize=8, rotation=30, ha="right")
    axes.set_yticks(range(len(table)), table.index, fontsize=8)
    for (i, j), value in pd.DataFrame(table.values).stack().items():
        axes.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="white" if value < 60 else "black")
    figure.colorbar(image, ax=axes, label="accuracy (%)")
    axes.set_title(title, fontsize=10)
    return _save(figure, path)


def scaling_sweep(curves: pd.DataFrame, title: str, path: Path) -> Path:
    """Average accuracy (%) against the scaling coefficient λ (`curves`: rows `<method>, validation` and
    `<method>, test` x λ): each method in one colour, its validation curve dashed, the chosen λ marked."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    methods = list(dict.fromkeys(label.rsplit(", ", 1)[0] for label in curves.index))
    for label, row in curves.iterrows():
        method, kind = label.rsplit(", ", 1)
        row = row.dropna()
        colour = f"C{methods.index(method)}"
        axes.plot(row.index, row.values, marker="o", markersize=4, color=colour, label=label,
                  linestyle="--" if kind == "validation" else "-")
        if kind == "validation":
            axes.plot(row.idxmax(), row.max(), marker="*", markersize=12, color=colour)
    axes.set_xlabel("scaling coefficient λ")
    axes.set_ylabel("average accuracy (%)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return _save(figure, path)


def task_count_lines(measured: pd.DataFrame, published: pd.DataFrame, title: str, path: Path) -> Path:
    """Average accuracy (%) against the number of tasks merged: a solid line with circles per method row of
    `measured` (label x number of tasks), and in the same colour, dashed with squares, the published averages of
    that row's method (`published`: measured label x number of tasks)."""
    entries = len(measured) + len(published)
    columns = 1 + entries // 24  # a legend no taller than the plot
    figure, axes = plt.subplots(figsize=(6.4 + 2.2 * columns, 4.6))
    colours = plt.get_cmap("tab20").colors
    for index, (label, row) in enumerate(measured.iterrows()):
        row, colour = row.dropna(), colours[2 * index % 20 + index // 10 % 2]
        axes.plot(row.index, row.values, marker="o", markersize=5, color=colour, label=label)
        if label in published.index:
            points = published.loc[label].dropna()
            axes.plot(points.index, points.values, marker="s", markersize=5, linestyle="--", color=colour,
                      markerfacecolor="none", label=f"{label} (published)")
    counts = sorted({*measured.columns, *published.columns})
    axes.set_xticks(counts, [str(count) for count in counts])
    axes.set_xlabel("number of tasks merged")
    axes.set_ylabel("average accuracy (%)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), ncols=columns)
    return _save(figure, path)
