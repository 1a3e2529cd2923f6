"""The command line end to end on the tiny zoo: run, resume, report, plugins, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.results import ResultStore, load_perf, store_perf
from bench.runner import MethodSpec, StageTimes, run
from bench.zoo.recipe import ZooRecipe
from tasks.scenarios import multitask
from tasks.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
STATIC = ["pretrained", "individual", "weight_averaging", "task_arithmetic", "ties_merging"]


@pytest.fixture(scope="module")
def finished_run(tiny_zoo, tmp_path_factory):
    """One uninterrupted run of the static methods plus the README's plugin example, in every scenario."""
    root = tmp_path_factory.mktemp("run")
    methods = [arg for name in STATIC + ["median"] for arg in ("--method", name)]
    assert main(["run", *methods, "--plugin", str(ROOT / "examples" / "median_merging.py"), "--zoo", str(tiny_zoo),
                 "--results", str(root / "results"), "--reports", str(root / "reports")]) == 0
    return root


def test_run_writes_one_row_per_method_task_and_split_in_each_scenario(finished_run):
    rows = ResultStore(finished_run / "results").load()
    per_scenario = rows.groupby(rows["scenario"].str.split("/").str[0]).size().to_dict()
    # 6 methods; multitask-8: 8 tasks; robustness: 4 tasks x 8 splits; generalization: 2 splits x 8 tasks,
    # except that the individual experts have no model for the 2 unseen tasks of each
    assert per_scenario == {"multitask-8": 6 * 8, "robustness": 6 * 4 * 8, "generalization": 6 * 2 * 8 - 2 * 2}
    assert set(rows["method"]) == set(STATIC) | {"median"}
    assert rows["value"].between(0, 1).all()
    assert {"merge_s", "eval_s", "peak_rss_mb", "code_version", "params", "family", "merged"} <= set(rows.columns)
    unseen = rows[~rows["merged"].astype(bool)]
    assert set(unseen["scenario"].str.split("/").str[0]) == {"generalization"} and len(unseen) == 5 * 2 * 2
    half = ZooRecipe().tiny().data.test_per_task // 2  # the mini suite tests robustness on half: docs/mini-suite.md
    assert set(rows.loc[rows["scenario"] == "robustness/motion_blur", "split"]) == {f"test[:{half}]/motion_blur@2"}


def test_a_static_merge_is_shared_by_the_scenarios_that_merge_the_same_experts(finished_run):
    rows = ResultStore(finished_run / "results").load()
    robust = rows[rows["scenario"].str.startswith("robustness/") & (rows["method"] != "individual")]
    by_method = robust.groupby("method")
    assert (by_method["merge_s"].nunique() == 1).all()  # each merged once, timed once, evaluated on eight splits
    # each split tested on its own (a tiny zoo's merge may guess one class on every split: not all can)
    assert (by_method[["scenario", "value"]].apply(lambda r: r.groupby("scenario")["value"].apply(tuple).nunique())
            > 1).any()


def test_every_row_records_the_storage_and_inference_cost_of_the_model_it_tested(finished_run):
    rows = ResultStore(finished_run / "results").load()
    merged_tasks = rows[rows["merged"].astype(bool)].groupby("scenario")["task"].nunique()
    individual = rows["method"] == "individual"
    assert (rows.loc[individual, "stored_models"] == rows.loc[individual, "scenario"].map(merged_tasks)).all()
    assert (rows.loc[~individual, "stored_models"] == 1.0).all()  # static merges, the plugin's among them
    assert (rows["inference_cost"] > 0).all() and rows["inference_cost"].notna().all()
    robust = rows[rows["scenario"].str.startswith("robustness/")]
    assert (robust.groupby("method")["inference_cost"].nunique() == 1).all()  # a shared merge is timed once


def test_the_report_has_every_scenario_s_tables_and_figures(finished_run):
    reports = finished_run / "reports"
    index = (reports / "index.md").read_text()
    for name in ("multitask.md", "generalization.md", "robustness.md", "robustness.tex", "generalization.tex"):
        assert f"]({name})" in index and (reports / name).is_file()
    figures = [line.split("](")[1].rstrip(")") for line in index.splitlines() if line.startswith("![")]
    assert any(f.startswith("robustness-") for f in figures)
    assert any(f.startswith("multitask-average-") for f in figures)
    assert all((reports / f).stat().st_size > 0 for f in figures)
    robustness = (reports / "robustness.md").read_text()
    header = "| Clean | Motion | Impulse | Gaussian | Pixelate | Spatter | Contrast | JPEG |"
    assert "| Method " in robustness and header in (
        robustness.replace("  ", " ").replace("  ", " ").replace("  ", " ").replace("  ", " "))
    generalization = (reports / "generalization.md").read_text()
    assert "digits (MNIST)" in generalization and "Unseen avg." in generalization
    individual = generalization.split("| Individual ")[1].splitlines()[0]
    assert individual.count("–") == 3  # no expert for the two unseen tasks, hence no unseen average


