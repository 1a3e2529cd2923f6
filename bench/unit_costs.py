"""`python -m bench.unit_costs`: what one unit of the full CLIP grid costs on a torch device, per backbone, for
the grid's cost table (units x seconds, GPU-hours per backbone and method).

On random weights of each backbone's full size (costs depend on sizes, not on trained values), through the
suite's own code paths (the synthetic pool of `bench.synthetic`, the methods' `merge`, the harness's `accuracy`):
- the encoder's evaluation throughput with a task head, at the harness's batch, in every precision it offers;
- layer-wise AdaMerging and WEMoE at their papers' batch sizes: seconds per adaptation step (each step timed on
  its own by an optimizer hook, the first apart: it also builds the model), peak memory, and WEMoE's merged
  model's evaluation throughput (it routes each sample);
- the static merges' seconds (task arithmetic, TIES, TSV-M by default; `--static` names any registered method),
  and, for one that declares a validation grid, the seconds of merging every point of it as validation selection
  does (`MergeMethod.merges`, work shared between points); their arithmetic runs where the pool's tensors live:
  on the CPU, whatever the device (the `compute_device` column says so).

The device's own figures come first for every backbone, the CPU-bound static merges last; `--figures` picks
among them (a host without a GPU times the big backbones' merges alone: their evaluation on a CPU takes hours).
Every figure is printed as it is measured and the parquet rewritten after each, so a run cut short keeps what it
measured; `--budget-s` starts no measurement past its time, nor a static merge whose time, scaled from the
backbone before, would overrun it. Light to import: torch, pandas and the suite's code, no open_clip, datasets or
imagecorruptions, so a GPU host without them runs it from the repository root.
"""

from __future__ import annotations

import argparse
import gc
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import methods  # noqa: F401  (registers every built-in method, for --static)
from bench.evaluation import ACCELERATOR_BATCH, PRECISIONS, accuracy
from bench.machine import cpu_name
from bench.memory import PeakMemory
from bench.preflight import check_device, check_writable_folder
from bench.selection import points
from bench.synthetic import TINY, synthetic_pool, write_synthetic_zoo
from bench.timing import best_time
from core.atomic import write_atomically
from core.errors import BenchError
from core.models import CLIP_ENCODERS, ClassificationHead, EncoderConfig, build_encoder
from core.pool import ModelPool
from core.versions import code_version
from methods.adamerging import LayerwiseAdaMerging
from methods.adaptation import AdaptiveMethod
from methods.averaging import TaskArithmetic
from methods.base import REGISTRY, Merged, MergeMethod, get_method
from methods.ties import TiesMerging
from methods.tsv import TaskSingularVectorsMerge
from methods.wemoe import WEMoE

# CLIP's image towers by the names the CLI takes, and a tiny one that runs in seconds on a CPU (tests, checks).
BACKBONES = {name.lower(): config for name, config in CLIP_ENCODERS.items()} | {
    "tiny": TINY}
CLASSES = 10  # the heads' classes: a head costs next to nothing beside the encoder
FILE_NAME = "unit_costs.parquet"
STATIC_TIME_GROWTH = 1.5  # a static merge's seconds grow at most as (model bytes) ** this (SVDs: m n^2 work)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synchronized(run: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """`run`, returning only once the device has done its work: the clock read after it counts that work."""
    def call() -> None:
        run()
        synchronize(device)
    return call


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Measurement:
    """The rows of one run, each also printed as measured and the parquet rewritten after each (a run cut short
    keeps its figures); which measurements to skip once `budget_s` has passed."""

    device: torch.device
    out: Path
    code_version: str
    budget_s: float | None = None
    rows: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, backbone: str, method: str, figure: str, value: float, unit: str, batch: int | None = None,
               precision: str | None = None, note: str = "", compute_device: str | None = None) -> None:
        row = {"device": self.device.type, "device_name": self.device_name, "backbone": backbone, "method": method,
               "figure": figure, "value": float(value), "unit": unit, "batch": batch, "precision": precision,
               "compute_device": compute_device or self.device.type, "note": note,
               "cpu_threads": torch.get_num_threads(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
               "torch_version": torch.__version__, "code_version": self.code_version,
               "measured_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds")}
        self.rows.append(row)
        shown = " ".join(f"{key}={row[key]}" for key in ("batch", "precision", "compute_device") if row[key])
        print(f"[{self.elapsed():7.1f} s] {backbone} {method} {figure}: {value:.6g} {unit} {shown}", flush=True)
        write_atomically(self.out / FILE_NAME, lambda path: pd.DataFrame(self.rows).to_parquet(path, index=False))

    def attempt(self, what: str, measure: Callable[[], None], predicted_s: float = 0.0) -> None:
        """Run `measure` unless the budget is spent (or would be by `predicted_s` more); a measurement that
        raises is reported and the run goes on: it is one run on a lent machine, and the other figures stand."""
        if self.budget_s is not None and self.elapsed() + predicted_s > self.budget_s:
            print(f"[{self.elapsed():7.1f} s] skipped {what}: past --budget-s {self.budget_s:g}"
                  + (f" (predicted {predicted_s:.0f} s)" if predicted_s else ""), flush=True)
            return
        try:
            measure()
        except Exception as error:  # noqa: BLE001 (any failure: reported, counted, and the next figure measured)
            self.failures.append(what)
            print(f"[{self.elapsed():7.1f} s] FAILED {what}: {type(error).__name__}: {error}", flush=True)
            traceback.print_exc()
        finally:
            free_memory()


