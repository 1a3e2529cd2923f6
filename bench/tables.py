"""The papers' tables as data frames built from result rows, and their Markdown and LaTeX renderings.

A table is indexed by the method row's label; its value columns hold accuracy (%) averaged over seeds (and, in
the multi-task table, what each method costs to serve), and a column `X std` (the spread over seeds of column X)
with `seeds` makes the rendering print `X` as mean ± std.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from tabulate import tabulate

from tasks.scenario_names import EIGHT_TASKS, MULTITASK, stated_task_count
from tasks.splits import CORRUPTION_TITLES, split_title

# Rows as the papers' tables group them: references, static merges, test-time adaptive ones, then those that need
# the task of each input (one model per task); methods not listed (plugins) follow, by name.
METHOD_ORDER = ["pretrained", "individual", "weight_averaging", "fisher_merging", "regmean", "task_arithmetic",
                "ties_merging", "pcb", "dare_task_arithmetic", "dare_ties", "consensus", "tsv_merge", "iso_c",
                "iso_cts", "cart", "expert_merging", "expert_merging_plus", "adamerging_taskwise",
                "adamerging_plus_taskwise", "adamerging_layerwise", "adamerging_plus_layerwise", "wemoe",
                "wemoe_sparse", "smile", "twin_merging", "surgery", "tall_masks", "emr"]
UNIT = ["suite", "family", "scenario", "method", "params", "seed"]


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each unit's result: its last adaptation step (or the only rows, for a method that does not adapt)."""
    last = frame.groupby(UNIT, dropna=False)["step"].transform("max")
    return frame[last.isna() | (frame["step"] == last)]


def in_method_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a (method, label)-indexed table in paper order, then indexed by label alone."""
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    order = sorted(table.index, key=lambda ml: (rank.get(ml[0], len(rank)), ml[0], ml[1]))
    return table.loc[order].droplevel("method")


def seed_summary(per_seed: pd.DataFrame, spread_of: str) -> pd.DataFrame:
    """Per method row: columns averaged over seeds, plus the spread over seeds of column `spread_of`."""
    groups = per_seed.groupby(level=["method", "label"])
    table = groups.mean()
    table[f"{spread_of} std"] = groups[spread_of].std()
    table["seeds"] = groups.size()
    return in_method_order(table)


def per_seed_pivot(rows: pd.DataFrame, columns: str) -> pd.DataFrame:
    """Accuracy (%) per (method, label, seed) x values of `columns`, each the mean of its rows."""
    return rows.pivot_table(index=["method", "label", "seed"], columns=columns, values="value", aggfunc="mean") * 100


def task_titles(rows: pd.DataFrame) -> dict[str, str]:
    """Per task of `rows`, in their order, its name in tables: `task (counterpart)` where the two differ."""
    return {task: task if counterpart == task else f"{task} ({counterpart})"
            for task, counterpart in dict(zip(rows["task"], rows["counterpart"])).items()}


def value_columns(table: pd.DataFrame) -> list:
    """The columns a table shows (not its spreads over seeds nor its seed count)."""
    return [c for c in table.columns if c != "seeds" and not str(c).endswith(" std")]


# The cost columns beside the multi-task average: result column -> table column (see bench.costs).
COSTS = {"stored_models": "Storage (models)", "inference_cost": "Inference (× pretrained)"}
DECIMALS = dict.fromkeys(COSTS.values(), 2)  # per column where not 1 (accuracy, %): ratios near 1 differ in 0.01s


REFERENCE = "individual"  # the method whose accuracy per (task, split) normalizes the others'
NORMALIZED = "Norm. avg."


def normalized_averages(rows: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """Per (method, label, seed): the mean over tasks of the accuracy on a (task, split) over the individual
    expert's on the same (task, split) (`reference`: its rows), in %; the normalized accuracy of the TALL-masks
    and TSV-M papers. NaN where a task has no reference."""
    expert = reference.groupby(["task", "split"])["value"].mean().rename("expert")
    ratios = rows.join(expert, on=["task", "split"])
    per_task = (ratios["value"] / ratios["expert"]).groupby(
        [ratios["method"], ratios["label"], ratios["seed"], ratios["task"]]).mean()
    levels = ["method", "label", "seed"]
    return per_task.groupby(level=levels).mean().where(~per_task.isna().groupby(level=levels).any()) * 100


def multitask_table(rows: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Methods x tasks (+ Avg., and given the individual experts' rows of the zoo as `reference`, the normalized
    average), columns in the suite's task order, named with their counterparts; then what each method costs to
    serve (none, `–`, for rows stored before costs were measured)."""
    titles = task_titles(rows)
    per_seed = per_seed_pivot(rows, "task")[list(titles)].rename(columns=titles)
    per_seed["Avg."] = per_seed.mean(axis=1)
    if reference is not None and not reference.empty:
        per_seed[NORMALIZED] = normalized_averages(rows, reference)
    costs = rows.reindex(columns=["method", "label", "seed", *COSTS]).astype(dict.fromkeys(COSTS, float))
    per_seed = per_seed.join(costs.groupby(["method", "label", "seed"]).mean().rename(columns=COSTS))
    return seed_summary(per_seed, "Avg.")


