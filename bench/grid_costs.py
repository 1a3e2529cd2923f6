"""`python -m bench.grid_costs`: what the full CLIP grid (`bench.grid`) costs, estimated unit by unit from measured
and cited figures, as a Markdown report written from parquet only.

Two commands:
- `passes` counts the images each method's merge pushes through the encoder at the grid's settings, for each
  number of merged tasks in the grid, and at the mini suite's (`bench.passes`, on tiny random experts: counts
  depend on settings and tasks, not on the encoder's size), into `results/grid/passes.parquet`;
- `report` (the default) prices every unit and writes `reports/grid-costs.md` from that file, the unit costs of
  `bench.unit_costs` (`results/grid/unit_costs-*.parquet`) and the mini suite's results.

A unit's seconds on one GPU, every term from a figure the report lists with its source:
- evaluation: the scenario's test images x seconds per image x the method's forward time relative to the
  pretrained encoder's (the mini suite's `inference_cost`; a routed model runs more than one encoder);
- passes: (forward images + 3 x images with gradients) x seconds per image in float32 (the methods run their
  own passes in float32; only evaluation takes --precision): a backward pass costs about two forwards (checked
  in the report against adaptation steps measured on the CPU);
- arithmetic: the method's merge measured on the CPU (where the harness merges, whatever the device) for 8
  experts, scaled by the merged tasks; once per part and set of experts (scenarios share a static merge);
- selection, for a validation-selected unit: the merges of its grid's points measured on the CPU, and every
  point evaluated on 5,000 validation images a task (the held-out slice's cap: an upper bound); once per part
  and set of experts.
A method that memoises per expert (Fisher merging, RegMean) pays its passes once per expert and part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from bench.estimates import settings_key, time_in_processes
from bench.grid import BACKBONES, GridUnit, grid_units, mini_units
from bench.parallel import part_of
from bench.passes import merge_passes
from bench.results import GRID_FIGURES, GRID_PASSES, ResultStore
from bench.selection import points
from bench.unit_costs import STATIC_TIME_GROWTH
from core.atomic import write_atomically
from core.errors import BenchError
from core.models import CLIP_ENCODERS, build_encoder
from core.versions import code_version
from methods.base import MergeMethod
from tasks.clip import OPEN_CLIP_MODELS
from tasks.hub import MAX_VALIDATION
from tasks.registry import RECORDS
from tasks.splits import parse_slice

FIGURES = Path("results") / GRID_FIGURES  # the measured figures the report prices, beside the mini suite's results
REPORT = Path("reports/grid-costs.md")
BACKWARD_FORWARDS = 2  # a backward pass costs about two forward passes (weights' and inputs' gradients)
GPUS = (1, 8, 64)
NO_MERGE = ("pretrained", "individual")  # the references: nothing merged
# Methods priced with another's full-size measurements (`bench.unit_costs` measures these two adaptive methods):
# the same adaptation loop and model, other coefficients or pruned task vectors.
MEASURED_LIKE = {"adamerging_taskwise": "adamerging_layerwise", "adamerging_plus_taskwise": "adamerging_layerwise",
                 "adamerging_plus_layerwise": "adamerging_layerwise", "wemoe_sparse": "wemoe"}
SHOWN = {backbone: "/".join(model.rsplit("-", 1)) for backbone, model in OPEN_CLIP_MODELS.items()}  # ViT-B/32

# Images per second of each backbone's image tower on one GPU, until `bench.unit_costs --device cuda` measures
# them: timm's inference benchmark on an RTX 4090 (batch 1024, AMP, torch 2.4, CUDA 12.4), rows
# vit_base_patch32_clip_224, vit_base_patch16_clip_224, vit_large_patch14_clip_224 of
# huggingface/pytorch-image-models, results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv.
REFERENCE_GPU = {"clip-vit-b-32": 10127.52, "clip-vit-b-16": 2783.55, "clip-vit-l-14": 658.44}
REFERENCE_GPU_SOURCE = ("timm's inference benchmark, RTX 4090, batch 1024, AMP (huggingface/pytorch-image-models, "
                        "results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv)")
# The methods' own passes run in float32 (only evaluation takes --precision): on the cited GPU, at its float32
# throughput over its float16 tensor throughput with float32 accumulation, 82.6 / 165.2 TFLOPS (NVIDIA's Ada
# Lovelace architecture whitepaper, GeForce RTX 4090; PyTorch leaves TF32 matmuls off by default).
REFERENCE_FLOAT32_SLOWDOWN = 165.2 / 82.6


def passes_key(method: MergeMethod, tasks: int) -> tuple[str, str, int]:
    """What a merge's passes depend on: the method, its settings but its seed, the number of tasks."""
    return method.name, settings_key(dataclasses.asdict(method)), tasks