def test_the_plugin_method_appears_as_a_row_of_the_table(finished_run):
    table = (finished_run / "reports" / "multitask.md").read_text()
    for title in ["Pretrained", "Individual", "Weight Averaging", "Task Arithmetic", "TIES-Merging", "median"]:
        assert f"| {title} " in table
    assert "| Storage (models) " in table and "| Inference (× pretrained) " in table
    assert table.split("| Individual ")[1].splitlines()[0].split("|")[-3].strip() == "8.00"  # 8 experts
    assert r"\toprule" in (finished_run / "reports" / "multitask.tex").read_text()


def test_an_interrupted_run_resumes_to_the_same_results(finished_run, tiny_zoo, tmp_path, capsys):
    complete = ResultStore(finished_run / "results").load()
    partial = tmp_path / "results"
    for path in sorted((finished_run / "results").rglob("*.parquet"))[:2]:  # two units finished before the kill
        target = partial / path.relative_to(finished_run / "results")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (partial / "mini" / "multitask-8").mkdir(parents=True, exist_ok=True)
    (partial / "mini" / "multitask-8" / "junk.parquet.tmp").write_bytes(b"half-written")
    methods = [arg for name in STATIC + ["median"] for arg in ("--method", name)]
    assert main(["run", *methods, "--plugin", str(ROOT / "examples" / "median_merging.py"), "--zoo", str(tiny_zoo),
                 "--results", str(partial), "--reports", str(tmp_path / "reports")]) == 0
    resumed = ResultStore(partial).load()
    columns = ["method", "task", "split", "value", "params", "seed"]
    pd.testing.assert_frame_equal(resumed[columns].sort_values(columns).reset_index(drop=True),
                                  complete[columns].sort_values(columns).reset_index(drop=True))
    assert resumed["run_id"].nunique() == 2  # the two kept units were not run again


