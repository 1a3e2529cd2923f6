"""Timing that resists a noisy machine: the fastest of several calls."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(run: Callable[[], object], repeats: int = 5, warm_up: bool = True) -> float:
    """The fastest of `repeats` timed calls (after one untimed call, by default): the least disturbed by other
    load."""
    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
