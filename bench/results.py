"""Results as long-format parquet: one file per completed unit (suite, weights, scenario, method settings, seed).

A unit's file is written to a temporary name and renamed, so a run killed at any point leaves only whole
units; a restart skips them and loses nothing.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import pandas as pd

from bench.atomic import write_atomically

COLUMNS = ["run_id", "suite", "family", "scenario", "method", "label", "preset", "params", "seed", "task", "counterpart",
           "merged", "split", "metric", "value", "step", "merge_s", "eval_s", "peak_rss_mb", "precision", "code_version"]
# merged: whether the task's expert entered the merge (False for the unseen tasks of `generalization`);
# precision: the evaluation's autocast precision (fp32, bf16, fp16)
PERF_FILE = "perf.parquet"  # under the results root: the latest `bench perf` figures, one row each per machine
PERF_COLUMNS = ["figure", "value", "goal", "verdict", "machine", "measured_at"]  # verdict: met, NOT MET or ""


def unit_key(suite: str, family: str, scenario: str, method: str, params: dict, seed: int) -> str:
    """A file-name-safe identifier of one unit of work; `family` tells apart results of different weights."""
    settings = json.dumps(params, sort_keys=True)
    digest = hashlib.sha256(f"{suite}|{family}|{scenario}|{method}|{settings}|{seed}".encode()).hexdigest()[:12]
    return f"{suite}/{scenario.replace('/', '_')}/{method}-{digest}-seed{seed}"


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.parquet"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, rows: list[dict]) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomically(path, partial(pd.DataFrame(rows, columns=COLUMNS).to_parquet, index=False))

    def load(self) -> pd.DataFrame:
        """Every unit's rows under the root (every parquet file but the perf figures), in one frame (empty, with
        the columns, when there is none)."""
        files = sorted(f for f in self.root.rglob("*.parquet") if f != self.root / PERF_FILE)
        if not files:
            return pd.DataFrame(columns=COLUMNS)
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def store_perf(root: Path, figures: pd.DataFrame) -> Path:
    """Replace the stored figures of the same names and machine with these. Other machines' figures stay, since
    the time goals hold on one machine and not another; an `--end-to-end` run keeps the other figures."""
    kept = load_perf(root)
    replaced = kept.set_index(["figure", "machine"]).index.isin(figures.set_index(["figure", "machine"]).index)
    kept = kept[~replaced]
    Path(root).mkdir(parents=True, exist_ok=True)
    merged = pd.concat([kept, figures[PERF_COLUMNS]], ignore_index=True)
    return write_atomically(Path(root) / PERF_FILE, partial(merged.to_parquet, index=False))


def load_perf(root: Path) -> pd.DataFrame:
    path = Path(root) / PERF_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=PERF_COLUMNS)
