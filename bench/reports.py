"""Paper-layout tables built from the parquet results alone (no model, no data, no registry needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.errors import BenchError
from bench.figures import adaptation_curves
from bench.results import ResultStore

# Row order of the WEMoE paper's Table 1: references first, then static methods, then the rest by name.
METHOD_ORDER = ["pretrained", "individual", "weight_averaging", "fisher_merging", "task_arithmetic", "ties_merging"]


UNIT = ["suite", "family", "scenario", "method", "params", "seed"]


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each unit's result: its last adaptation step (or the only rows, for a method that does not adapt)."""
    last = frame.groupby(UNIT, dropna=False)["step"].transform("max")
    return frame[last.isna() | (frame["step"] == last)]


def multitask_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Methods x tasks (+ Avg), accuracy in %, mean over seeds; columns in the suite's task order."""
    tasks = list(dict.fromkeys(rows["task"]))
    counterparts = dict(zip(rows["task"], rows["counterpart"]))
    per_seed = rows.pivot_table(index=["method", "label", "seed"], columns="task", values="value", aggfunc="mean")
    per_seed = per_seed[tasks] * 100
    per_seed["Avg."] = per_seed.mean(axis=1)
    table = per_seed.groupby(level=["method", "label"]).mean()
    spread = per_seed["Avg."].groupby(level=["method", "label"]).std()
    table["seeds"] = per_seed.groupby(level=["method", "label"]).size()
    table["Avg. std"] = spread
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    order = sorted(table.index, key=lambda ml: (rank.get(ml[0], len(rank)), ml[0], ml[1]))
    table = table.loc[order].droplevel("method")
    table.columns = [c if c not in counterparts or counterparts[c] == c else f"{c} ({counterparts[c]})" for c in table.columns]
    return table


def zoo_spread_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method, the 8-task average over zoos built from the same recipe with different seeds (families)."""
    averages = rows.groupby(["label", "method", "family", "seed"])["value"].mean().groupby(["label", "method", "family"]).mean() * 100
    spread = averages.groupby(["label", "method"]).agg(["mean", "std", "min", "max", "count"])
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    order = sorted(spread.index, key=lambda lm: (rank.get(lm[1], len(rank)), lm[1], lm[0]))
    return spread.loc[order].droplevel("method")


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows; Avg. carries ± std over seeds where there are several."""
    task_columns = [c for c in table.columns if c not in ("Avg.", "Avg. std", "seeds")]
    body = []
    for label, row in table.iterrows():
        average = f"{row['Avg.']:.1f}"
        if row["seeds"] > 1:
            average += f" ± {row['Avg. std']:.1f}"
        body.append([label] + [f"{row[c]:.1f}" for c in task_columns] + [average])
    return ["Method"] + task_columns + ["Avg."], body


def to_markdown(table: pd.DataFrame) -> str:
    header, body = _cells(table)
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


def to_latex(table: pd.DataFrame, caption: str) -> str:
    header, body = _cells(table)
    escape = lambda text: text.replace("_", r"\_").replace("&", r"\&").replace("±", r"$\pm$")  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}", r"\resizebox{\linewidth}{!}{%",
             rf"\begin{{tabular}}{{l{'c' * (len(header) - 1)}}}", r"\toprule",
             " & ".join(escape(h) for h in header) + r" \\", r"\midrule"]
    references = sum(1 for row in body if row[0] in ("Pretrained", "Individual"))
    for i, row in enumerate(body):
        lines.append(" & ".join(escape(c) for c in row) + r" \\")
        if i + 1 == references and references < len(body):
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def build_reports(results: Path, out: Path) -> list[Path]:
    """Rebuild every table under `out` from the parquet files under `results`; returns the files written."""
    frame = ResultStore(results).load()
    if frame.empty:
        raise BenchError(f"{results}: no results (*.parquet) to report; run `python -m bench run --all` first")
    out.mkdir(parents=True, exist_ok=True)
    multitask = final_rows(frame[(frame["scenario"] == "multitask") & (frame["metric"] == "accuracy")])
    markdown, latex = ["# Multi-task model merging\n"], []
    for (suite, family), rows in multitask.groupby(["suite", "family"], sort=False):
        table = multitask_table(rows)
        caption = f"Multi-task performance when merging {rows['task'].nunique()} experts, suite {suite} ({family}); accuracy (%)."
        markdown.append(f"## Suite `{suite}` ({family})\n\n{caption}\n\n{to_markdown(table)}\n")
        latex.append(to_latex(table, caption))
    for suite, rows in multitask.groupby("suite", sort=False):
        if rows["family"].nunique() > 1:
            spread = zoo_spread_table(rows)
            body = [[label, f"{r['mean']:.1f} ± {r['std']:.1f}", f"{r['min']:.1f}", f"{r['max']:.1f}", int(r["count"])]
                    for label, r in spread.iterrows() if r["count"] > 1]
            markdown.append(f"## Suite `{suite}`: spread over zoos\n\nAverage accuracy (%) over the tasks, for zoos built "
                            f"from one recipe with different seeds (mean ± std over zoos).\n\n"
                            + tabulate(body, headers=["Method", "Avg. (mean ± std)", "min", "max", "zoos"],
                                       tablefmt="github", disable_numparse=True) + "\n")
    written = [out / "multitask.md", out / "multitask.tex"]
    written[0].write_text("\n".join(markdown))
    written[1].write_text("\n".join(latex))
    return written + adaptation_report(frame, out)


def adaptation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Method rows x adaptation steps: average accuracy (%) over tasks, mean over seeds."""
    per_seed = rows.groupby(["label", "seed", "step"])["value"].mean() * 100
    return per_seed.groupby(["label", "step"]).mean().unstack("step")


def adaptation_report(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Accuracy along test-time adaptation, for the units run with `--eval-every`: a table and a figure per zoo
    (suite and weights family)."""
    stepped = frame[(frame["scenario"] == "multitask") & frame["step"].notna()]
    stepped = stepped[stepped.groupby(UNIT)["step"].transform("nunique") > 1]
    if stepped.empty:
        return []
    markdown, written = ["# Accuracy along test-time adaptation\n"], []
    for (suite, family), rows in stepped.groupby(["suite", "family"], sort=False):
        table = adaptation_table(rows)
        title = f"suite {suite} ({family}): multi-task average accuracy (%) by adaptation step"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{suite}-{family}")
        figure = adaptation_curves(table, f"suite {suite} ({family})", out / f"adaptation-{slug}.png")
        body = [[label] + [f"{v:.1f}" if pd.notna(v) else "" for v in row] for label, row in table.iterrows()]
        markdown.append(f"## Suite `{suite}` ({family})\n\n![{title}]({figure.name})\n\n"
                        + tabulate(body, headers=["Method"] + [str(int(s)) for s in table.columns], tablefmt="github",
                                   disable_numparse=True) + "\n")
        written.append(figure)
    (out / "adaptation.md").write_text("\n".join(markdown))
    return [out / "adaptation.md"] + written