# --- passes -------------------------------------------------------------------------------------------------------

def count_passes(units: Iterable[GridUnit], version: str) -> pd.DataFrame:
    """The encoder passes of each distinct (method settings, merged tasks) of the grid's units, counted by running
    the merge on tiny random experts."""
    wanted: dict[tuple[str, str, int], MergeMethod] = {}
    for grid_unit in units:
        method = grid_unit.unit.method
        wanted.setdefault(passes_key(method, len(grid_unit.unit.scenario.merged_tasks)), method)
    rows = []
    torch.set_num_threads(1)  # counts do not depend on threads; one keeps the machine's other work unhurt
    for (name, settings, tasks), method in tqdm(sorted(wanted.items()), desc="counting passes", unit="merge"):
        with tempfile.TemporaryDirectory(prefix="mergebench-passes-") as folder:
            passes = merge_passes(method, tasks, Path(folder))
        rows.append({"method": name, "settings": settings, "tasks": tasks, "forward": passes.forward,
                     "with_grad": passes.with_grad, "code_version": version})
    return pd.DataFrame(rows)


# --- pricing ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    """What the units are priced with: per backbone, seconds per image on the GPU and where that comes from;
    per (method, backbone), the CPU seconds of one merge of 8 experts and of its validation grid's merges; per
    method, its merged model's forward time relative to the pretrained encoder's, on the mini suite and where
    measured at full size, and a full-size adaptation step's time relative to its passes' price (`step_factor`);
    per `passes_key`, the passes (forward, with gradients)."""

    image_s: dict[str, float]  # evaluation, at --precision bf16
    image_source: dict[str, str]
    pass_image_s: dict[str, float]  # the methods' own passes, in float32
    merge_s: dict[tuple[str, str], float]
    selection_s: dict[tuple[str, str], float]
    mini_forward: dict[str, float]
    full_forward: dict[str, float]
    step_factor: dict[str, float]
    passes: dict[tuple[str, str, int], tuple[int, int]]

    def selection_seconds(self, method: str, backbone: str) -> float | None:
        """The merges of the method's validation grid on `backbone`: measured there, else measured on another
        backbone and scaled by the ratio of the method's single merges on the two where both were measured, else
        scaled by size (`cpu_seconds`)."""
        if (method, backbone) in self.selection_s:
            return self.selection_s[method, backbone]
        for (name, other), seconds in self.selection_s.items():
            if name == method and (method, other) in self.merge_s and (method, backbone) in self.merge_s:
                return seconds * self.merge_s[method, backbone] / self.merge_s[method, other]
        return cpu_seconds(self.selection_s, method, backbone)

    def forward_factor(self, method: str) -> float:
        """Measured at full size (on the method, or the one it is priced like), else on the mini suite, else 1."""
        return self.full_forward.get(MEASURED_LIKE.get(method, method), self.mini_forward.get(method, 1.0))

    def gradient_factor(self, method: str) -> float:
        return self.step_factor.get(MEASURED_LIKE.get(method, method), 1.0)


@cache
def parameters(backbone: str) -> int:
    """The backbone's image tower's parameter count (built on the meta device, once: the pricing asks per part)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_encoder(CLIP_ENCODERS[OPEN_CLIP_MODELS[backbone]]).parameters())


def cpu_seconds(measured: dict[tuple[str, str], float], method: str, backbone: str) -> float | None:
    """A CPU figure of `method` on `backbone`: measured there, else scaled from the measured backbone nearest in
    size by (parameters ratio) ** STATIC_TIME_GROWTH (SVDs grow faster than the parameters); None where the method
    was measured on no backbone."""
    if (method, backbone) in measured:
        return measured[method, backbone]
    size = parameters(backbone)
    known = sorted((abs(math.log(parameters(other) / size)), other) for name, other in measured if name == method)
    if not known:
        return None
    other = known[0][1]
    return measured[method, other] * (size / parameters(other)) ** STATIC_TIME_GROWTH