def random_head(config: EncoderConfig, device: torch.device) -> ClassificationHead:
    return ClassificationHead(torch.randn(CLASSES, config.embed_dim), 100.0).to(device)


def eval_throughput(encoder: torch.nn.Module, head: ClassificationHead, inputs: torch.Tensor, precision: str,
                    repeats: int) -> float:
    """Images per second of the harness's scoring of one batch (forward, head, argmax, count), after a warm-up;
    `accuracy` reads its predictions back to the CPU, so each call ends with the device's work done."""
    device = inputs.device
    labels = torch.zeros(len(inputs), dtype=torch.long)
    with torch.inference_mode():
        run = synchronized(lambda: accuracy(encoder, head, [(inputs, labels)], precision), device)
        return len(inputs) / best_time(run, repeats)


def record_eval_throughputs(measurement: Measurement, backbone: str, method: str, encoder: torch.nn.Module,
                            head: ClassificationHead, config: EncoderConfig, batch: int,
                            settings: Settings) -> None:
    inputs = torch.randn(batch, 3, config.image_size, config.image_size, device=measurement.device)
    repeats = settings.repeats
    for precision in settings.precisions:
        measurement.attempt(f"{backbone} {method} eval {precision}", lambda precision=precision: measurement.record(
            backbone, method, "eval_throughput", eval_throughput(encoder, head, inputs, precision, repeats),
            "images/s", batch, precision))


@contextmanager
def step_clock(device: torch.device) -> Iterator[list[float]]:
    """The clock after each optimizer step taken within (the device synchronised first): the adaptation loop's
    own steps, timed one by one without touching the loop."""
    ends: list[float] = []

    def after_step(*_: object) -> None:
        synchronize(device)
        ends.append(time.perf_counter())

    handle = register_optimizer_step_post_hook(after_step)
    try:
        yield ends
    finally:
        handle.remove()


def adapt(method: AdaptiveMethod, pool: ModelPool, device: torch.device) -> tuple[Merged, list[float], float]:
    """`method.merge(pool)`: the merged model, the seconds of each step (the first includes building the model
    to adapt), and the peak memory in bytes (the device's allocations on a GPU, the process's resident memory,
    mapped checkpoints included, on the CPU)."""
    free_memory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    process = PeakMemory()
    with step_clock(device) as ends, process.watch():
        start = time.perf_counter()
        merged = method.merge(pool)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else process.peak_mb * 2**20
    return merged, [end - before for before, end in zip([start] + ends, ends)], peak


