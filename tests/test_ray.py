"""`run --executor ray` on a two-node Ray cluster started on this machine: the same rows as the local executor,
and nothing lost or stored twice when a worker dies in the middle of a part."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import ResultStore

pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements.txt)")

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
# the node processes import this checkout's packages; token authentication (Ray's default) is for real clusters
NODE_ENVIRONMENT = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
NOT_COMPARED = ["run_id", "merge_s", "eval_s", "peak_rss_mb", "inference_cost"]  # times and memory of the process


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(*arguments: str) -> int:
    """`ray start` in a session of its own: the id of the process group its node's processes stay in."""
    start = subprocess.Popen([str(RAY), "start", *arguments, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                              "--disable-usage-stats"], env=os.environ | NODE_ENVIRONMENT, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = start.communicate(timeout=180)
    if start.returncode != 0:
        os.killpg(start.pid, signal.SIGKILL)
        pytest.fail(f"ray start {' '.join(arguments)} failed: {output[-2000:]}")
    return start.pid


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node on 127.0.0.1, one CPU each (one part at a time on each); torn down by
    killing the process groups of the two `ray start` commands (never `ray stop`, which stops every Ray of the
    machine)."""
    address = f"127.0.0.1:{_free_port()}"
    groups = []
    with tempfile.TemporaryDirectory(prefix="ray", dir="/tmp") as temp:  # short: Ray's socket paths must fit
        try:
            groups.append(_start_node("--head", "--port", address.split(":")[1], "--include-dashboard", "false",
                                      "--temp-dir", temp))
            groups.append(_start_node("--address", address))
            yield address
        finally:
            for group in groups:
                os.killpg(group, signal.SIGKILL)


@pytest.fixture
def driver_environment(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def _run(zoo: Path, results: Path, *arguments: str) -> None:
    assert main(["run", *arguments, "--zoo", str(zoo), "--results", str(results),
                 "--reports", str(results.parent / f"{results.name}-reports")]) == 0


def _rows(results: Path):
    rows = ResultStore(results).load().drop(columns=NOT_COMPARED)
    return rows.sort_values(["scenario", "method", "task", "split", "selection", "step"]).reset_index(drop=True)


def test_parts_run_as_ray_tasks_on_both_nodes_give_the_rows_of_the_local_executor(
        cluster, driver_environment, tiny_zoo, tmp_path, caplog):
    run = ["--method", "task_arithmetic", "--method", "weight_averaging", "--scenario", "multitask",
           "--scenario", "generalization"]
    with caplog.at_level(logging.INFO, logger="bench.ray_executor"):
        _run(tiny_zoo, tmp_path / "ray", *run, "--executor", "ray", "--ray-address", cluster)
    nodes = set(re.findall(r"part .* ran on node (\w+)", caplog.text))
    assert len(nodes) == 2, caplog.text[-2000:]
    _run(tiny_zoo, tmp_path / "local", *run, "--jobs", "1")
    ray_rows, local_rows = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
    assert len(ray_rows) == len(local_rows) > 0
    assert ray_rows.equals(local_rows)
    assert sorted(p.name for p in (tmp_path / "ray").rglob("*.parquet")) == sorted(
        p.name for p in (tmp_path / "local").rglob("*.parquet"))


STALLING_PLUGIN = '''
import os
import time
from pathlib import Path

from methods.averaging import TaskArithmetic


class StallOnce(TaskArithmetic):
    """Task arithmetic whose second merge of all (in any process) writes its process id and sleeps."""

    name = "stall_once"

    def merge(self, pool):
        merges = Path({folder!r}) / "merges"
        with open(merges, "a") as log:
            log.write(f"{{os.getpid()}}\\n")
        if len(merges.read_text().splitlines()) == 2:
            (Path({folder!r}) / "stalled.pid").write_text(str(os.getpid()))
            time.sleep(300)
        return super().merge(pool)
'''


def test_a_worker_killed_in_the_middle_of_a_part_is_retried_and_every_unit_is_stored_once(
        cluster, driver_environment, tiny_zoo, tmp_path):
    """The plugin's part merges once per generalization split: its worker is killed in its second unit, after
    its first was sent to the driver. The part runs again; each unit is stored once and whole."""
    plugin = tmp_path / "stall.py"
    plugin.write_text(STALLING_PLUGIN.format(folder=str(tmp_path)))
    stalled = tmp_path / "stalled.pid"
    killed = []

    def kill_the_stalled_worker() -> None:
        deadline = time.monotonic() + 240
        while not stalled.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        if stalled.is_file():
            pid = int(stalled.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_the_stalled_worker, daemon=True)
    killer.start()
    _run(tiny_zoo, tmp_path / "results", "--plugin", str(plugin), "--method", "stall_once", "--method",
         "task_arithmetic", "--scenario", "generalization", "--executor", "ray", "--ray-address", cluster)
    killer.join(5)
    assert killed, "the plugin's worker never stalled"
    merges = (tmp_path / "merges").read_text().split()
    assert merges[:2] == [str(killed[0])] * 2 and len(merges) == 4 and merges[2] == merges[3] != merges[0]  # rerun

    rows = _rows(tmp_path / "results")
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 4
    key = ["scenario", "task", "split", "step"]
    assert not rows.duplicated(["method", *key]).any()
    stall, arithmetic = (rows[rows.method == name].set_index(key).sort_index() for name in ("stall_once",
                                                                                           "task_arithmetic"))
    assert stall["value"].equals(arithmetic["value"])  # the same merge: complete, and whole
