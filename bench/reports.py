"""The report, rebuilt from the parquet results alone (no model, no data, no registry needed).

One Markdown and one LaTeX file per scenario family present (multitask, generalization, robustness), the
figures (average bars, accuracy by number of tasks, robustness heat map, λ sweep, adaptation curves) and
`index.md` linking them all.
Tables and figures are per zoo (suite and weights family), since numbers of different weights do not mix;
where `bench/published.csv` has the papers' numbers for a suite, its tables show them beside the measured ones.
The index names the code versions the rows come from and warns of any table that mixes them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench import tables
from bench.figures import adaptation_curves, average_bars, heat_map, scaling_sweep, task_count_lines
from bench.results import GRID, GRID_FIGURES, GRID_PASSES, PERF_FILE, VALIDATION, ResultStore, load_perf
from core.atomic import publish_folder
from core.errors import BenchError
from tasks.scenario_names import EIGHT_TASKS, MULTITASK, scenario_family, stated_task_count
from tasks.splits import parse_split, split_title

log = logging.getLogger(__name__)


@dataclass
class Section:
    """One part of the report: its title, the files holding its tables, and its figures."""

    title: str
    files: list[Path] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG)


def slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts))


def zoos(rows: pd.DataFrame):
    """(suite, family, rows) per zoo, in the order the results list them."""
    for (suite, family), group in rows.groupby(["suite", "family"], sort=False):
        yield suite, family, group


PUBLISHED = Path(__file__).with_name("published.csv")
INDEX_TITLE = "# mergebench report"  # the first line of index.md: what marks a folder as a report
REPORT_SUFFIXES = {".md", ".tex", ".png"}


# The published numbers drawn beside a suite's accuracy by number of tasks where bench/published.csv has none of
# its own (the mini suite): CLIP ViT-B/32's, the model of the README's headline, with the TALL-masks checkpoints.
TASK_COUNT_REFERENCE = ("clip-vit-b-32-task-vectors", "task-vectors")


@cache
def published_numbers() -> pd.DataFrame:
    return pd.read_csv(PUBLISHED)


def benchmark_suite(suite: str) -> str:
    """The suite without its task-count variant (`clip-vit-b-32-tall20` -> `clip-vit-b-32`): its variants share
    experts for the tasks they have in common, and so the published numbers of those tasks."""
    return re.sub(r"-tall\d+$", "", suite)


def published_scenario(scenario: str) -> str:
    """The scenario as bench/published.csv may name it: its 8-task rows are `multitask` or `multitask-8`."""
    return EIGHT_TASKS if scenario == MULTITASK else scenario


def published_of(suite: str, family: str) -> pd.DataFrame:
    """The rows of bench/published.csv for the suite (or its task-count variants) and checkpoint family
    (`fusionbench:...` rows match `fusionbench`)."""
    published = published_numbers()
    return published[(published["suite"].map(benchmark_suite) == benchmark_suite(suite))
                     & (published["family"] == family.split(":")[0])]


def beside_published(table: pd.DataFrame, caption: str, rows: pd.DataFrame, scenario: str) -> tuple[str, pd.DataFrame]:
    """Caption and table with the published numbers (bench/published.csv) of `scenario` for the suite and
    checkpoint family of `rows` (see `published_of`), if any: each under its measured row, with the sources in the
    caption."""
    family = rows["family"].iloc[0].split(":")[0]
    published = published_of(rows["suite"].iloc[0], family)
    published = published[published["scenario"].map(published_scenario) == published_scenario(scenario)]
    if published.empty:
        return caption, table
    titles = tables.task_titles(rows)
    columns = {counterpart: titles[task] for task, counterpart in dict(zip(rows["task"], rows["counterpart"])).items()}
    columns |= {column: column for column in table.columns}
    sources = "; ".join(dict.fromkeys(published["source"]))
    return f"{caption} Published ({family} checkpoints): {sources}.", tables.with_published(table, published, columns)


def write_tables(out: Path, name: str, title: str, blocks: list[tuple[str, str, pd.DataFrame]]) -> list[Path]:
    """`name`.md and `name`.tex holding the tables of `blocks` ((heading, caption, table)) in order."""
    markdown = [f"# {title}\n"] + [f"## {heading}\n\n{caption}\n\n{tables.to_markdown(table)}\n"
                                   for heading, caption, table in blocks]
    latex = [tables.to_latex(table, caption) for _, caption, table in blocks]
    (out / f"{name}.md").write_text("\n".join(markdown))
    (out / f"{name}.tex").write_text("\n".join(latex))
    return [out / f"{name}.md", out / f"{name}.tex"]


NORMALIZED_NOTE = (f"{tables.NORMALIZED}: per task, the accuracy over the individual expert's on the same test set, "
                   f"averaged over the tasks (%), as the TALL-masks and TSV-M papers report.")


def by_task_count(rows: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """One zoo's multi-task rows per scenario, as (number of tasks, rows), fewest tasks first, and of a number the
    scenario naming it (`multitask-8`) before one stored as `multitask` by an older run."""
    counted = [(tables.task_count(group), group) for _, group in rows.groupby("scenario", sort=False)]
    return sorted(counted, key=lambda pair: (pair[0], stated_task_count(pair[1]["scenario"].iloc[0]) is None))


def multitask_section(rows: pd.DataFrame, out: Path) -> Section | None:
    """A table per zoo and multi-task scenario (8, 14, 20 tasks), and per zoo the average accuracy by number of
    tasks beside the published one, or a note where its results hold one number of tasks."""
    if rows.empty:
        return None
    section, blocks, notes = Section("Multi-task model merging"), [], []
    for suite, family, group in zoos(rows):
        reference = group[group["method"] == tables.REFERENCE]
        averages = {}
        for count, scenario_rows in by_task_count(group):
            scenario = scenario_rows["scenario"].iloc[0]
            table = tables.multitask_table(scenario_rows, reference)
            averages.setdefault(count, table["Avg."].rename(index=tables.line_label))
            caption = (f"Multi-task performance when merging {count} experts ({scenario}), suite {suite} ({family}); "
                       f"accuracy (%).{' ' + NORMALIZED_NOTE if tables.NORMALIZED in table else ''}")
            blocks.append((f"Suite `{suite}` ({family}): {scenario}",
                           *beside_published(table, caption, scenario_rows, scenario)))
            figure = average_bars(table["Avg."], f"suite {suite} ({family}): {count}-task average",
                                  out / f"multitask-average-{slug(suite, family, scenario)}.png")
            section.figures.append((f"{count}-task average accuracy, suite {suite} ({family})", figure))
        if len(averages) > 1:
            figure = task_count_figure(pd.concat(averages, axis=1), group, out)
            section.figures.append((f"Average accuracy by number of tasks, suite {suite} ({family})", figure))
        else:
            notes.append(f"No figure of accuracy by number of tasks for suite `{suite}` ({family}): its results "
                         f"hold {next(iter(averages))} tasks only; it is drawn from two numbers of tasks on.")
            log.info("report: %s", notes[-1])
    section.files = write_tables(out, "multitask", section.title, blocks)
    extra = "\n".join(notes) + "\n" if notes else ""
    spread = zoo_spread_markdown(tables.eight_task_rows(rows))
    if extra or spread:
        section.files[0].write_text("\n".join(part for part in (section.files[0].read_text(), extra, spread) if part))
    return section


def published_by_task_count(published: pd.DataFrame) -> pd.DataFrame:
    """The published average accuracy (column `Avg.`) by method label x number of tasks (`multitask` rows are the
    8-task ones)."""
    averages = published[published["column"] == "Avg."]
    counts = averages["scenario"].map(lambda name: stated_task_count(published_scenario(name)))
    averages = averages.assign(count=counts).dropna(subset=["count"]).astype({"count": int})
    return averages.pivot_table(index="label", columns="count", values="value", aggfunc="first")


def task_count_figure(averages: pd.DataFrame, rows: pd.DataFrame, out: Path) -> Path:
    """Each method's average accuracy against the number of tasks (`averages`: line label x number of tasks), its
    published averages beside it: the suite's own, or for a suite bench/published.csv has no numbers of (the mini
    suite), those of TASK_COUNT_REFERENCE. One line per method: its validation-selected row where it has one (the
    protocol's choice), else its fixed-setting row; a `run --all` would otherwise draw twice as many lines as
    methods, with a legend taller than the plot."""
    suite, family = rows["suite"].iloc[0], rows["family"].iloc[0]
    source = (suite, family) if not published_of(suite, family).empty else TASK_COUNT_REFERENCE
    lines = {tables.line_label(label): (method, preset, selection) for label, method, preset, selection
             in zip(rows["label"], rows["method"], rows["preset"], rows["selection"])}
    selected = {method for method, _, selection in lines.values() if selection == "validation"}
    averages = averages.loc[[label for label in averages.index
                             if lines[label][2] == "validation" or lines[label][0] not in selected]]
    matched = [tables.unpreset_label(label.removesuffix(tables.SELECTED), lines[label][1]) for label in averages.index]
    published = published_by_task_count(published_of(*source)).reindex(matched).set_axis(averages.index)
    published = published.dropna(how="all")
    title = f"suite {suite} ({family}): average accuracy by number of tasks"
    if not published.empty:
        title += f"\npublished (dashed, squares): {source[0]} ({source[1].split(':')[0]} checkpoints)"
    return task_count_lines(averages, published, title, out / f"task-count-{slug(suite, family)}.png")


def zoo_spread_markdown(rows: pd.DataFrame) -> str:
    """Per suite with results of several zoos of one recipe: each method's 8-task average over zoos, mean ± std."""
    parts = []
    for suite, group in rows.groupby("suite", sort=False):
        if group["family"].nunique() < 2:
            continue
        spread = tables.zoo_spread_table(group)
        body = [[label, f"{r['mean']:.1f} ± {r['std']:.1f}", f"{r['min']:.1f}", f"{r['max']:.1f}", int(r["count"])]
                for label, r in spread.iterrows() if r["count"] > 1]
        parts.append(f"## Suite `{suite}`: spread over zoos\n\nAverage accuracy (%) over the tasks, for zoos built "
                     f"from one recipe with different seeds (mean ± std over zoos).\n\n"
                     + tabulate(body, headers=["Method", "Avg. (mean ± std)", "min", "max", "zoos"],
                                tablefmt="github", disable_numparse=True) + "\n")
    return "\n".join(parts)


def generalization_section(rows: pd.DataFrame, out: Path) -> Section | None:
    if rows.empty:
        return None
    section, blocks = Section("Generalization to unseen tasks"), []
    for suite, family, group in zoos(rows):
        for _, split in group.groupby("scenario", sort=False):
            merged = split["merged"].astype(bool)
            seen = ", ".join(dict.fromkeys(split.loc[merged, "counterpart"]))
            unseen = ", ".join(dict.fromkeys(split.loc[~merged, "counterpart"]))
            caption = (f"Merging the experts of {seen} only; tested on those (seen) and on {unseen} (unseen, through "
                       f"their own heads), suite {suite} ({family}); accuracy (%).")
            table = tables.generalization_table(split)
            blocks.append((f"Suite `{suite}` ({family}): unseen {unseen}",
                           *beside_published(table, caption, split, split["scenario"].iloc[0])))
    section.files = write_tables(out, "generalization", section.title, blocks)
    return section


def corrupted_sets(rows: pd.DataFrame) -> str:
    """Where the corrupted test sets came from, read off the rows' split names: corrupted here from the clean
    test set (`test/motion_blur@2`) or the dataset's own (`motion_blur`)."""
    splits = rows.loc[rows["split"].map(split_title) != "Clean", ["task", "split"]].drop_duplicates()
    made_here = splits["split"].str.contains("/")
    parts = []
    if made_here.any():
        severities = ", ".join(str(s) for s in sorted({parse_split(split)[2]
                                                        for split in splits.loc[made_here, "split"]}))
        parts.append(f"{'the others ' if not made_here.all() else ''}corrupted here from the clean test sets "
                     f"(severity {severities})")
    if not made_here.all():
        own = ", ".join(f"{task} {split}" for task, split in splits.loc[~made_here].itertuples(index=False))
        parts.insert(0, f"the datasets' own for {own}")
    return f"Corrupted test sets: {'; '.join(parts)}."


def robustness_section(rows: pd.DataFrame, out: Path) -> Section | None:
    if rows.empty:
        return None
    section, blocks = Section("Robustness to corrupted test data"), []
    for suite, family, group in zoos(rows):
        counterparts = ", ".join(dict.fromkeys(group["counterpart"]))
        average = tables.robustness_table(group)
        caption = (f"Merging the {counterparts} experts; accuracy (%) averaged over those "
                   f"tasks on their clean and corrupted test sets, suite {suite} ({family}). {corrupted_sets(group)}")
        blocks.append((f"Suite `{suite}` ({family}): average over tasks",
                       *beside_published(average, caption, group, "robustness")))
        for task, title in tables.task_titles(group).items():
            blocks.append((f"Suite `{suite}` ({family}): {title}", f"As above, on {title} alone.",
                           tables.robustness_table(group[group["task"] == task])))
        figure = heat_map(average[tables.value_columns(average)],
                          f"suite {suite} ({family}): accuracy on clean and corrupted test sets",
                          out / f"robustness-{slug(suite, family)}.png")
        section.figures.append((f"Robustness heat map, suite {suite} ({family})", figure))
    section.files = write_tables(out, "robustness", section.title, blocks)
    return section


def without_scaling(params: dict) -> dict:
    return {key: value for key, value in params.items() if key != "scaling"}


def scaling_section(frame: pd.DataFrame, out: Path) -> Section | None:
    """Mean accuracy against the scaling coefficient λ, on validation (what chose λ) and on test (drawn only), along
    the line through the setting chosen on validation: the 8-task grid rows of `run --select validation`."""
    grid = tables.eight_task_rows(frame[(frame["selection"] == GRID) & (frame["metric"] == "accuracy")])
    chosen_rows = tables.eight_task_rows(frame[frame["selection"] == "validation"])
    section = Section("Scaling coefficient λ chosen on validation data")
    for suite, family, group in zoos(grid):
        curves = {}
        for method, rows in group.groupby("method", sort=False):
            chosen = chosen_rows[(chosen_rows["suite"] == suite) & (chosen_rows["family"] == family)
                                 & (chosen_rows["method"] == method)]
            params = rows["params"].map(json.loads)
            if chosen.empty or "scaling" not in params.iloc[0]:
                continue
            others = without_scaling(json.loads(chosen["params"].iloc[0]))
            on_line = [without_scaling(point) == others for point in params]
            line = rows[on_line].assign(scaling=params[on_line].map(lambda p: p["scaling"]))
            if (line["split"] == VALIDATION).all():
                continue  # drawn where the run also tested the line (`run --sweep`), beside its validation curve
            for kind, rows_of_kind in (("validation", line[line["split"] == VALIDATION]),
                                       ("test", line[line["split"] != VALIDATION])):
                per_seed = rows_of_kind.groupby(["scaling", "seed"])["value"].mean() * 100
                curves[f"{chosen['label'].iloc[0]}, {kind}"] = per_seed.groupby("scaling").mean()
        if not curves:
            continue
        title = (f"suite {suite} ({family}): average by λ\nvalidation (dashed) chooses λ (star); test is drawn, "
                 "never used to choose")
        figure = scaling_sweep(pd.DataFrame(curves).T, title, out / f"scaling-{slug(suite, family)}.png")
        section.figures.append((f"λ sweep on validation and test, suite {suite} ({family})", figure))
    return section if section.figures else None


def adaptation_section(frame: pd.DataFrame, out: Path) -> Section | None:
    """Accuracy along test-time adaptation, for the 8-task units run with `--eval-every`, per zoo."""
    stepped = tables.eight_task_rows(frame[frame["step"].notna()])
    stepped = stepped[stepped.groupby(tables.UNIT)["step"].transform("nunique") > 1]
    if stepped.empty:
        return None
    section, markdown = Section("Accuracy along test-time adaptation"), ["# Accuracy along test-time adaptation\n"]
    for suite, family, group in zoos(stepped):
        table = tables.adaptation_table(group)
        title = f"suite {suite} ({family}): multi-task average accuracy (%) by adaptation step"
        figure = adaptation_curves(table, f"suite {suite} ({family})", out / f"adaptation-{slug(suite, family)}.png")
        body = [[label] + [f"{v:.1f}" if pd.notna(v) else "" for v in row] for label, row in table.iterrows()]
        markdown.append(f"## Suite `{suite}` ({family})\n\n![{title}]({figure.name})\n\n"
                        + tabulate(body, headers=["Method"] + [str(int(s)) for s in table.columns], tablefmt="github",
                                   disable_numparse=True) + "\n")
        section.figures.append((f"Adaptation curves, suite {suite} ({family})", figure))
    (out / "adaptation.md").write_text("\n".join(markdown))
    section.files = [out / "adaptation.md"]
    return section


def perf_section(results: Path, out: Path) -> Section | None:
    """The latest `bench perf` figures (RESULTS/perf.parquet), grouped by the machine that measured them."""
    figures = load_perf(results)
    if figures.empty:
        return None
    markdown = ["# Performance\n", (f"Figures of `python -m bench perf` (stored in `{results.name}/{PERF_FILE}`); see "
                                     "`bench/perf.py` for what each measures and why its goal.\n")]
    for machine, group in figures.groupby("machine", sort=False):  # each figure dated: a run may replace only some
        body = [[r.figure, f"{r.value:.2f}", r.goal, r.verdict, r.measured_at] for r in group.itertuples()]
        markdown.append(f"## {machine}\n\n" + tabulate(body, headers=["Figure", "Value", "Goal", "", "Measured"],
                                                         tablefmt="github", disable_numparse=True) + "\n")
    (out / "perf.md").write_text("\n".join(markdown))
    return Section("Performance", [out / "perf.md"])


def table_names(accuracy: pd.DataFrame) -> pd.Series:
    """The table each final accuracy row is shown in: its section's file and zoo, and for generalization (one
    table per split of the tasks) and the task-count scenarios (one per number of tasks) its scenario."""
    family = accuracy["scenario"].map(scenario_family)
    name = family + ".md, suite " + accuracy["suite"] + " (" + accuracy["family"] + ")"
    own_table = (family == "generalization") | ((family == MULTITASK) & (accuracy["scenario"] != MULTITASK))
    return name.where(~own_table, name + ", " + accuracy["scenario"])


def code_versions(accuracy: pd.DataFrame) -> tuple[str, list[str]]:
    """A line naming the code versions (package+commit, `+dirty` for uncommitted changes) the units come from,
    and a note for each table whose units come from more than one: its numbers may differ by code, not only by
    method."""
    units = accuracy.assign(table=table_names(accuracy)).drop_duplicates(tables.UNIT)
    counts = units["code_version"].value_counts().sort_index()
    named = ", ".join(f"`{version}` ({count} unit{'s' * (count != 1)})" for version, count in counts.items())
    notes = [f"{table} mixes code versions {', '.join(f'`{v}`' for v in sorted(group['code_version'].unique()))}"
             for table, group in units.groupby("table", sort=False) if group["code_version"].nunique() > 1]
    return f"Code versions of the results: {named or 'none'}.", notes


def grid_cost_section(frame: pd.DataFrame, results: Path, out: Path) -> Section | None:
    """What the full CLIP grid costs (`bench.grid_costs`), where the results hold the figures it prices."""
    figures = results / GRID_FIGURES
    if not (figures / GRID_PASSES).is_file():
        return None
    from bench.grid_costs import REPORT, grid_cost_report  # plans the CLIP grid (torch, open_clip): only here

    (out / REPORT.name).write_text(grid_cost_report(figures, results, frame))
    return Section("What the full CLIP grid costs (estimates)", [out / REPORT.name])


def write_index(sections: list[Section], out: Path, versions: str = "", notes: list[str] | None = None) -> Path:
    lines = [f"{INDEX_TITLE}\n", "Built from the parquet results alone by `python -m bench report`.\n"]
    if versions:
        lines.append(f"{versions}\n")
    if notes:
        lines.append("**Note:** tables mixing code versions (a rerun from one commit makes them comparable):\n\n"
                     + "\n".join(f"- {note}" for note in notes) + "\n")
    for section in sections:
        links = " · ".join(f"[{path.name}]({path.name})" for path in section.files)
        lines.append(f"## {section.title}\n" + (f"\n{links}\n" if links else ""))
        lines += [f"![{caption}]({path.name})\n" for caption, path in section.figures]
    (out / "index.md").write_text("\n".join(lines))
    return out / "index.md"


def check_report_folder(out: Path, option: str = "report folder") -> None:
    """A report replaces its folder whole (so no file of an earlier report outlives its section), so the folder
    must be absent, empty or an earlier report: anything else is refused before any work."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"{option} {out}: a file, not a folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    foreign = [entry for entry in entries if not entry.is_file() or entry.suffix not in REPORT_SUFFIXES]
    index = out / "index.md"
    is_report = index.is_file() and index.read_text(errors="replace").startswith(INDEX_TITLE)
    if entries and (foreign or not is_report):
        culprit = (foreign or entries)[0].name
        raise BenchError(f"{option} {out}: not a mergebench report folder (it holds {culprit}) and a report replaces "
                         "its folder whole; choose an empty or new folder")


def build_reports(results: Path, out: Path) -> list[Path]:
    """Rebuild the whole report as the folder `out` from the parquet files under `results`; returns the files
    written, `index.md` first."""
    check_report_folder(out)
    frame = ResultStore(results).load()
    if frame.empty and load_perf(results).empty:
        raise BenchError(f"{results}: no results (*.parquet) to report; run `python -m bench run --all` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = publish_folder(out, partial(write_report, frame, results), replace=True)
    return [out / name for name in names]


def write_report(frame: pd.DataFrame, results: Path, folder: Path) -> list[str]:
    """Every section of `frame` and the index into the new folder `folder`; returns the file names, index first."""
    folder.mkdir()
    accuracy = tables.final_rows(frame[(frame["metric"] == "accuracy") & (frame["selection"] != GRID)])
    family = accuracy["scenario"].map(scenario_family)
    sections = [s for s in (multitask_section(accuracy[family == MULTITASK], folder),
                            generalization_section(accuracy[family == "generalization"], folder),
                            robustness_section(accuracy[family == "robustness"], folder),
                            scaling_section(frame, folder),
                            adaptation_section(frame, folder),
                            perf_section(results, folder),
                            grid_cost_section(frame, results, folder)) if s is not None]
    versions, notes = code_versions(accuracy)
    for note in notes:
        log.warning("report: %s", note)
    index = write_index(sections, folder, versions, notes)
    return [path.name for path in [index] + [path for s in sections for path in s.files + [f for _, f in s.figures]]]
