"""The diagnostic examples run end to end on the tiny zoo and report what they claim to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEMOE_ROUTING = ROOT / "examples" / "wemoe_routing.py"
TASK_VECTOR_GEOMETRY = ROOT / "examples" / "task_vector_geometry.py"
ADAPTATION_SETTINGS = ROOT / "examples" / "adaptation_settings.py"
ROUTING_DIAGNOSTICS = ROOT / "examples" / "routing_diagnostics.py"


def test_adaptation_settings_adapt_on_validation_inputs_and_choose_by_validation_accuracy(tiny_zoo, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's packages, whichever is installed
    out = subprocess.run([sys.executable, str(ADAPTATION_SETTINGS), "adamerging_taskwise", "--zoo", str(tiny_zoo),
                          "--lr", "1e-3", "1e-2", "--steps", "2", "--every", "1"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    curves = [json.loads(line) for line in out[:-1]]
    assert [(c["lr"], c["step"]) for c in curves] == [(lr, step) for lr in (1e-3, 1e-2) for step in (0, 1, 2)]
    chosen = json.loads(out[-1])
    best = max((c for c in curves if c["step"] == 2), key=lambda c: c["validation"])
    assert chosen == {"chosen": {"lr": best["lr"], "steps": 2}, "validation": best["validation"]}


def test_wemoe_routing_under_batch_routing_reports_one_weight_vector_per_task(tiny_zoo, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = subprocess.run([sys.executable, str(WEMOE_ROUTING), "--zoo", str(tiny_zoo), "--inputs", "24",
                          "--routing", "batch"], capture_output=True, text=True, check=True).stdout
    assert "8-task average accuracy" in out
    per_task = out.split("last block, largest weight on own task, per task: ")[1].splitlines()[0].split(", ")
    shares = [float(item.rsplit(" ", 1)[1]) for item in per_task]
    # Every input of a task's batch is routed by the batch's mean weights: its own task is largest for all or none.
    assert len(shares) == 8 and set(shares) <= {0.0, 1.0}


def test_wemoe_routing_refuses_a_task_marker_with_batch_routing(tiny_zoo, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    done = subprocess.run([sys.executable, str(WEMOE_ROUTING), "--zoo", str(tiny_zoo), "--routing", "batch",
                           "--task-marker", "0.5"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--task-marker" in done.stderr.splitlines()[-1]


def test_task_vector_geometry_reports_each_task_vectors_norm_and_the_energy_of_its_top_fifth(tiny_zoo):
    import torch

    from tasks.suites import load_suite

    out = subprocess.run([sys.executable, str(TASK_VECTOR_GEOMETRY), "--zoo", str(tiny_zoo)],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in out.splitlines()[1:9]}
    pool = load_suite("mini", zoo=tiny_zoo).pool
    assert list(rows) == pool.tasks
    for task, (norm, _, trim_keeps, elected, _, _) in rows.items():
        vector = torch.cat([pool.task_vector(task, key).flatten() for key in pool.parameter_names])
        top_fifth = vector.abs().sort(descending=True).values[:int(0.2 * vector.numel())]
        assert norm == pytest.approx(vector.norm().item(), abs=0.006)
        assert trim_keeps == pytest.approx((top_fifth.pow(2).sum() / vector.pow(2).sum()).item(), abs=0.006)
        assert 0 < elected <= trim_keeps


@pytest.mark.parametrize("method", ["smile", "twin_merging"])
def test_routing_diagnostics_report_each_site_s_share_of_inputs_routed_most_to_their_own_task(tiny_zoo, method,
                                                                                               monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = subprocess.run([sys.executable, str(ROUTING_DIAGNOSTICS), method, "--zoo", str(tiny_zoo), "--inputs", "16"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "8-task average accuracy" in out[0]
    sites = [line.split("  ")[0].strip() for line in out[2:-1]]
    assert sites == (["router"] if method == "twin_merging" else [f"block {i}" for i in range(2)] + ["projection"])
    for line in out[2:-1]:
        share, own, other, total = (float(value) for value in line.split()[-4:])
        assert 0 <= share <= 1 and total == 1.0 and own + 7 * other == pytest.approx(1.0, abs=0.05)
    assert len(out[-1].split(": ")[1].split(", ")) == 8
