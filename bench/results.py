"""Results as long-format parquet: one file per completed unit (suite, weights, scenario, method settings, seed).

A unit's file is written to a temporary name and renamed, so a run killed at any point leaves only whole
units; a restart skips them and loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.atomic import write_atomically

log = logging.getLogger(__name__)

COLUMNS = ["run_id", "suite", "family", "scenario", "method", "label", "preset", "params", "seed", "task", "counterpart",
           "merged", "split", "metric", "value", "step", "merge_s", "eval_s", "peak_rss_mb", "precision",
           "code_version", "selection"]
# merged: whether the task's expert entered the merge (False for the unseen tasks of `generalization`);
# precision: the evaluation's autocast precision (fp32, bf16, fp16);
# selection: how the row's settings were chosen: fixed (the method's own), validation (its grid's settings chosen on
# validation data), or grid (the score of one grid point: validation accuracy, or test accuracy for the λ sweep)
DEFAULTS = {"selection": "fixed"}  # columns a unit file may lack, with the value its rows mean
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
        """Whether the unit is stored whole: a file that cannot be read as a unit's rows (truncated, not parquet,
        other columns) is reported and counts as missing, so the run computes it again and replaces it."""
        path = self.path(key)
        if not path.is_file():
            return False
        problem = unreadable(path)
        if problem:
            log.warning("%s: %s; computing the unit again", path, problem)
        return not problem

    def write(self, key: str, rows: list[dict]) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomically(path, partial(pd.DataFrame(rows, columns=COLUMNS).to_parquet, index=False))

    def load(self) -> pd.DataFrame:
        """Every readable unit's rows under the root (every parquet file but the perf figures), in one frame
        (empty, with the columns, when there is none); a file that cannot be read is reported and left out."""
        frames = []
        for path in sorted(f for f in self.root.rglob("*.parquet") if f != self.root / PERF_FILE):
            try:
                frame = pd.read_parquet(path)
                frame = frame.assign(**{column: value for column, value in DEFAULTS.items() if column not in frame})
                problem = missing_column(frame.columns)
            except (OSError, pa.ArrowException) as error:
                problem = not_parquet(error)
            if problem:
                log.warning("%s: %s; left out (a run recomputes it)", path, problem)
            else:
                frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def unreadable(path: Path) -> str | None:
    """Why `path` is not a whole unit file (None when it is): its parquet footer and schema are read, which a
    truncated or foreign file fails, without reading its rows."""
    try:
        columns = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as error:
        return not_parquet(error)
    return missing_column(columns)


def not_parquet(error: Exception) -> str:
    return f"unreadable as parquet ({type(error).__name__}: {error})"


def missing_column(columns: Iterable[str]) -> str | None:
    missing = [column for column in COLUMNS if column not in set(columns) and column not in DEFAULTS]
    return f"not a unit's rows (no column {missing[0]!r})" if missing else None


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
    if path.is_file():
        try:
            return pd.read_parquet(path)
        except (OSError, pa.ArrowException) as error:
            log.warning("%s: %s; left out", path, not_parquet(error))
    return pd.DataFrame(columns=PERF_COLUMNS)