def load_figures(unit_costs: pd.DataFrame, passes: pd.DataFrame, mini_rows: pd.DataFrame) -> Figures:
    """The figures from their parquet: GPU seconds per image measured where `unit_costs` has a GPU's evaluation
    throughput (bf16 for evaluation, fp32 for the methods' passes), else REFERENCE_GPU (and its float32
    slowdown); CPU merges from its `merge` and `selection_merges` rows."""
    image_s, image_source, pass_image_s = {}, {}, {}
    for backbone in BACKBONES:
        gpu = unit_costs[(unit_costs["device"] == "cuda") & (unit_costs["backbone"] == backbone.removeprefix("clip-"))
                         & (unit_costs["method"] == "encoder") & (unit_costs["figure"] == "eval_throughput")]
        bf16, fp32 = gpu[gpu["precision"] == "bf16"], gpu[gpu["precision"] == "fp32"]
        if len(bf16) and len(fp32):
            image_s[backbone], pass_image_s[backbone] = 1 / bf16["value"].max(), 1 / fp32["value"].max()
            image_source[backbone] = f"measured: {gpu['device_name'].iloc[0]}, batch {gpu['batch'].iloc[0]}"
        else:
            image_s[backbone] = 1 / REFERENCE_GPU[backbone]
            pass_image_s[backbone] = image_s[backbone] * REFERENCE_FLOAT32_SLOWDOWN
            image_source[backbone] = "cited: RTX 4090 (timm)"
    cpu = unit_costs[unit_costs["compute_device"] == "cpu"].sort_values("measured_at", kind="stable")

    def per_method(figure: str) -> dict[tuple[str, str], float]:
        """The figure per (method, backbone); of a figure measured more than once, the latest."""
        chosen = cpu[cpu["figure"] == figure]
        return {(row.method, f"clip-{row.backbone}"): row.value for row in chosen.itertuples()}

    fixed = mini_rows[mini_rows["selection"] == "fixed"]
    mini_forward = fixed.groupby("method")["inference_cost"].median().to_dict()
    full_forward, step_factor = {}, {}
    for full_size in full_size_factors(unit_costs):  # a GPU's (sorted last) replace the CPU's
        full_forward.update(full_size.relative_forward)
        step_factor.update(full_size.step_factor)
    counted = {(row.method, row.settings, row.tasks): (row.forward, row.with_grad) for row in passes.itertuples()}
    return Figures(image_s, image_source, pass_image_s, per_method("merge"), per_method("selection_merges"),
                   mini_forward,
                   full_forward, step_factor, counted)


@dataclass(frozen=True)
class FullSize:
    """What `bench.unit_costs` measured on one full-size backbone and device, against the pricing rules: a measured
    adaptation step over its price ((1 + BACKWARD_FORWARDS) x inputs x the encoder's seconds per image), and a
    measured model's forward time over the encoder's."""

    device: str
    where: str
    step_factor: dict[str, float]
    relative_forward: dict[str, float]
    notes: list[str]


def measured_figure(measured: pd.DataFrame, method: str, figure: str) -> tuple[float, int] | None:
    """(value, batch) of a `bench.unit_costs` figure at float32, where measured."""
    chosen = measured[(measured["method"] == method) & (measured["figure"] == figure)
                      & (measured["precision"] == "fp32")]
    return (float(chosen["value"].iloc[0]), int(chosen["batch"].iloc[0])) if len(chosen) else None


