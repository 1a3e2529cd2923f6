"""Evaluation batches: results do not depend on their size, so the CPU default can be the fastest one."""

from __future__ import annotations

import torch

from bench.evaluation import ACCELERATOR_BATCH, CPU_BATCH, EvalSettings, default_batch_size, evaluate
from methods.averaging import TaskArithmetic
from tasks.suites import load_suite


def test_the_default_batch_is_small_on_the_cpu_and_large_on_an_accelerator():
    assert default_batch_size("cpu") == CPU_BATCH < ACCELERATOR_BATCH == default_batch_size("cuda")
    assert EvalSettings().batch_size == CPU_BATCH


@torch.inference_mode()
def test_the_shipped_zoos_encoder_gives_identical_outputs_and_accuracies_in_small_and_large_batches():
    suite = load_suite("mini")
    merged = TaskArithmetic().merge(suite.pool)
    task = next(iter(suite.tasks))
    inputs = torch.cat([batch for batch, _ in suite.tasks[task].batches("test", ACCELERATOR_BATCH)])
    whole = merged(inputs[:ACCELERATOR_BATCH])
    assert torch.equal(torch.cat([merged(part) for part in inputs[:ACCELERATOR_BATCH].split(CPU_BATCH)]), whole)
    pairs = [(name, "test") for name in suite.tasks]
    assert (evaluate(merged, suite.tasks, pairs, EvalSettings(batch_size=CPU_BATCH))
            == evaluate(merged, suite.tasks, pairs, EvalSettings(batch_size=ACCELERATOR_BATCH)))