def generalization_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Methods x (seen tasks' average, each unseen task, unseen average), for one seen/unseen split."""
    per_seed = per_seed_pivot(rows, "task")
    seen = list(dict.fromkeys(rows.loc[rows["merged"].astype(bool), "task"]))
    unseen = list(dict.fromkeys(rows.loc[~rows["merged"].astype(bool), "task"]))
    titles = task_titles(rows)
    table = pd.DataFrame({"Seen avg.": per_seed[seen].mean(axis=1)})
    for task in unseen:
        table[titles[task]] = per_seed.get(task, np.nan)
    table["Unseen avg."] = table.iloc[:, 1:].mean(axis=1, skipna=False)
    return seed_summary(table, "Unseen avg.")


def robustness_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Methods x (Clean, each corruption, average over the corruptions), accuracy averaged over `rows`' tasks."""
    rows = rows.assign(column=rows["split"].map(split_title))
    per_seed = per_seed_pivot(rows, "column")
    columns = ["Clean", *CORRUPTION_TITLES.values()]  # the papers' order
    per_seed = per_seed[[c for c in columns if c in per_seed]]
    per_seed["Corrupted avg."] = per_seed.drop(columns="Clean", errors="ignore").mean(axis=1)
    return seed_summary(per_seed, "Corrupted avg.")


def eight_task_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Per zoo, its rows of the 8-task table (`multitask-8`), or of `multitask` where it has none (a suite covering
    no task-count benchmark, or results stored before the task-count scenarios): what the README's headline, the λ
    sweep, the adaptation curves and the spread over zoos show."""
    rows = rows[rows["scenario"].isin([EIGHT_TASKS, MULTITASK])]
    has_eight = (rows["scenario"] == EIGHT_TASKS).groupby([rows["suite"], rows["family"]]).transform("any")
    return rows[(rows["scenario"] == EIGHT_TASKS) | ~has_eight]


def task_count(rows: pd.DataFrame) -> int:
    """The number of tasks of one multi-task scenario's rows: as its name states, else as many as it tests."""
    return stated_task_count(rows["scenario"].iloc[0]) or rows["task"].nunique()


SELECTED = " (validation)"  # what `line_label` leaves of the settings validation chose


def line_label(label: str) -> str:
    """A row's label without the settings validation chose (`TSV-M (validation: scaling=0.9)` -> `TSV-M
    (validation)`): one line across numbers of tasks, where validation chooses per number."""
    return re.sub(r" \(validation: [^)]*\)", SELECTED, label)


def unpreset_label(label: str, preset: str) -> str:
    """The label without the suite's preset (`Layer-wise AdaMerging (mini)` -> `Layer-wise AdaMerging`): the label
    the papers' row of that method has in bench/published.csv. Labels naming other settings keep them."""
    return label.removesuffix(f" ({preset})")


def zoo_spread_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method, the average over tasks over zoos built from the same recipe with different seeds (families)."""
    per_zoo_and_seed = rows.groupby(["label", "method", "family", "seed"])["value"].mean()
    averages = per_zoo_and_seed.groupby(["label", "method", "family"]).mean() * 100
    spread = averages.groupby(["label", "method"]).agg(["mean", "std", "min", "max", "count"])
    return in_method_order(spread.swaplevel())


def adaptation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Method rows x adaptation steps: average accuracy (%) over tasks, mean over seeds."""
    per_seed = rows.groupby(["label", "seed", "step"])["value"].mean() * 100
    return per_seed.groupby(["label", "step"]).mean().unstack("step")


PUBLISHED_SUFFIX = "(published)"  # the label of a published row: `<measured row's label> (published)`


def with_published(table: pd.DataFrame, published: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The table with a row `label (published)` under each measured row that has published numbers (`published`:
    rows of label, column, value; `columns` maps a published column, such as a counterpart task, to the table's)."""
    numbers = published.assign(column=published["column"].map(columns)).dropna(subset=["column"])
    numbers = numbers.pivot_table(index="label", columns="column", values="value", aggfunc="first", sort=False)
    parts = []
    for label in table.index:
        parts.append(table.loc[[label]])
        if label in numbers.index:
            parts.append(numbers.loc[[label]].rename(index=lambda name: f"{name} {PUBLISHED_SUFFIX}"))
    return pd.concat(parts)[table.columns]


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows; a column with a spread over several seeds carries ± std; no value is `–`."""
    shown = value_columns(table)
    body = []
    for label, row in table.iterrows():
        cells = [label]
        for column in shown:
            text = "–" if pd.isna(row[column]) else f"{row[column]:.{DECIMALS.get(column, 1)}f}"
            if row.get("seeds", 1) > 1 and f"{column} std" in table and pd.notna(row[f"{column} std"]):
                text += f" ± {row[f'{column} std']:.1f}"
            cells.append(text)
        body.append(cells)
    return ["Method"] + [str(c) for c in shown], body


def to_markdown(table: pd.DataFrame) -> str:
    header, body = _cells(table)
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


LATEX = {"_": r"\_", "&": r"\&", "±": r"$\pm$", "×": r"$\times$", "–": "--"}  # characters -> their LaTeX


def latex_escaped(text: str) -> str:
    for character, latex in LATEX.items():
        text = text.replace(character, latex)
    return text


def to_latex(table: pd.DataFrame, caption: str) -> str:
    """A booktabs table, with a rule under the reference rows (pretrained, individual)."""
    header, body = _cells(table)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escaped(caption)}}}",
             r"\resizebox{\linewidth}{!}{%",
             rf"\begin{{tabular}}{{l{'c' * (len(header) - 1)}}}", r"\toprule",
             " & ".join(latex_escaped(h) for h in header) + r" \\", r"\midrule"]
    references = sum(1 for row in body if row[0].removesuffix(f" {PUBLISHED_SUFFIX}") in ("Pretrained", "Individual"))
    for i, row in enumerate(body):
        lines.append(" & ".join(latex_escaped(c) for c in row) + r" \\")
        if i + 1 == references and references < len(body):
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
