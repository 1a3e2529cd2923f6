"""The README's headline table, rewritten from the results by each report of the default `results/`.

The table is the shipped zoo's 8-task average (the rows of its `multitask-8` table in `reports/multitask.md`)
beside the published CLIP ViT-B/32 averages of `bench/published.csv`, so the README never holds a number copied by
hand.
Only the lines between the two markers change; a README without them is left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from bench import tables
from bench.reports import published_numbers
from bench.results import GRID, ResultStore
from core.atomic import write_atomically
from core.errors import BenchError
from tasks.scenario_names import EIGHT_TASKS, MULTITASK
from tasks.shipped_zoo import SHIPPED_NAME

log = logging.getLogger(__name__)

START, END = "<!-- headline-table:start -->", "<!-- headline-table:end -->"
SHIPPED_ZOO = Path("zoo") / SHIPPED_NAME  # relative to the README's folder: the zoo of the README's own checkout
MEASURED = "mini suite, shipped zoo (measured here)"
# (suite, family) of bench/published.csv -> the column showing its 8-task averages
PUBLISHED = {("clip-vit-b-32-task-vectors", "task-vectors"): "CLIP ViT-B/32, task-vectors checkpoints (published)",
             ("clip-vit-b-32", "fusionbench"): "CLIP ViT-B/32, FusionBench checkpoints (published)"}


def shipped_family(zoo: Path) -> str:
    """The weights family that the results of the zoo at `zoo` carry."""
    from tasks.zoo_manifest import read_manifest, zoo_family

    return zoo_family(read_manifest(zoo))


def headline_rows(frame: pd.DataFrame, suite: str, family: str) -> pd.DataFrame:
    """The rows of the (suite, family) 8-task table of the report: final accuracies, no grid points."""
    rows = frame[(frame["metric"] == "accuracy") & (frame["selection"] != GRID)
                 & (frame["suite"] == suite) & (frame["family"] == family)]
    return tables.final_rows(tables.eight_task_rows(rows))


def headline_table(accuracy: pd.DataFrame, published: pd.DataFrame) -> str:
    """Markdown: one row per method row of the multi-task table of `accuracy` (`headline_rows`), its average over
    the tasks and the published averages of the same method; then a line saying where each comes from."""
    measured = tables.multitask_table(accuracy)
    table = measured[["Avg.", "Avg. std", "seeds"]].rename(columns={"Avg.": MEASURED, "Avg. std": f"{MEASURED} std"})
    presets = dict(zip(accuracy["label"], accuracy["preset"]))
    matched = [tables.unpreset_label(label, presets[label]) for label in table.index]
    for (published_suite, published_family), column in PUBLISHED.items():
        numbers = published[(published["suite"] == published_suite) & (published["family"] == published_family)
                            & published["scenario"].isin([EIGHT_TASKS, MULTITASK]) & (published["column"] == "Avg.")]
        numbers = numbers.set_index("label")
        table[column] = [numbers["value"].get(label) for label in matched]
    table = table.astype({column: float for column in PUBLISHED.values()})
    suite, family = accuracy["suite"].iloc[0], accuracy["family"].iloc[0]
    note = (f"Accuracy (%), average over the {accuracy['task'].nunique()} tasks. Measured: `results/`, suite "
            f"`{suite}` ({family}), per task in `reports/multitask.md`. Published: each number's source (paper, "
            f"table or file) is its row in `bench/published.csv`.")
    return f"{tables.to_markdown(table)}\n\n{note}"


def replace_block(text: str, block: str, name: str = "README.md") -> str:
    """`text` with the lines between the START and END markers replaced by `block`, everything else unchanged."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise BenchError(f"{name}: expected the markers {START} and {END}, in that order")
    head = text[:start + len(START)]
    return f"{head}\n{block}\n{text[end:]}"


def refresh_readme(readme: Path, results: Path, suite: str = "mini") -> bool:
    """Rewrite the headline block of `readme` from the parquet results under `results`; whether it was rewritten
    (False for a README without the markers, and for results without the shipped zoo's 8-task rows)."""
    text = readme.read_text() if readme.is_file() else ""
    if START not in text:
        return False
    family = shipped_family(readme.parent / SHIPPED_ZOO)
    accuracy = headline_rows(ResultStore(results).load(), suite, family)
    if accuracy.empty:
        log.warning("%s: no 8-task results (multitask-8) of suite %s (%s) in %s; headline table left as it was",
                    readme, suite, family, results)
        return False
    new = replace_block(text, headline_table(accuracy, published_numbers()), str(readme))
    if new != text:
        write_atomically(readme, lambda path: path.write_text(new))
    return True
