"""The task-count tables and figure, from stored rows alone: absolute and normalized averages per number of tasks,
and average accuracy against the number of tasks beside the published numbers."""

from __future__ import annotations

import pandas as pd
import pytest
from test_reports import rows

import bench.reports
from bench import tables
from bench.reports import build_reports
from bench.results import ResultStore

TWENTY = [f"T{index}" for index in range(20)]  # counterparts of a 20-task zoo: the first 8 and 14 are those groups


def cells(markdown: str, heading: str, label: str) -> list[str]:
    block = markdown.split(f"## {heading}\n")[1].split("\n## ")[0]
    line = next(line for line in block.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.split("|")[2:-1]]


def test_normalized_accuracy_averages_per_task_ratios_to_the_individual_expert_on_the_same_split():
    individual = rows("mini", "individual", "Individual", {"A": 0.8, "B": 0.5})
    merged = rows("mini", "task_arithmetic", "Task Arithmetic", {"A": 0.6, "B": 0.45})
    frame = pd.DataFrame(merged + individual)
    normalized = tables.normalized_averages(frame, frame[frame["method"] == "individual"])
    # (0.6 / 0.8 + 0.45 / 0.5) / 2 = (0.75 + 0.9) / 2 = 0.825; the mean ratio, not the ratio of means (0.8)
    assert normalized[("task_arithmetic", "Task Arithmetic", 0)] == pytest.approx(82.5)
    assert normalized[("individual", "Individual", 0)] == pytest.approx(100.0)
    other_split = frame[frame["method"] == "individual"].assign(split="validation")
    assert tables.normalized_averages(frame, other_split).isna().all()  # no reference on the tested split


def write_task_counts(store: ResultStore, suite: str = "mini", counts: tuple[int, ...] = (8, 14, 20)) -> None:
    """Individual experts at 0.9 on every task; task arithmetic at 0.72 on the first 8 tasks and falling by 0.1 with
    each further group of tasks: 0.72 at 8 tasks, (8 * 0.72 + 6 * 0.62) / 14 at 14, ... ."""
    for count in counts:
        accuracies = {task: 0.72 - 0.1 * (index >= 8) - 0.1 * (index >= 14) for index, task in
                      enumerate(TWENTY[:count])}
        store.write(f"ta{count}", rows(suite, "task_arithmetic", "Task Arithmetic", accuracies,
                                       scenario=f"multitask-{count}"))
        store.write(f"ind{count}", rows(suite, "individual", "Individual", dict.fromkeys(TWENTY[:count], 0.9),
                                        scenario=f"multitask-{count}"))


def test_each_task_count_has_its_table_with_absolute_and_normalized_averages(tmp_path):
    write_task_counts(ResultStore(tmp_path / "results"))
    build_reports(tmp_path / "results", tmp_path / "reports")
    markdown = (tmp_path / "reports" / "multitask.md").read_text()
    headings = [line for line in markdown.splitlines() if line.startswith("## Suite")]
    assert headings == [f"## Suite `mini` (f): multitask-{count}" for count in (8, 14, 20)]
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert [cell.strip() for cell in header.split("|")[-6:-1]] == ["t7 (T7)", "Avg.", "Norm. avg.", "Storage (models)",
                                                                   "Inference (× pretrained)"]
    fourteen = (8 * 0.72 + 6 * 0.62) / 14
    assert cells(markdown, "Suite `mini` (f): multitask-14", "Task Arithmetic")[-4:-2] == [
        f"{fourteen * 100:.1f}", f"{fourteen / 0.9 * 100:.1f}"]
    assert cells(markdown, "Suite `mini` (f): multitask-8", "Individual")[-4:-2] == ["90.0", "100.0"]
    assert "Norm. avg.: per task, the accuracy over the individual expert's" in markdown


