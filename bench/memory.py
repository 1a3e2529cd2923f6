"""Peak memory of a block of work, from /proc: what the runner records per unit and the benchmarks per merge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every 2 ms from /proc): all of it,
    and the anonymous part alone (without file pages such as memory-mapped checkpoints)."""

    def __init__(self) -> None:
        self.peak_mb = self.peak_anonymous_mb = self.start_anonymous_mb = float("nan")

    @staticmethod
    def _sample() -> tuple[float, float]:
        """(resident, resident minus file-backed) in MiB."""
        try:
            with open("/proc/self/statm") as statm:
                resident, shared = (int(v) * 4096 / 2**20 for v in statm.read().split()[1:3])
            return resident, resident - shared
        except OSError:
            return float("nan"), float("nan")

    def _update(self) -> None:
        resident, anonymous = self._sample()
        self.peak_mb, self.peak_anonymous_mb = max(self.peak_mb, resident), max(self.peak_anonymous_mb, anonymous)

    @contextmanager
    def watch(self) -> Iterator[PeakMemory]:
        stop = threading.Event()
        self.peak_mb, self.start_anonymous_mb = self._sample()
        self.peak_anonymous_mb = self.start_anonymous_mb

        def sample() -> None:
            while not stop.wait(0.002):
                self._update()

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self._update()
