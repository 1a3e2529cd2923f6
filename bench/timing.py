"""Timing that resists a noisy machine: the fastest of several calls."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence


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


def best_times(runs: Sequence[Callable[[], object]], repeats: int = 5,
               clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """The fastest of `repeats` calls of each of `runs` timed by `clock`, called in turn (after one untimed round),
    so that a load coming and going on the machine slows them alike."""
    for run in runs:
        run()
    times = [math.inf] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            start = clock()
            run()
            times[index] = min(times[index], clock() - start)
    return times
