"""Code versions in unit keys: which code made a stored unit's numbers, so that `run` never reuses stale ones.

Three things carry a version, each an integer from `INITIAL` up: every method (`MergeMethod.version`), every
scenario (`Scenario.version`) and the evaluation (`bench.evaluation.EVALUATION_VERSION`). A unit is stored
under its versions, so `run` recomputes exactly the units whose method, scenario or evaluation changed.

Who bumps a version, and when: whoever changes code in a way that can change a unit's numbers bumps, in the
same commit, the version of what the change touches:
- a method's merge or adaptation (its numerics, or what a default means): that method's version; a change to a
  helper several methods share (methods/adaptation.py, say): the version of each method whose numbers move;
- which experts a scenario merges, which (task, split) pairs it tests, how its test sets are corrupted: the
  version of each scenario concerned;
- how a merged model is scored or its inputs made (heads, preprocessing, test data, the accuracy itself): the
  evaluation's version, which recomputes everything.
A change that cannot move a number (refactoring, speed, memory, messages, comments) bumps nothing. Settings
need no version: they enter the key themselves. Explicit numbers rather than digests of source files, whose
every comment edit would invalidate every stored result.

A version at `INITIAL` leaves a unit's key as it was before versions existed, so results stored then (version
1 by definition) stay valid. Versions past it are appended to the key after `@` (`...-seed0@method2`), so the
unit a new version supersedes is the stored one of the same key before the `@`.

`code_version()` names the package and commit that ran: rows record it, keys do not.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from core.errors import BenchError

INITIAL = 1
VERSIONED = ("method", "scenario", "evaluation")  # what carries a version, in key order
INITIAL_VERSIONS = dict.fromkeys(VERSIONED, INITIAL)


def check_version(owner: str, version: object) -> None:
    """A version is an integer from INITIAL up: `owner` names where it is declared."""
    if isinstance(version, bool) or not isinstance(version, int) or version < INITIAL:
        raise BenchError(f"{owner}: version {version!r} is not an integer >= {INITIAL}")


def key_suffix(versions: Mapping[str, int]) -> str:
    """What a unit's key gains from its versions: nothing where all are INITIAL, else `@method2-evaluation3`."""
    past = [f"{part}{versions[part]}" for part in VERSIONED if versions[part] != INITIAL]
    return "@" + "-".join(past) if past else ""


def unversioned(key: str) -> str:
    """The key without its versions: the same for every version of one unit."""
    return key.partition("@")[0]


def versions_text(versions: Mapping[str, int]) -> str:
    """The versions as the rows record them (JSON, like the settings)."""
    return json.dumps({part: versions[part] for part in VERSIONED})


# The checkout's data, not its code: a run writing into the shipped results/ must not mark its own rows dirty.
DATA_FOLDERS = ("results", "reports")


def code_version(checkout: Path = Path(__file__).parent) -> str:
    """Package version and, in a git checkout, the commit (with +dirty for uncommitted changes to tracked files
    outside the data folders)."""
    try:
        package = version("mergebench")
    except PackageNotFoundError:
        package = "unknown"
    try:
        commit = _git(checkout, "rev-parse", "--short", "HEAD")
        changed = _git(checkout, "status", "--porcelain", "--untracked-files=no", "--", ":/",
                       *(f":(top,exclude){folder}" for folder in DATA_FOLDERS))
    except (OSError, subprocess.SubprocessError):
        return package
    return f"{package}+{commit}" + ("+dirty" if changed else "")


def _git(checkout: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=checkout, capture_output=True, text=True, timeout=5,
                          check=True).stdout.strip()