def test_report_rebuilds_from_parquet_alone(finished_run, tmp_path):
    assert main(["report", "--results", str(finished_run / "results"), "--out", str(tmp_path)]) == 0
    built = sorted(p.name for p in (finished_run / "reports").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == built
    for name in built:  # tables and figures, byte for byte
        assert (tmp_path / name).read_bytes() == (finished_run / "reports" / name).read_bytes(), name


def test_unknown_method_exits_2_with_the_valid_names(tiny_zoo, tmp_path, capsys):
    assert main(["run", "--method", "nope", "--zoo", str(tiny_zoo), "--results", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: unknown method 'nope'; valid: ") and "ties_merging" in error
    assert "\n" not in error


def test_evaluation_in_bf16_records_its_precision_and_moves_accuracy_little(tiny_zoo, tmp_path):
    runs = {}
    for precision, batch_size in (("fp32", "1000"), ("bf16", "7")):
        assert main(["run", "--method", "task_arithmetic", "--scenario", "multitask", "--precision", precision,
                     "--reports", str(tmp_path / f"reports-{precision}"),
                     "--batch-size", batch_size, "--zoo", str(tiny_zoo), "--results", str(tmp_path / precision)]) == 0
        runs[precision] = ResultStore(tmp_path / precision).load().set_index("task")
    assert set(runs["fp32"]["precision"]) == {"fp32"} and set(runs["bf16"]["precision"]) == {"bf16"}
    difference = (runs["bf16"]["value"] - runs["fp32"]["value"]).abs()
    assert difference.max() <= 0.05 and difference.mean() <= 0.02


@pytest.mark.parametrize("option, value, message", [("--batch-size", "0", "--batch-size 0: expected a positive number"),
                                                    ("--workers", "-1", "--workers -1: expected 0"),
                                                    ("--jobs", "0", "--jobs 0: expected 1 or more"),
                                                    ("--data-memory", "lots", "--data-memory 'lots': expected a size"),
                                                    ("--data-memory", "1MB", ("--data-memory 976.6 KiB: batches of 128 "
                                                     "images (1 in flight with --workers 0) need 3.0 MiB"))])
def test_bad_evaluation_settings_exit_2_naming_the_option(tiny_zoo, tmp_path, capsys, option, value, message):
    assert main(["run", "--method", "pretrained", option, value, "--zoo", str(tiny_zoo),
                 "--results", str(tmp_path)]) == 2
    assert f"error: {message}" in capsys.readouterr().err and not tmp_path.joinpath("mini").exists()


def test_unknown_suite_and_bad_param_exit_2(tiny_zoo, tmp_path, capsys):
    assert main(["run", "--all", "--suite", "imagenet", "--results", str(tmp_path)]) == 2
    clip = [f"clip-vit-{backbone}{kind}{count}" for backbone in ("b-16", "b-32", "l-14")
            for kind in ("", "-task-vectors") for count in ("", "-tall14", "-tall20")]
    assert f"unknown suite 'imagenet'; valid: {', '.join(clip)}, mini" in capsys.readouterr().err
    assert main(["run", "--method", "task_arithmetic", "--param", "task_arithmetic.lam=1", "--zoo", str(tiny_zoo),
                 "--results", str(tmp_path)]) == 2
    assert "task_arithmetic: unknown parameter 'lam'; valid: scaling" in capsys.readouterr().err


def test_a_param_override_becomes_its_own_row(tiny_zoo, tmp_path):
    assert main(["run", "--method", "task_arithmetic", "--param", "task_arithmetic.scaling=0.5", "--zoo", str(tiny_zoo),
                 "--scenario", "multitask", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]) == 0
    assert "| Task Arithmetic (scaling=0.5) " in (tmp_path / "p" / "multitask.md").read_text()


def test_list_commands(capsys, tiny_zoo):
    assert main(["list", "methods"]) == 0
    assert "ties_merging" in capsys.readouterr().out
    assert main(["list", "tasks", "--zoo", str(tiny_zoo)]) == 0
    assert "signs           (GTSRB) 12 classes: stop, yield" in capsys.readouterr().out
    assert main(["zoo", "verify", "--zoo", str(tiny_zoo)]) == 0


def test_report_shows_the_spread_over_zoos_of_one_recipe(finished_run, tiny_zoo, tmp_path):
    from dataclasses import replace

    from bench.zoo.build import build_zoo
    from bench.zoo.recipe import ZooRecipe

    other = tmp_path / "zoo-seed1"
    build_zoo(replace(ZooRecipe().tiny(), seed=1), other)
    results = tmp_path / "results"
    for path in (finished_run / "results").rglob("*.parquet"):
        target = results / path.relative_to(finished_run / "results")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert main(["run", "--method", "pretrained", "--method", "task_arithmetic", "--zoo", str(other),
                 "--scenario", "multitask", "--results", str(results), "--reports", str(tmp_path / "reports")]) == 0
    report = (tmp_path / "reports" / "multitask.md").read_text()
    assert "spread over zoos" in report
    spread = report.split("spread over zoos")[1]
    assert "| Task Arithmetic " in spread and "| 2 " in spread.split("| Task Arithmetic ")[1].splitlines()[0] + " "


def test_eval_every_stores_each_step_and_the_table_shows_the_last(tiny_zoo, tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", "--method", "adamerging_taskwise", "--method", "wemoe",
                 "--param", "adamerging_taskwise.steps=4", "--param", "wemoe.steps=4", "--eval-every", "2",
                 "--zoo", str(tiny_zoo), "--results", str(results),
                 "--scenario", "multitask", "--reports", str(reports)]) == 0
    rows = ResultStore(results).load()
    assert sorted(rows.groupby("method")["step"].unique().map(sorted).iloc[0]) == [0, 2, 4]
    assert (rows.groupby(["method", "step"])["merge_s"].nunique() == 1).all()
    final = rows[rows["step"] == 4].groupby("method")["value"].mean() * 100
    table = (reports / "multitask.md").read_text()
    row = table.split("| Task-wise AdaMerging (mini, steps=4) ")[1].splitlines()[0]
    assert row.split("|")[-4].strip() == f"{final['adamerging_taskwise']:.1f}"  # the Avg. column
    figures = sorted(reports.glob("adaptation-mini-*.png"))
    assert len(figures) == 1 and figures[0].stat().st_size > 0
    assert "| WEMoE (mini, steps=4) " in (reports / "adaptation.md").read_text()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "again")]) == 0
    for name in ("multitask.md", "adaptation.md", figures[0].name):
        assert (tmp_path / "again" / name).read_bytes() == (reports / name).read_bytes()


def test_a_non_positive_eval_every_is_refused(tiny_zoo, tmp_path, capsys):
    assert main(["run", "--method", "wemoe", "--eval-every", "0", "--zoo", str(tiny_zoo),
                 "--results", str(tmp_path)]) == 2
    assert "--eval-every 0: expected a positive number of steps" in capsys.readouterr().err


