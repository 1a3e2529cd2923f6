"""A bad device or output folder is named before any work, in one line, with exit status 2."""

from __future__ import annotations

import os

import pytest
import torch

from bench.cli import main
from tasks import hub


@pytest.mark.parametrize("device, reason", [("bogus", "Expected one of cpu"), ("cuda:7", "")])
def test_a_device_this_machine_lacks_is_refused_before_any_work(tiny_zoo, tmp_path, capsys, device, reason):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert main(["run", "--method", "pretrained", "--device", device, "--zoo", str(tiny_zoo),
                 "--results", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --device {device}: not a device of this machine (") and reason in error
    assert "\n" not in error and not (tmp_path / "results").exists()


def test_results_that_are_a_file_or_cannot_be_written_are_refused(tiny_zoo, tmp_path, capsys):
    file = tmp_path / "results.txt"
    file.write_text("mine")
    assert main(["run", "--method", "pretrained", "--zoo", str(tiny_zoo), "--results", str(file)]) == 2
    assert f"error: --results {file}: a file, not a folder" in capsys.readouterr().err
    assert main(["run", "--method", "pretrained", "--zoo", str(tiny_zoo), "--results", "/proc/mergebench"]) == 2
    assert "error: --results /proc/mergebench: cannot write there (" in capsys.readouterr().err


def test_reports_that_are_a_file_are_refused_before_any_work(tiny_zoo, tmp_path, capsys):
    file = tmp_path / "reports.md"
    file.write_text("mine")
    assert main(["run", "--method", "pretrained", "--zoo", str(tiny_zoo), "--results", str(tmp_path / "results"),
                 "--reports", str(file)]) == 2
    assert f"error: --reports {file}: a file, not a folder" in capsys.readouterr().err
    assert file.read_text() == "mine" and not list((tmp_path / "results").rglob("*.parquet"))


@pytest.mark.parametrize("value", [None, "0", "false"])
def test_without_a_true_hf_hub_offline_an_unreachable_hub_means_offline_at_once(monkeypatch, value):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    if value is not None:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
    monkeypatch.setattr(hub, "hub_is_reachable", lambda: False)
    hub.settle_offline_mode(needs_hub=True)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_a_true_hf_hub_offline_is_kept_without_probing_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    monkeypatch.setattr(hub, "hub_is_reachable", lambda: pytest.fail("probed the hub"))
    hub.settle_offline_mode(needs_hub=True)
    assert os.environ["HF_HUB_OFFLINE"] == "yes"