def record_adaptation(measurement: Measurement, backbone: str, method: AdaptiveMethod, pool: ModelPool,
                      then: Callable[[Merged], None] = lambda merged: None) -> None:
    """One adaptation of `method.steps` steps: its step times, peak memory and the time its synthetic inputs take
    to draw (within each step), an adaptation at the method's default steps estimated from them; `then` gets the
    merged model."""
    device, name = measurement.device, method.name
    per_task = method.batch_size * method.batches_per_step
    batch, batch_note = per_task * len(pool.tasks), f"{per_task} inputs per task x {len(pool.tasks)} tasks per step"
    merged, steps, peak = adapt(method, pool, device)
    later = steps[1:]
    step_s = statistics.median(later)  # robust to a step that another process slowed
    measurement.record(backbone, name, "setup_and_first_step", steps[0], "s", batch, "fp32",
                       "reading the experts, building the model to adapt, the first step")
    measurement.record(backbone, name, "step", step_s, "s", batch, "fp32",
                       f"median of steps 2..{len(steps)} ({', '.join(f'{s:.3g}' for s in later)}); {batch_note}")
    memory_note = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                   else "peak resident memory of the process, mapped checkpoints included")
    measurement.record(backbone, name, "peak_memory", peak / 2**30, "GiB", batch, "fp32", memory_note)
    default_steps = type(method)().steps
    measurement.record(backbone, name, "adaptation_at_default_steps", steps[0] + (default_steps - 1) * step_s, "s",
                       batch, "fp32", f"estimate: setup_and_first_step + {default_steps - 1} x step")
    draw = synchronized(lambda: [pool.test_inputs(task, per_task, 0).to(device) for task in pool.tasks], device)
    measurement.record(backbone, name, "input_draw", best_time(draw, repeats=1), "s", batch, None,
                       "the synthetic pool's drawing of one step's random inputs on the CPU and their move to the "
                       "device (part of each step)",
                       compute_device="cpu")
    then(merged)


def record_static_merge(measurement: Measurement, backbone: str, method: MergeMethod, pool: ModelPool,
                        selection: bool = True) -> float:
    """Seconds of one merge, the merged model moved to the pool's device included; then, for a method declaring
    a validation grid (and `selection`), of merging all its points (`merges`, as selection does). Returns the
    one merge's."""
    note = f"{len(pool.tasks)} experts, tensors read from the page cache; arithmetic on the CPU, where the pool's " \
           f"tensors live"

    def seconds_of(merge: Callable[[], object]) -> float:
        start = time.perf_counter()
        merge()
        synchronize(measurement.device)
        return time.perf_counter() - start

    seconds = seconds_of(lambda: method.merge(pool))
    measurement.record(backbone, method.name, "merge", seconds, "s", note=note, compute_device="cpu")
    grid = tuple(method.search_space().items())
    if grid and selection:
        chosen = points(grid)
        measurement.record(backbone, method.name, "selection_merges",
                           seconds_of(lambda: [None for _ in method.merges(pool, chosen)]), "s",
                           note=f"the {len(chosen)} points of its validation grid, each merged and dropped; {note}",
                           compute_device="cpu")
    return seconds


DEFAULT_STATIC = (TaskArithmetic.name, TiesMerging.name, TaskSingularVectorsMerge.name)
# What a run measures: the device's figures (evaluation, adaptation), the static merges, their validation grids'.
FIGURES = {"device": "evaluation throughput and the adaptive methods on --device",
           "static": "the --static merges on the CPU",
           "selection": "the --static merges over their validation grids (with static)"}


@dataclass
class Settings:
    """What to measure: backbones (names in BACKBONES), device, experts per zoo, adaptation steps, timed calls
    per throughput, the encoder's and the WEMoE model's evaluation batches, the static merges (registered method
    names), the evaluation precisions (the harness's), which figures (FIGURES)."""

    backbones: list[str]
    device: str = "cpu"
    experts: int = 8
    steps: int = 4
    repeats: int = 3
    eval_batch: int = ACCELERATOR_BATCH  # the harness's on an accelerator, where the grid runs
    wemoe_eval_batch: int = 256  # WEMoE mixes an MLP per sample: its memory grows with the batch
    static: tuple[str, ...] = DEFAULT_STATIC
    precisions: tuple[str, ...] = tuple(PRECISIONS)
    figures: tuple[str, ...] = tuple(FIGURES)