def full_size_factors(unit_costs: pd.DataFrame) -> list[FullSize]:
    """Per device and backbone measured (CPUs first, then GPUs), the factors its figures give."""
    found = []
    for (device, backbone), measured in sorted(unit_costs.groupby(["device", "backbone"]),
                                               key=lambda item: item[0][0] == "cuda"):
        encoder = measured_figure(measured, "encoder", "eval_throughput")
        if encoder is None:
            continue
        where = f"{backbone} on the {device} ({measured['device_name'].iloc[0]})"
        step_factor, relative_forward, notes = {}, {}, []
        for method in ("adamerging_layerwise", "wemoe"):
            step = measured_figure(measured, method, "step")
            if step is not None:
                priced = (1 + BACKWARD_FORWARDS) * step[1] / encoder[0]
                step_factor[method] = step[0] / priced
                notes.append(f"one step of {method} ({step[1]} inputs with gradients): priced by its passes at "
                             f"{priced:.1f} s, measured {step[0]:.1f} s (x{step_factor[method]:.2f})")
        wemoe = measured_figure(measured, "wemoe", "eval_throughput")
        if wemoe is not None:
            relative_forward["wemoe"] = encoder[0] / wemoe[0]
            notes.append(f"WEMoE's merged model evaluates {wemoe[0]:.2f} images/s (batch {wemoe[1]}), the encoder "
                         f"{encoder[0]:.2f} (batch {encoder[1]}): x{relative_forward['wemoe']:.2f} the encoder's time")
        found.append(FullSize(str(device), where, step_factor, relative_forward, notes))
    return found


# A CLIP suite's task name (`tasks.clip`: the record's name in lower case) to its test split's size.
TEST_IMAGES = {name.lower(): record.test_images for name, record in RECORDS.items()}


def tested_images(grid_unit: GridUnit) -> int:
    """Images the unit's scenario tests on (a corrupted split is its test split's size)."""
    return sum(TEST_IMAGES[task] for task, _ in grid_unit.unit.scenario.evaluated)


def part_key(grid_unit: GridUnit) -> tuple:
    """The part a unit runs in: one Ray task of its suite's `run` command."""
    return grid_unit.suite, *part_of(grid_unit.unit)


def price_units(units: list[GridUnit], figures: Figures) -> tuple[list[dict[str, float]], set[str]]:
    """Each unit's seconds on one GPU by term (see the module's docstring; work its part shares is paid by the
    first unit that needs it), and what could not be priced."""
    priced, unpriced = [], set()
    paid: set[tuple] = set()  # (part, term, experts): a part merges a set of experts once, an expert's Fisher once
    for grid_unit in units:
        unit, backbone, part = grid_unit.unit, grid_unit.backbone, part_key(grid_unit)
        method, tasks = unit.method, unit.scenario.merged_tasks
        image_s, pass_image_s = figures.image_s[backbone], figures.pass_image_s[backbone]
        seconds = {"evaluation": tested_images(grid_unit) * image_s * figures.forward_factor(method.name),
                   "passes": 0.0, "arithmetic": 0.0, "selection": 0.0}
        counted = figures.passes.get(passes_key(method, len(tasks)))
        if counted is None:
            unpriced.add(f"{method.name}: passes not counted for {len(tasks)} tasks")
            counted = (0, 0)
        forward_images = counted[0] + (1 + BACKWARD_FORWARDS) * counted[1] * figures.gradient_factor(method.name)
        if method.memoises_per_expert:
            new = [task for task in tasks if (part, "passes", task) not in paid]
            paid.update((part, "passes", task) for task in new)
            seconds["passes"] = forward_images * len(new) / len(tasks) * pass_image_s
        else:
            seconds["passes"] = forward_images * pass_image_s
        if not forward_images and (part, "arithmetic", tasks) not in paid:
            paid.add((part, "arithmetic", tasks))
            merge = cpu_seconds(figures.merge_s, method.name, backbone)
            if merge is None and method.name not in NO_MERGE:
                unpriced.add(f"{method.name}: merge not measured")
            seconds["arithmetic"] = (merge or 0.0) * len(tasks) / 8
        if unit.grid and (part, "selection", tasks) not in paid:
            paid.add((part, "selection", tasks))
            merges = figures.selection_seconds(method.name, backbone)
            if merges is None:
                unpriced.add(f"{method.name}: its validation grid's merges not measured")
            evaluated = len(points(unit.grid)) * MAX_VALIDATION * len(tasks) * image_s
            seconds["selection"] = (merges or 0.0) * len(tasks) / 8 + evaluated
        priced.append(seconds)
    return priced, unpriced


# --- report -------------------------------------------------------------------------------------------------------

def hours(seconds: float) -> str:
    value = seconds / 3600
    return f"{value:,.{2 if value < 1 else 1 if value < 100 else 0}f}"


