"""Running a stretch of work on one intra-op thread, the thread count restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread within: for timing a forward's work alone (bench.costs), and for many tiny operations,
    which on a loaded machine spend far longer synchronising threads than computing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
