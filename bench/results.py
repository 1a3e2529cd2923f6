"""Results as long-format parquet: one file per completed unit (suite, weights, scenario, method settings, seed).

A unit's file is written to a temporary name and renamed, so a run killed at any point leaves only whole
units; a restart skips them and loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

COLUMNS = ["run_id", "suite", "family", "scenario", "method", "label", "preset", "params", "seed", "task", "counterpart",
           "merged", "split", "metric", "value", "step", "merge_s", "eval_s", "peak_rss_mb", "code_version"]
# merged: whether the task's expert entered the merge (False for the unseen tasks of `generalization`)


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
        tmp = path.with_name(path.name + ".tmp")
        pd.DataFrame(rows, columns=COLUMNS).to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return path

    def load(self) -> pd.DataFrame:
        """Every row under the root, in one frame (empty, with the columns, when there is none)."""
        files = sorted(self.root.rglob("*.parquet"))
        if not files:
            return pd.DataFrame(columns=COLUMNS)
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