def duration(seconds: float) -> str:
    """Seconds as the unit that reads best: 40 s, 12 min, 3.4 h, 2.1 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def method_label(grid_unit: GridUnit) -> str:
    return grid_unit.unit.method.name + (" (validation)" if grid_unit.unit.grid else "")


def walls(part_seconds: list[float]) -> list[str]:
    """Wall time on each of GPUS, parts dealt longest first to whichever GPU frees up."""
    ordered = sorted(part_seconds, reverse=True)
    return [duration(time_in_processes(ordered, gpus)) for gpus in GPUS]


@dataclass(frozen=True)
class PricedGrid:
    """The grid's units with each one's seconds by term, and their parts' totals."""

    units: list[GridUnit]
    seconds: list[dict[str, float]]
    unpriced: set[str]

    def part_seconds(self, backbone: str | None = None) -> dict[tuple, float]:
        totals: dict[tuple, float] = defaultdict(float)
        for grid_unit, seconds in zip(self.units, self.seconds):
            if backbone is None or grid_unit.backbone == backbone:
                totals[part_key(grid_unit)] += sum(seconds.values())
        return totals


def report_lines(priced: PricedGrid, figures: Figures, unit_costs: pd.DataFrame, mini_rows: pd.DataFrame,
                 sources: list[str]) -> list[str]:
    lines = ["# What the full CLIP grid costs (estimates)", "",
             (f"Generated by `python -m bench.grid_costs` from {'; '.join(sources)}. "
             "Every unit of the grid is planned as `run --all` plans it (`bench.grid`) and priced from the figures "
             "at the end; **no unit of it was run**, and until a GPU run of `bench.unit_costs` is stored the GPU's "
             "speed is a cited figure, not ours. Read the hours as the grid's size, to within a factor of about "
             "two (see the checks and what is not counted, below)."), ""]
    lines += grid_table(priced)
    lines += method_table(priced)
    lines += wall_table(priced)
    lines += figures_table(figures, unit_costs, mini_rows)
    lines += ["## Not priced", ""] + ([f"- {item}" for item in sorted(priced.unpriced)] or ["- nothing"]) + [""]
    return lines + NOT_COUNTED


NOT_COUNTED = """## Not counted

- Decoding and preprocessing the datasets' images, by each part's `--workers` processes, once per split a part
  tests: at ViT-B/32's GPU speed (about 10,000 images/s) a part needs many decoding processes to keep its GPU busy.
- Reading and converting checkpoints and computing the zero-shot heads (once per node and suite, then cached).
- The arithmetic of the methods that run data through the encoder (AdaMerging++'s TIES trim, the task arithmetic
  under WEMoE and Surgery, Twin-Merging's compression, Expert Merging's layer-wise merges): only their passes are
  priced.
- Splits smaller than what a method asks for: the passes are counted on random inputs of any number, so
  Twin-Merging's router is counted at 5,500 validation inputs a task, where a task's validation split may hold
  fewer (at most 5,000 on the CLIP suites, a few hundred for DTD).
- Whether a part fits its GPU's memory: a ViT-L/14 WEMoE part holds its stacked task vectors and a step's
  activations.
- The factors measured on this machine's CPU (a WEMoE step, its routed forward) are applied to the GPU unchanged:
  per-sample routing moves memory more than it computes, and a GPU's balance between the two differs from a CPU's.
""".splitlines()


