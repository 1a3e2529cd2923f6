"""The diagnostic examples run end to end on the tiny zoo and report what they claim to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEMOE_ROUTING = ROOT / "examples" / "wemoe_routing.py"


def test_wemoe_routing_under_batch_routing_reports_one_weight_vector_per_task(tiny_zoo):
    out = subprocess.run([sys.executable, str(WEMOE_ROUTING), "--zoo", str(tiny_zoo), "--inputs", "24",
                          "--routing", "batch"], capture_output=True, text=True, check=True).stdout
    assert "8-task average accuracy" in out
    per_task = out.split("last block, largest weight on own task, per task: ")[1].splitlines()[0].split(", ")
    shares = [float(item.rsplit(" ", 1)[1]) for item in per_task]
    # Every input of a task's batch is routed by the batch's mean weights: its own task is largest for all or none.
    assert len(shares) == 8 and set(shares) <= {0.0, 1.0}


def test_wemoe_routing_refuses_a_task_marker_with_batch_routing(tiny_zoo):
    done = subprocess.run([sys.executable, str(WEMOE_ROUTING), "--zoo", str(tiny_zoo), "--routing", "batch",
                           "--task-marker", "0.5"], capture_output=True, text=True)
    assert done.returncode == 2 and "--task-marker" in done.stderr.splitlines()[-1]
