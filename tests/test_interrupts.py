"""Runs stopped from outside, or run twice at once: every stored unit is whole, a resumed run ends with exactly
the rows of an uninterrupted one, and no worker process outlives its run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.results import ResultStore

ROOT = Path(__file__).resolve().parents[1]
METHODS = [arg for name in ("pretrained", "individual", "weight_averaging", "task_arithmetic", "ties_merging")
           for arg in ("--method", name)]  # 55 units in 15 parts: enough for two workers to be busy when stopped
ROW = ["scenario", "method", "params", "seed", "task", "split", "step", "value"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_zoo, tmp_path_factory) -> pd.DataFrame:
    results = tmp_path_factory.mktemp("uninterrupted")
    assert main(["run", *METHODS, "--jobs", "1", "--zoo", str(tiny_zoo), "--results", str(results)]) == 0
    return rows_of(results)


def rows_of(results: Path) -> pd.DataFrame:
    return ResultStore(results).load()[ROW].sort_values(ROW).reset_index(drop=True)


def start_run(tiny_zoo: Path, results: Path, *options: str, threads: int = 2) -> subprocess.Popen:
    """`bench run` as a user starts it from a terminal: its own process group, which Ctrl-C signals whole.
    Two threads: `--jobs auto` runs two single-threaded workers, whose rows equal the one-threaded tests'."""
    command = [sys.executable, "-c", BENCH_HEEDING_CTRL_C, "run", *METHODS, "--zoo", str(tiny_zoo), "--results",
               str(results), *options]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=os.environ | {"OMP_NUM_THREADS": str(threads)})


# `python -m bench` with SIGINT handled as in a terminal, also where the tests were started in the background by a
# shell, whose children inherit SIGINT ignored (and Python then installs no handler for it).
BENCH_HEEDING_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        "runpy.run_module('bench', run_name='__main__', alter_sys=True)")


def children_of(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()
            and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"}


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def stored(results: Path) -> int:
    return len(list(results.rglob("*.parquet")))


def spawned_workers(pid: int) -> set[int]:
    """The children of `pid` started by multiprocessing's spawn (its workers), not its resource tracker."""
    def spawned(child: int) -> bool:
        try:
            return b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            return False
    return set(filter(spawned, children_of(pid)))


def test_ctrl_c_while_the_workers_start_stops_the_run_without_a_worker_s_traceback(tiny_zoo, tmp_path):
    """Workers are spawned deaf to Ctrl-C: one still importing its modules when it comes prints no traceback."""
    run = start_run(tiny_zoo, tmp_path / "results", "--jobs", "2")
    assert wait_for(lambda: len(spawned_workers(run.pid)) == 2 or run.poll() is not None, 120)
    workers = spawned_workers(run.pid)
    os.killpg(run.pid, signal.SIGINT)
    _, errors = run.communicate(timeout=60)
    assert run.returncode == 130 and "Traceback" not in errors, errors[-2000:]
    assert wait_for(lambda: not alive(workers), 10), "a worker outlived the interrupted run"


def test_ctrl_c_stops_a_two_process_run_within_seconds_keeping_every_stored_unit(tiny_zoo, tmp_path):
    results = tmp_path / "results"
    run = start_run(tiny_zoo, results, "--jobs", "2")
    assert wait_for(lambda: stored(results) >= 3, 120), run.communicate()[1][-2000:]
    workers = children_of(run.pid)
    os.killpg(run.pid, signal.SIGINT)
    started = time.monotonic()
    _, errors = run.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert run.returncode == 130
    last = errors.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "units this run planned are stored in" in last, errors[-2000:]
    assert "Traceback" not in errors, errors[-4000:]
    assert wait_for(lambda: not alive(workers), 10), "a worker outlived the interrupted run"
    assert all(ResultStore(results).has(key) for key in stored_keys(results))
    assert 3 <= stored(results) < 55  # the queued parts were cancelled, not run before exiting


def stored_keys(results: Path) -> list[str]:
    return [str(path.relative_to(results).with_suffix("")) for path in results.rglob("*.parquet")]


def test_a_run_stopped_at_random_points_resumes_to_the_rows_of_an_uninterrupted_run(tiny_zoo, tmp_path, uninterrupted):
    """Stopped once by SIGTERM (handled: like Ctrl-C) and once by SIGKILL (no handler runs in the parent)."""
    results = tmp_path / "results"
    draw = random.Random(19)
    for stop in (signal.SIGTERM, signal.SIGKILL):
        stop_after = stored(results) + draw.randint(1, 12)
        run = start_run(tiny_zoo, results)  # --jobs auto: two workers under two threads
        wait_for(lambda: stored(results) >= stop_after or run.poll() is not None, 120)  # noqa: B023  (called here)
        workers = children_of(run.pid)
        run.send_signal(stop)
        _, errors = run.communicate(timeout=30)
        if stop == signal.SIGTERM:
            assert run.returncode == 130 and errors.strip().splitlines()[-1].startswith("interrupted: "), errors[-2000:]
        assert wait_for(lambda: not alive(workers), 10), (  # noqa: B023  (called here, in this iteration)
            f"workers outlived their parent, stopped by {stop.name}")
    assert stored(results) < 55
    assert main(["run", *METHODS, "--zoo", str(tiny_zoo), "--results", str(results)]) == 0
    resumed = rows_of(results)
    assert not resumed.duplicated(ROW[:-1]).any()
    pd.testing.assert_frame_equal(resumed, uninterrupted)


def test_two_runs_into_one_results_folder_both_finish_with_every_unit_stored_once(tiny_zoo, tmp_path, uninterrupted):
    results = tmp_path / "results"
    runs = [start_run(tiny_zoo, results, "--jobs", "1", threads=1) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [errors[-2000:] for _, errors in outputs]
    assert stored(results) == 55 and not list(results.rglob("*.partial"))
    pd.testing.assert_frame_equal(rows_of(results), uninterrupted)