def grid_table(priced: PricedGrid) -> list[str]:
    lines = ["## The grid", "", "| Backbone | Checkpoints | Suites (`run` commands) | Scenarios | Units | Parts |",
             "|---|---|---|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[GridUnit]] = defaultdict(list)
    for grid_unit in priced.units:
        groups[grid_unit.backbone, grid_unit.family].append(grid_unit)
    for (backbone, family), chosen in groups.items():
        suites = sorted({grid_unit.suite for grid_unit in chosen}, key=lambda name: (len(name), name))
        scenarios = {grid_unit.unit.scenario.name for grid_unit in chosen}
        parts = {part_key(grid_unit) for grid_unit in chosen}
        lines.append(f"| {SHOWN[backbone]} | {family} | {', '.join(f'`{s}`' for s in suites)} | {len(scenarios)} | "
                     f"{len(chosen):,} | {len(parts):,} |")
    seeds = {grid_unit.unit.seed for grid_unit in priced.units}
    lines += ["", (f"{len(priced.units):,} units in {len(priced.part_seconds()):,} parts, for {len(seeds)} seed(s) "
              "(each seed adds as many). A part is what one Ray task runs: a method, seed and scenario family of one "
              "suite (all of a method's scenario families where it memoises per expert)."), ""]
    return lines


def method_table(priced: PricedGrid) -> list[str]:
    """GPU-hours per method (fixed and validation-selected apart) and backbone."""
    by_method: dict[tuple[str, str], float] = defaultdict(float)
    units: dict[str, int] = defaultdict(int)
    terms: dict[str, float] = defaultdict(float)
    for grid_unit, seconds in zip(priced.units, priced.seconds):
        by_method[method_label(grid_unit), grid_unit.backbone] += sum(seconds.values())
        units[method_label(grid_unit)] += 1
        for term, value in seconds.items():
            terms[term] += value
    total = sum(terms.values())
    labels = sorted(units, key=lambda label: -sum(by_method[label, b] for b in BACKBONES))
    lines = ["## GPU-hours per method and backbone", "",
             ("The time each method's units hold a GPU, summed over both checkpoint families (a part holds its GPU "
              "throughout, its merges on the CPU included). Units: per backbone."), "",
             "| Method | Units | " + " | ".join(f"{SHOWN[b]} GPU-h" for b in BACKBONES) + " | Share |",
             "|---|---:|" + "---:|" * len(BACKBONES) + "---:|"]
    for label in labels:
        seconds = [by_method[label, b] for b in BACKBONES]
        lines.append(f"| {label} | {units[label] // len(BACKBONES)} | " + " | ".join(map(hours, seconds))
                     + f" | {100 * sum(seconds) / total:.1f}% |")
    sums = [sum(by_method[label, b] for label in labels) for b in BACKBONES]
    lines += [f"| **all** | {len(priced.units) // len(BACKBONES):,} | "
              + " | ".join(f"**{hours(s)}**" for s in sums) + " | 100% |", "",
              "By term, over the grid: " + ", ".join(
                  f"{term} {hours(value)} GPU-h ({100 * value / total:.0f}%)"
                  for term, value in sorted(terms.items(), key=lambda item: -item[1])) + ".", ""]
    return lines


def wall_table(priced: PricedGrid) -> list[str]:
    lines = ["## Wall time under Ray, one GPU per part", "",
             ("Parts dealt longest first to whichever GPU frees up. A part is never split, so the longest one bounds "
              "the wall time however many GPUs there are."), "",
             "| Backbone | GPU-hours | " + " | ".join(f"{g} GPU{'s' if g > 1 else ''}" for g in GPUS)
             + " | Longest part |", "|---|---:|" + "---:|" * (len(GPUS) + 1)]
    for backbone in (*BACKBONES, None):
        parts = priced.part_seconds(backbone)
        longest = max(parts, key=parts.__getitem__)
        name = "**all three**" if backbone is None else SHOWN[backbone]
        suite, method, _, family = longest
        lines.append(f"| {name} | {hours(sum(parts.values()))} | " + " | ".join(walls(list(parts.values())))
                     + f" | {duration(parts[longest])}: {method}, {family}, `{suite}` |")
    return lines + [""]


def figures_table(figures: Figures, unit_costs: pd.DataFrame, mini_rows: pd.DataFrame) -> list[str]:
    lines = ["## The figures", "", "| Figure | " + " | ".join(SHOWN[b] for b in BACKBONES) + " | Source |",
             "|---|" + "---:|" * len(BACKBONES) + "---|"]
    cited = any(source.startswith("cited") for source in figures.image_source.values())
    lines.append("| GPU ms per image, evaluation (bf16) | " + " | ".join(
        f"{1000 * figures.image_s[b]:.3f}" for b in BACKBONES) + " | " + "; ".join(
        sorted(set(figures.image_source.values()))) + (f"; {REFERENCE_GPU_SOURCE}" if cited else "") + " |")
    lines.append("| GPU ms per image, the methods' passes (fp32) | " + " | ".join(
        f"{1000 * figures.pass_image_s[b]:.3f}" for b in BACKBONES) + " | " + (
        f"cited x {REFERENCE_FLOAT32_SLOWDOWN:.1f}: the RTX 4090's float32 against float16 tensor throughput, 82.6 "
        "against 165.2 TFLOPS (NVIDIA's Ada Lovelace whitepaper; TF32 matmuls off, PyTorch's default)" if cited
        else "measured") + " |")
    for name in sorted({method for method, _ in figures.merge_s}):
        values = [cpu_seconds(figures.merge_s, name, b) for b in BACKBONES]
        measured = [b for b in BACKBONES if (name, b) in figures.merge_s]
        lines.append(f"| {name}: merge of 8 experts, CPU s (x tasks / 8) | " + " | ".join(
            f"{v:.1f}" if v is not None else "" for v in values)
            + f" | measured on {', '.join(SHOWN[b] for b in measured)}; the others scaled by parameters "
              f"^ {STATIC_TIME_GROWTH} |")
    for name in sorted({method for method, _ in figures.selection_s}):
        values = [figures.selection_seconds(name, b) for b in BACKBONES]
        measured = [b for b in BACKBONES if (name, b) in figures.selection_s]
        lines.append(f"| {name}: its validation grid's merges, CPU s (x tasks / 8) | " + " | ".join(
            f"{v:.1f}" if v is not None else "" for v in values)
            + f" | measured on {', '.join(SHOWN[b] for b in measured)}; the others scaled by the ratio of its "
              f"single merges |")
    routed = {name: figures.forward_factor(name) for name in {*figures.mini_forward, *MEASURED_LIKE}}
    lines += ["", "Merged models' forward time relative to the pretrained encoder's, as priced (the mini suite's "
              "measured `inference_cost`, median, unless a full-size measurement below replaces it): "
              + ", ".join(f"{name} {value:.2f}" for name, value in sorted(routed.items()) if abs(value - 1) > 0.05)
              + "; every other method 1.", ""]
    lines += checks(unit_costs)
    lines += mini_checks(figures, mini_rows)
    return lines


def checks(unit_costs: pd.DataFrame) -> list[str]:
    """The pricing rules set against what `bench.unit_costs` measured on full-size backbones."""
    lines = [f"- {full_size.where}: {note}." for full_size in full_size_factors(unit_costs) for note in full_size.notes]
    if not lines:
        return []
    return ["Full-size measurements against the pricing rules (`bench.unit_costs`; where a method's step or forward "
            "costs more than its passes' price, its units are priced at the measured factor, and so are "
            + ", ".join(f"{name} (as {like})" for name, like in MEASURED_LIKE.items()) + "):", "", *lines, ""]


MINI_CHECKED = "multitask-8"  # the scenario whose stored units the pricing is checked against
# Fisher merging and RegMean compute their per-expert work once per part, for all its scenarios; Twin-Merging asks
# for 5,500 validation inputs a task and the mini suite's validation splits hold fewer (see NOT_COUNTED).
MINI_LEFT_OUT = ("fisher_merging", "regmean", "twin_merging")


def mini_checks(figures: Figures, mini_rows: pd.DataFrame) -> list[str]:
    """Each method that runs data through the encoder, priced by its passes at the mini suite's seconds per image
    (the pretrained unit's evaluation) against the merge time its stored unit measured. Fisher merging and RegMean
    are left out: their per-expert work is shared with the part's other scenarios."""
    units = mini_rows[(mini_rows["scenario"] == MINI_CHECKED) & (mini_rows["selection"] == "fixed")
                      & (mini_rows["seed"] == 0)]
    pretrained = units[units["method"] == "pretrained"]
    if pretrained.empty:
        return []
    image_s = pretrained["eval_s"].iloc[0] / (len(pretrained) * test_slice(pretrained["split"].iloc[0]))
    lines = [(f"The same rule against the mini suite's stored units ({MINI_CHECKED}, seed 0; {1000 * image_s:.2f} "
              "ms per image, the pretrained unit's evaluation): each method's passes priced at (forward + 3 x with "
              "gradients) x that, against the merge time its unit measured (`merge_s`; its CPU arithmetic "
              "included). Left out: Fisher merging and RegMean (a part computes their per-expert work once, for all "
              "its scenarios) and Twin-Merging (it asks for more validation inputs than the mini splits hold)."), "",
             "| Method | Passes: forward, with gradients | Priced | Measured | Measured / priced |",
             "|---|---:|---:|---:|---:|"]
    for (method, params), rows in units.groupby(["method", "params"]):
        settings = json.loads(params)
        counted = figures.passes.get((method, settings_key(settings), rows["task"].nunique()))
        if counted is None or not any(counted) or method in MINI_LEFT_OUT:
            continue  # settings the grid's passes were not counted at (e.g. batch-routed WEMoE, Surgery's bases)
        priced = (counted[0] + (1 + BACKWARD_FORWARDS) * counted[1]) * image_s
        last = rows if rows["step"].isna().all() else rows[rows["step"] == rows["step"].max()]
        measured = float(last["merge_s"].iloc[0])  # of a unit evaluated along its adaptation, at its last step
        shown = f"{method} ({settings['preset']})" if "preset" in settings else method
        lines.append(f"| {shown} | {counted[0]:,}, {counted[1]:,} | {priced:.2f} s | {measured:.2f} s | "
                     f"{measured / priced:.2f} |")
    return [*lines, ""]


def test_slice(split: str) -> int:
    """Images per task of a stored split name `test[:N]`."""
    _, stop = parse_slice(split)
    if stop is None:
        raise BenchError(f"mini results: split {split!r} is not a slice of a test split")
    return stop


# --- command ------------------------------------------------------------------------------------------------------

def versions(frame: pd.DataFrame) -> str:
    """The code versions that made a figure file's rows."""
    return ", ".join(sorted(frame["code_version"].astype(str).unique()))


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise BenchError(f"{path}: not found; {what}")
    return pd.read_parquet(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grid_costs",
        description="What the full CLIP grid (3 backbones x 2 checkpoint families x 8/14/20-task suites x every "
                    "method and scenario) costs in GPU-hours and wall time on 1, 8 and 64 GPUs, estimated from "
                    "measured and cited figures. `passes` counts each method's encoder passes (minutes on a CPU); "
                    "`report` writes the Markdown report from the stored figures.")
    parser.add_argument("command", nargs="?", choices=["report", "passes"], default="report",
                        help="report (default) or passes")
    parser.add_argument("--figures", type=Path, default=FIGURES,
                        help=f"folder of passes.parquet and unit_costs-*.parquet (default: {FIGURES})")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="the mini suite's results, for the methods' relative forward time (default: results)")
    parser.add_argument("--out", type=Path, default=REPORT,
                        help=f"the report (default: {REPORT}; `python -m bench report` writes it too, with the rest)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per unit (default: 1)")
    return parser.parse_args(argv)