def test_perf_prints_each_figure_with_its_goal_and_stores_them_for_the_report(tiny_zoo, tmp_path, capsys):
    results, reports = tmp_path / "results", tmp_path / "reports"
    for _ in range(2):  # the second run replaces the first one's figures
        assert main(["perf", "--zoo", str(tiny_zoo), "--static", "none", "--results", str(results),
                     "--reports", str(reports)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " goal " in line]
    assert [line.split()[0] for line in lines[:4]] == ["AdaMerging", "WEMoE", "WEMoE", "Evaluation:"]
    assert all(float(line.split("goal")[0].split()[-1]) > 0 for line in lines)
    stored = load_perf(results)
    assert len(stored) == len(set(stored["figure"])) == 6 and set(stored["verdict"]) <= {"met", "NOT MET", ""}
    perf_md = (reports / "perf.md").read_text()
    assert all(figure in perf_md for figure in stored["figure"]) and "(perf.md)" in (reports / "index.md").read_text()
    # Another machine's figures of the same names stay beside this machine's.
    store_perf(results, stored.assign(machine="another CPU", value=1.0))
    assert main(["perf", "--zoo", str(tiny_zoo), "--static", "none", "--results", str(results),
                 "--reports", str(reports)]) == 0
    stored = load_perf(results)
    assert len(stored) == 12 and (stored.loc[stored["machine"] == "another CPU", "value"] == 1.0).all()
    assert "## another CPU" in (reports / "perf.md").read_text()


def test_jobs_run_the_same_units_in_worker_processes_and_keep_the_static_merge_shared(tiny_zoo, tmp_path):
    """--jobs 2: every unit once, each static merge made once for the eight robustness splits, values as in one
    process (up to the order of float sums with other thread counts)."""
    methods = ["--method", "task_arithmetic", "--method", "adamerging_layerwise",
               "--param", "adamerging_layerwise.steps=2"]
    for jobs in ("1", "2"):
        assert main(["run", *methods, "--scenario", "multitask", "--scenario", "robustness", "--jobs", jobs,
                     "--zoo", str(tiny_zoo), "--results", str(tmp_path / jobs),
                     "--reports", str(tmp_path / "reports")]) == 0
    serial, parallel = (ResultStore(tmp_path / jobs).load().set_index(["scenario", "method", "task", "split"])
                        .sort_index() for jobs in ("1", "2"))
    assert len(parallel) == len(serial) == 2 * (8 + 8 * 4) and parallel.index.equals(serial.index)
    assert (parallel["value"] - serial["value"]).abs().max() <= 0.01
    robust = parallel.loc["robustness/clean":"robustness/spatter"].xs("task_arithmetic", level="method")
    assert robust["merge_s"].nunique() == 1  # merged once
    assert parallel["run_id"].nunique() == 1  # one invocation, whichever process wrote the rows


def test_stage_times_tell_merging_from_adaptation_by_what_the_merge_read(tiny_zoo, tmp_path):
    suite = load_suite("mini", zoo=tiny_zoo)
    scenarios = multitask(suite)
    static, adaptive = StageTimes(), StageTimes()
    run(suite, scenarios, [MethodSpec("task_arithmetic")], [0], ResultStore(tmp_path / "a"), times=static)
    run(suite, scenarios, [MethodSpec("adamerging_taskwise", overrides={"steps": "2"})], [0],
        ResultStore(tmp_path / "b"), times=adaptive)
    assert static.seconds["merge"] > 0 and static.seconds["adaptation"] == 0
    assert adaptive.seconds["adaptation"] > 0 and adaptive.seconds["merge"] == 0
    assert static.seconds["data"] > 10 * adaptive.seconds["data"]  # the splits are decoded once per suite
    assert static.seconds["evaluation"] > 0 and adaptive.seconds["evaluation"] > 0


def test_static_merge_benchmark_measures_every_merge_against_its_goal():
    from helpers import TINY_ENCODER

    from bench.perf import static_merge_figures

    figures = static_merge_figures(TINY_ENCODER, experts=2, processes=1)
    titles = [f.name.split(",")[0] for f in figures]
    assert titles == ["Weight Averaging"] * 3 + ["Task Arithmetic"] * 3 + ["Fisher Merging given Fishers"] * 3 + [
        "TIES-Merging"] * 2 + ["TIES-Merging (global top-20% trim)"] + ["TIES-Merging"] * 2
    assert [f.met is None for f in figures] == [False] * 6 + [True, True, False] + [True, True, False, False, False]
    assert all(f.value == f.value and f.value >= 0 for f in figures)  # measured, not NaN


def test_adaptation_memory_benchmark_measures_each_adaptive_method_against_12_gib():
    from helpers import TINY_ENCODER

    from bench.perf import adaptation_memory_figures

    figures = adaptation_memory_figures(TINY_ENCODER, experts=2)
    assert [f.name.split(",")[0] for f in figures] == ["Layer-wise AdaMerging", "WEMoE"]
    assert ["32 inputs per task" in f.name for f in figures] == [True, False]
    assert all(f.met and 0 < f.value < 12 for f in figures)
