"""`python -m bench`: run methods, rebuild reports, list the registries, build or inspect the mini zoo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from core.errors import BenchError, Interrupted
from tasks.shipped_zoo import SHIPPED_NAME

log = logging.getLogger("bench")

EPILOG = """examples:
  python -m bench run --all                              every method and scenario on the mini suite, at the
                                                         methods' own settings and at settings chosen on validation
  python -m bench run --all --scenario multitask         only the multi-task tables (8, 14, 20 tasks: those the
                                                         zoo covers)
  python -m bench run --all --scenario multitask-8       only the 8-task table
  python -m bench run --method ties_merging --param ties_merging.scaling=0.5
  python -m bench run --method task_arithmetic --select validation   λ chosen on validation data, tested once
  python -m bench run --method fisher_merging:fusionbench   a method with a named preset
  python -m bench run --method adamerging_layerwise:default --eval-every 50
                                                         the paper's 500 steps, accuracy every 50
  python -m bench run --plugin examples/median_merging.py --method median
  python -m bench run --all --dry-run                    what a run would do and take, from stored units' costs
  python -m bench run --all --suite clip-vit-b-32 --scenario multitask   real CLIP experts and datasets (hub cache)
  python -m bench report                                 tables from results/*.parquet alone
  python -m bench list methods
  python -m bench list tasks                             the task registry: stand-ins, groups, hub sources
  python -m bench perf                                   speed figures with their goals -> reports/perf.md
  python -m bench zoo info
  python -m bench zoo build --out zoos/long --pretrained-from zoo/mini-v2 --finetune steps=2000
                                                         the shipped zoo's experts re-fine-tuned 4x longer
"""


DEFAULT_RESULTS, DEFAULT_REPORTS = Path("results"), Path("reports")
README = Path("README.md")  # beside the default results: its headline table is rewritten from them
REPORTS_HELP = ("the report's folder, replaced whole at each rebuild (default: reports for the default results folder, "
                "else RESULTS/reports, so that a run into other results never overwrites the shipped report)")


def reports_folder(given: Path | None, results: Path) -> Path:
    """Where the report of `results` goes when no folder is given: beside the default results, inside any other."""
    if given is not None:
        return given
    return DEFAULT_REPORTS if results == DEFAULT_RESULTS else results / DEFAULT_REPORTS.name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="mergebench: compare model-merging methods "
                                     "on one set of experts, the way the model-merging papers do.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="merge and evaluate; results go to parquet, then the report is rebuilt",
                              description="Merge the suite's experts with each method, evaluate on every task, append "
                              "rows to RESULTS/*.parquet and rebuild the report. Work already stored is skipped, so an "
                              "interrupted run resumes where it stopped.")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every registered method, each with the settings --method "
                       "would give it; with --select both (its default), also each method that declares a grid at its "
                       "settings chosen on validation data")
    which.add_argument("--method", action="append", metavar="NAME[:PRESET]",
                       help="a method to run (repeatable); `bench list methods` shows names and presets. Without "
                       "PRESET, the preset the suite declares for the method is used (the mini suite: `mini`, fewer "
                       "adaptation steps, for AdaMerging and WEMoE; the CLIP suites: `sampled` for Fisher merging), "
                       "else its defaults; NAME:default forces the defaults")
    run.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="override a hyper-parameter, e.g. task_arithmetic.scaling=0.5 (repeatable)")
    run.add_argument("--select", choices=["fixed", "validation", "both"], help="how the settings a method declares a "
                     "grid for are chosen (e.g. task arithmetic's λ): fixed (the method's own, e.g. λ=0.3), validation "
                     "(each grid point merged and scored by mean validation accuracy over the merged tasks, the best "
                     "tested) or both, as separate rows (default: both with --all, else fixed)")
    run.add_argument("--sweep", metavar="METHOD[,METHOD...]|none", help="methods whose validation search is also "
                     "tested on the 8-task test sets (multitask-8) along the grid lines through the chosen point, for "
                     "the λ-sweep figure (drawn, never used to choose; each point costs a test evaluation). Default: "
                     "task_arithmetic,ties_merging where they run, the sweeps their papers plot")
    run.add_argument("--suite", default="mini", help="the suite of tasks and experts (default: mini)")
    run.add_argument("--scenario", action="append", metavar="NAME", help="scenario family to run, or one of its "
                     "scenarios such as multitask-8 (repeatable; default: all of them, see `bench list scenarios`)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    run.add_argument("--zoo", type=Path, help=f"mini suite: its zoo folder (default: the shipped zoo/{SHIPPED_NAME}; "
                     "zoo/mini-v1 is the 8-task zoo); CLIP suites: a local folder with one folder per hub repository, "
                     "instead of the hub (default: the hub through its cache)")
    run.add_argument("--device", default="cpu",
                     help="torch device for merging and evaluation, e.g. cuda (default: cpu)")
    run.add_argument("--batch-size", type=int, help="inputs per forward pass in evaluation; lower it for large "
                     "models on small GPUs (default: 128 on the CPU, where small batches stay in the cache and run "
                     "faster, 1000 on an accelerator; results do not depend on it)")
    run.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast precision of "
                     "evaluation (fp16: GPUs); recorded in every row (default: fp32)")
    run.add_argument("--jobs", type=_jobs, default=None, metavar="N|auto", help="processes running units side by "
                     "side, each with its share of the torch threads; worth it where a model is too small to keep the "
                     "cores busy (default: auto, one per thread on the mini suite on CPU, else 1)")
    run.add_argument("--executor", choices=["local", "ray"], default="local", help="where the parts (method, seed, "
                     "scenario family) run: local (this machine, --jobs processes) or ray (each part a Ray task, on a "
                     "cluster or, without --ray-address, on Ray started on this machine; see docs/ray.md)")
    run.add_argument("--ray-address", metavar="ADDRESS", help="with --executor ray: the cluster's head, e.g. "
                     "10.0.0.1:6379 or auto (default: start Ray on this machine)")
    run.add_argument("--cpus-per-part", type=float, metavar="N", help="with --executor ray: CPUs a part's task "
                     "holds, and its torch threads (default: 1)")
    run.add_argument("--gpus-per-part", type=float, metavar="N", help="with --executor ray: GPUs a part's task "
                     "holds, with --device cuda (default: 0)")
    run.add_argument("--workers", type=int, default=0, help="processes decoding the test images (224-pixel datasets "
                     "of the CLIP suites; default: 0, in this process)")
    run.add_argument("--data-memory", metavar="SIZE", help="bytes of image data a process holds, e.g. 8GB: splits "
                     "kept as 8-bit pixels while they fit, beside the evaluation batches in flight; the others are "
                     "decoded from their datasets at each read (default: a quarter of this machine's memory)")
    run.add_argument("--eval-every", type=int, metavar="STEPS", help="also evaluate test-time adaptive methods "
                     "(AdaMerging, WEMoE) at step 0 and every STEPS steps; rows carry the step (default: final only)")
    run.add_argument("--dry-run", action="store_true", help="build the suite and plan the run, then list its units "
                     "with the time and peak memory each took where RESULTS holds a unit of the same method and "
                     "settings, and the totals; runs nothing, writes nothing")
    _add_common(run)
    run.add_argument("--reports", type=Path, help=REPORTS_HELP)

    report = commands.add_parser("report", help="rebuild tables, figures and index.md from the parquet results alone")
    report.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    report.add_argument("--out", type=Path, help=REPORTS_HELP)

    perf = commands.add_parser("perf", help="speed figures with their goals, stored and reported (reports/perf.md)",
                               description="Benchmarks, each a ratio to a reference timed in the same run on the "
                               "same tensors (or a limit), printed with its goal as it is measured: AdaMerging step / "
                               "forward+backward, WEMoE throughput / dense model, WEMoE fast path / per-sample oracle, "
                               "evaluation harness / bare forward, static merges of ViT-B/32-size experts against the "
                               "memory-bandwidth bound, TIES time and memory; optionally the whole `run --all` by "
                               "stage, and the peak memory of test-time adaptation at ViT-B/32 size. Figures go to "
                               "RESULTS/perf.parquet (replacing those of the same name measured on this machine) and "
                               "the report is rebuilt, perf.md included.")
    perf.add_argument("--suite", default="mini", help="suite whose model and inputs are timed (default: mini)")
    perf.add_argument("--zoo", type=Path, help="zoo folder of the mini suite")
    perf.add_argument("--static", choices=["vit-b-32", "none"], default="vit-b-32",
                      help="static merges of 8 random experts of this size (about 3 GB in a temporary folder and "
                      "two minutes), or none (default: vit-b-32)")
    perf.add_argument("--end-to-end", action="store_true", help="also time `run --all` into empty results, by "
                      "stage (as long as that run: about 20 minutes on 2 cores)")
    perf.add_argument("--memory", action="store_true", help="also the peak memory of one step of layer-wise "
                      "AdaMerging and of WEMoE on 8 random experts of ViT-B/32 size (up to half an hour on 2 cores)")
    perf.add_argument("--jobs", type=_jobs, default=None, metavar="N|auto", help="worker processes of the "
                      "--end-to-end run, as in `run` (default: auto)")
    perf.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    perf.add_argument("--reports", type=Path, help=REPORTS_HELP)

    listing = commands.add_parser("list", help="list registered methods, suites, scenarios or tasks")
    listing.add_argument("what", choices=["methods", "suites", "scenarios", "tasks"])
    listing.add_argument("--suite", help="tasks: the tasks of this suite as loaded (default: the task registry)")
    listing.add_argument("--zoo", type=Path, help="tasks: the tasks of the mini suite of this zoo folder")
    listing.add_argument("--plugin", action="append", type=Path, default=[], metavar="FILE.py",
                         help="a Python file defining MergeMethod subclasses (repeatable)")

    zoo = commands.add_parser("zoo", help="build, inspect or verify the mini suite's expert zoo")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    build = zoo_commands.add_parser("build", help="train pretrained model and experts from the recipe (about 20 "
                                    "minutes on 2 CPU cores)")
    build.add_argument("--out", type=Path, help="output folder (default: the shipped zoos' folder, zoo/RECIPE)")
    build.add_argument("--recipe", choices=["mini-v1", "mini-v2"], default=SHIPPED_NAME, help="mini-v1: the 8 "
                       "tasks' families; mini-v2: all 20, class embeddings shared by class name "
                       f"(default: {SHIPPED_NAME}, the zoo `run` uses)")
    build.add_argument("--tiny", action="store_true", help="the tests' seconds-long schedule and sizes instead of the "
                       "recipe's")
    build.add_argument("--seed", type=int, default=0, help="recipe seed: another seed gives another zoo of the same "
                       "recipe on the same task data, to measure the spread of results over zoos (default: 0)")
    build.add_argument("--device", default="cpu", help="torch device for training (default: cpu)")
    build.add_argument("--finetune", action="append", default=[], metavar="KEY=VALUE",
                       help="change the experts' fine-tuning schedule: steps, batch_size, lr, weight_decay or "
                       "warmup_fraction (repeatable; the recipe's: 500 steps, batch 64, lr 3e-4, weight decay 0.1); "
                       "needs --out")
    build.add_argument("--pretrained-from", type=Path, metavar="ZOO",
                       help="reuse ZOO's pretrained model and heads and train only the experts (minutes instead "
                       "of about 20); ZOO's recipe must be this one but for --finetune")
    for name, text in (("info", "print the manifest: recipe, accuracies, timings"),
                       ("verify", "check every zoo file against the sha256 in its manifest")):
        sub = zoo_commands.add_parser(name, help=text)
        sub.add_argument("--zoo", type=Path, help=f"zoo folder (default: the shipped zoo/{SHIPPED_NAME})")
    return parser


def _jobs(text: str) -> int | None:
    """`--jobs`: a number of processes, or `auto` (None: the suite's choice, see bench.parallel.auto_jobs)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, not {text!r}") from None


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", type=Path, default=[], metavar="FILE.py",
                        help="a Python file defining MergeMethod subclasses (repeatable)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")


def _method_specs(args: argparse.Namespace) -> list:
    from bench.runner import method_specs
    from methods.base import REGISTRY, get_method

    overrides: dict[str, dict[str, str]] = {}
    for item in args.param:
        target, sep, value = item.partition("=")
        method, dot, key = target.partition(".")
        if not sep or not dot:
            raise BenchError(f"--param {item!r}: expected METHOD.KEY=VALUE")
        get_method(method)
        overrides.setdefault(method, {})[key] = value
    requested = [(name, None) for name in REGISTRY] if args.all else [
        tuple(item.split(":", 1)) if ":" in item else (item, None) for item in args.method]
    for name, _ in requested:
        get_method(name)
    running = {name for name, _ in requested}
    for item in args.param:
        if (method := item.partition(".")[0]) not in running:
            raise BenchError(f"--param {item!r}: method {method} is not in this run (add --method {method})")
    sweep = _sweep(args.sweep, running)
    return method_specs(requested, overrides, args.select or ("both" if args.all else "fixed"), args.all, sweep)


def _sweep(text: str | None, running: set[str]) -> tuple[str, ...]:
    """`--sweep`'s methods: the default's that run, or those named (each registered and in the run), or none."""
    from bench.selection import DEFAULT_SWEEP
    from methods.base import get_method

    if text is None:
        return tuple(name for name in DEFAULT_SWEEP if name in running)
    if text == "none":
        return ()
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        get_method(name)
        if name not in running:
            raise BenchError(f"--sweep {text}: method {name} is not in this run (add --method {name})")
    return names


def _check_outputs(results: Path, reports: Path, reports_option: str) -> None:
    """The results and report folders can be written, before any work."""
    from bench.preflight import check_writable_folder
    from bench.reports import check_report_folder

    check_writable_folder("--results", results)
    check_report_folder(reports, reports_option)
    check_writable_folder(reports_option, reports.parent)


def _cmd_run(args: argparse.Namespace) -> None:
    from bench.preflight import check_device
    from tasks.hub import CLIP_REPOS, Sources, check_available

    if args.eval_every is not None and args.eval_every < 1:
        raise BenchError(f"--eval-every {args.eval_every}: expected a positive number of steps")
    if args.suite in CLIP_REPOS:  # before importing any model code: offline, what is missing fails at once
        check_available(args.suite, CLIP_REPOS[args.suite], Sources.for_suite(args.suite, args.zoo))
    ray = _ray_settings(args)
    if ray is None:  # else the parts' workers check it: the driver plans on the CPU and may have no GPU
        check_device("--device", args.device)
    if not args.dry_run:
        _check_outputs(args.results, args.reports, "--reports")

    import time
    from functools import partial

    from bench.evaluation import EvalSettings, default_batch_size
    from bench.parallel import run_jobs
    from bench.plugins import load_methods
    from bench.reports import build_reports
    from tasks.data import parse_size
    from tasks.suites import load_suite

    start = time.perf_counter()
    load_methods(args.plugin)
    specs = _method_specs(args)
    data_memory = None if args.data_memory is None else parse_size(args.data_memory, "--data-memory")
    batch_size = default_batch_size(args.device) if args.batch_size is None else args.batch_size
    settings = EvalSettings(batch_size, args.precision, args.workers, data_memory)
    suite_factory = partial(load_suite, args.suite, zoo=args.zoo, device="cpu" if ray else args.device)
    command_setup = {"setup": time.perf_counter() - start}  # imports (open_clip's among them), plugins, methods
    if args.dry_run:
        _dry_run(suite_factory, args, specs, command_setup)
        return
    times, done = run_jobs(suite_factory, args.scenario, specs, args.seeds, args.results, args.eval_every, settings,
                           args.jobs, args.plugin, ray)
    times.add(command_setup)
    log.info("%d unit(s) run; results in %s/", done, args.results)
    with times.stage("report"):
        written = build_reports(args.results, args.reports)
        _refresh_readme(args.results)
    if (args.reports / "multitask.md").is_file():
        print((args.reports / "multitask.md").read_text())
    log.info("report: %s (links %d files)", written[0], len(written) - 1)
    log.info("time: %.0f s; %s", time.perf_counter() - start, times.summary())


def _ray_settings(args: argparse.Namespace):
    """`--executor ray`'s settings (None: the local executor), the Ray options checked against the executor."""
    ray_options = {"--ray-address": args.ray_address, "--cpus-per-part": args.cpus_per_part,
                   "--gpus-per-part": args.gpus_per_part}
    if args.executor == "local":
        for option, value in ray_options.items():
            if value is not None:
                raise BenchError(f"{option} needs --executor ray")
        return None
    from bench.ray_executor import RaySettings

    if args.jobs is not None:
        raise BenchError("--jobs counts processes of this machine: with --executor ray, give --cpus-per-part")
    settings = RaySettings(args.ray_address, 1 if args.cpus_per_part is None else args.cpus_per_part,
                           args.gpus_per_part or 0, args.device)
    for option, value in (("--cpus-per-part", settings.cpus_per_part), ("--gpus-per-part", settings.gpus_per_part)):
        if value < 0 or (option == "--cpus-per-part" and value == 0):
            raise BenchError(f"{option} {value:g}: expected a positive number")
    if settings.gpus_per_part and args.device == "cpu":
        raise BenchError(f"--gpus-per-part {settings.gpus_per_part:g} with --device cpu: the GPUs would idle "
                         "(add --device cuda)")
    return settings


def _dry_run(suite_factory: Callable, args: argparse.Namespace, specs: list, command_setup: dict[str, float]) -> None:
    """`run --dry-run`: the planned units with their estimated costs, nothing run or written."""
    from bench.estimates import dry_run_lines
    from bench.parallel import prepare
    from bench.results import ResultStore

    planned = prepare(suite_factory, args.scenario, specs, args.seeds, args.results, args.jobs)
    planned.times.add(command_setup)
    print("\n".join(dry_run_lines(planned, ResultStore(args.results).load(), args.precision)))


def _refresh_readme(results: Path) -> None:
    """The README's headline table follows the default results only, so a run into other results leaves it."""
    from bench.readme import refresh_readme

    if results == DEFAULT_RESULTS and refresh_readme(README, results):
        log.info("README: headline table rewritten from %s/", results)


def _cmd_report(args: argparse.Namespace) -> None:
    from bench.reports import build_reports

    if not args.results.is_dir():
        raise BenchError(f"--results {args.results}: no such folder")
    _check_outputs(args.results, args.out, "--out")

    for path in build_reports(args.results, args.out):
        print(path)
    _refresh_readme(args.results)


def _cmd_perf(args: argparse.Namespace) -> None:
    from functools import partial

    import pandas as pd

    from bench.machine import machine_description
    from bench.perf import run_perf
    from bench.reports import build_reports
    from bench.results import PERF_COLUMNS, store_perf
    from tasks.suites import load_suite

    _check_outputs(args.results, args.reports, "--reports")
    machine, measured_at = machine_description(), pd.Timestamp.now("UTC").strftime("%Y-%m-%d")
    print(machine)
    rows = []
    for figure in run_perf(partial(load_suite, args.suite, zoo=args.zoo), static=args.static != "none",
                           end_to_end=args.end_to_end, jobs=args.jobs, memory=args.memory):
        print(figure.line(), flush=True)
        rows.append([figure.name, figure.value, figure.goal, figure.verdict, machine, measured_at])
    log.info("figures: %s", store_perf(args.results, pd.DataFrame(rows, columns=PERF_COLUMNS)))
    log.info("report: %s", build_reports(args.results, args.reports)[0])


def _cmd_list(args: argparse.Namespace) -> None:
    if args.what == "methods":
        from bench.plugins import load_methods
        from methods.base import REGISTRY

        load_methods(args.plugin)
        for cls in REGISTRY.values():
            print(cls.describe())
    elif args.what == "suites":
        from tasks.suites import SUITES

        width = max(map(len, SUITES))
        for name, (_, description) in SUITES.items():
            print(f"{name:<{width}}  {description}")
    elif args.what == "scenarios":
        from tasks.scenarios import SCENARIOS

        for name, builder in SCENARIOS.items():
            print(f"{name:<16} {(builder.__doc__ or '').strip().splitlines()[0]}")
    elif args.suite is None and args.zoo is None:
        print("\n".join(_task_registry_table()))
    else:
        from tasks.suites import load_suite

        for task in load_suite(args.suite or "mini", zoo=args.zoo).tasks.values():
            names = ", ".join(task.class_names)
            print(f"{task.name:<15} ({task.counterpart}) {len(task.class_names)} classes: {names}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _task_registry_table() -> list[str]:
    """`bench list tasks`: one line per task record, columns aligned."""
    from tasks.families import FAMILIES
    from tasks.registry import RECORDS, groups_of

    header = ("task", "mini stand-in", "classes", "splits", "hub dataset, experts, prompts", "groups")
    rows = [header]
    for record in RECORDS.values():
        family = FAMILIES[record.mini_family] if record.mini_family else None
        experts = f"*_{record.expert_suffix}" if record.expert_suffix else "no FusionBench expert"
        rows.append((record.name, family.name if family else "-",
                     f"{record.classes}" + (f" ({len(family.class_names)} mini)" if family else ""),
                     ", ".join(record.splits),
                     f"{record.dataset}, {experts}, {_count(len(record.templates), 'prompt')}",
                     ", ".join(groups_of(record.name)) or "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]


def _cmd_zoo(args: argparse.Namespace) -> None:
    from tasks.suites import SHIPPED_ZOO
    from tasks.zoo_manifest import verify_zoo

    if args.zoo_command == "build":
        from bench.preflight import check_device
        from bench.zoo.build import build_zoo
        from bench.zoo.recipe import RECIPES

        check_device("--device", args.device)
        recipe = dataclasses.replace(RECIPES[args.recipe], seed=args.seed)
        recipe = recipe.tiny() if args.tiny else recipe
        out = args.out or SHIPPED_ZOO.parent / args.recipe
        if args.finetune and args.out is None:
            raise BenchError(f"--finetune changes the recipe: give --out (the default, {out}, is a shipped zoo)")
        overrides = {}
        for item in args.finetune:
            key, sep, value = item.partition("=")
            if not sep:
                raise BenchError(f"--finetune {item!r}: expected KEY=VALUE")
            overrides[key] = value
        manifest = build_zoo(recipe.with_finetune(overrides), out, device=args.device,
                             pretrained_from=args.pretrained_from)
        print(json.dumps({"accuracy": manifest["accuracy"], "timings_s": manifest["timings_s"]}, indent=2))
        return
    manifest = verify_zoo(args.zoo or SHIPPED_ZOO)
    if args.zoo_command == "verify":
        print(f"{args.zoo or SHIPPED_ZOO}: {len(manifest['files'])} files match manifest.json")
    else:
        print(json.dumps(manifest, indent=2))


def main(argv: list[str] | None = None) -> int:
    from tasks.hub import reads_hub, settle_offline_mode

    args = _parser().parse_args(argv)
    if args.command in ("run", "perf"):
        args.reports = reports_folder(args.reports, args.results)
    elif args.command == "report":
        args.out = reports_folder(args.out, args.results)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settle_offline_mode(reads_hub(getattr(args, "suite", None), getattr(args, "zoo", None)))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped like Ctrl-C: workers ended, work kept
    try:
        commands = {"run": _cmd_run, "report": _cmd_report, "perf": _cmd_perf, "list": _cmd_list, "zoo": _cmd_zoo}
        commands[args.command](args)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