def measure_device_figures(measurement: Measurement, backbone: str, folder: Path, settings: Settings) -> None:
    """Model size, evaluation throughput and both adaptive methods, for one backbone whose zoo is in `folder`."""
    config, device = BACKBONES[backbone], measurement.device
    model_bytes = (folder / "pretrained.safetensors").stat().st_size
    measurement.record(backbone, "encoder", "model_size", model_bytes / 2**20, "MiB", note="float32 safetensors")

    def encoder_throughput() -> None:
        encoder = build_encoder(config).eval().to(device)
        record_eval_throughputs(measurement, backbone, "encoder", encoder, random_head(config, device), config,
                                settings.eval_batch, settings)

    def pool() -> ModelPool:
        return synthetic_pool(folder, config, settings.experts, CLASSES, str(device))

    def wemoe_throughput(merged: Merged) -> None:
        record_eval_throughputs(measurement, backbone, "wemoe", merged, random_head(config, device), config,
                                settings.wemoe_eval_batch, settings)

    measurement.attempt(f"{backbone} encoder eval", encoder_throughput)
    measurement.attempt(f"{backbone} adamerging_layerwise", lambda: record_adaptation(
        measurement, backbone, LayerwiseAdaMerging(steps=settings.steps), pool()))
    measurement.attempt(f"{backbone} wemoe", lambda: record_adaptation(
        measurement, backbone, WEMoE(steps=settings.steps), pool(), wemoe_throughput))


def measure_static_merges(measurement: Measurement, zoos: dict[str, Path], settings: Settings) -> None:
    """Each static merge on every backbone, smallest first; one whose time scaled from the backbone before
    would overrun the budget is skipped."""
    last: dict[str, tuple[float, int]] = {}  # method -> (seconds, model bytes) on the backbone before

    def merge(name: str, backbone: str, pool: ModelPool, model_bytes: int) -> None:
        last[name] = (record_static_merge(measurement, backbone, get_method(name)(), pool,
                                          "selection" in settings.figures), model_bytes)

    for backbone, folder in zoos.items():
        model_bytes = (folder / "pretrained.safetensors").stat().st_size
        pool = synthetic_pool(folder, BACKBONES[backbone], settings.experts, CLASSES, str(measurement.device))
        for name in settings.static:
            seconds, before = last.get(name, (0.0, model_bytes))
            predicted = seconds * (model_bytes / before) ** STATIC_TIME_GROWTH
            measurement.attempt(f"{backbone} {name}", partial(merge, name, backbone, pool, model_bytes), predicted)