def test_the_figure_draws_each_method_by_number_of_tasks_beside_the_published_averages(tmp_path, monkeypatch):
    published = pd.DataFrame([  # the 8-task rows named either way, the others on the suite's task-count variants
        ("clip-vit-b-32-task-vectors", "task-vectors", "multitask", "Task Arithmetic", "Avg.", 69.1),
        ("clip-vit-b-32-task-vectors-tall14", "task-vectors", "multitask-14", "Task Arithmetic", "Avg.", 65.3),
        ("clip-vit-b-32-task-vectors-tall20", "task-vectors", "multitask-20", "Task Arithmetic", "Avg.", 60.5),
        ("clip-vit-b-32-task-vectors-tall20", "task-vectors", "multitask-20", "Task Arithmetic", "SUN397", 1.0),
        ("clip-vit-b-32", "fusionbench", "multitask-8", "Task Arithmetic", "Avg.", 68.0),
    ], columns=["suite", "family", "scenario", "label", "column", "value"]).assign(source="s")
    monkeypatch.setattr(bench.reports, "published_numbers", lambda: published)
    drawn = []

    def recording(measured, published, title, path):
        drawn.append((measured, published, title))
        return real(measured, published, title, path)

    real = bench.reports.task_count_lines
    monkeypatch.setattr(bench.reports, "task_count_lines", recording)
    write_task_counts(ResultStore(tmp_path / "results"))
    build_reports(tmp_path / "results", tmp_path / "reports")
    [(measured, beside, title)] = drawn
    assert list(measured.columns) == [8, 14, 20] and list(measured.index) == ["Individual", "Task Arithmetic"]
    assert measured.loc["Task Arithmetic"].round(2).tolist() == [72.0, round((8 * 72 + 6 * 62) / 14, 2),
                                                                 round((8 * 72 + 6 * 62 + 6 * 52) / 20, 2)]
    # the mini suite has no published numbers: those of ViT-B/32 with the TALL-masks checkpoints stand beside it
    assert beside.loc["Task Arithmetic"].tolist() == [69.1, 65.3, 60.5] and list(beside.index) == ["Task Arithmetic"]
    assert "clip-vit-b-32-task-vectors (task-vectors checkpoints)" in title
    figure = tmp_path / "reports" / "task-count-mini-f.png"
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert f"]({figure.name})" in (tmp_path / "reports" / "index.md").read_text()


def test_results_of_8_tasks_only_give_no_figure_but_a_note(tmp_path):
    write_task_counts(ResultStore(tmp_path / "results"), counts=(8,))
    build_reports(tmp_path / "results", tmp_path / "reports")
    assert not list((tmp_path / "reports").glob("task-count-*.png"))
    assert ("No figure of accuracy by number of tasks for suite `mini` (f): its results hold 8 tasks only"
            in (tmp_path / "reports" / "multitask.md").read_text())


def test_stored_multitask_rows_of_an_older_run_are_reported_and_multitask_8_rows_preferred_as_the_8_task_table():
    old = pd.DataFrame(rows("mini", "task_arithmetic", "Task Arithmetic", {"A": 0.5}, family="old")
                       + rows("mini", "task_arithmetic", "Task Arithmetic", {"A": 0.5}, family="new"))
    new = pd.DataFrame(rows("mini", "task_arithmetic", "Task Arithmetic", {"A": 0.7}, family="new",
                            scenario="multitask-8"))
    chosen = tables.eight_task_rows(pd.concat([old, new]))
    assert sorted(zip(chosen["family"], chosen["scenario"], chosen["value"])) == [
        ("new", "multitask-8", 0.7), ("old", "multitask", 0.5)]


def test_a_validation_row_is_one_line_across_task_counts_whatever_settings_each_count_chose():
    from bench.tables import line_label

    assert line_label("TSV-M (validation: scaling=0.9)") == line_label("TSV-M (validation: scaling=0.8)")
    assert line_label("TIES-Merging (validation: scaling=0.2, keep=0.3)") == "TIES-Merging (validation)"
    assert line_label("Layer-wise AdaMerging (mini)") == "Layer-wise AdaMerging (mini)"


def test_the_figure_draws_a_method_once_by_its_validation_selected_row_where_it_has_one(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(bench.reports, "task_count_lines", lambda measured, published, title, path: drawn.append(
        (measured, published)) or path)
    store = ResultStore(tmp_path / "results")
    write_task_counts(store)
    for count in (8, 14, 20):
        chosen = rows("mini", "task_arithmetic", "Task Arithmetic (validation: scaling=0.4)",
                      dict.fromkeys(TWENTY[:count], 0.75), scenario=f"multitask-{count}")
        store.write(f"ta-validation{count}", [row | {"selection": "validation"} for row in chosen])
    build_reports(tmp_path / "results", tmp_path / "reports")
    [(measured, published)] = drawn
    assert list(measured.index) == ["Individual", "Task Arithmetic (validation)"]
    assert measured.loc["Task Arithmetic (validation)"].tolist() == [75.0, 75.0, 75.0]
    assert "Task Arithmetic (validation)" in published.index  # the method's published points, beside its line
    assert "Task Arithmetic" not in published.index