def grid_cost_report(figures_folder: Path, results: Path, mini_rows: pd.DataFrame, seeds: int = 1) -> str:
    """The report's Markdown, from the figures under `figures_folder` and the mini suite's rows (stored under
    `results`): what `bench report` and this command write."""
    passes = read_parquet(figures_folder / GRID_PASSES, "run `python -m bench.grid_costs passes` first")
    if mini_rows.empty:
        raise BenchError(f"--results {results}: no stored results (the mini suite's reference run)")
    cost_files = {path: pd.read_parquet(path) for path in sorted(figures_folder.glob("unit_costs-*.parquet"))}
    unit_costs = pd.concat(cost_files.values(), ignore_index=True) if cost_files \
        else pd.DataFrame(columns=["device", "backbone", "method", "figure", "value", "precision",
                                   "compute_device", "batch", "device_name", "measured_at"])
    figures = load_figures(unit_costs, passes, mini_rows)
    sources = [f"`{figures_folder / GRID_PASSES}` (passes counted at {versions(passes)})",
               *(f"`{path}` (measured at {versions(costs)})" for path, costs in cost_files.items()),
               f"the mini suite's results under `{results}` ({versions(mini_rows)})"]
    units = grid_units(range(seeds))
    priced = PricedGrid(units, *price_units(units, figures))
    return "\n".join(report_lines(priced, figures, unit_costs, mini_rows, sources))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.seeds < 1:
            raise BenchError(f"--seeds {args.seeds}: expected at least 1")
        if args.command == "passes":
            args.figures.mkdir(parents=True, exist_ok=True)
            passes = count_passes([*grid_units(), *mini_units()], code_version())
            write_atomically(args.figures / GRID_PASSES, lambda path: passes.to_parquet(path, index=False))
            print(f"{len(passes)} counts in {args.figures / GRID_PASSES}")
            return 0
        text = grid_cost_report(args.figures, args.results, ResultStore(args.results).load(), args.seeds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(args.out, lambda path: path.write_text(text))
        print(f"wrote {args.out}")
        return 0
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