def run_unit_costs(settings: Settings, out: Path, budget_s: float | None = None, temp_root: Path | None = None,
                   version: str | None = None) -> Measurement:
    """Every figure of every backbone into `out`/unit_costs.parquet; the zoos in a temporary folder under
    `temp_root` (the system's by default), removed at the end."""
    measurement = Measurement(torch.device(settings.device), out, version or code_version(), budget_s)
    print(f"device {measurement.device} ({measurement.device_name}), torch {torch.__version__}, "
          f"code {measurement.code_version}, {torch.get_num_threads()} CPU threads", flush=True)
    with tempfile.TemporaryDirectory(prefix="mergebench-unit-costs-", dir=temp_root) as temp:
        zoos: dict[str, Path] = {}
        for backbone in settings.backbones:
            folder = Path(temp) / backbone
            folder.mkdir()

            def write_zoo(backbone: str = backbone, folder: Path = folder) -> None:
                start = time.perf_counter()
                write_synthetic_zoo(folder, BACKBONES[backbone], settings.experts)
                zoos[backbone] = folder
                measurement.record(backbone, "zoo", "write", time.perf_counter() - start, "s", compute_device="cpu",
                                   note=f"pretrained + {settings.experts} random experts as safetensors")

            measurement.attempt(f"{backbone} zoo", write_zoo)
            if backbone in zoos and "device" in settings.figures:
                measure_device_figures(measurement, backbone, zoos[backbone], settings)
        if "static" in settings.figures:
            measure_static_merges(measurement, zoos, settings)
    return measurement


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.unit_costs",
        description="Per-unit costs of the full CLIP grid on one torch device, on random weights of each backbone: "
                    "evaluation throughput per precision, adaptation step time and peak memory of layer-wise "
                    "AdaMerging and WEMoE, static merge seconds. Writes OUT/unit_costs.parquet, one row per figure.")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    parser.add_argument("--backbones", default="vit-b-32,vit-b-16,vit-l-14",
                        help=f"comma-separated, of: {', '.join(BACKBONES)} (default: vit-b-32,vit-b-16,vit-l-14)")
    parser.add_argument("--out", type=Path, required=True, help="folder for unit_costs.parquet")
    parser.add_argument("--experts", type=int, default=Settings.experts,
                        help=f"experts in each zoo (default: {Settings.experts})")
    parser.add_argument("--steps", type=int, default=Settings.steps,
                        help=f"adaptation steps timed per method, at least 2: the first also builds the model "
                             f"(default: {Settings.steps})")
    parser.add_argument("--repeats", type=int, default=Settings.repeats,
                        help=f"timed calls per throughput, the fastest kept (default: {Settings.repeats})")
    parser.add_argument("--eval-batch", type=int, default=Settings.eval_batch,
                        help=f"encoder evaluation batch (default: the harness's on a GPU, {Settings.eval_batch})")
    parser.add_argument("--wemoe-eval-batch", type=int, default=Settings.wemoe_eval_batch,
                        help=f"the WEMoE model's evaluation batch (default: {Settings.wemoe_eval_batch})")
    parser.add_argument("--static", default=",".join(Settings.static),
                        help=f"merges to time on the CPU, comma-separated registered methods (`bench list methods`), "
                             f"each also over its validation grid where it declares one; meant for those that need no "
                             f"data (default: {','.join(Settings.static)})")
    parser.add_argument("--precisions", default=",".join(Settings.precisions),
                        help=f"evaluation precisions, comma-separated (default: {','.join(Settings.precisions)}; "
                             f"fp16 is slow on most CPUs)")
    parser.add_argument("--figures", default=",".join(Settings.figures),
                        help="what to measure, comma-separated: " + "; ".join(f"{name}: {what}" for name, what in
                                                                        FIGURES.items())
                             + f" (default: {','.join(Settings.figures)})")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no measurement after this many seconds, nor a static merge predicted to "
                             "end past them (default: no limit)")
    parser.add_argument("--temp", type=Path, default=None,
                        help="where the zoos are written (default: the system's temporary folder)")
    parser.add_argument("--code-version", default=None,
                        help="the code_version recorded (default: package and git commit, where known)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The checked settings; a bad option named before any work."""
    backbones = [name.strip() for name in args.backbones.split(",") if name.strip()]
    unknown = [name for name in backbones if name not in BACKBONES]
    if unknown or not backbones:
        raise BenchError(f"--backbones {args.backbones}: unknown backbone {unknown[0] if unknown else '(none)'!r}; "
                         f"valid: {', '.join(BACKBONES)}")
    static = tuple(name.strip() for name in args.static.split(",") if name.strip())
    unknown = [name for name in static if name not in REGISTRY]
    if unknown:
        raise BenchError(f"--static {args.static}: unknown method {unknown[0]!r}; valid: {', '.join(REGISTRY)}")
    precisions = tuple(name.strip() for name in args.precisions.split(",") if name.strip())
    if not precisions or any(name not in PRECISIONS for name in precisions):
        raise BenchError(f"--precisions {args.precisions}: expected some of {', '.join(PRECISIONS)}")
    figures = tuple(name.strip() for name in args.figures.split(",") if name.strip())
    if not figures or any(name not in FIGURES for name in figures):
        raise BenchError(f"--figures {args.figures}: expected some of {', '.join(FIGURES)}")
    for option, value, least in (("--experts", args.experts, 2), ("--steps", args.steps, 2),
                                 ("--repeats", args.repeats, 1), ("--eval-batch", args.eval_batch, 1),
                                 ("--wemoe-eval-batch", args.wemoe_eval_batch, 1)):
        if value < least:
            raise BenchError(f"{option} {value}: expected at least {least}")
    if args.budget_s is not None and args.budget_s <= 0:
        raise BenchError(f"--budget-s {args.budget_s:g}: expected a positive number of seconds")
    check_device("--device", args.device)
    check_writable_folder("--out", args.out)
    return Settings(backbones, args.device, args.experts, args.steps, args.repeats, args.eval_batch,
                    args.wemoe_eval_batch, static, precisions, figures)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped like Ctrl-C: the zoos' folder removed
    try:
        settings = settings_from(args)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    measurement = run_unit_costs(settings, args.out, args.budget_s, args.temp, args.code_version)
    print(f"{len(measurement.rows)} figures in {args.out / FILE_NAME}, {measurement.elapsed():.0f} s"
          + (f"; FAILED: {', '.join(measurement.failures)}" if measurement.failures else ""), flush=True)
    return 1 if measurement.failures else 0


if __name__ == "__main__":
    sys.exit(main())
