"""Results as long-format parquet: one file per completed unit (suite, weights, scenario, method settings, seed).

A unit's file is written to a temporary name and renamed, so a run killed at any point leaves only whole
units; a restart skips them and loses nothing. A unit's key names the code versions that made it (see
`core.versions`); storing a unit removes the stored one it supersedes (the same unit at other versions).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import write_atomically
from core.versions import INITIAL_VERSIONS, key_suffix, unversioned, versions_text

log = logging.getLogger(__name__)

GRID = "grid"  # the `selection` of rows scoring one point of a search space (validation or sweep test scores)
VALIDATION = "validation"  # the split settings are chosen on

COLUMNS = ["run_id", "suite", "family", "scenario", "method", "label", "preset", "params", "seed", "task",
           "counterpart", "merged", "split", "metric", "value", "step", "merge_s", "eval_s", "peak_rss_mb",
           "stored_models", "inference_cost", "precision", "code_version", "versions", "selection"]
# merged: whether the task's expert entered the merge (False for the unseen tasks of `generalization`);
# precision: the evaluation's autocast precision (fp32, bf16, fp16); code_version: package and commit that ran
# the unit; versions: of its method, scenario and evaluation (JSON, see core.versions);
# selection: how the row's settings were chosen: fixed (the method's own), validation (its grid's settings chosen on
# validation data), or grid (the score of one grid point: validation accuracy, or test accuracy for the λ sweep);
# stored_models: the parameters stored to serve every task, relative to one model; inference_cost: the forward
# time of the tested model over the pretrained encoder's (both see bench.costs; none for a grid point's rows)
# Columns newer than some stored units, with the value their rows stand for (units stored before versions existed
# are version 1 of each; before selection existed, fixed; before costs were measured, none).
DEFAULTS = {"versions": versions_text(INITIAL_VERSIONS), "selection": "fixed", "stored_models": math.nan,
            "inference_cost": math.nan}
PERF_FILE = "perf.parquet"  # under the results root: the latest `bench perf` figures, one row each per machine
GRID_FIGURES = "grid"  # under the results root: the figures the grid-cost report prices (`bench.grid_costs`)
GRID_PASSES = "passes.parquet"  # in GRID_FIGURES: the encoder passes of each method's merge; the report needs it
PERF_COLUMNS = ["figure", "value", "goal", "verdict", "machine", "measured_at"]  # verdict: met, NOT MET or ""


def unit_key(suite: str, family: str, scenario: str, method: str, params: dict, seed: int,
             versions: dict[str, int]) -> str:
    """A file-name-safe identifier of one unit of work; `family` tells apart results of different weights, the
    suffix of `versions` (none at the initial versions) results of different code."""
    settings = json.dumps(params, sort_keys=True)
    digest = hashlib.sha256(f"{suite}|{family}|{scenario}|{method}|{settings}|{seed}".encode()).hexdigest()[:12]
    return f"{suite}/{scenario.replace('/', '_')}/{method}-{digest}-seed{seed}{key_suffix(versions)}"


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
        """Store the unit's rows, then remove the units it supersedes (see `superseded`)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, partial(pd.DataFrame(rows, columns=COLUMNS).to_parquet, index=False))
        for stale in self.superseded(key):
            log.info("%s: superseded by %s (other code versions); removed", stale, path.name)
            stale.unlink()
        return path

    def superseded(self, key: str) -> list[Path]:
        """The stored files of the same unit as `key` at other versions."""
        base = self.root / unversioned(key)
        candidates = [self.path(unversioned(key)), *base.parent.glob(f"{glob.escape(base.name)}@*.parquet")]
        return [path for path in candidates if path.is_file() and path != self.path(key)]

    def load(self) -> pd.DataFrame:
        """Every readable unit's rows under the root (every parquet file but the perf and grid figures), in one frame
        (empty, with the columns, when there is none); a file that cannot be read is reported and left out."""
        frames = []
        not_units = (self.root / PERF_FILE, *(self.root / GRID_FIGURES).rglob("*.parquet"))
        for path in sorted(f for f in self.root.rglob("*.parquet") if f not in not_units):
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
